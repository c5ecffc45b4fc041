import { createHmac, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { blockFieldSuggestionsPlugin } from "@escape.tech/graphql-armor-block-field-suggestions";
import { costLimitPlugin } from "@escape.tech/graphql-armor-cost-limit";
import { maxAliasesPlugin } from "@escape.tech/graphql-armor-max-aliases";
import { maxDepthPlugin } from "@escape.tech/graphql-armor-max-depth";
import { maxDirectivesPlugin } from "@escape.tech/graphql-armor-max-directives";
import { maxTokensPlugin } from "@escape.tech/graphql-armor-max-tokens";
import { GraphQLError } from "graphql";
import { CloseCode } from "graphql-ws";
import { useServer } from "graphql-ws/use/ws";
import { createYoga, type Plugin } from "graphql-yoga";
import { Redis } from "ioredis";
import { type WebSocket, WebSocketServer } from "ws";
import { FailureLimiter } from "./auth/limits.ts";
import { type Principal, resolvePrincipal } from "./auth/principal.ts";
import { loadOrCreateJwtSecret } from "./auth/secrets.ts";
import { TokenService } from "./auth/tokens.ts";
import { WriteLimits } from "./auth/write-limits.ts";
import { type AppDeps, type ClientInfo, type Context, contextFor, createContext } from "./context.ts";
import { type Database, embeddedDir, openMigratedDatabase } from "./db/client.ts";
import type { Config } from "./env.ts";
import { appError, CLIENT_ERROR_CODES } from "./errors.ts";
import { createLogger, type Logger } from "./logger.ts";
import { outboxMailer, smtpMailer } from "./mail.ts";
import { createMemoryPubSub, createRedisPubSub, type PubSub } from "./realtime/pubsub.ts";
import { type ApiKeyEvent, topics, type UserEvent } from "./realtime/topics.ts";
import { schema } from "./schema/index.ts";
import { findDownloadable, verifySignedUrl } from "./services/attachments.ts";
import { requireConversation } from "./services/conversations.ts";
import { finishProviderSignIn, type Provider, startProviderSignIn } from "./services/oauth.ts";
import { nulInOperation } from "./services/validation.ts";
import { LocalDiskStore } from "./storage/attachments.ts";

export interface App {
  deps: AppDeps;
  /** Handles one HTTP request without a socket (tests use it through `fetch`). */
  fetch: (input: string | URL | Request, init?: RequestInit) => Promise<Response>;
  start(port?: number, host?: string): Promise<{ port: number; url: string; wsUrl: string }>;
  stop(): Promise<void>;
}

export interface AppOptions {
  log?: Logger;
  /** Use an already opened database (tests share one per worker). */
  db?: Database;
}

/** Gives every client-caused error without a code the code its phase implies. */
/** Codes graphql-yoga uses for malformed requests; clients see BAD_USER_INPUT. */
const REQUEST_ERROR_CODES = new Set(["BAD_REQUEST", "OPERATION_RESOLUTION_FAILURE"]);

/** graphql-js hints at valid names ("Did you mean ...?"); the API does not reveal its schema that way. */
const SUGGESTION = /\s*Did you mean [^?]*\?/g;

export function classifyError(error: GraphQLError): GraphQLError {
  const existing = error.extensions?.code;
  const message = error.message.replace(SUGGESTION, "");
  if (existing && !REQUEST_ERROR_CODES.has(String(existing)) && message === error.message) return error;
  const http = error.extensions?.http as { status?: number } | undefined;
  let code: string;
  if (existing && !REQUEST_ERROR_CODES.has(String(existing))) code = String(existing);
  else if (http?.status === 413) code = "PAYLOAD_TOO_LARGE";
  else if (http?.status === 401) code = "UNAUTHENTICATED";
  else if (error.message.startsWith("Syntax Error")) code = "GRAPHQL_PARSE_FAILED";
  else if (error.message.startsWith('Variable "$')) code = "BAD_USER_INPUT";
  else if (error.path && message === error.message) return error;
  else if (error.locations?.length) code = "GRAPHQL_VALIDATION_FAILED";
  else code = "BAD_USER_INPUT";
  return new GraphQLError(message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    path: error.path,
    originalError: error.originalError,
    extensions: { ...error.extensions, code },
  });
}

