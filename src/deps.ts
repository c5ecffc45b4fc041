import { createHmac } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Redis } from "ioredis";
import { CredentialCache } from "./auth/credential-cache.ts";
import { ExternalJwtVerifier, KeySetCache } from "./auth/external-jwt.ts";
import { EMAIL_CODE_MAX_ATTEMPTS, FailureLimiter } from "./auth/limits.ts";
import { ResyncSignal } from "./auth/resync-signal.ts";
import { deriveSealingKey, loadOrCreateJwtSecret } from "./auth/secrets.ts";
import { TokenService } from "./auth/tokens.ts";
import { WriteLimits } from "./auth/write-limits.ts";
import { BackgroundTasks } from "./background.ts";
import type { AppDeps } from "./context.ts";
import { type Database, embeddedDir, openMigratedDatabase } from "./db/client.ts";
import type { Config } from "./env.ts";
import { loadTrustedDocuments } from "./graphql/trusted-documents.ts";
import type { Logger } from "./logger.ts";
import { outboxMailer, smtpMailer } from "./mail.ts";
import { Metrics } from "./metrics.ts";
import { createMemoryPresence, createRedisPresence, type Presence } from "./realtime/presence.ts";
import { createMemoryPubSub, createRedisPubSub, type PubSub } from "./realtime/pubsub.ts";
import { topics } from "./realtime/topics.ts";
import { SafetyCache } from "./services/safety-cache.ts";
import { WebhookOutbox } from "./services/webhook-outbox.ts";
import { LocalDiskStore } from "./storage/attachments.ts";

export interface DepsOptions {
  log: Logger;
  /** Use an already opened database (tests share one per worker); it is then not closed here. */
  db?: Database;
}

/**
 * Opens the long-lived services of one server instance. Each one that holds a connection
 * registers its closer in `deps.closers`, released in reverse order by `closeDeps`.
 */
