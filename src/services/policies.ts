/**
 * Checks shared by the user and role services: who may act on whom, what may be handed
 * on, and that a tenant keeps an owner.
 */
import { covers } from "../auth/permissions.ts";
import type { Context } from "../context.ts";
import type { TransactionClient } from "../db/client.ts";
import { conflict, forbidden } from "../errors.ts";
import { tenantOf } from "./access.ts";

/** Nobody grants (or takes away) a permission they do not hold themselves. */
export async function assertCanGrant(ctx: Context, permissions: readonly string[]): Promise<void> {
  const held = await ctx.permissions();
  const missing = permissions.find((permission) => !covers(held, permission));
  if (missing) throw forbidden(`You cannot grant or revoke "${missing}", which you do not hold`);
}

/**
 * Acting on another user (editing, deactivating, deleting, revoking their tokens) needs
 * every permission they hold: nobody manages someone more privileged than themselves.
 */
export async function assertCanActOn(ctx: Context, userId: string): Promise<void> {
  if (ctx.principal?.kind === "user" && ctx.principal.userId === userId) return;
  const theirs = await ctx.prisma.role.findMany({
    where: { tenantId: tenantOf(ctx), assignments: { some: { userId } } },
    select: { permissions: true },
  });
  const held = await ctx.permissions();
  const missing = theirs.flatMap((role) => role.permissions).find((permission) => !covers(held, permission));
  if (missing) throw forbidden(`This user holds "${missing}", which you do not`);
}

/** Serializes changes that could leave the tenant without an owner, and refuses the last one. */
export async function assertNotLastOwner(
  ctx: Context,
  tx: TransactionClient,
  userId: string,
  message: string,
): Promise<void> {
  const owner = await tx.role.findFirst({ where: { tenantId: tenantOf(ctx), systemKey: "owner" } });
  if (!owner) return;
  await tx.$queryRaw`SELECT "id" FROM "Role" WHERE "id" = ${owner.id}::uuid AND "tenantId" = ${owner.tenantId}::uuid FOR UPDATE`;
  const holdsOwner = await tx.userRole.findUnique({ where: { userId_roleId: { userId, roleId: owner.id } } });
  if (!holdsOwner) return;
  const otherOwners = await tx.userRole.count({
    where: { roleId: owner.id, userId: { not: userId }, user: { active: true, deletedAt: null } },
  });
  if (otherOwners === 0) throw conflict(message);
}