function withCode(error: GraphQLError, code: string): GraphQLError {
  if (error.extensions?.code) return error;
  return new GraphQLError(error.message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    extensions: { ...error.extensions, code },
  });
}

function nulError(field: string): GraphQLError {
  return new GraphQLError(`${field} contains a NUL character, which is not allowed`, {
    extensions: { code: "BAD_USER_INPUT", field },
  });
}

/** Refuses NUL characters before execution, over HTTP (WebSocket does the same in onSubscribe). */
const rejectNulPlugin: Plugin = {
  onParams({ params, setResult }) {
    const field = nulInOperation(params.query, params.variables);
    if (field) setResult({ errors: [nulError(field)] });
  },
};

function isClientError(error: unknown): error is GraphQLError {
  if (!(error instanceof GraphQLError)) return false;
  // Request-level errors Yoga raises itself (bad JSON, wrong method) carry their HTTP status.
  const status = (error.extensions?.http as { status?: number } | undefined)?.status;
  if (status && status < 500) return true;
  const original = error.originalError;
  if (original && !(original instanceof GraphQLError)) return false;
  const code = (original instanceof GraphQLError ? original : error).extensions?.code;
  return code === undefined || CLIENT_ERROR_CODES.has(String(code));
}

const errorCodesPlugin: Plugin = {
  onResultProcess({ result, setResult }) {
    if (Array.isArray(result) || !result || typeof result !== "object" || !("errors" in result)) return;
    const errors = (result as { errors?: readonly GraphQLError[] }).errors;
    if (!errors?.length) return;
    setResult({ ...result, errors: errors.map((e) => (e instanceof GraphQLError ? classifyError(e) : e)) });
  },
};

function armorPlugins() {
  return [
    maxTokensPlugin({ n: 3000 }),
    maxDepthPlugin({ n: 12, flattenFragments: true }),
    maxAliasesPlugin({ n: 20 }),
    maxDirectivesPlugin({ n: 20 }),
    costLimitPlugin({ maxCost: 20000 }),
    blockFieldSuggestionsPlugin(),
  ];
}

async function createDeps(config: Config, options: AppOptions): Promise<AppDeps> {
  const log = options.log ?? createLogger(config.logLevel);
  let secret = config.jwtSecret;
  if (!secret) {
    if (config.databaseUrl) {
      throw new Error("JWT_SECRET is required when DATABASE_URL is set (every instance must share it)");
    }
    secret = loadOrCreateJwtSecret(config.dataDir, (msg) => log.warn(msg));
  }
  const db =
    options.db ??
    (await openMigratedDatabase(
      { databaseUrl: config.databaseUrl, pgliteDir: embeddedDir(config.dataDir), poolSize: config.databasePoolSize },
      (msg) => log.info(msg),
    ));
  let pubsub: PubSub;
  try {
    pubsub = config.redisUrl ? await createRedisPubSub(config.redisUrl, log) : createMemoryPubSub(log);
  } catch (error) {
    if (!options.db) await db.close();
    throw error;
  }
  // Failure counters live in Redis when there is one (shared by all instances).
  const limitsRedis = config.redisUrl
    ? new Redis(config.redisUrl, { enableOfflineQueue: false, disableClientInfo: true, connectionName: "chat-limits" })
    : undefined;
  limitsRedis?.on("error", (error: Error) => log.warn({ err: error.message }, "redis limits error"));
  const window = { points: config.loginMaxFailures, durationSeconds: config.loginWindowSeconds };
  return {
    config,
    db,
    pubsub,
    tokens: new TokenService(secret),
    log,
    mailer: config.smtpUrl
      ? smtpMailer(config.smtpUrl, config.mailFrom)
      : outboxMailer(config.dataDir, config.mailFrom, log),
    limits: {
      account: new FailureLimiter("account", window, limitsRedis),
      address: new FailureLimiter("address", window, limitsRedis),
      codes: new FailureLimiter("codes", { points: 5, durationSeconds: config.emailCodeTtlSeconds }, limitsRedis),
      mails: new FailureLimiter("mails", { points: 5, durationSeconds: config.loginWindowSeconds }, limitsRedis),
    },
    writeLimits: new WriteLimits(config.rateLimits, limitsRedis, log, !config.databaseUrl),
    closeExtras: () => {
      limitsRedis?.disconnect();
    },
    attachments: new LocalDiskStore(config.attachmentsDir),
    // A key of its own for download links, derived so that no extra secret is needed.
    urlSecret: createHmac("sha256", secret).update("attachment-download-urls").digest("hex"),
  };
}

