import { availableParallelism } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";

/**
 * The front-end's build (ui/dist at the repository root): this module is src/env.ts under tsx
 * and part of dist/main.js once built, one level below the root either way.
 */
const DEFAULT_UI_DIST = fileURLToPath(new URL("../ui/dist", import.meta.url));

/** Longest message body unless MAX_MESSAGE_LENGTH says otherwise (also documented in the schema). */
export const DEFAULT_MAX_MESSAGE_LENGTH = 10_000;

const optionalString = z
  .string()
  .trim()
  .transform((value) => (value === "" ? undefined : value))
  .optional();

/**
 * Every environment variable, one entry each, as it is read and validated; a bad value is reported
 * under the variable's name. configSchema below turns the result into the Config object.
 */
const envSchema = z.object({
  NODE_ENV: optionalString,
  PORT: z.coerce.number().int().min(0).max(65535).default(4000),
  HOST: z.string().min(1).default("0.0.0.0"),
  DATA_DIR: z.string().min(1).default("./data"),
  DATABASE_URL: optionalString.pipe(
    z
      .string()
      .regex(/^postgres(ql)?:\/\//, "must be a postgres:// or postgresql:// URL")
      .optional(),
  ),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(500).default(10),
  WEB_CONCURRENCY: optionalString.pipe(z.coerce.number<string | undefined>().int().min(1).max(256).optional()),
  REDIS_URL: optionalString.pipe(
    z
      .string()
      .regex(/^rediss?:\/\//, "must be a redis:// or rediss:// URL")
      .optional(),
  ),
  JWT_SECRET: optionalString.pipe(z.string().min(32, "must be at least 32 characters").optional()),
  PLATFORM_ADMIN_KEY: optionalString.pipe(z.string().min(16, "must be at least 16 characters").optional()),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  MAX_BODY_BYTES: z.coerce.number().int().min(1024).default(1_000_000),
  MAX_MESSAGE_LENGTH: z.coerce.number().int().min(1).max(100_000).default(DEFAULT_MAX_MESSAGE_LENGTH),
  MAX_QUERY_NODES: z.coerce.number().int().min(100).default(100_000),
  SUBSCRIBER_BUFFER_SIZE: z.coerce.number().int().min(16).default(1000),
  SOCKET_BUFFER_LIMIT_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(4 * 1024 * 1024),
  USER_TOKEN_TTL_SECONDS: z.coerce.number().int().min(60).default(86_400),
  TYPING_TIMEOUT_MS: z.coerce.number().int().min(500).default(6000),
  LIVE_REORDER_WAIT_MS: z.coerce.number().int().min(0).max(10_000).default(25),
  ATTACHMENTS_DIR: optionalString,
  MAX_UPLOAD_BYTES: z.coerce.number().int().min(1).default(10_000_000),
  ATTACHMENT_TYPES: z
    .string()
    .default(
      "image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain,text/csv,application/zip,audio/mpeg,audio/ogg,video/mp4,video/webm",
    )
    .transform((value) =>
      value
        .split(",")
        .map((type) => type.trim().toLowerCase())
        .filter(Boolean),
    )
    .pipe(z.array(z.string().regex(/^[a-z0-9.+-]+\/[a-z0-9.+-]+$/, "must be a comma-separated list of media types"))),
  ATTACHMENT_URL_TTL_SECONDS: z.coerce.number().int().min(10).max(604_800).default(900),
  UPLOAD_ORPHAN_TTL_SECONDS: z.coerce.number().int().min(60).default(86_400),
  TENANT_UPLOAD_QUOTA_BYTES: z.coerce.number().int().min(0).default(1_000_000_000),
  PUBLIC_URL: optionalString.pipe(z.string().url("must be an http(s) URL").optional()),
  SMTP_URL: optionalString.pipe(
    z
      .string()
      .regex(/^smtps?:\/\//, "must be an smtp:// or smtps:// URL")
      .optional(),
  ),
  MAIL_FROM: z.string().min(3).default("Chat <no-reply@localhost>"),
  LOGIN_MAX_FAILURES: z.coerce.number().int().min(1).default(5),
  LOGIN_MAX_FAILURES_PER_ADDRESS: optionalString.pipe(z.coerce.number<string | undefined>().int().min(2).optional()),
  LOGIN_WINDOW_SECONDS: z.coerce.number().int().min(1).default(600),
  EMAIL_CODE_TTL_SECONDS: z.coerce.number().int().min(60).max(86_400).default(600),
  OAUTH_STARTS_PER_MINUTE: z.coerce.number().int().min(1).default(20),
  TRUST_PROXY: z
    .string()
    .trim()
    .default("false")
    .transform((value, ctx) => {
      if (value === "false") return 0;
      if (value === "true") return 1;
      const hops = Number(value);
      if (/^\d+$/.test(value) && hops >= 1 && hops <= 10) return hops;
      ctx.addIssue({ code: "custom", message: "must be false, true or a number of proxy hops (1-10)" });
      return z.NEVER;
    }),
  GOOGLE_CLIENT_ID: optionalString,
  GOOGLE_CLIENT_SECRET: optionalString,
  GOOGLE_ISSUER: z.string().url().default("https://accounts.google.com"),
  GITHUB_CLIENT_ID: optionalString,
  GITHUB_CLIENT_SECRET: optionalString,
  GITHUB_AUTHORIZE_URL: z.string().url().default("https://github.com/login/oauth/authorize"),
  GITHUB_TOKEN_URL: z.string().url().default("https://github.com/login/oauth/access_token"),
  GITHUB_API_URL: z.string().url().default("https://api.github.com"),
  CREDENTIAL_RESYNC_SECONDS: z.coerce.number().int().min(1).max(3600).default(30),
  JWKS_MIN_FETCH_INTERVAL_SECONDS: z.coerce.number().int().min(0).max(3600).default(30),
  MAX_SUBSCRIPTIONS_PER_SOCKET: z.coerce.number().int().min(1).default(100),
  MAX_SOCKETS_PER_USER: z.coerce.number().int().min(1).default(50),
  MAX_SOCKETS_PER_TENANT: z.coerce.number().int().min(1).default(10_000),
  WS_PING_SECONDS: z.coerce.number().int().min(1).max(3600).default(15),
  PRESENCE_TTL_SECONDS: z.coerce.number().int().min(2).max(3600).default(30),
  PRESENCE_HEARTBEAT_SECONDS: optionalString.pipe(z.coerce.number<string | undefined>().int().min(1).optional()),
  PRESENCE_OFFLINE_DELAY_MS: z.coerce.number().int().min(0).max(60_000).default(1500),
  SHUTDOWN_DRAIN_SECONDS: z.coerce.number().min(0).max(300).default(10),
  METRICS_TOKEN: optionalString.pipe(z.string().min(16).optional()),
  CORS_ORIGINS: optionalString.pipe(
    z
      .string()
      .transform((value, ctx) => {
        const entries = value
          .split(",")
          .map((entry) => entry.trim())
          .filter(Boolean);
        if (entries.includes("*")) return "*" as const;
        const origins: string[] = [];
        for (const entry of entries) {
          const url = URL.canParse(entry) ? new URL(entry) : null;
          // Only a bare origin (scheme, host, port): with a path it would never match an Origin header.
          if (
            !url ||
            !/^https?:$/.test(url.protocol) ||
            url.pathname !== "/" ||
            url.search ||
            url.hash ||
            url.username
          ) {
            ctx.addIssue({
              code: "custom",
              message: `"${entry}" is not an origin like https://app.example.com (or *)`,
            });
            return z.NEVER;
          }
          origins.push(url.origin);
        }
        return origins;
      })
      .optional(),
  ),
  GRAPHIQL: z
    .enum(["true", "false"])
    .optional()
    .transform((value) => (value === undefined ? undefined : value === "true")),
  INTROSPECTION: z
    .enum(["true", "false"])
    .optional()
    .transform((value) => (value === undefined ? undefined : value === "true")),
  TRUSTED_DOCUMENTS: optionalString,
  UI_DIST: optionalString,
  DEMO: z
    .enum(["true", "false"])
    .optional()
    .transform((value) => (value === undefined ? undefined : value === "true")),
  WEBHOOK_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(5000),
  WEBHOOK_RETRY_BASE_MS: z.coerce.number().int().min(10).max(3_600_000).default(1000),
  WEBHOOK_RETRY_FACTOR: z.coerce.number().min(1).max(10).default(4),
  WEBHOOK_RETRY_MAX_DELAY_SECONDS: z.coerce.number().int().min(1).max(86_400).default(3600),
  WEBHOOK_MAX_AGE_SECONDS: z.coerce.number().int().min(1).max(604_800).default(86_400),
  WEBHOOK_DISABLE_AFTER_SECONDS: z.coerce.number().int().min(1).default(259_200),
  WEBHOOK_POLL_MS: z.coerce.number().int().min(50).max(600_000).default(5000),
  WEBHOOK_CONCURRENCY: z.coerce.number().int().min(1).max(1000).default(16),
  WEBHOOK_RETENTION_DAYS: z.coerce.number().int().min(1).max(3650).default(30),
  RATE_LIMITS: z.enum(["on", "off"]).default("on"),
  RATE_LIMIT_USER_PER_SECOND: z.coerce.number().int().min(1).default(20),
  RATE_LIMIT_USER_BURST: z.coerce.number().int().min(0).default(1000),
  RATE_LIMIT_USER_CONCURRENCY: z.coerce.number().int().min(1).default(50),
  RATE_LIMIT_TENANT_PER_SECOND: z.coerce.number().int().min(1).default(500),
  RATE_LIMIT_TENANT_BURST: z.coerce.number().int().min(0).default(10_000),
});

/**
 * The configuration: the variables above, shaped into the object the code uses; Config is its output type.
 * Adding a variable: one entry in envSchema and one field (with its doc comment) in the object below.
 */
const configSchema = envSchema.transform((env, ctx) => {
  const production = env.NODE_ENV === "production";
  // Fail safe: a production server that forgot the key would let anyone create tenants.
  if (production && !env.PLATFORM_ADMIN_KEY) {
    ctx.addIssue({
      code: "custom",
      path: ["PLATFORM_ADMIN_KEY"],
      message: "required in production mode (NODE_ENV=production); without it anyone could create tenants",
    });
    return z.NEVER;
  }
  if (production && !env.JWT_SECRET) {
    ctx.addIssue({
      code: "custom",
      path: ["JWT_SECRET"],
      message:
        "required in production mode (NODE_ENV=production): a generated secret would differ per instance and machine",
    });
    return z.NEVER;
  }
  const graphiql = env.GRAPHIQL ?? !production;
  // Unset: 100, or 20 accounts' worth where LOGIN_MAX_FAILURES is raised.
  const loginMaxFailuresPerAddress = env.LOGIN_MAX_FAILURES_PER_ADDRESS ?? Math.max(100, 20 * env.LOGIN_MAX_FAILURES);
  if (loginMaxFailuresPerAddress <= env.LOGIN_MAX_FAILURES) {
    ctx.addIssue({
      code: "custom",
      path: ["LOGIN_MAX_FAILURES_PER_ADDRESS"],
      message: "must be greater than LOGIN_MAX_FAILURES (one account's failures must not lock its address)",
    });
    return z.NEVER;
  }
  // Several processes share only what lives outside them: PostgreSQL for data, Redis for news.
  if (env.WEB_CONCURRENCY !== undefined && env.WEB_CONCURRENCY > 1 && !(env.DATABASE_URL && env.REDIS_URL)) {
    ctx.addIssue({
      code: "custom",
      path: ["WEB_CONCURRENCY"],
      message: !env.DATABASE_URL
        ? "more than one process needs DATABASE_URL and REDIS_URL: the embedded database (PGlite) can only be opened by one process"
        : "more than one process needs REDIS_URL: without it events travel in-process, and one worker's subscribers would miss what another worker publishes",
    });
    return z.NEVER;
  }
  // Unset: a third of the TTL, so an entry is renewed twice before it could expire.
  const presenceHeartbeatSeconds =
    env.PRESENCE_HEARTBEAT_SECONDS ?? Math.max(1, Math.floor(env.PRESENCE_TTL_SECONDS / 3));
  if (presenceHeartbeatSeconds >= env.PRESENCE_TTL_SECONDS) {
    ctx.addIssue({
      code: "custom",
      path: ["PRESENCE_HEARTBEAT_SECONDS"],
      message: "must be less than PRESENCE_TTL_SECONDS (entries would expire between heartbeats)",
    });
    return z.NEVER;
  }
  return {
    /** NODE_ENV=production: settings that are only safe for development are refused (see the check above). */
    production,
    port: env.PORT,
    host: env.HOST,
    dataDir: env.DATA_DIR,
    databaseUrl: env.DATABASE_URL,
    /** Connections of each process's pool (every worker has its own). */
    databasePoolSize: env.DATABASE_POOL_SIZE,
    /**
     * Server processes (see cluster.ts): 1 is a single process, more are workers of a primary
     * that shares the port among them. Only on PostgreSQL + Redis (checked above), where it
     * defaults to one per core; 1 otherwise.
     */
    webConcurrency: env.WEB_CONCURRENCY ?? (env.DATABASE_URL && env.REDIS_URL ? availableParallelism() : 1),
    redisUrl: env.REDIS_URL,
    /** Absent in embedded mode: a secret is then generated and kept in the data dir. */
    jwtSecret: env.JWT_SECRET,
    platformAdminKey: env.PLATFORM_ADMIN_KEY,
    logLevel: env.LOG_LEVEL,
    maxBodyBytes: env.MAX_BODY_BYTES,
    maxMessageLength: env.MAX_MESSAGE_LENGTH,
    /** Most fields an operation may resolve, lists counted at their full page size (QUERY_TOO_COMPLEX above). */
    maxQueryNodes: env.MAX_QUERY_NODES,
    subscriberBufferSize: env.SUBSCRIBER_BUFFER_SIZE,
    socketBufferLimitBytes: env.SOCKET_BUFFER_LIMIT_BYTES,
    userTokenTtlSeconds: env.USER_TOKEN_TTL_SECONDS,
    typingTimeoutMs: env.TYPING_TIMEOUT_MS,
    /** How long live rows that arrive ahead of a missing one wait for it before storage is read. */
    liveReorderWaitMs: env.LIVE_REORDER_WAIT_MS,
    /** Where uploaded files are kept (local disk); by default DATA_DIR/attachments. */
    attachmentsDir: env.ATTACHMENTS_DIR ?? join(env.DATA_DIR, "attachments"),
    maxUploadBytes: env.MAX_UPLOAD_BYTES,
    attachmentTypes: env.ATTACHMENT_TYPES,
    attachmentUrlTtlSeconds: env.ATTACHMENT_URL_TTL_SECONDS,
    /** Uploads not sent within this many seconds, and stored files without a row this old, are removed. */
    uploadOrphanTtlSeconds: env.UPLOAD_ORPHAN_TTL_SECONDS,
    /** Total bytes of attachments a tenant may keep stored; 0: no limit. */
    tenantUploadQuotaBytes: env.TENANT_UPLOAD_QUOTA_BYTES,
    /** Origin used in attachment URLs (no trailing slash); by default the origin the request came to. */
    publicUrl: env.PUBLIC_URL?.replace(/\/+$/, ""),
    /** SMTP server for account mail; unset: mail goes to DATA_DIR/outbox. */
    smtpUrl: env.SMTP_URL,
    mailFrom: env.MAIL_FROM,
    /** Failed sign-ins allowed per account (tenant and email) within the window. */
    loginMaxFailures: env.LOGIN_MAX_FAILURES,
    /**
     * Failed sign-ins (and refused sign-ups and code sign-ins) allowed per client address
     * within the window, across accounts: against credential stuffing. Above
     * loginMaxFailures, so one account's failures never lock its address.
     */
    loginMaxFailuresPerAddress,
    loginWindowSeconds: env.LOGIN_WINDOW_SECONDS,
    emailCodeTtlSeconds: env.EMAIL_CODE_TTL_SECONDS,
    /** Provider sign-ins (/auth/:provider/start) one client address may start per minute. */
    oauthStartsPerMinute: env.OAUTH_STARTS_PER_MINUTE,
    /**
     * Proxies in front of the server whose X-Forwarded-For entries are trusted (0: none).
     * The client address is the entry that many hops from the right.
     */
    trustProxy: env.TRUST_PROXY,
    /** Sign-in providers; a provider without a client id is off. */
    google: {
      clientId: env.GOOGLE_CLIENT_ID,
      clientSecret: env.GOOGLE_CLIENT_SECRET,
      issuer: env.GOOGLE_ISSUER,
    },
    github: {
      clientId: env.GITHUB_CLIENT_ID,
      clientSecret: env.GITHUB_CLIENT_SECRET,
      authorizeUrl: env.GITHUB_AUTHORIZE_URL,
      tokenUrl: env.GITHUB_TOKEN_URL,
      /** No trailing slash. */
      apiUrl: env.GITHUB_API_URL.replace(/\/+$/, ""),
    },
    /** GraphiQL at /graphql: on by default outside production mode, off in it unless GRAPHIQL=true. */
    graphiql,
    /** Introspection queries: allowed where GraphiQL is on, unless INTROSPECTION says otherwise. */
    introspection: env.INTROSPECTION ?? graphiql,
    /** A persisted-operations manifest: user requests may run only its operations (see graphql/trusted-documents.ts). */
    trustedDocuments: env.TRUSTED_DOCUMENTS,
    /** The built UI pages (index.html and assets/) served at /ui/* and /demo; see http/ui.ts. */
    uiDist: env.UI_DIST ?? DEFAULT_UI_DIST,
    /** The demo page at /demo: on by default outside production mode, off in it unless DEMO=true. */
    demo: env.DEMO ?? !production,
    /**
     * Browser origins allowed to call the API from other sites (CORS on HTTP, the Origin of
     * WebSocket upgrades): "*" any, or a list; the server's own origin is always allowed.
     * Unset: any outside production mode, none but the server's own in production.
     */
    corsOrigins: env.CORS_ORIGINS ?? (production ? [] : ("*" as const)),
    /** How often open sockets' credentials are re-read from storage (revocation news can be lost). */
    credentialResyncSeconds: env.CREDENTIAL_RESYNC_SECONDS,
    /** Shortest time between two fetches of one identity provider's key set (JWKS URL). */
    jwksMinFetchIntervalSeconds: env.JWKS_MIN_FETCH_INTERVAL_SECONDS,
    /** Operations one WebSocket may run at once; more get an error for that operation. */
    maxSubscriptionsPerSocket: env.MAX_SUBSCRIPTIONS_PER_SOCKET,
    /** Open WebSockets per user and per tenant on one instance; more are closed with 4429. */
    maxSocketsPerUser: env.MAX_SOCKETS_PER_USER,
    maxSocketsPerTenant: env.MAX_SOCKETS_PER_TENANT,
    /** Every open WebSocket is pinged this often; one that misses two pongs in a row is dropped. */
    wsPingSeconds: env.WS_PING_SECONDS,
    /**
     * Presence across instances (Redis): an instance's entries expire this long after its
     * last heartbeat, so the users of an instance that died go offline within it.
     */
    presenceTtlSeconds: env.PRESENCE_TTL_SECONDS,
    /** How often an instance renews its presence entries and looks for dead instances. */
    presenceHeartbeatSeconds,
    /**
     * How long a user whose last socket closed still counts as online before going offline
     * is announced: a reconnect within it (a page reload) announces nothing. 0: at once.
     */
    presenceOfflineDelayMs: env.PRESENCE_OFFLINE_DELAY_MS,
    /**
     * On SIGTERM: how long operations in flight may take to finish after the instance stopped
     * accepting connections and asked its sockets to reconnect elsewhere (1012).
     */
    shutdownDrainMs: env.SHUTDOWN_DRAIN_SECONDS * 1000,
    /** GET /metrics asks for `Authorization: Bearer <metricsToken>` when set; open otherwise. */
    metricsToken: env.METRICS_TOKEN,
    /** Calls to tenants' webhooks (see services/webhook-dispatcher.ts). */
    webhooks: {
      /** Time limit of one delivery attempt, connection included. */
      timeoutMs: env.WEBHOOK_TIMEOUT_MS,
      /** Delay before the first retry; each further retry waits `retryFactor` times longer (with jitter). */
      retryBaseMs: env.WEBHOOK_RETRY_BASE_MS,
      retryFactor: env.WEBHOOK_RETRY_FACTOR,
      /** Longest wait between two attempts. */
      retryMaxDelayMs: env.WEBHOOK_RETRY_MAX_DELAY_SECONDS * 1000,
      /** A delivery not successful this long after its event is marked failed. */
      maxAgeMs: env.WEBHOOK_MAX_AGE_SECONDS * 1000,
      /** A webhook whose every attempt failed for this long is disabled (and the audit log says so). */
      disableAfterMs: env.WEBHOOK_DISABLE_AFTER_SECONDS * 1000,
      /** How often an instance looks for due deliveries when nothing woke it (others' retries, a dead instance's work). */
      pollMs: env.WEBHOOK_POLL_MS,
      /** Deliveries one instance sends at once. */
      concurrency: env.WEBHOOK_CONCURRENCY,
      /** Delivered and failed deliveries are kept this long (visible in webhookDeliveries), then removed. */
      retentionMs: env.WEBHOOK_RETENTION_DAYS * 86_400_000,
    },
    /** Limits on writes (messages, edits, reactions, typing, uploads, group changes). */
    rateLimits: {
      /** RATE_LIMITS=off: no write limits at all (benchmarks, trusted backends). */
      enabled: env.RATE_LIMITS === "on",
      /** Per user; the API key is exempt. */
      user: {
        /** Steady writes per second (see auth/write-limits.ts). */
        perSecond: env.RATE_LIMIT_USER_PER_SECOND,
        /** Reserve for bursts above the steady rate. */
        burst: env.RATE_LIMIT_USER_BURST,
        /** Writes of one user in progress at once on one instance. */
        concurrency: env.RATE_LIMIT_USER_CONCURRENCY,
      },
      /** Per tenant, all its users and its API key together. */
      tenant: {
        /** Steady writes per second (see auth/write-limits.ts). */
        perSecond: env.RATE_LIMIT_TENANT_PER_SECOND,
        /** Reserve for bursts above the steady rate. */
        burst: env.RATE_LIMIT_TENANT_BURST,
      },
    },
  };
});

/** The parsed configuration, as loadConfig returns it: the output type of the schema above. */
export type Config = z.output<typeof configSchema>;

/** Limits on writes (messages, edits, reactions, typing, uploads, group changes). */
export type RateLimitConfig = Config["rateLimits"];

/** A steady rate per second plus a reserve for bursts (see auth/write-limits.ts). */
export type RateBudget = RateLimitConfig["tenant"];

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/** Parses and validates every environment variable once; throws ConfigError listing each bad value. */
export function loadConfig(source: NodeJS.ProcessEnv = process.env): Config {
  const parsed = configSchema.safeParse(source);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((issue) => `${issue.path.join(".") || "env"}: ${issue.message}`));
  }
  return parsed.data;
}
