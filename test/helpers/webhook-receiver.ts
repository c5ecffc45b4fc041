import { createHmac, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Config } from "../../src/env.ts";
import { loadConfig } from "../../src/env.ts";

/** One request the receiver got. */
export interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  /** The body exactly as received (what the signature covers). */
  raw: string;
  // biome-ignore lint/suspicious/noExplicitAny: each event's data has its own shape; tests read it loosely
  body: { id: string; event: string; createdAt: string; tenantId: string; webhookId: string; data: any };
  /** The status it was answered with. */
  status: number;
  at: number;
}

/**
 * A tenant's backend as webhooks see it: a real HTTP server on 127.0.0.1 that records every
 * request and answers with the statuses queued in `answers` (in order), then `fallback`.
 */
export class WebhookReceiver {
  readonly received: Received[] = [];
  answers: number[] = [];
  fallback = 200;
  /** Waits this long before answering. */
  delayMs = 0;
  private server: Server | null = null;
  private port = 0;

  async start(): Promise<this> {
    this.server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => {
        const raw = Buffer.concat(chunks).toString("utf8");
        const status = this.answers.shift() ?? this.fallback;
        const answer = () => {
          this.received.push({
            path: request.url ?? "",
            headers: request.headers,
            raw,
            body: JSON.parse(raw),
            status,
            at: Date.now(),
          });
          response.writeHead(status, { "content-type": "text/plain" }).end(status < 300 ? "ok" : "nope");
        };
        if (this.delayMs > 0) setTimeout(answer, this.delayMs);
        else answer();
      });
    });
    await new Promise<void>((resolve) => this.server?.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  url(path = "/hook"): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Waits until `count` requests matching `match` arrived (fails after timeoutMs, listing what came). */
  async waitFor(count: number, match: (r: Received) => boolean = () => true, timeoutMs = 10_000): Promise<Received[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.received.filter(match);
      if (found.length >= count) return found;
      if (Date.now() > deadline) {
        throw new Error(
          `expected ${count} webhook requests, got ${found.length} of ${this.received.length}: ${JSON.stringify(
            this.received.map((r) => [r.body.event, r.status, r.headers["x-webhook-id"]]),
          )}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/**
 * The signature check exactly as the README shows it: the `js` block of its Webhooks section
 * that defines `verifyWebhook`, run as written (its import line aside), so a README that
 * drifts from what the server signs fails the tests.
 */
export function readmeVerifier(): (
  rawBody: string,
  signatureHeader: string,
  secret: string,
  toleranceSeconds?: number,
) => boolean {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const block = [...readme.matchAll(/```js\n([\s\S]*?)```/g)]
    .map((match) => match[1] as string)
    .find((code) => code.includes("function verifyWebhook("));
  if (!block) throw new Error("README has no js block defining verifyWebhook");
  const code = block
    .split("\n")
    .filter((line) => !line.startsWith("import "))
    .join("\n");
  return new Function("createHmac", "timingSafeEqual", "Buffer", `${code}\nreturn verifyWebhook;`)(
    createHmac,
    timingSafeEqual,
    Buffer,
  );
}

/** Signs like the server does (for checking that verification refuses what it must). */
export function sign(secret: string, raw: string, unixSeconds: number): string {
  return `t=${unixSeconds},v1=${createHmac("sha256", secret).update(`${unixSeconds}.${raw}`).digest("hex")}`;
}

/** Webhook settings for a test server: the defaults with some changed. */
export function webhookSettings(changes: Partial<Config["webhooks"]>): Pick<Config, "webhooks"> {
  return { webhooks: { ...loadConfig({}).webhooks, ...changes } };
}