export async function createDeps(config: Config, options: DepsOptions): Promise<AppDeps> {
  const { log } = options;
  const closers: (() => Promise<void> | void)[] = [];
  const fail = async (error: unknown): Promise<never> => {
    await runClosers(closers);
    throw error;
  };
  let secret = config.jwtSecret;
  if (!secret) {
    if (config.databaseUrl) {
      throw new Error("JWT_SECRET is required when DATABASE_URL is set (every instance must share it)");
    }
    secret = loadOrCreateJwtSecret(config.dataDir, (msg) => log.warn(msg));
  }
  // Read at start, so a missing or malformed manifest stops the server before it serves anything.
  const uiDocuments = join(config.uiDist, "persisted-documents.json");
  const trustedDocuments = config.trustedDocuments
    ? loadTrustedDocuments(config.trustedDocuments, ...(existsSync(uiDocuments) ? [uiDocuments] : []))
    : null;
  let db = options.db;
  if (!db) {
    db = await openMigratedDatabase(
      { databaseUrl: config.databaseUrl, pgliteDir: embeddedDir(config.dataDir), poolSize: config.databasePoolSize },
      (msg) => log.info(msg),
    );
    const opened = db;
    closers.push(() => opened.close());
  }
  let pubsub: PubSub;
  try {
    pubsub = config.redisUrl ? await createRedisPubSub(config.redisUrl, log) : createMemoryPubSub(log);
  } catch (error) {
    return fail(error);
  }
  closers.push(() => pubsub.close());
  // Cached credentials last at most as long as an open socket goes without a re-check.
  const credentialCache = new CredentialCache(config.credentialResyncSeconds * 1000);
  const credentialResync = new ResyncSignal();
  const webhooks = new WebhookOutbox(config.credentialResyncSeconds * 1000);
  try {
    const stopWebhookNews = await pubsub.subscribe(topics.webhooks, (change) => webhooks.invalidate(change.tenantId));
    const stopWebhookResync = pubsub.onResync(() => webhooks.invalidate());
    closers.push(() => {
      stopWebhookNews();
      stopWebhookResync();
    });
  } catch (error) {
    return fail(error);
  }
  const safety = new SafetyCache(db.sql, config.credentialResyncSeconds * 1000);
  try {
    const stopListening = await pubsub.subscribe(topics.credentials, (change) => {
      credentialCache.apply(change);
      // Sockets verified under a tenant's former identity provider setting are re-checked now.
      if (change.type === "externalJwtChanged") credentialResync.request();
    });
    const stopSafety = await pubsub.subscribe(topics.safety, (change) => safety.apply(change));
    const stopResync = pubsub.onResync(() => {
      credentialCache.clear();
      safety.clear();
    });
    const stopSignal = credentialResync.listen(() => credentialCache.clear());
    closers.push(() => {
      stopListening();
      stopSafety();
      stopResync();
      stopSignal();
    });
  } catch (error) {
    return fail(error);
  }
  // Failure counters live in Redis when there is one (shared by all instances).
  const limitsRedis = config.redisUrl
    ? new Redis(config.redisUrl, { enableOfflineQueue: false, disableClientInfo: true, connectionName: "chat-limits" })
    : undefined;
  if (limitsRedis) {
    limitsRedis.on("error", (error: Error) => log.warn({ err: error.message }, "redis limits error"));
    closers.push(() => limitsRedis.disconnect());
    // Until it is connected every limiter counts in process only: wait for it (or its first
    // failure, after which it keeps reconnecting), so instances share counts from the first request.
    await new Promise<void>((resolve) => {
      const done = () => {
        limitsRedis.off("ready", done).off("error", done);
        resolve();
      };
      limitsRedis.once("ready", done).once("error", done);
    });
  }
  const presenceOptions = {
    sql: db.sql,
    pubsub,
    log,
    ttlSeconds: config.presenceTtlSeconds,
    heartbeatSeconds: config.presenceHeartbeatSeconds,
    offlineDelayMs: config.presenceOfflineDelayMs,
  };
  let presence: Presence;
  try {
    presence = config.redisUrl
      ? await createRedisPresence(config.redisUrl, presenceOptions)
      : createMemoryPresence(presenceOptions);
  } catch (error) {
    return fail(error);
  }
  closers.push(() => presence.close());
  const mailer = config.smtpUrl
    ? smtpMailer(config.smtpUrl, config.mailFrom)
    : outboxMailer(config.dataDir, config.mailFrom, log);
  closers.push(() => mailer.close());
  const window = { points: config.loginMaxFailures, durationSeconds: config.loginWindowSeconds };
  // Work a request hands off to run after its response (account mail). Its closer comes
  // last, so it runs first: pending mail goes out while the mailer and database are open.
  const tasks = new BackgroundTasks(log);
  closers.push(() => tasks.drain());
  return {
    config,
    db,
    pubsub,
    metrics: new Metrics(db),
    async purgeTenantKeys(tenantId) {
      if (!limitsRedis) return;
      let cursor = "0";
      do {
        const [next, keys] = await limitsRedis.scan(cursor, "MATCH", `*${tenantId}*`, "COUNT", 1000);
        cursor = next;
        if (keys.length) await limitsRedis.unlink(...keys);
      } while (cursor !== "0");
    },
    trustedDocuments,
    tokens: new TokenService(
      secret,
      new ExternalJwtVerifier(
        db.prisma,
        new KeySetCache({ production: config.production }, log, config.jwksMinFetchIntervalSeconds * 1000),
        log,
      ),
    ),
    log,
    mailer,
    limits: {
      account: new FailureLimiter("account", window, limitsRedis),
      address: new FailureLimiter(
        "address",
        { points: config.loginMaxFailuresPerAddress, durationSeconds: config.loginWindowSeconds },
        limitsRedis,
      ),
      codes: new FailureLimiter(
        "codes",
        { points: EMAIL_CODE_MAX_ATTEMPTS, durationSeconds: config.emailCodeTtlSeconds },
        limitsRedis,
      ),
      mails: new FailureLimiter("mails", { points: 5, durationSeconds: config.loginWindowSeconds }, limitsRedis),
    },
    // Embedded mode holds a user's burst of writes together (see WriteLimits).
    writeLimits: new WriteLimits(config.rateLimits, limitsRedis, log, !config.databaseUrl),
    credentialResync,
    credentialCache,
    safety,
    presence,
    tasks,
    closers,
    attachments: new LocalDiskStore(config.attachmentsDir),
    // A key of its own for download links, derived so that no extra secret is needed.
    urlSecret: createHmac("sha256", secret).update("attachment-download-urls").digest("hex"),
    webhooks,
    sealingKey: deriveSealingKey(secret),
  };
}

async function runClosers(closers: (() => Promise<void> | void)[]): Promise<void> {
  for (const close of closers.splice(0).reverse()) await close();
}

/** Releases what createDeps opened, newest first. */
export async function closeDeps(deps: AppDeps): Promise<void> {
  await runClosers(deps.closers);
}
