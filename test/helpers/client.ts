import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { type ExecutionResult, type GraphQLFormattedError, print } from "graphql";
import { type Client, createClient } from "graphql-ws";
import { expect } from "vitest";
import WebSocket from "ws";

export interface Auth {
  apiKey?: string;
  token?: string;
  headers?: Record<string, string>;
}

export type GqlResult<T> = { data?: T | null; errors?: GraphQLFormattedError[]; status: number };

/** Runs an operation over real HTTP. */
export async function request<T, V>(
  url: string,
  document: TypedDocumentNode<T, V> | string,
  variables?: V,
  auth: Auth = {},
): Promise<GqlResult<T>> {
  const headers: Record<string, string> = { "content-type": "application/json", ...auth.headers };
  if (auth.apiKey) headers["x-api-key"] = auth.apiKey;
  if (auth.token) headers.authorization = `Bearer ${auth.token}`;
  const response = await fetch(url, {
    method: "POST",
    headers,
    body: JSON.stringify({ query: typeof document === "string" ? document : print(document), variables }),
  });
  const body = (await response.json()) as ExecutionResult<T>;
  return {
    data: body.data as T | null | undefined,
    errors: body.errors as GraphQLFormattedError[] | undefined,
    status: response.status,
  };
}

/** Runs an operation and asserts it succeeded, printing the whole response when not. */
export async function ok<T, V>(url: string, document: TypedDocumentNode<T, V>, variables?: V, auth?: Auth): Promise<T> {
  const result = await request(url, document, variables, auth);
  if (result.errors?.length || !result.data) {
    expect.fail(`expected no errors, got ${JSON.stringify(result, null, 2)}`);
  }
  return result.data as T;
}

/** Runs an operation and asserts it failed with the given extensions.code; returns the error. */
export async function fails<T, V>(
  url: string,
  document: TypedDocumentNode<T, V> | string,
  variables: V | undefined,
  auth: Auth | undefined,
  code: string,
): Promise<GraphQLFormattedError> {
  const result = await request(url, document, variables, auth);
  const error = result.errors?.[0];
  if (!error || error.extensions?.code !== code) {
    expect.fail(`expected error ${code}, got ${JSON.stringify(result, null, 2)}`);
  }
  return error;
}

export type WsClient = Client & { closed: Promise<{ code: number; reason: string }> };

/**
 * A graphql-ws client. By default it is lazy and closes its own socket (1000) once its last
 * subscription ends; `keepOpen` holds the socket open regardless, so every close observed
 * is the server's doing.
 */
export function wsClient(wsUrl: string, auth: Auth = {}, options: { keepOpen?: boolean } = {}): WsClient {
  let resolveClosed: (value: { code: number; reason: string }) => void = () => {};
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    resolveClosed = resolve;
  });
  const client = createClient({
    url: wsUrl,
    webSocketImpl: WebSocket,
    lazy: !options.keepOpen,
    onNonLazyError: () => {},
    retryAttempts: 0,
    connectionParams: auth.apiKey
      ? { apiKey: auth.apiKey }
      : auth.token
        ? { authorization: `Bearer ${auth.token}` }
        : {},
    on: {
      closed: (event) => {
        const e = event as { code: number; reason: string };
        resolveClosed({ code: e.code, reason: String(e.reason) });
      },
    },
  });
  return Object.assign(client, { closed });
}

export interface Subscription<T> {
  /** Waits for the next event (fails after timeoutMs). */
  next(timeoutMs?: number): Promise<ExecutionResult<T>>;
  /** Collects exactly n events. */
  take(n: number, timeoutMs?: number): Promise<ExecutionResult<T>[]>;
  /**
   * Asserts nothing arrives within ms and that the subscription is still live: not ended
   * by the server, its socket open. With a `probe` (an action that must produce an event
   * for this subscription), also proves that the silent stream still delivers.
   */
  expectSilence(ms: number, probe?: () => Promise<unknown>): Promise<void>;
  /** Resolves when the server completes or errors the subscription. */
  done: Promise<{ error?: unknown }>;
  unsubscribe(): void;
}

