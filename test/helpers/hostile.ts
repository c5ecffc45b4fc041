import { randomUUID } from "node:crypto";
import { request as httpRequest } from "node:http";
import type { GraphQLFormattedError } from "graphql";
import { expect } from "vitest";
import WebSocket from "ws";
import type { GqlResult } from "./client.ts";

// Tools for hostile-input tests: leak checks, raw HTTP and a raw graphql-transport-ws socket.

/** Every code a client may legitimately cause. */
export const CLIENT_CODES = [
  "UNAUTHENTICATED",
  "FORBIDDEN",
  "NOT_FOUND",
  "BAD_USER_INPUT",
  "CONFLICT",
  "RATE_LIMITED",
  "PAYLOAD_TOO_LARGE",
  "GRAPHQL_PARSE_FAILED",
  "GRAPHQL_VALIDATION_FAILED",
  "QUERY_TOO_COMPLEX",
] as const;

/** Stack frames, file paths, SQL and database driver text must never reach a client. */
export const LEAK =
  /("stack(trace)?"\s*:|\n\s*at\s|\bat\s+\S+\s+\(|node_modules|\.(ts|js|mjs|cjs):\d+|\bSELECT\s|\bINSERT\s+INTO\b|\bUPDATE\s+"|\bFROM\s+"|\bWHERE\s+"|Prisma|invalid byte sequence|violates .* constraint|syntax error at or near|PGlite|\bpg_)/i;

export function expectNoLeak(value: unknown): void {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  expect(text, "error output leaks internals").not.toMatch(LEAK);
  if (value && typeof value === "object") {
    for (const error of ((value as { errors?: GraphQLFormattedError[] }).errors ?? []) as GraphQLFormattedError[]) {
      expect(Object.keys(error.extensions ?? {})).not.toContain("exception");
    }
  }
}

/** Asserts one error with a client code (one of `code` when given) and, when given, the field. */
export function expectClientError(
  error: GraphQLFormattedError | undefined,
  code: string | readonly string[] = CLIENT_CODES,
  field?: string,
): GraphQLFormattedError {
  if (!error) expect.fail("expected an error, got none");
  const wanted = typeof code === "string" ? [code] : code;
  const actual = error.extensions?.code;
  if (!wanted.includes(String(actual))) {
    expect.fail(`expected extensions.code ${wanted.join(" | ")}, got ${JSON.stringify(error)}`);
  }
  if (field !== undefined) expect(error.extensions?.field, JSON.stringify(error)).toBe(field);
  expectNoLeak({ errors: [error] });
  return error;
}

/** Asserts the whole result failed with a client error (first error) and leaked nothing. */
export function expectFailed<T>(
  result: GqlResult<T>,
  code: string | readonly string[] = CLIENT_CODES,
  field?: string,
): GraphQLFormattedError {
  if (!result.errors?.length) expect.fail(`expected errors, got ${JSON.stringify(result)}`);
  for (const error of result.errors) expectClientError(error);
  expectNoLeak(result);
  return expectClientError(result.errors[0], code, field);
}

export interface RawResponse {
  status: number;
  text: string;
  json: { data?: unknown; errors?: GraphQLFormattedError[] } | undefined;
}

export async function rawFetch(url: string, init: RequestInit): Promise<RawResponse> {
  const response = await fetch(url, init);
  const text = await response.text();
  let json: RawResponse["json"];
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, text, json };
}

export function rawPost(
  url: string,
  body: string,
  contentType = "application/json",
  headers: Record<string, string> = {},
) {
  return rawFetch(url, { method: "POST", headers: { "content-type": contentType, ...headers }, body });
}

/** Asserts a request-level refusal: no 5xx status, and a JSON error with a client code. */
export function expectRefused(response: RawResponse, code: string | readonly string[] = CLIENT_CODES, status?: number) {
  if (!response.json?.errors?.length) {
    expect.fail(`expected a JSON error body, got ${response.status} ${response.text.slice(0, 500)}`);
  }
  if (status !== undefined) expect(response.status).toBe(status);
  else expect(response.status).toBeLessThan(500);
  expect(response.json.data ?? null).toBeNull();
  expectNoLeak(response.text);
  for (const error of response.json.errors) expectClientError(error);
  return expectClientError(response.json.errors[0], code);
}

/** POSTs a body in chunks without a Content-Length (chunked transfer encoding). */
export function chunkedPost(
  url: string,
  prefix: string,
  padding: number,
  tail: string,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: "POST", headers: { "content-type": "application/json" } });
    let settled = false;
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        text += chunk;
      });
      const done = () => {
        if (settled) return;
        settled = true;
        resolve({ status: res.statusCode ?? 0, text });
      };
      res.on("end", done);
      res.on("close", done);
      res.on("error", done);
    });
    req.on("error", (error) => {
      if (settled) return;
      settled = true;
      reject(error);
    });
    void (async () => {
      req.write(prefix);
      let written = 0;
      while (written < padding && !req.destroyed && !settled) {
        const size = Math.min(1000, padding - written);
        req.write("x".repeat(size));
        written += size;
        await new Promise((r) => setTimeout(r, 1));
      }
      if (!req.destroyed && !settled) req.end(tail);
    })();
  });
}

