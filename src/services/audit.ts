import type { Context } from "../context.ts";
import type { PrismaClient } from "../generated/prisma/client.ts";
import { tenantOf } from "./access.ts";
import { connectionOf, decodeCursor, encodeCursor } from "./cursors.ts";
import { pageSize } from "./validation.ts";

export type AuditAction =
  | "tenant.updated"
  | "tenant.exported"
  | "apiKey.rotated"
  | "role.created"
  | "role.updated"
  | "role.deleted"
  | "role.assigned"
  | "role.unassigned"
  | "user.deactivated"
  | "user.reactivated"
  | "user.deleted"
  | "user.tokensRevoked"
  | "user.passwordChanged"
  | "user.emailChanged"
  | "group.deleted"
  | "member.added"
  | "member.removed"
  | "member.roleChanged"
  | "message.moderated"
  | "webhook.created"
  | "webhook.updated"
  | "webhook.deleted"
  | "webhook.secretRotated"
  | "webhook.disabled"
  | "message.reported"
  | "report.resolved";

type Db = Pick<PrismaClient, "auditEntry">;

/**
 * Records a security-relevant action. Pass the transaction client when there is one, so
 * the entry commits (or rolls back) with the change it describes.
 */
export async function audit(
  ctx: Context,
  action: AuditAction,
  target: { type: string; id?: string | null },
  details?: Record<string, unknown>,
  db: Db = ctx.prisma,
): Promise<void> {
  const principal = ctx.principal;
  await db.auditEntry.create({
    data: {
      tenantId: tenantOf(ctx),
      action,
      actorType: principal?.kind === "user" ? "USER" : "SERVICE",
      actorId:
        principal?.kind === "user" ? principal.userId : principal?.kind === "service" ? principal.apiKeyId : null,
      targetType: target.type,
      targetId: target.id ?? null,
      details: details ? JSON.stringify(details) : null,
    },
  });
}

export async function listAudit(ctx: Context, args: { first?: number | null; after?: string | null }) {
  const first = pageSize("first", args.first, 50);
  let keyset = {};
  if (args.after) {
    const [date, id] = decodeCursor("after", args.after, "a1", ["time", "uuid"]);
    keyset = { OR: [{ createdAt: { lt: date } }, { createdAt: date, id: { lt: id } }] };
  }
  const rows = await ctx.prisma.auditEntry.findMany({
    where: { tenantId: tenantOf(ctx), ...keyset },
    orderBy: [{ createdAt: "desc" }, { id: "desc" }],
    take: first + 1,
  });
  return connectionOf(rows.slice(0, first), (row) => encodeCursor("a1", [row.createdAt.getTime(), row.id]), {
    hasNextPage: rows.length > first,
    hasPreviousPage: !!args.after,
  });
}
