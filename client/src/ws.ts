import { type Client, CloseCode, createClient } from "graphql-ws";
import type { AuthSession } from "./session.ts";

export interface WsOptions {
  /** The WebSocket URL; default: the GraphQL URL with ws(s):. */
  wsUrl?: string;
  /** A WebSocket implementation where there is no global one (Node < 22: the `ws` package). */
  webSocketImpl?: unknown;
  /** Wait before reconnect attempt `retries` (0-based); default: 0.5 s doubling to 10 s, with jitter. */
  retryWait?: (retries: number) => Promise<void>;
  /** Close the socket this long after its last subscription ends (default 0). */
  lazyCloseTimeout?: number;
}

const defaultRetryWait = (retries: number) =>
  new Promise<void>((resolve) => setTimeout(resolve, Math.min(10_000, 500 * 2 ** retries) + Math.random() * 300));

export const wsUrlOf = (url: string) => url.replace(/^http/, "ws");

/**
 * A graphql-ws client whose connection_init carries the session's credentials (renewed
 * when due), which reconnects after any close or network failure (a restarting server),
 * and which renews the access token when the server closes the socket with 4403 (the token
 * expired or was revoked).
 */
export function createWsClient(url: string, session: AuthSession, options: WsOptions = {}): Client {
  let presented: string | undefined;
  return createClient({
    url: options.wsUrl ?? wsUrlOf(url),
    webSocketImpl: options.webSocketImpl,
    lazyCloseTimeout: options.lazyCloseTimeout ?? 0,
    connectionParams: async () => {
      const params = await session.connectionParams();
      presented = session.accessToken;
      return params;
    },
    retryAttempts: Number.POSITIVE_INFINITY,
    retryWait: options.retryWait ?? defaultRetryWait,
    // Every close but a deliberate one is worth another attempt: the server restarts,
    // tokens are renewed. Errors of the session itself (SessionEndedError) end the retries.
    shouldRetry: (errOrClose) => {
      if (errOrClose instanceof Error) return false;
      return true;
    },
    on: {
      closed: (event) => {
        const code = (event as { code?: number } | undefined)?.code;
        if (code === CloseCode.Forbidden || code === CloseCode.Unauthorized) {
          // Renewed on the next connect (connectionParams), if it can be.
          void session.refused(presented).catch(() => {});
        }
      },
    },
  });
}
