import { z } from "zod";
import { GRANTABLE, SYSTEM_ROLES } from "../auth/permissions.ts";
import type { Context } from "../context.ts";
import type { TransactionClient } from "../db/client.ts";
import { isUniqueViolation } from "../db/errors.ts";
import { badInput, conflict, forbidden, notFound } from "../errors.ts";
import type { Role } from "../generated/prisma/client.ts";
import { tenantOf } from "./access.ts";
import { audit } from "./audit.ts";
import { publishToUsers } from "./membership-events.ts";
import { assertCanGrant, assertNotLastOwner } from "./policies.ts";
import { findUser } from "./users.ts";
import { parseId, validate, zList, zOptionalText, zText } from "./validation.ts";

export const createRoleInput = z.object({
  name: zText(64),
  description: zOptionalText(500).nullish(),
  permissions: zList(100, "permissions"),
});
export const updateRoleInput = z.object({
  name: createRoleInput.shape.name.nullish(),
  description: createRoleInput.shape.description,
  permissions: createRoleInput.shape.permissions.nullish(),
});

/** Creates the system roles of a new tenant; returns the member role (the default). */
export async function createSystemRoles(tx: TransactionClient, tenantId: string): Promise<Role> {
  let member: Role | null = null;
  for (const role of SYSTEM_ROLES) {
    const created = await tx.role.create({
      data: {
        tenantId,
        name: role.key,
        description: role.description,
        permissions: role.permissions,
        systemKey: role.key,
      },
    });
    if (role.key === "member") member = created;
  }
  return member as Role;
}

function parsePermissions(field: string, permissions: readonly string[]): string[] {
  for (const [index, permission] of permissions.entries()) {
    if (!GRANTABLE.has(permission)) {
      throw badInput(`${field}.${index}`, `Unknown permission "${permission.slice(0, 64)}"; see permissionCatalog`);
    }
  }
  return [...new Set(permissions)];
}

export async function requireRole(ctx: Context, id: string, field = "id"): Promise<Role> {
  const role = await ctx.prisma.role.findFirst({ where: { id: parseId(field, id), tenantId: tenantOf(ctx) } });
  if (!role) throw notFound("Role");
  return role;
}

const SYSTEM_ORDER = SYSTEM_ROLES.map((role) => role.key as string);

/** System roles first (owner, admin, member), then custom roles oldest first. */
export async function listRoles(ctx: Context) {
  const rows = await ctx.prisma.role.findMany({
    where: { tenantId: tenantOf(ctx) },
    orderBy: [{ createdAt: "asc" }, { name: "asc" }],
  });
  const rank = (role: Role) => (role.systemKey ? SYSTEM_ORDER.indexOf(role.systemKey) : SYSTEM_ORDER.length);
  return rows.sort((a, b) => rank(a) - rank(b));
}

async function holdersOf(ctx: Context, roleId: string): Promise<string[]> {
  const rows = await ctx.prisma.userRole.findMany({ where: { roleId }, select: { userId: true } });
  return rows.map((row) => row.userId);
}

function uniqueName<T>(work: Promise<T>): Promise<T> {
  return work.catch((error: unknown) => {
    if (isUniqueViolation(error)) {
      throw conflict("A role with this name already exists", "input.name");
    }
    throw error;
  });
}

export async function createRole(ctx: Context, input: unknown): Promise<Role> {
  const data = validate(createRoleInput, input, "input");
  const permissions = parsePermissions("input.permissions", data.permissions);
  await assertCanGrant(ctx, permissions);
  return ctx.prisma.$transaction(async (tx) => {
    const role = await uniqueName(
      tx.role.create({
        data: { tenantId: tenantOf(ctx), name: data.name, description: data.description ?? null, permissions },
      }),
    );
    await audit(ctx, "role.created", { type: "Role", id: role.id }, { name: role.name, permissions }, tx);
    return role;
  });
}

export async function updateRole(ctx: Context, id: string, input: unknown): Promise<Role> {
  const role = await requireRole(ctx, id);
  if (role.systemKey === "owner") throw forbidden("The owner role cannot be edited");
  const data = validate(updateRoleInput, input, "input");
  if (role.systemKey && data.name && data.name !== role.name) {
    throw badInput("input.name", "System roles keep their names");
  }
  const permissions = data.permissions ? parsePermissions("input.permissions", data.permissions) : null;
  // Editing a role hands on its new permissions and takes away its old ones.
  await assertCanGrant(ctx, [...role.permissions, ...(permissions ?? [])]);
  const updated = await ctx.prisma.$transaction(async (tx) => {
    const next = await uniqueName(
      tx.role.update({
        where: { id: role.id },
        data: {
          ...(data.name ? { name: data.name } : {}),
          ...(data.description !== undefined ? { description: data.description } : {}),
          ...(permissions ? { permissions } : {}),
        },
      }),
    );
    await audit(
      ctx,
      "role.updated",
      { type: "Role", id: role.id },
      { name: next.name, before: role.permissions, after: next.permissions },
      tx,
    );
    return next;
  });
  if (permissions) await publishToUsers(ctx, await holdersOf(ctx, role.id), { type: "permissionsChanged" });
  return updated;
}

export async function deleteRole(ctx: Context, id: string): Promise<string> {
  const role = await requireRole(ctx, id);
  if (role.systemKey) throw forbidden("System roles cannot be deleted");
  await assertCanGrant(ctx, role.permissions);
  const tenant = await ctx.prisma.tenant.findUniqueOrThrow({ where: { id: tenantOf(ctx) } });
  if (tenant.defaultRoleId === role.id) throw conflict("The tenant's default role cannot be deleted");
  const holders = await holdersOf(ctx, role.id);
  await ctx.prisma.$transaction(async (tx) => {
    await tx.role.delete({ where: { id: role.id } });
    await audit(ctx, "role.deleted", { type: "Role", id: role.id }, { name: role.name, holders: holders.length }, tx);
  });
  await publishToUsers(ctx, holders, { type: "permissionsChanged" });
  return role.id;
}

export async function assignRole(ctx: Context, userId: string, roleId: string) {
  const user = await findUser(ctx, userId, { field: "userId", orThrow: true });
  const role = await requireRole(ctx, roleId, "roleId");
  await assertCanGrant(ctx, role.permissions);
  const added = await ctx.prisma.$transaction(async (tx) => {
    const { count } = await tx.userRole.createMany({
      data: [{ tenantId: user.tenantId, userId: user.id, roleId: role.id }],
      skipDuplicates: true,
    });
    if (count)
      await audit(ctx, "role.assigned", { type: "User", id: user.id }, { role: role.name, roleId: role.id }, tx);
    return count > 0;
  });
  if (added) await publishToUsers(ctx, [user.id], { type: "permissionsChanged" });
  return user;
}

export async function unassignRole(ctx: Context, userId: string, roleId: string) {
  const user = await findUser(ctx, userId, { field: "userId", orThrow: true });
  const role = await requireRole(ctx, roleId, "roleId");
  await assertCanGrant(ctx, role.permissions);
  const removed = await ctx.prisma.$transaction(async (tx) => {
    if (role.systemKey === "owner") await assertNotLastOwner(ctx, tx, user.id, "The last owner cannot be removed");
    const { count } = await tx.userRole.deleteMany({ where: { userId: user.id, roleId: role.id } });
    if (count) {
      await audit(ctx, "role.unassigned", { type: "User", id: user.id }, { role: role.name, roleId: role.id }, tx);
    }
    return count > 0;
  });
  if (removed) await publishToUsers(ctx, [user.id], { type: "permissionsChanged" });
  return user;
}
