/**
 * Permission strings are `resource:action`; `resource:*` and `*` are wildcards.
 * Roles that grant them per tenant plug in through `permissionsOf`.
 */
export const RESOURCES = ["tenant", "users", "groups", "chats", "rbac"] as const;
export const ACTIONS = ["create", "read", "update", "delete"] as const;

export const PERMISSION_CATALOG: readonly string[] = [
  ...RESOURCES.flatMap((resource) => ACTIONS.map((action) => `${resource}:${action}`)),
  "chats:moderate",
];

/** What a plain user may do until roles assign more. */
export const MEMBER_PERMISSIONS: readonly string[] = [
  "tenant:read",
  "users:read",
  "groups:create",
  "groups:read",
  "chats:create",
  "chats:read",
  "chats:update",
  "chats:delete",
];

export function grants(granted: readonly string[], needed: string): boolean {
  const [resource] = needed.split(":");
  return granted.some((permission) => permission === "*" || permission === needed || permission === `${resource}:*`);
}
