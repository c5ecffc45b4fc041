import type { Context } from "../context.ts";

/**
 * Permission strings are `resource:action`; `resource:*` and `*` are wildcards.
 * Roles grant them per tenant; a user's permissions are the union of their roles'.
 */
export const RESOURCES = ["tenant", "users", "groups", "chats", "rbac"] as const;
export const ACTIONS = ["create", "read", "update", "delete"] as const;

export const PERMISSION_CATALOG: readonly string[] = [
  ...RESOURCES.flatMap((resource) => ACTIONS.map((action) => `${resource}:${action}`)),
  "chats:moderate",
];

/** Every string a role may hold: the catalog and its wildcards. */
export const GRANTABLE: ReadonlySet<string> = new Set([
  ...PERMISSION_CATALOG,
  ...RESOURCES.map((resource) => `${resource}:*`),
  "*",
]);

export type SystemRoleKey = "owner" | "admin" | "member";

/**
 * The roles every tenant starts with. Keep in sync with the backfill in the roles migration
 * and the migrations that changed them since (member_without_groups_read).
 */
export const SYSTEM_ROLES: readonly { key: SystemRoleKey; description: string; permissions: string[] }[] = [
  { key: "owner", description: "Everything in the tenant", permissions: ["*"] },
  {
    key: "admin",
    description: "Manages users, groups, chats and roles",
    permissions: ["tenant:read", "users:*", "groups:*", "chats:*", "rbac:*"],
  },
  {
    key: "member",
    description: "Chats, creates groups, sees other users",
    // Not groups:read: listing every group of the tenant (Query.groups) is administration.
    permissions: ["users:read", "groups:create", "chats:create", "chats:read", "chats:update", "chats:delete"],
  },
];

/** Whether `granted` allows the concrete permission `needed`. */
export function grants(granted: readonly string[], needed: string): boolean {
  const [resource] = needed.split(":");
  return granted.some((permission) => permission === "*" || permission === needed || permission === `${resource}:*`);
}

/**
 * Whether `granted` covers `permission`, which may itself be a wildcard: the test for
 * handing a permission on. Nobody grants what they do not hold.
 */
export function covers(granted: readonly string[], permission: string): boolean {
  if (permission === "*") return granted.includes("*");
  if (permission.endsWith(":*")) return granted.includes("*") || granted.includes(permission);
  return grants(granted, permission);
}

/** Whether the request's principal holds a permission. */
export async function hasPermission(ctx: Context, needed: string): Promise<boolean> {
  return grants(await ctx.permissions(), needed);
}
