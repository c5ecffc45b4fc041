/**
 * A tenant's data as a whole: its export (NDJSON, streamed) and its deletion (every row and
 * file, its sockets closed, its Redis keys and cached credentials gone).
 */
import type { Context } from "../context.ts";
import { appError, forbidden, notFound } from "../errors.ts";
import { type ApiKeyEvent, topics } from "../realtime/topics.ts";
import { tenantOf } from "./access.ts";
import { removeAttachmentFiles } from "./attachment-gc.ts";
import { audit } from "./audit.ts";
import { announceCredentialChange, publishToUsersOf } from "./membership-events.ts";

const BATCH = 500;

/** One kind of row in the export: how to read a batch after the last id, and its line. */
interface Section {
  type: string;
  read(ctx: Context, after: string | undefined): Promise<{ id: string }[]>;
}

const keyset = (after: string | undefined) => ({
  take: BATCH,
  orderBy: { id: "asc" as const },
  ...(after ? { cursor: { id: after }, skip: 1 } : {}),
});

const SECTIONS: Section[] = [
  {
    type: "user",
    // Everything but secrets (password hashes).
    read: (ctx, after) =>
      ctx.prisma.user.findMany({
        ...keyset(after),
        omit: { passwordHash: true },
        include: { roles: { select: { roleId: true } } },
      }),
  },
  { type: "role", read: (ctx, after) => ctx.prisma.role.findMany(keyset(after)) },
  { type: "conversation", read: (ctx, after) => ctx.prisma.conversation.findMany(keyset(after)) },
  {
    type: "member",
    read: async (ctx, after) => {
      const rows = await ctx.prisma.member.findMany({
        take: BATCH,
        orderBy: [{ conversationId: "asc" }, { userId: "asc" }],
        ...(after
          ? {
              where: {
                OR: [
                  { conversationId: { gt: after.slice(0, 36) } },
                  { conversationId: after.slice(0, 36), userId: { gt: after.slice(37) } },
                ],
              },
            }
          : {}),
      });
      return rows.map((row) => ({ ...row, id: `${row.conversationId}:${row.userId}` }));
    },
  },
  { type: "message", read: (ctx, after) => ctx.prisma.message.findMany(keyset(after)) },
  {
    type: "reaction",
    read: async (ctx, after) => {
      const rows = await ctx.prisma.reaction.findMany({
        take: BATCH,
        orderBy: [{ messageId: "asc" }, { userId: "asc" }, { emoji: "asc" }],
        ...(after ? { where: { messageId: { gt: after } } } : {}),
      });
      // Pages by message: a page ends with the last message it holds whole.
      return withWholeGroups(rows, (row) => row.messageId);
    },
  },
  {
    type: "attachment",
    // Metadata; the files themselves are downloaded through /attachments/<id>.
    read: (ctx, after) => ctx.prisma.attachment.findMany({ ...keyset(after), omit: { storageKey: true } }),
  },
];

/**
 * Rows grouped by a key, cut where a full batch may have split the last group (it comes
 * again, whole, in the next page); `id` is the group key to continue after.
 */
function withWholeGroups<T>(rows: T[], keyOf: (row: T) => string): (T & { id: string })[] {
  let end = rows.length;
  if (rows.length === BATCH) {
    const last = keyOf(rows[rows.length - 1] as T);
    while (end > 0 && keyOf(rows[end - 1] as T) === last) end--;
    // One group larger than a batch: take it as it is (its rest would repeat forever otherwise).
    if (end === 0) end = rows.length;
  }
  return rows.slice(0, end).map((row) => ({ ...row, id: keyOf(row) }));
}

/**
 * The tenant's data as NDJSON lines: the tenant, then users (no password hashes), roles,
 * conversations, members, messages, reactions and attachment metadata, each a
 * `{"type": ..., "data": ...}` line. Read in batches as the client takes them. API key only;
 * audited.
 */