function jsonError(res: ServerResponse, status: number, code: string, message: string): void {
  res.writeHead(status, { "content-type": "application/json; charset=utf-8" });
  res.end(JSON.stringify({ errors: [{ message, extensions: { code } }] }));
}

class BodyTooLarge extends Error {}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new BodyTooLarge();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function credentialsOf(headers: Headers) {
  return {
    authorization: headers.get("authorization"),
    apiKey: headers.get("x-api-key"),
    platformAdminKey: headers.get("x-platform-admin-key"),
  };
}

const ALLOWED_POST_TYPES = ["application/json", "application/graphql-response+json", "application/graphql+json"];

export async function buildApp(config: Config, options: AppOptions = {}): Promise<App> {
  const deps = await createDeps(config, options);
  const { log } = deps;

  const clientOf = (req: IncomingMessage): ClientInfo => {
    const forwarded = config.trustProxy
      ? String(req.headers["x-forwarded-for"] ?? "")
          .split(",")[0]
          ?.trim()
      : "";
    const userAgent = req.headers["user-agent"];
    return { address: forwarded || req.socket.remoteAddress || null, userAgent: userAgent ?? null };
  };

  const yoga = createYoga<{ chatContext?: Context; client?: ClientInfo }>({
    schema,
    graphqlEndpoint: "/graphql",
    healthCheckEndpoint: "/health",
    landingPage: false,
    graphiql: config.graphiql ? { subscriptionsProtocol: "WS", title: "Chat API" } : false,
    logging: {
      debug: (...args) => log.debug(args.map(String).join(" ")),
      info: (...args) => log.info(args.map(String).join(" ")),
      warn: (...args) => log.warn(args.map(String).join(" ")),
      error: (...args) => log.error(args.map(String).join(" ")),
    },
    context: async ({ request, chatContext, client }) =>
      chatContext ??
      createContext(deps, credentialsOf(request.headers), undefined, new URL(request.url).origin, client),
    maskedErrors: {
      // Never attach originalError details, whatever NODE_ENV says.
      isDev: false,
      maskError(error) {
        if (isClientError(error)) return error;
        const errorId = randomUUID();
        const original = error instanceof GraphQLError ? (error.originalError ?? error) : error;
        log.error({ err: original, errorId }, "unexpected error");
        return new GraphQLError("Unexpected error.", {
          path: error instanceof GraphQLError ? error.path : undefined,
          extensions: { code: "INTERNAL_SERVER_ERROR", errorId },
        });
      },
    },
    plugins: [...armorPlugins(), rejectNulPlugin, errorCodesPlugin],
  });

  /**
   * Downloads: with a signed link from Attachment.url, or with the caller's credentials
   * in headers (members of the conversation; an unsent upload only for its uploader).
   * Always served as a download, never rendered by the browser in our origin.
   */
  const serveAttachment = async (req: IncomingMessage, res: ServerResponse, url: URL, id: string) => {
    let attachment: Awaited<ReturnType<typeof findDownloadable>>;
    try {
      if (url.searchParams.has("signature")) {
        const valid = verifySignedUrl(
          deps.urlSecret,
          id,
          url.searchParams.get("expires"),
          url.searchParams.get("signature"),
        );
        if (!valid) throw appError("FORBIDDEN", "This download link is invalid or has expired");
        // The signature names the attachment, so no tenant scope is needed to find it.
        const row = await deps.db.prisma.attachment.findUnique({
          where: { id },
          include: { message: { select: { deletedAt: true } } },
        });
        if (!row || row.message?.deletedAt) throw appError("NOT_FOUND", "Attachment not found");
        attachment = row;
      } else {
        const headers = new Headers();
        for (const name of ["authorization", "x-api-key"]) {
          const value = req.headers[name];
          if (typeof value === "string") headers.set(name, value);
        }
        const ctx = await createContext(deps, credentialsOf(headers));
        if (!ctx.principal) throw appError("UNAUTHENTICATED", ctx.authError ?? "Authentication required");
        attachment = await findDownloadable(ctx, id);
        await requireConversation(ctx, attachment.conversationId, "id");
        const userId = ctx.principal.kind === "user" ? ctx.principal.userId : null;
        if (!attachment.messageId && userId && attachment.uploaderId !== userId) {
          throw appError("NOT_FOUND", "Attachment not found");
        }
      }
    } catch (error) {
      if (error instanceof GraphQLError && isClientError(error)) {
        const code = String(error.extensions.code);
        const status = { UNAUTHENTICATED: 401, FORBIDDEN: 403, NOT_FOUND: 404 }[code] ?? 400;
        jsonError(res, status, code, error.message);
        return;
      }
      throw error;
    }
    const stored = await deps.attachments.get(attachment.storageKey);
    if (!stored) {
      jsonError(res, 404, "NOT_FOUND", "Attachment not found");
      return;
    }
    const ascii = attachment.filename.replace(/[^\x20-\x7e]/g, "_").replace(/["\\]/g, "_");
    res.writeHead(200, {
      "content-type": attachment.mimeType,
      "content-length": String(stored.size),
      "content-disposition": `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(attachment.filename)}`,
      "x-content-type-options": "nosniff",
      "content-security-policy": "default-src 'none'; sandbox",
      "cache-control": "private, max-age=300",
    });
    if (req.method === "HEAD") {
      stored.stream.destroy();
      res.end();
      return;
    }
    stored.stream.on("error", () => res.destroy()).pipe(res);
  };

  /**
   * Sign-in with Google or GitHub (authorization code flow with PKCE, state and nonce).
   * `start` redirects to the provider; `callback` returns the browser to the app's
   * registered redirect URI with the session in the fragment, as a password sign-in would
   * return it: #access_token, refresh_token, expires_at, refresh_expires_at, token_type.
   */
  const handleProviderRoute = async (
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    provider: Provider,
    step: "start" | "callback",
  ) => {
    const origin = `${config.trustProxy && req.headers["x-forwarded-proto"] === "https" ? "https" : "http"}://${req.headers.host ?? "localhost"}`;
    const ctx = contextFor(deps, null, { origin, client: clientOf(req) });
    const redirect = (location: string) => {
      res.writeHead(302, { location, "cache-control": "no-store" });
      res.end();
    };
    try {
      if (step === "start") {
        const target = await startProviderSignIn(
          ctx,
          provider,
          url.searchParams.get("tenantId"),
          url.searchParams.get("redirectUri"),
        );
        redirect(target.href);
        return;
      }
      const { redirectUri, payload } = await finishProviderSignIn(ctx, provider, url);
      const fragment = new URLSearchParams({
        access_token: payload.accessToken,
        refresh_token: payload.refreshToken,
        expires_at: payload.accessTokenExpiresAt.toISOString(),
        refresh_expires_at: payload.refreshTokenExpiresAt.toISOString(),
        token_type: "Bearer",
      });
      redirect(`${redirectUri}#${fragment}`);
    } catch (error) {
      const redirectUri = (error as { redirectUri?: string }).redirectUri;
      const clientError = error instanceof GraphQLError && isClientError(error);
      if (!clientError) log.warn({ err: error, provider }, "provider sign-in failed");
      const message = clientError ? error.message : "The provider sign-in failed";
      if (redirectUri) {
        redirect(`${redirectUri}#${new URLSearchParams({ error: "access_denied", error_description: message })}`);
        return;
      }
      const code = clientError ? String(error.extensions.code) : "BAD_USER_INPUT";
      jsonError(res, code === "FORBIDDEN" ? 403 : 400, code, message);
    }
  };

  const handleHttp = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (url.pathname === "/ready") {
      const [dbOk, pubsubOk] = await Promise.all([
        deps.db.sql.query("SELECT 1").then(
          () => true,
          () => false,
        ),
        deps.pubsub.isReady(),
      ]);
      res.writeHead(dbOk && pubsubOk ? 200 : 503, { "content-type": "application/json" });
      res.end(JSON.stringify({ database: dbOk, pubsub: pubsubOk }));
      return;
    }
    const method = req.method ?? "GET";
    const providerRoute = /^\/auth\/(google|github)\/(start|callback)$/.exec(url.pathname);
    if (providerRoute && method === "GET") {
      await handleProviderRoute(req, res, url, providerRoute[1] as Provider, providerRoute[2] as "start" | "callback");
      return;
    }
    const download = /^\/attachments\/([0-9a-f-]{36})$/i.exec(url.pathname);
    if (download?.[1] && (method === "GET" || method === "HEAD")) {
      await serveAttachment(req, res, url, download[1].toLowerCase());
      return;
    }
    let body: Buffer | undefined;
    if (method === "POST") {
      const type = (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
      // Uploads (GraphQL multipart requests) must carry credentials in a header, which a
      // browser only sends cross-site after a CORS preflight: form posts cannot forge them.
      const upload = type === "multipart/form-data" && (!!req.headers.authorization || !!req.headers["x-api-key"]);
      if (!ALLOWED_POST_TYPES.includes(type) && !upload) {
        jsonError(
          res,
          415,
          "BAD_USER_INPUT",
          "POST bodies must be application/json (or multipart/form-data uploads with credentials in a header)",
        );
        return;
      }
      // An upload may be as large as a file plus its operation; anything else keeps the body limit.
      const limit = upload ? config.maxUploadBytes + config.maxBodyBytes : config.maxBodyBytes;
      const declared = Number(req.headers["content-length"] ?? 0);
      if (declared > limit) {
        jsonError(res, 413, "PAYLOAD_TOO_LARGE", `Request body exceeds ${limit} bytes`);
        req.resume();
        return;
      }
      try {
        body = await readBody(req, limit);
      } catch (error) {
        if (error instanceof BodyTooLarge) {
          jsonError(res, 413, "PAYLOAD_TOO_LARGE", `Request body exceeds ${limit} bytes`);
          req.destroy();
          return;
        }
        throw error;
      }
    }
    const headers = new Headers();
    for (const [key, value] of Object.entries(req.headers)) {
      if (value === undefined) continue;
      headers.set(key, Array.isArray(value) ? value.join(", ") : value);
    }
    const controller = new AbortController();
    res.on("close", () => controller.abort());
    const response = await yoga.fetch(
      new URL(req.url ?? "/", `http://${req.headers.host ?? "localhost"}`),
      { method, headers, body: body as unknown as BodyInit | undefined, signal: controller.signal },
      { client: clientOf(req) },
    );
    res.statusCode = response.status;
    response.headers.forEach((value, key) => {
      res.setHeader(key, value);
    });
    if (!response.body) {
      res.end();
      return;
    }
    // Streamed results (GraphiQL's SSE, incremental delivery) are written as they come.
    const reader = response.body.getReader();
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        if (!res.write(value)) await new Promise((resolve) => res.once("drain", resolve));
      }
      res.end();
    } catch {
      res.destroy();
    }
  };

  const server: Server = createServer((req, res) => {
    handleHttp(req, res).catch((error: unknown) => {
      log.error({ err: error }, "http handler failed");
      if (!res.headersSent) jsonError(res, 500, "INTERNAL_SERVER_ERROR", "Unexpected error.");
      else res.destroy();
    });
  });
  server.on("clientError", (_error, socket) => {
    socket.end("HTTP/1.1 400 Bad Request\r\n\r\n");
  });

  const wss = new WebSocketServer({ server, path: "/graphql", maxPayload: config.maxBodyBytes });
  const expiryTimers = new Set<NodeJS.Timeout>();

  /**
   * Closes a socket with 4403 when its credentials stop being valid: the token expires or
   * is revoked, the user is deactivated or deleted, or the API key is rotated away.
   */
  const watchCredentials = async (socket: WebSocket, principal: Principal): Promise<void> => {
    const close = (reason: string) => {
      if (socket.readyState === socket.OPEN) socket.close(CloseCode.Forbidden, reason);
    };
    const cleanups: (() => void)[] = [];
    socket.once("close", () => {
      for (const cleanup of cleanups) cleanup();
    });
    if (principal.kind === "user") {
      const delay = Math.max(0, principal.expiresAt.getTime() - Date.now());
      const timer = setTimeout(() => close("Token expired"), Math.min(delay, 2_147_000_000));
      expiryTimers.add(timer);
      cleanups.push(() => {
        clearTimeout(timer);
        expiryTimers.delete(timer);
      });
      cleanups.push(
        await deps.pubsub.subscribe(topics.user(principal.tenantId, principal.userId), (payload) => {
          const event = payload as UserEvent;
          if (event.type !== "revoked") return;
          // Session revocations name their sessions; other revocations end every socket.
          if (!event.sessionIds || (principal.sessionId && event.sessionIds.includes(principal.sessionId))) {
            close("Credentials revoked");
          }
        }),
      );
    } else {
      cleanups.push(
        await deps.pubsub.subscribe(topics.apiKeys(principal.tenantId), (payload) => {
          if ((payload as ApiKeyEvent).keyIds.includes(principal.apiKeyId)) close("API key revoked");
        }),
      );
    }
  };
  type Extra = { principal?: Principal };
  const wsDisposable = useServer<Record<string, unknown> | undefined, Extra>(
    {
      schema,
      onConnect: async (ctx) => {
        const params = ctx.connectionParams ?? {};
        const authorization =
          typeof params.authorization === "string"
            ? params.authorization
            : typeof params.Authorization === "string"
              ? params.Authorization
              : undefined;
        const apiKey = typeof params.apiKey === "string" ? params.apiKey : undefined;
        let principal: Principal | null;
        try {
          principal = await resolvePrincipal(deps.db.prisma, deps.tokens, { authorization, apiKey });
        } catch {
          return false;
        }
        if (!principal) return false;
        (ctx.extra as Extra).principal = principal;
        const socket = (ctx.extra as unknown as { socket: WebSocket }).socket;
        await watchCredentials(socket, principal);
        // Revoked between the check and the watch? Check once more now that nothing is missed.
        try {
          if (!(await resolvePrincipal(deps.db.prisma, deps.tokens, { authorization, apiKey }))) return false;
        } catch {
          return false;
        }
        return true;
      },
      onSubscribe: async (ctx, _id, payload) => {
        const principal = (ctx.extra as Extra).principal ?? null;
        const host = (ctx.extra as unknown as { request: IncomingMessage }).request.headers.host;
        const chatContext = contextFor(deps, principal, {
          cacheLoaders: false,
          origin: host ? `http://${host}` : undefined,
        });
        const enveloped = yoga.getEnveloped({ chatContext } as never);
        let document: ReturnType<typeof enveloped.parse>;
        try {
          document = enveloped.parse(payload.query);
        } catch (error) {
          return [classifyError(error instanceof GraphQLError ? error : new GraphQLError(String(error)))];
        }
        let errors: readonly GraphQLError[];
        try {
          // Some limits throw instead of reporting; either way only this operation fails.
          errors = enveloped.validate(enveloped.schema, document);
        } catch (error) {
          errors = [error instanceof GraphQLError ? error : new GraphQLError(String(error))];
        }
        if (errors.length) return errors.map((e) => classifyError(withCode(e, "GRAPHQL_VALIDATION_FAILED")));
        const nul = nulInOperation(payload.query, payload.variables);
        if (nul) return [nulError(nul)];
        return {
          schema: enveloped.schema,
          document,
          operationName: payload.operationName,
          variableValues: payload.variables,
          contextValue: await enveloped.contextFactory(),
          rootValue: { execute: enveloped.execute, subscribe: enveloped.subscribe },
        };
      },
      execute: (args) => (args.rootValue as { execute: typeof import("graphql").execute }).execute(args),
      subscribe: (args) => (args.rootValue as { subscribe: typeof import("graphql").subscribe }).subscribe(args),
      onError: (_ctx, _id, _payload, errors) => {
        for (const error of errors) {
          if (!isClientError(error)) log.error({ err: error }, "subscription error");
        }
      },
    },
    wss,
  );

  let started = false;
  return {
    deps,
    fetch: async (input, init) => yoga.fetch(input as never, init ?? {}),
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
      return {
        port: address.port,
        url: `http://${shownHost}:${address.port}/graphql`,
        wsUrl: `ws://${shownHost}:${address.port}/graphql`,
      };
    },
    async stop() {
      for (const timer of expiryTimers) clearTimeout(timer);
      for (const client of wss.clients) client.close(1001, "Server shutting down");
      await wsDisposable.dispose();
      if (started) {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
      }
      await deps.pubsub.close();
      deps.mailer.close();
      deps.closeExtras?.();
      if (!options.db) await deps.db.close();
    },
  };
}
