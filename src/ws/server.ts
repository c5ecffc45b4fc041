import { randomUUID } from "node:crypto";
import type { Server } from "node:http";
import { type ExecutionArgs, GraphQLError, getOperationAST, Kind } from "graphql";
import { CloseCode, handleProtocols, makeServer } from "graphql-ws";
import { type WebSocket, WebSocketServer } from "ws";
import { watchCredentialEnd } from "../auth/credential-end.ts";
import { credentialsFromConnectionParams } from "../auth/credentials.ts";
import { type Principal, resolvePrincipal } from "../auth/principal.ts";
import { type AppDeps, contextFor } from "../context.ts";
import { appError } from "../errors.ts";
import { classifyError, createErrorMasker, withCode } from "../graphql/errors.ts";
import { inspectOperationInput } from "../graphql/input-guards.ts";
import { trustedQuery } from "../graphql/trusted-documents.ts";
import type { ChatYoga } from "../graphql/yoga.ts";
import { originAllowed } from "../http/cors.ts";
import { countRateLimited, tallies } from "../metrics.ts";
import { liveHub } from "../realtime/hub.ts";
import { followKeys } from "../realtime/presence.ts";
import { SocketStreams } from "../realtime/queue.ts";
import { CredentialRegistry } from "./credentials.ts";

/** Close code for a connection over the per-user or per-tenant socket cap (fatal for graphql-ws clients). */
export const TOO_MANY_CONNECTIONS = 4429;

interface Extra {
  socket: WebSocket;
  /** The Host header of the upgrade request (the request itself is not kept). */
  host: string | undefined;
  principal?: Principal;
  /** The socket's live streams, ended together when the socket cannot keep up. */
  streams: SocketStreams;
  /** Sends a frame on the socket, minding its send buffer (what graphql-ws sends goes through it too). */
  send(frame: string): void;
  /** Unique across instances: what Conversation.connectionCount counts. */
  socketId: string;
  /** Releases of the socket's live subscriptions that follow conversations, by operation id. */
  follows: Map<string, () => void>;
}

/** Open sockets per key (a user or a tenant) on this instance. */
class SocketCounts {
  private readonly counts = new Map<string, number>();

  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  add(key: string): () => void {
    this.counts.set(key, this.get(key) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = this.get(key) - 1;
      if (left > 0) this.counts.set(key, left);
      else this.counts.delete(key);
    };
  }
}

/** Protocol violations graphql-ws reports by throwing: message types only a server may send. */
const isProtocolViolation = (error: unknown) =>
  error instanceof Error && error.message.startsWith("Unexpected message of type");

/** Subscriptions that follow conversations: with conversationId one, without it all of the viewer's. */
const FOLLOWING = new Set(["messageAdded", "conversationEvents", "typing", "readReceipt"]);

const isAsyncIterable = (value: unknown): value is AsyncIterable<unknown> =>
  typeof value === "object" && value !== null && Symbol.asyncIterator in value;

/** What an accepted subscription follows, as a presence follow key; null when it follows no conversation. */
function followedBy(args: ExecutionArgs, principal: Principal): string | null {
  const operation = getOperationAST(args.document, args.operationName);
  if (operation?.operation !== "subscription") return null;
  const field = operation.selectionSet.selections[0];
  if (field?.kind !== Kind.FIELD || !FOLLOWING.has(field.name.value)) return null;
  const argument = field.arguments?.find((arg) => arg.name.value === "conversationId")?.value;
  const value =
    argument?.kind === Kind.VARIABLE
      ? args.variableValues?.[argument.name.value]
      : argument?.kind === Kind.STRING
        ? argument.value
        : null;
  if (typeof value === "string") return followKeys.conversation(principal.tenantId, value.toLowerCase());
  return principal.kind === "user"
    ? followKeys.user(principal.tenantId, principal.userId)
    : followKeys.tenant(principal.tenantId);
}

export interface WsServer {
  /** Closes every socket and stops accepting new ones. */
  dispose(): Promise<void>;
}