// ---------------------------------------------------------------------------------------
// Raw graphql-transport-ws client.

export type WsMessage = { id?: string; type: string; payload?: unknown };

export interface RawSocket {
  ws: WebSocket;
  messages: WsMessage[];
  send(message: unknown): void;
  sendRaw(data: string | Buffer): void;
  /** Waits for a message matching the predicate (already received or future). */
  waitFor(predicate: (message: WsMessage) => boolean, timeoutMs?: number): Promise<WsMessage>;
  closed: Promise<{ code: number; reason: string }>;
  isOpen(): boolean;
  close(): void;
}

/** Opens a raw socket; `protocol: null` offers no subprotocol at all. */
export async function openSocket(wsUrl: string, protocol: string | null = "graphql-transport-ws"): Promise<RawSocket> {
  const ws = new WebSocket(wsUrl, protocol === null ? [] : [protocol]);
  const messages: WsMessage[] = [];
  const listeners = new Set<() => void>();
  ws.on("error", () => {
    // A reset after the server closes is expected; the close event carries the outcome.
  });
  ws.on("message", (data) => {
    let parsed: WsMessage;
    try {
      parsed = JSON.parse(String(data));
    } catch {
      parsed = { type: "<unparseable>", payload: String(data) };
    }
    messages.push(parsed);
    for (const listener of [...listeners]) listener();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.on("close", (code, reason) => {
      resolve({ code, reason: String(reason) });
      for (const listener of [...listeners]) listener();
    });
  });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  return {
    ws,
    messages,
    send: (message) => ws.send(JSON.stringify(message)),
    sendRaw: (data) => ws.send(data),
    waitFor(predicate, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = messages.find(predicate);
          if (found) {
            cleanup();
            resolve(found);
          } else if (ws.readyState === WebSocket.CLOSED) {
            cleanup();
            void closed.then(({ code, reason }) =>
              reject(
                new Error(
                  `socket closed (${code} ${reason}) before the expected message; got ${JSON.stringify(messages)}`,
                ),
              ),
            );
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no matching message within ${timeoutMs} ms; got ${JSON.stringify(messages)}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
    closed,
    isOpen: () => ws.readyState === WebSocket.OPEN,
    close: () => {
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(1000);
    },
  };
}

export async function expectClose(socket: RawSocket, code: number, timeoutMs = 10_000): Promise<void> {
  const result = await Promise.race([
    socket.closed,
    new Promise<null>((resolve) => setTimeout(() => resolve(null), timeoutMs)),
  ]);
  if (!result) expect.fail(`socket still open after ${timeoutMs} ms, expected close ${code}`);
  expect(result.code, `close reason: ${result.reason}`).toBe(code);
  expectNoLeak(result.reason);
}

/** An acknowledged connection as the given user. */
export async function initSocket(wsUrl: string, token: string): Promise<RawSocket> {
  const socket = await openSocket(wsUrl);
  socket.send({ type: "connection_init", payload: { authorization: `Bearer ${token}` } });
  await socket.waitFor((m) => m.type === "connection_ack");
  return socket;
}

/** Proves the socket still processes messages: ping gets pong. */
export async function expectSocketAlive(socket: RawSocket): Promise<void> {
  const marker = randomUUID();
  socket.send({ type: "ping", payload: { marker } });
  await socket.waitFor((m) => m.type === "pong" && (m.payload as { marker?: string } | undefined)?.marker === marker);
  expect(socket.isOpen()).toBe(true);
}

/** The error for one operation: an `error` message, or a `next` carrying only errors. */
export async function operationError(socket: RawSocket, id: string): Promise<GraphQLFormattedError[]> {
  const message = await socket.waitFor(
    (m) => m.id === id && (m.type === "error" || m.type === "next" || m.type === "complete"),
  );
  if (message.type === "error") return message.payload as GraphQLFormattedError[];
  if (message.type === "next") {
    const payload = message.payload as { data?: unknown; errors?: GraphQLFormattedError[] };
    if (!payload.errors?.length) expect.fail(`expected errors for ${id}, got ${JSON.stringify(message)}`);
    expect(payload.data ?? null).toBeNull();
    return payload.errors;
  }
  return expect.fail(`operation ${id} completed without an error`);
}
