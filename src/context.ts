import { randomUUID } from "node:crypto";
import type { CredentialCache, Grants } from "./auth/credential-cache.ts";
import type { FailureLimiter } from "./auth/limits.ts";
import { type Credentials, type Principal, resolvePrincipal } from "./auth/principal.ts";
import type { ResyncSignal } from "./auth/resync-signal.ts";
import { safeEqual } from "./auth/secrets.ts";
import type { TokenService } from "./auth/tokens.ts";
import type { WriteLimits } from "./auth/write-limits.ts";
import type { BackgroundTasks } from "./background.ts";
import type { Database, PrismaClient } from "./db/client.ts";
import { tenantScoped } from "./db/scoped.ts";
import type { Config } from "./env.ts";
/** Long-lived parts shared by every request of one server instance. */
import type { TrustedDocuments } from "./graphql/trusted-documents.ts";
import { createLoaders, type Loaders } from "./loaders.ts";
import type { Logger } from "./logger.ts";
import type { Mailer } from "./mail.ts";
import type { Metrics } from "./metrics.ts";
import type { Presence } from "./realtime/presence.ts";
import type { PubSub } from "./realtime/pubsub.ts";
import type { SocketStreams } from "./realtime/queue.ts";
import type { SafetyCache } from "./services/safety-cache.ts";
import type { WebhookOutbox } from "./services/webhook-outbox.ts";
import type { AttachmentStore } from "./storage/attachments.ts";

export interface AppDeps {
  config: Config;
  db: Database;
  pubsub: PubSub;
  tokens: TokenService;
  log: Logger;
  attachments: AttachmentStore;
  /** Signs attachment download URLs. */
  urlSecret: string;
  mailer: Mailer;
  /** Failure counters: sign-ins per account and per client address, code guesses, mails sent. */
  limits: { account: FailureLimiter; address: FailureLimiter; codes: FailureLimiter; mails: FailureLimiter };
  /** Rate limits on writes per user and per tenant (RATE_LIMITS). */
  writeLimits: WriteLimits;
  /** Raised when a revocation could not be published: re-read credentials from storage now. */
  credentialResync: ResyncSignal;
  /** Valid credentials and users' grants, so that requests do not read them from storage each time. */
  credentialCache: CredentialCache;
  /** Word filters and blocks, so that sends and live events do not read them from storage. */
  safety: SafetyCache;
  /** Who is online, on every instance. */
  presence: Presence;
  /** Work that runs after the response (account mail); failures are logged. */
  tasks: BackgroundTasks;
  /** Removes every Redis key that names the tenant (limits, presence); nothing without Redis. */
  purgeTenantKeys(tenantId: string): Promise<void>;
  /** Prometheus metrics of this instance (GET /metrics). */
  metrics: Metrics;
  /** TRUSTED_DOCUMENTS: the only operations user requests may run; null when any may. */
  trustedDocuments: TrustedDocuments | null;
  /** Records webhook deliveries with the changes they announce (see services/webhook-outbox.ts). */
  webhooks: WebhookOutbox;
  /** Encrypts webhook signing secrets at rest (see auth/secrets.ts sealSecret). */
  sealingKey: Buffer;
  /** Release what the parts above hold, in reverse order (see deps.ts closeDeps). */
  closers: (() => Promise<void> | void)[];
}

/** Who is calling, as far as the network tells. */
export interface ClientInfo {
  address: string | null;
  userAgent: string | null;
}

export interface Context {
  deps: AppDeps;
  /** Confined to the principal's tenant (see db/scoped.ts); unscoped for anonymous requests. */
  prisma: PrismaClient;
  principal: Principal | null;
  /** Why presented credentials were refused; surfaced as UNAUTHENTICATED. */
  authError?: string;
  /** True when no platform admin key is configured, or the request presented it. */
  platformAdmin: boolean;
  /** The principal's effective permissions, loaded once per request (or subscription). */
  permissions(): Promise<readonly string[]>;
  /** The permissions if they are loaded and current (no await on hot paths); else null. */
  loadedPermissions(): readonly string[] | null;
  /** The ids of the user's roles, loaded with the permissions. */
  roleIds(): Promise<readonly string[]>;
  /** Forgets loaded permissions, so the next check reads current roles. */
  refreshPermissions(): void;
  requestId: string;
  /** Origin the request came to (for absolute URLs), when known. */
  origin?: string;
  client?: ClientInfo;
  /** Set when this request signed a user in: the response may show that user their own data. */
  signedInUserId?: string;
  loaders: Loaders;
  /** For an operation on a WebSocket: the socket's live streams, ended together when it cannot keep up. */
  streams?: SocketStreams;
  /** For a subscription on a WebSocket: writes its `next` frames straight to the socket (see shared-execution.ts). */
  delivery?: FrameDelivery;
  /** When this context was made (for a subscription: as its subscribe frame was read), in ms since the epoch. */
  startedAt: number;
}