/**
 * graphql-ws on the HTTP server's port: connection authentication, per-socket and
 * per-principal limits, credential watching, and the same parse/validate/execute pipeline
 * as HTTP (Yoga's envelop). Errors are logged once, as one structured line; a client's
 * fault is a warning and never puts server internals into a close reason.
 */
/** Close code of sockets closed because the instance shuts down (RFC 6455 "Service Restart"). */
export const SERVICE_RESTART = 1012;

export function createWsServer(deps: AppDeps, yoga: ChatYoga, httpServer: Server, path: string): WsServer {
  const { config, log } = deps;
  const maskError = createErrorMasker(log);
  const wss = new WebSocketServer({
    server: httpServer,
    path,
    maxPayload: config.maxBodyBytes,
    handleProtocols,
    // Browsers send the page's Origin with the upgrade; one CORS_ORIGINS does not allow is refused with 403.
    verifyClient: ({ origin, req }, done) => done(originAllowed(config, origin, req.headers.host), 403, "Forbidden"),
  });
  // Every open socket's streams, for the metrics (sockets, live subscriptions).
  const open = new Set<SocketStreams>();
  deps.metrics.watch({
    sockets: () => open.size,
    subscriptions: () => {
      let live = 0;
      for (const streams of open) live += streams.size;
      return live;
    },
  });
  // Commit-to-frame latency of new messages, once per message and instance.
  liveHub(deps.pubsub).onDelivered = (topic, payload) => {
    if (!topic.endsWith(":messages")) return;
    const createdAt = Date.parse((payload as { createdAt?: string }).createdAt ?? "");
    if (!Number.isNaN(createdAt)) deps.metrics.delivered(createdAt);
  };
  const perUser = new SocketCounts();
  const perTenant = new SocketCounts();
  const credentials = new CredentialRegistry(deps);
  credentials.start();

  /**
   * Closes a socket with 4403 when its credentials stop being valid: the token expires or
   * is revoked, the user is deactivated or deleted, or the API key is rotated away.
   */
  const watchCredentials = async (socket: WebSocket, principal: Principal, cleanups: (() => void)[]) => {
    const close = (reason: string) => {
      if (socket.readyState === socket.OPEN) socket.close(CloseCode.Forbidden, reason);
    };
    cleanups.push(credentials.add(socket, { principal, close }));
    cleanups.push(
      await watchCredentialEnd(deps.pubsub, principal, (reason) => {
        credentials.markRevoked(principal);
        close(reason);
      }),
    );
  };

  const cleanupsOf = new WeakMap<WebSocket, (() => void)[]>();
  /** Set once the server shuts down: sockets still connecting are told to go elsewhere. */
  let closing = false;

  const server = makeServer<Record<string, unknown> | undefined, Extra>({
    onConnect: async (ctx) => {
      const presented = credentialsFromConnectionParams(ctx.connectionParams ?? {});
      const { socket } = ctx.extra;
      let principal: Principal | null;
      try {
        principal = await resolvePrincipal(deps.db.prisma, deps.tokens, presented);
      } catch {
        return false;
      }
      if (!principal) return false;
      const userKey = principal.kind === "user" ? `${principal.tenantId}:${principal.userId}` : null;
      if (
        perTenant.get(principal.tenantId) >= config.maxSocketsPerTenant ||
        (userKey && perUser.get(userKey) >= config.maxSocketsPerUser)
      ) {
        socket.close(TOO_MANY_CONNECTIONS, "Too many connections");
        return false;
      }
      const cleanups = cleanupsOf.get(socket) ?? [];
      cleanupsOf.set(socket, cleanups);
      cleanups.push(perTenant.add(principal.tenantId));
      if (userKey) cleanups.push(perUser.add(userKey));
      ctx.extra.principal = principal;
      await watchCredentials(socket, principal, cleanups);
      if (socket.readyState !== socket.OPEN) {
        // Closed while this ran: its close handler has already released what it had.
        for (const cleanup of cleanups.splice(0)) cleanup();
        return false;
      }
      // Revoked between the check and the watch? Check once more now that nothing is missed.
      try {
        if (!(await resolvePrincipal(deps.db.prisma, deps.tokens, presented))) return false;
      } catch {
        return false;
      }
      // Closed during that check: its close handler has run, so nothing may be added now.
      if (socket.readyState !== socket.OPEN) return false;
      if (principal.kind === "user") cleanups.push(deps.presence.connect(principal.tenantId, principal.userId));
      log.info(
        { socketId: ctx.extra.socketId, tenantId: principal.tenantId, principal: principal.kind },
        "socket authenticated",
      );
      // The principal stands for the credentials from here on: the socket keeps no token.
      (ctx as { connectionParams?: unknown }).connectionParams = undefined;
      return true;
    },
    onSubscribe: async (ctx, id, payload) => {
      try {
        if (Object.keys(ctx.subscriptions).length > config.maxSubscriptionsPerSocket) {
          countRateLimited("subscriptions-per-socket");
          return [
            appError("RATE_LIMITED", `A connection may hold at most ${config.maxSubscriptionsPerSocket} operations`, {
              limit: config.maxSubscriptionsPerSocket,
            }),
          ];
        }
        const principal = ctx.extra.principal ?? null;
        // Every operation re-checks the socket's credentials (revocations, expiry).
        if (principal && !credentials.valid(principal)) {
          ctx.extra.socket.close(CloseCode.Forbidden, "Credentials revoked");
          return [appError("UNAUTHENTICATED", "These credentials are no longer valid")];
        }
        // Trusted documents: a user's socket runs only the manifest's operations.
        if (deps.trustedDocuments && principal?.kind !== "service") {
          const trusted = trustedQuery(deps.trustedDocuments, payload as Parameters<typeof trustedQuery>[1]);
          if (typeof trusted !== "string") return [trusted];
          payload = { ...payload, query: trusted };
        }
        const { host, streams, send } = ctx.extra;
        const chatContext = contextFor(deps, principal, {
          cacheLoaders: false,
          requestId: `${ctx.extra.socketId}/${id}`,
          origin: host ? `http://${host}` : undefined,
          streams,
          delivery: { id, send },
        });
        const enveloped = yoga.getEnveloped({ chatContext } as never);
        let document: ReturnType<typeof enveloped.parse>;
        try {
          document = enveloped.parse(payload.query);
        } catch (error) {
          if (!(error instanceof GraphQLError)) throw error;
          return [classifyError(error)];
        }
        let errors: readonly GraphQLError[];
        try {
          // Some limits throw instead of reporting; either way only this operation fails.
          errors = enveloped.validate(enveloped.schema, document);
        } catch (error) {
          if (!(error instanceof GraphQLError)) throw error;
          errors = [error];
        }
        if (errors.length) return errors.map((e) => classifyError(withCode(e, "GRAPHQL_VALIDATION_FAILED")));
        const inputError = inspectOperationInput(payload.variables, payload.extensions);
        if (inputError) return [inputError];
        return {
          schema: enveloped.schema,
          document,
          operationName: payload.operationName,
          variableValues: payload.variables,
          contextValue: await enveloped.contextFactory(),
          rootValue: { execute: enveloped.execute, subscribe: enveloped.subscribe },
        };
      } catch (error) {
        // Only this operation fails, with a masked error; the socket and its other operations stay.
        return [maskError(error)];
      }
    },
    // A live subscription that follows conversations counts its socket in their connectionCount.
    onOperation: (ctx, id, _payload, args, result) => {
      const principal = ctx.extra.principal;
      if (!principal || !isAsyncIterable(result)) return;
      const target = followedBy(args, principal);
      if (!target) return;
      ctx.extra.follows.get(id)?.();
      ctx.extra.follows.set(id, deps.presence.follow(ctx.extra.socketId, target));
    },
    onComplete: (ctx, id) => {
      ctx.extra.follows.get(id)?.();
      ctx.extra.follows.delete(id);
    },
    execute: (args) => (args.rootValue as { execute: typeof import("graphql").execute }).execute(args),
    subscribe: (args) => (args.rootValue as { subscribe: typeof import("graphql").subscribe }).subscribe(args),
    // Errors graphql-ws builds itself (a stream that threw) carry raw messages: mask them.
    // graphql-ws wraps what a stream threw in a GraphQLError of its own; ours carry the code.
    onError: (_ctx, _id, _payload, errors) =>
      errors
        .map((error) => (error.originalError instanceof GraphQLError ? error.originalError : error))
        .map((error) => classifyError(maskError(error)).toJSON()),
    // Results with errors (variable coercion, resolvers) get their codes as over HTTP.
    onNext: (_ctx, _id, _payload, _args, result) => {
      if (!result.errors?.length) return;
      return {
        ...result,
        errors: result.errors.map((error) =>
          (error instanceof GraphQLError
            ? classifyError(error)
            : classifyError(new GraphQLError(String(error)))
          ).toJSON(),
        ),
      };
    },
  });

  wss.on("error", (error) => log.error({ err: error }, "websocket server error"));

  // One timer pings every socket; a socket that missed two pongs in a row is dropped.
  const missedPongs = new WeakMap<WebSocket, number>();
  const heartbeat = setInterval(() => {
    for (const socket of wss.clients) {
      if (socket.readyState !== socket.OPEN) continue;
      const missed = missedPongs.get(socket) ?? 0;
      if (missed >= 2) {
        socket.terminate();
        continue;
      }
      missedPongs.set(socket, missed + 1);
      socket.ping();
    }
  }, config.wsPingSeconds * 1000);
  heartbeat.unref();

  wss.on("connection", (socket, request) => {
    if (closing) {
      socket.close(SERVICE_RESTART, "Service restart");
      return;
    }
    const address = request.socket.remoteAddress;
    // Invalid frames (bad UTF-8, over maxPayload) are the client's fault; ws closes the socket itself.
    socket.once("error", (error) => {
      log.warn({ err: error.message, address }, "websocket client error");
    });
    socket.on("pong", () => missedPongs.delete(socket));
    const streams = new SocketStreams();
    open.add(streams);
    const socketId = randomUUID();
    log.info({ socketId, address }, "socket opened");
    const follows = new Map<string, () => void>();
    const limit = config.socketBufferLimitBytes;
    // Frames are queued on the socket without waiting for each write: a client that
    // does not read lets the buffer grow, and past its bound the socket's live streams
    // end with SLOW_CONSUMER (resumable by cursor) instead of buffering without end.
    const send = (data: string) => {
      if (socket.readyState !== socket.OPEN) return;
      socket.send(data);
      if (data.startsWith('{"id":') && data.includes('"type":"next"')) tallies.deliveries++;
      if (socket.bufferedAmount > limit) streams.overflow(socket.bufferedAmount, limit);
    };
    const closed = server.opened(
      {
        protocol: socket.protocol,
        send,
        close: (code, reason) => socket.close(code, reason),
        onMessage: (handle) =>
          socket.on("message", async (data) => {
            try {
              await handle(String(data));
            } catch (error) {
              if (isProtocolViolation(error)) {
                log.warn({ err: (error as Error).message }, "websocket protocol violation");
                socket.close(CloseCode.BadRequest, "Invalid message received");
                return;
              }
              if (socket.readyState !== socket.OPEN) return; // the peer left mid-send
              log.error({ err: error }, "websocket message handling failed");
              socket.close(CloseCode.InternalServerError, "Internal server error");
            }
          }),
      },
      { socket, host: request.headers.host, streams, send, socketId, follows },
    );
    socket.once("close", (code, reason) => {
      open.delete(streams);
      log.info({ socketId, code, reason: String(reason) }, "socket closed");
      for (const release of follows.values()) release();
      follows.clear();
      for (const cleanup of cleanupsOf.get(socket) ?? []) cleanup();
      cleanupsOf.delete(socket);
      closed(code, String(reason)).catch((error: unknown) => log.error({ err: error }, "websocket close failed"));
    });
  });

  return {
    async dispose() {
      closing = true;
      clearInterval(heartbeat);
      credentials.stop();
      // 1012: clients reconnect (to another instance) and resume their streams by cursor.
      for (const client of wss.clients) client.close(SERVICE_RESTART, "Service restart");
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