export async function exportTenant(ctx: Context): Promise<ReadableStream<Uint8Array>> {
  if (ctx.principal?.kind !== "service") throw forbidden("Exporting a tenant needs its API key");
  const tenant = await ctx.prisma.tenant.findUnique({ where: { id: tenantOf(ctx) } });
  if (!tenant) throw notFound("Tenant");
  await audit(ctx, "tenant.exported", { type: "Tenant", id: tenant.id });
  const encoder = new TextEncoder();
  const line = (type: string, data: unknown) => encoder.encode(`${JSON.stringify({ type, data })}\n`);
  let section = 0;
  let after: string | undefined;
  let started = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!started) {
        started = true;
        controller.enqueue(line("tenant", tenant));
        return;
      }
      while (section < SECTIONS.length) {
        const current = SECTIONS[section] as Section;
        const rows = await current.read(ctx, after);
        if (rows.length === 0) {
          section++;
          after = undefined;
          continue;
        }
        after = rows[rows.length - 1]?.id;
        for (const row of rows) controller.enqueue(line(current.type, row));
        if (rows.length < BATCH && current.type !== "reaction") {
          section++;
          after = undefined;
        }
        return;
      }
      controller.close();
    },
  });
}

/**
 * Deletes the tenant and everything it holds: rows (one statement; the rest cascades),
 * attachment files, its Redis keys; its sockets close on every instance (credentials
 * revoked). `confirmName` must be the tenant's name. The tenant's API key deletes its own
 * tenant; the platform admin key (PLATFORM_ADMIN_KEY) deletes any, named by `tenantId`.
 */
export async function deleteTenant(ctx: Context, confirmName: string, tenantId: string | null | undefined) {
  let id: string;
  if (ctx.principal?.kind === "service") {
    if (tenantId && tenantId !== ctx.principal.tenantId) throw forbidden("An API key deletes only its own tenant");
    id = ctx.principal.tenantId;
  } else if (ctx.deps.config.platformAdminKey && ctx.platformAdmin) {
    if (!tenantId) throw appError("BAD_USER_INPUT", "Name the tenant with tenantId", { field: "tenantId" });
    id = tenantId;
  } else if (!ctx.principal) {
    throw appError("UNAUTHENTICATED", "Deleting a tenant needs its API key or the platform admin key");
  } else {
    throw forbidden("Deleting a tenant needs its API key or the platform admin key");
  }
  const db = ctx.deps.db.prisma;
  const tenant = await db.tenant.findUnique({ where: { id }, select: { id: true, name: true } }).catch(() => null);
  if (!tenant) throw notFound("Tenant");
  if (tenant.name !== confirmName) {
    throw appError("BAD_USER_INPUT", "confirmName is not the tenant's name", { field: "confirmName" });
  }
  const [users, keys, files] = await Promise.all([
    db.user.findMany({ where: { tenantId: id }, select: { id: true } }),
    db.apiKey.findMany({ where: { tenantId: id }, select: { id: true } }),
    db.attachment.findMany({ where: { tenantId: id }, select: { storageKey: true } }),
  ]);
  // Rows that point at users without cascading (messages, uploads) go first; the rest cascades.
  await db.$transaction([
    db.attachment.deleteMany({ where: { tenantId: id } }),
    db.message.deleteMany({ where: { tenantId: id } }),
    db.tenant.delete({ where: { id } }),
  ]);
  ctx.deps.log.info({ tenantId: id, requestId: ctx.requestId, users: users.length }, "tenant deleted");
  // Every instance closes the tenant's sockets and forgets its cached credentials.
  const keyIds = keys.map((k) => k.id);
  await announceCredentialChange(ctx, { type: "apiKeysRevoked", tenantId: id, keyIds });
  const revokedKeys: ApiKeyEvent = { type: "revoked", keyIds };
  await ctx.deps.pubsub.publish(topics.apiKeys(id), revokedKeys).catch(() => ctx.deps.credentialResync.request());
  for (let i = 0; i < users.length; i += 1000) {
    const userIds = users.slice(i, i + 1000).map((u) => u.id);
    await publishToUsersOf(ctx, id, userIds, { type: "revoked" });
  }
  await removeAttachmentFiles(
    ctx.deps,
    files.map((f) => f.storageKey),
    ctx.requestId,
  );
  await ctx.deps.purgeTenantKeys(id);
  return true;
}
