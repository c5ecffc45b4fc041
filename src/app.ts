import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { safeEqual } from "./auth/secrets.ts";
import type { AppDeps } from "./context.ts";
import { contextFor } from "./context.ts";
import type { Database } from "./db/client.ts";
import { closeDeps, createDeps } from "./deps.ts";
import type { Config } from "./env.ts";
import { createGraphQLServer, GRAPHQL_ENDPOINT } from "./graphql/yoga.ts";
import { attachmentsRoute } from "./http/attachments.ts";
import { exportRoute } from "./http/export.ts";
import { providerSignInRoute } from "./http/oauth.ts";
import { readyRoute, type Warmth } from "./http/ready.ts";
import { uiRoutes } from "./http/ui.ts";
import { createLogger, type Logger } from "./logger.ts";
import { metricsRoute, shareWithPrimary } from "./metrics.ts";
import { startAttachmentSweeper } from "./services/attachment-gc.ts";
import { syncExternalGroups } from "./services/external-groups.ts";
import { recordUserCreated } from "./services/users.ts";
import { WebhookDispatcher } from "./services/webhook-dispatcher.ts";
import { warmUp } from "./warmup.ts";
import { createWsServer } from "./ws/server.ts";

export interface App {
  deps: AppDeps;
  /** Handles one HTTP request without a socket, through the same pipeline as the server. */
  fetch: (input: string | URL | Request, init?: RequestInit) => Promise<Response>;
  start(port?: number, host?: string): Promise<{ port: number; url: string; wsUrl: string }>;
  stop(): Promise<void>;
}

export interface AppOptions {
  log?: Logger;
  /** Use an already opened database (tests share one per worker). */
  db?: Database;
}

/** Wires the services, the GraphQL endpoint with its routes, and the WebSocket server on one port. */
export async function buildApp(config: Config, options: AppOptions = {}): Promise<App> {
  const log = options.log ?? createLogger(config.logLevel);
  const deps = await createDeps(config, { log, db: options.db });
  shareWithPrimary(deps.metrics);
  // Group memberships follow each new token of a tenant's identity provider.
  if (deps.tokens.external) {
    deps.tokens.external.onNewToken = (identity, principal) =>
      syncExternalGroups(contextFor(deps, principal), principal.userId, identity.groups);
    deps.tokens.external.onUserCreated = (tx, user) => recordUserCreated(deps.webhooks, tx, user, null);
  }
  const warmth: Warmth = { warm: false };
  const yoga = createGraphQLServer(deps, [
    readyRoute(deps, warmth),
    metricsRoute(deps.metrics, config.metricsToken, safeEqual),
    providerSignInRoute(deps),
    attachmentsRoute(deps),
    exportRoute(deps),
    ...uiRoutes(deps),
  ]);
  const server: Server = createServer(yoga);
  server.on("clientError", (error, socket) => {
    // A peer that hung up mid-request is reported once, where its body was being read.
    const code = (error as NodeJS.ErrnoException).code;
    if (!socket.writable || code === "HPE_INVALID_EOF_STATE" || code === "ECONNRESET") {
      socket.destroy();
      return;
    }
    log.warn({ err: error.message, code }, "malformed HTTP request");
    const [status, message] =
      code === "HPE_HEADER_OVERFLOW"
        ? ["431 Request Header Fields Too Large", "The request line or headers are too large"]
        : ["400 Bad Request", "The request is not valid HTTP"];
    const body = JSON.stringify({ errors: [{ message, extensions: { code: "BAD_USER_INPUT" } }] });
    socket.end(
      `HTTP/1.1 ${status}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
  const ws = createWsServer(deps, yoga, server, GRAPHQL_ENDPOINT);
  const sweeper = startAttachmentSweeper(deps);
  const dispatcher = new WebhookDispatcher(deps);
  dispatcher.start();

  let started = false;
  return {
    deps,
    fetch: async (input, init) => yoga.fetch(input as never, init ?? {}, {}),
    async start(port = config.port, host = config.host) {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          resolve();
        });
      });
      started = true;
      const address = server.address() as AddressInfo;
      const shownHost = host === "0.0.0.0" || host === "::" ? "localhost" : host;
      // Listening already, so /ready can answer 503 meanwhile; start() returns once warm.
      const loopback =
        address.family === "IPv6"
          ? `[${address.address === "::" ? "::1" : address.address}]`
          : address.address === "0.0.0.0"
            ? "127.0.0.1"
            : address.address;
      const report = await warmUp(deps, yoga, `ws://${loopback}:${address.port}${GRAPHQL_ENDPOINT}`);
      warmth.warm = true;
      log.info(report, "warmed up");
      return {
        port: address.port,
        url: `http://${shownHost}:${address.port}${GRAPHQL_ENDPOINT}`,
        wsUrl: `ws://${shownHost}:${address.port}${GRAPHQL_ENDPOINT}`,
      };
    },
    /**
     * Graceful: /ready answers 503 and no connection is accepted any more, sockets are closed
     * with 1012 (clients reconnect elsewhere and resume by cursor), operations in flight get up
     * to SHUTDOWN_DRAIN_SECONDS to finish, then what is left is cut and the parts are closed.
     */
    async stop() {
      warmth.draining = true;
      const closed = started ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
      await ws.dispose();
      if (started) {
        // Connections finishing a request close once idle; the rest are cut at the bound.
        const idle = setInterval(() => server.closeIdleConnections(), 50);
        const cut = setTimeout(() => server.closeAllConnections(), config.shutdownDrainMs);
        server.closeIdleConnections();
        await closed;
        clearInterval(idle);
        clearTimeout(cut);
      }
      await dispatcher.stop();
      await sweeper.stop();
      await closeDeps(deps);
    },
  };
}