export function subscribe<T, V>(client: Client, document: TypedDocumentNode<T, V>, variables?: V): Subscription<T> {
  const buffered: ExecutionResult<T>[] = [];
  const waiters: ((value: ExecutionResult<T>) => void)[] = [];
  let ended: { error?: unknown } | null = null;
  let resolveDone: (value: { error?: unknown }) => void = () => {};
  const done = new Promise<{ error?: unknown }>((resolve) => {
    resolveDone = (value) => {
      ended = value;
      resolve(value);
    };
  });
  const unsubscribe = client.subscribe<T>(
    { query: print(document), variables: variables as Record<string, unknown> | undefined },
    {
      next: (value) => {
        const waiter = waiters.shift();
        if (waiter) waiter(value as ExecutionResult<T>);
        else buffered.push(value as ExecutionResult<T>);
      },
      error: (error) => resolveDone({ error }),
      complete: () => resolveDone({}),
    },
  );
  const next = (timeoutMs = 10_000) =>
    new Promise<ExecutionResult<T>>((resolve, reject) => {
      const item = buffered.shift();
      if (item) {
        resolve(item);
        return;
      }
      const timer = setTimeout(() => {
        const index = waiters.indexOf(waiter);
        if (index >= 0) waiters.splice(index, 1);
        reject(new Error(`no event within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (value: ExecutionResult<T>) => {
        clearTimeout(timer);
        resolve(value);
      };
      waiters.push(waiter);
    });
  return {
    next,
    async take(n, timeoutMs) {
      const items: ExecutionResult<T>[] = [];
      for (let i = 0; i < n; i++) items.push(await next(timeoutMs));
      return items;
    },
    async expectSilence(ms, probe) {
      await new Promise((resolve) => setTimeout(resolve, ms));
      expect(buffered).toEqual([]);
      expect(ended, "the subscription ended, so its silence proves nothing").toBeNull();
      if (probe) {
        await probe();
        const event = await next();
        expect(event.errors, JSON.stringify(event)).toBeUndefined();
      }
    },
    done,
    unsubscribe,
  };
}

/** Everything already buffered on a subscription (waiting briefly for stragglers). */
export async function drain<T>(sub: Subscription<T>, waitMs = 50): Promise<ExecutionResult<T>[]> {
  const events: ExecutionResult<T>[] = [];
  while (true) {
    try {
      events.push(await sub.next(waitMs));
    } catch {
      return events;
    }
  }
}

/**
 * Repeats `poke` until the subscription shows an event, which proves it is live; returns
 * that first event, after draining whatever followed it.
 */
export async function whenLive<T>(sub: Subscription<T>, poke: () => Promise<unknown>): Promise<ExecutionResult<T>> {
  for (let attempt = 0; attempt < 20; attempt++) {
    await poke();
    try {
      const event = await sub.next(500);
      await drain(sub, 100);
      return event;
    } catch {
      // not subscribed yet: poke again
    }
  }
  return expect.fail("the subscription never became live");
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The close event of a socket, or null while it stays open for `ms`. */
export async function closedWithin(client: WsClient, ms: number): Promise<{ code: number; reason: string } | null> {
  return Promise.race([client.closed, sleep(ms).then(() => null)]);
}

/** Asserts the server closed the socket with 4403 (credentials no longer valid). */
export async function expectClosed4403(client: WsClient, what: string): Promise<void> {
  const closed = await closedWithin(client, 5_000);
  expect(closed, `${what} is still open`).not.toBeNull();
  expect(closed?.code, `${what} closed with ${JSON.stringify(closed)}`).toBe(4403);
}

/** Asserts the socket stays open for `ms`. */
export async function expectOpen(client: WsClient, what: string, ms = 500): Promise<void> {
  const closed = await closedWithin(client, ms);
  expect(closed, `${what} was closed: ${JSON.stringify(closed)}`).toBeNull();
}

/**
 * Runs one operation over graphql-ws and returns the errors it ends with: an `error` message,
 * or a `next` carrying errors (then no data). A socket close, data or silence fails the test.
 */
export async function operationErrors<T, V>(
  client: Client,
  document: TypedDocumentNode<T, V> | string,
  variables?: V,
): Promise<readonly GraphQLFormattedError[]> {
  let dispose = () => {};
  try {
    const outcome = await new Promise<{ result?: ExecutionResult<T>; ended?: unknown }>((resolve) => {
      const timer = setTimeout(() => resolve({ ended: "no answer within 10 s" }), 10_000);
      const settle = (value: { result?: ExecutionResult<T>; ended?: unknown }) => {
        clearTimeout(timer);
        resolve(value);
      };
      dispose = client.subscribe<T>(
        {
          query: typeof document === "string" ? document : print(document),
          variables: variables as Record<string, unknown> | undefined,
        },
        {
          next: (result) => settle({ result: result as ExecutionResult<T> }),
          error: (error) => settle({ ended: error }),
          complete: () => settle({ ended: "completed without an error" }),
        },
      );
    });
    if (outcome.result) {
      if (!outcome.result.errors?.length) expect.fail(`expected errors, got ${JSON.stringify(outcome.result)}`);
      expect(outcome.result.data ?? null).toBeNull();
      return outcome.result.errors as readonly GraphQLFormattedError[];
    }
    if (Array.isArray(outcome.ended)) return outcome.ended as GraphQLFormattedError[];
    return expect.fail(`expected an error for the operation, got ${JSON.stringify(outcome.ended)}`);
  } finally {
    dispose();
  }
}
