import type { PrismaClient } from "../generated/prisma/client.ts";

/** Models whose rows belong to one tenant through a `tenantId` column. */
const TENANT_OWNED = new Set([
  "Session",
  "RefreshToken",
  "EmailCode",
  "Identity",
  "OAuthState",
  "Reaction",
  "Mention",
  "Attachment",
  "ConversationEvent",
  "ApiKey",
  "User",
  "Conversation",
  "Member",
  "Message",
  "Role",
  "UserRole",
  "UserToken",
  "AuditEntry",
  "TenantExternalJwt",
  "Webhook",
  "WebhookDelivery",
  "Block",
  "Report",
]);

const FILTERED = new Set([
  "findUnique",
  "findUniqueOrThrow",
  "findFirst",
  "findFirstOrThrow",
  "findMany",
  "count",
  "aggregate",
  "groupBy",
  "update",
  "updateMany",
  "updateManyAndReturn",
  "delete",
  "deleteMany",
  "upsert",
]);

type Args = Record<string, unknown> & { where?: Record<string, unknown>; data?: unknown; create?: unknown };

function withTenant(where: Record<string, unknown> | undefined, condition: Record<string, string>) {
  const and = where?.AND;
  return { ...where, AND: [...(Array.isArray(and) ? and : and ? [and] : []), condition] };
}

function stamp(data: unknown, tenantId: string): unknown {
  if (Array.isArray(data)) return data.map((item) => stamp(item, tenantId));
  if (data && typeof data === "object") return { ...data, tenantId };
  return data;
}

/** Scoped clients are reused per tenant (an extension is costly to build); the least recently used go first. */
const MAX_CACHED_TENANTS = 1000;
const scopedClients = new WeakMap<PrismaClient, Map<string, PrismaClient>>();

/**
 * A Prisma client confined to one tenant: every read, update and delete is filtered by
 * the tenant and every create is stamped with it, so a resolver or service that forgets
 * a filter still cannot reach another tenant's rows. (Raw SQL is not covered: each raw
 * query names its tenant explicitly.)
 */
export function tenantScoped(prisma: PrismaClient, tenantId: string): PrismaClient {
  let cache = scopedClients.get(prisma);
  if (!cache) {
    cache = new Map();
    scopedClients.set(prisma, cache);
  }
  let scoped = cache.get(tenantId);
  if (scoped) {
    cache.delete(tenantId);
  } else {
    scoped = scope(prisma, tenantId);
    if (cache.size >= MAX_CACHED_TENANTS) cache.delete(cache.keys().next().value as string);
  }
  cache.set(tenantId, scoped);
  return scoped;
}

function scope(prisma: PrismaClient, tenantId: string): PrismaClient {
  return prisma.$extends({
    name: "tenant-scope",
    query: {
      $allModels: {
        async $allOperations({ model, operation, args, query }) {
          const a = (args ?? {}) as Args;
          if (model === "Tenant") {
            if (FILTERED.has(operation))
              return query({ ...a, where: withTenant(a.where, { id: tenantId }) } as typeof args);
            return query(a);
          }
          if (!TENANT_OWNED.has(model)) return query(a);
          if (FILTERED.has(operation)) {
            const next: Args = { ...a, where: withTenant(a.where, { tenantId }) };
            if (operation === "upsert") next.create = stamp(a.create, tenantId);
            return query(next as typeof args);
          }
          if (operation === "create" || operation === "createMany" || operation === "createManyAndReturn") {
            return query({ ...a, data: stamp(a.data, tenantId) } as typeof args);
          }
          return query(a);
        },
      },
    },
  }) as unknown as PrismaClient;
}