/** Where a subscription's results can be written as ready-made `next` frames. */
export interface FrameDelivery {
  /** The operation id the frames carry. */
  id: string;
  /** Sends one complete frame (JSON text) on the socket. */
  send(frame: string): void;
  /** Starts (or joins) the execution of a live item's result; undefined when it is ready or cannot be prepared. */
  prepare?(item: unknown): Promise<unknown> | undefined;
  /** Writes a live item's frame now if its result is ready and clean; false leaves it to the stream. */
  fast?(item: unknown): boolean;
}

export interface RequestCredentials extends Credentials {
  platformAdminKey?: string | null;
}

const NO_GRANTS: Grants = { permissions: [], roleIds: [] };
const SERVICE_GRANTS: Grants = { permissions: ["*"], roleIds: [] };

/** A principal's grants: from the cache when given (request contexts), else from storage. */
async function loadGrants(prisma: PrismaClient, principal: Principal | null, cache?: CredentialCache): Promise<Grants> {
  if (!principal) return NO_GRANTS;
  if (principal.kind === "service") return SERVICE_GRANTS;
  const { tenantId, userId } = principal;
  const cached = cache?.grantsOf(tenantId, userId);
  if (cached) return cached;
  const readAt = cache?.version ?? 0;
  const roles = await prisma.role.findMany({
    where: { tenantId, assignments: { some: { userId } } },
    select: { id: true, permissions: true },
  });
  const grants = {
    permissions: [...new Set(roles.flatMap((role) => role.permissions))],
    roleIds: roles.map((role) => role.id),
  };
  cache?.storeGrants(tenantId, userId, grants, readAt);
  return grants;
}

/**
 * A context for an already verified principal. Long-lived contexts (one per
 * subscription) pass cacheLoaders: false, so every event reads current state, and their
 * grants come from storage (they re-read them when told permissions changed).
 */
export function contextFor(
  deps: AppDeps,
  principal: Principal | null,
  options: {
    cacheLoaders?: boolean;
    authError?: string;
    platformAdmin?: boolean;
    requestId?: string;
    origin?: string;
    client?: ClientInfo;
    streams?: SocketStreams;
    delivery?: FrameDelivery;
  } = {},
): Context {
  const prisma = principal ? tenantScoped(deps.db.prisma, principal.tenantId) : deps.db.prisma;
  const cacheLoaders = options.cacheLoaders ?? true;
  let grants: Promise<Grants> | null = null;
  let settled: Grants | null = null;
  const loaded = () => {
    if (!grants) {
      const loading = loadGrants(prisma, principal, cacheLoaders ? deps.credentialCache : undefined);
      grants = loading;
      loading.then(
        (value) => {
          if (grants === loading) settled = value;
        },
        () => {},
      );
    }
    return grants;
  };
  return {
    deps,
    prisma,
    principal,
    authError: options.authError,
    platformAdmin: options.platformAdmin ?? !deps.config.platformAdminKey,
    permissions: async () => (await loaded()).permissions,
    loadedPermissions: () => settled?.permissions ?? null,
    roleIds: async () => (await loaded()).roleIds,
    refreshPermissions() {
      grants = null;
      settled = null;
    },
    requestId: options.requestId ?? randomUUID(),
    origin: options.origin,
    client: options.client,
    loaders: createLoaders(prisma, principal, cacheLoaders),
    streams: options.streams,
    delivery: options.delivery,
    startedAt: Date.now(),
  };
}

export async function createContext(
  deps: AppDeps,
  credentials: RequestCredentials,
  requestId: string = randomUUID(),
  origin?: string,
  client?: ClientInfo,
  /** Already verified from these credentials (by the request gate): not looked up again. */
  verified?: Principal,
): Promise<Context> {
  let principal: Principal | null = verified ?? null;
  let authError: string | undefined;
  try {
    principal ??= await resolvePrincipal(deps.db.prisma, deps.tokens, credentials, deps.credentialCache);
  } catch (error) {
    if (!(error instanceof Error) || !("extensions" in error)) throw error;
    authError = error.message;
  }
  const adminKey = deps.config.platformAdminKey;
  return contextFor(deps, principal, {
    authError,
    requestId,
    origin,
    client,
    platformAdmin: !adminKey || (!!credentials.platformAdminKey && safeEqual(credentials.platformAdminKey, adminKey)),
  });
}
