import type { IncomingMessage } from "node:http";
import type { ClientInfo } from "../context.ts";
import type { Config } from "../env.ts";

/** A JSON error response in the GraphQL error shape, so every client reads one format. */
export function jsonError(
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify({ errors: [{ message, extensions: { code } }] }), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}

/** HTTP status for a client error code. */
export function statusOf(code: string): number {
  return (
    { UNAUTHENTICATED: 401, FORBIDDEN: 403, NOT_FOUND: 404, PAYLOAD_TOO_LARGE: 413, RATE_LIMITED: 429 }[code] ?? 400
  );
}

/** What Yoga's Node adapter puts into the server context of each request (absent for app.fetch). */
export interface NodeServerContext {
  req?: IncomingMessage;
}

export function clientInfo(config: Config, request: Request, serverContext: NodeServerContext): ClientInfo {
  // Each trusted proxy appends the address it saw, so the client is `trustProxy` entries from
  // the right; anything further left was written by the client and proves nothing.
  const hops = config.trustProxy;
  const chain = hops ? (request.headers.get("x-forwarded-for") ?? "").split(",").map((part) => part.trim()) : [];
  const forwarded = chain.length >= hops ? chain[chain.length - hops] : chain[0];
  return {
    address: forwarded || serverContext.req?.socket.remoteAddress || null,
    userAgent: request.headers.get("user-agent"),
  };
}

/** The origin a request came to (for redirects and absolute links). */
export function originOf(config: Config, request: Request): string {
  const url = new URL(request.url);
  const forwardedProto = config.trustProxy > 0 ? request.headers.get("x-forwarded-proto") : null;
  const protocol = forwardedProto === "https" ? "https:" : url.protocol;
  return `${protocol}//${request.headers.get("host") ?? url.host}`;
}
