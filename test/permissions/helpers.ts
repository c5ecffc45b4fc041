import { randomBytes } from "node:crypto";
import { expect } from "vitest";
import { type Auth, type GqlResult, ok } from "../helpers/client.ts";
import type { TestTenant, TestUser } from "../helpers/fixtures.ts";
import type { ServerHandle } from "../helpers/world.ts";
import { AuditLog } from "../operations/audit.ts";
import { Conversation, CreateGroup } from "../operations/conversations.ts";
import { SendMessage } from "../operations/messages.ts";
import { AssignRole, CreateRole, Roles, UnassignRole } from "../operations/roles.ts";
import { UserRoles } from "../operations/users.ts";

// ---------------------------------------------------------------------------------------------
// Permission semantics, written out independently of the server's implementation
// ---------------------------------------------------------------------------------------------

export const RESOURCES = ["tenant", "users", "groups", "chats", "rbac"];
export const ACTIONS = ["create", "read", "update", "delete"];
export const CATALOG = [...RESOURCES.flatMap((r) => ACTIONS.map((a) => `${r}:${a}`)), "chats:moderate"];

/** Whether a list of held permissions (with `resource:*` and `*` wildcards) allows a concrete permission. */
export function allows(held: readonly string[], needed: string): boolean {
  const [resource] = needed.split(":");
  return held.includes("*") || held.includes(needed) || held.includes(`${resource}:*`);
}

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const unique = (prefix: string) => `${prefix}-${randomBytes(4).toString("hex")}`;

export type RoleRow = { id: string; name: string; description?: string | null; permissions: string[]; system: boolean };

/** The error code of the first error, or "OK" when the operation succeeded. */
export function outcome(result: GqlResult<unknown>): string {
  const error = result.errors?.[0];
  if (!error) return "OK";
  return String(error.extensions?.code ?? "NO_CODE");
}

/** Helpers bound to the server of a describe block. */
export function permissionHelpers(world: ServerHandle) {
  async function rolesOf(apiKey: string): Promise<RoleRow[]> {
    return (await ok(world.url, Roles, {}, { apiKey })).roles;
  }

  async function roleIds(apiKey: string): Promise<Record<string, string>> {
    return Object.fromEntries((await rolesOf(apiKey)).map((role) => [role.name, role.id]));
  }

  async function roleNamesOf(apiKey: string, userId: string): Promise<string[]> {
    const { user } = await ok(world.url, UserRoles, { id: userId }, { apiKey });
    return (user?.roles ?? []).map((role) => role.name).sort();
  }

  async function createRoleWithKey(apiKey: string, permissions: string[], name = unique("role")): Promise<string> {
    return (await ok(world.url, CreateRole, { input: { name, permissions } }, { apiKey })).createRole.id;
  }

  /** Makes the user hold exactly the given roles (by name), using the API key. */
  async function shapeRoles(apiKey: string, userId: string, wanted: string[]): Promise<void> {
    const ids = await roleIds(apiKey);
    for (const name of wanted) await ok(world.url, AssignRole, { userId, roleId: ids[name] as string }, { apiKey });
    for (const name of await roleNamesOf(apiKey, userId)) {
      if (!wanted.includes(name))
        await ok(world.url, UnassignRole, { userId, roleId: ids[name] as string }, { apiKey });
    }
    expect(await roleNamesOf(apiKey, userId)).toEqual([...wanted].sort());
  }

  async function groupWith(apiKey: string, memberIds: string[], name = unique("group")): Promise<string> {
    return (await ok(world.url, CreateGroup, { input: { name, memberIds } }, { apiKey })).createGroup.id;
  }

  async function sendAs(apiKey: string, senderId: string, conversationId: string, body = "hello"): Promise<string> {
    return (await ok(world.url, SendMessage, { input: { conversationId, senderId, body } }, { apiKey })).sendMessage.id;
  }

  async function memberRoles(auth: Auth, conversationId: string): Promise<Record<string, string>> {
    const { conversation } = await ok(world.url, Conversation, { id: conversationId }, auth);
    return Object.fromEntries((conversation?.members ?? []).map((m) => [m.user.id, m.role]));
  }

  async function latestAudit(auth: Auth) {
    const { auditLog } = await ok(world.url, AuditLog, { first: 1 }, auth);
    const node = auditLog.edges[0]?.node;
    if (!node) return expect.fail("the audit log is empty");
    return node;
  }

  /** `roles` lists the three system roles first (in no promised order among them), then the custom ones. */
  function expectRoleList(roles: RoleRow[], custom: string[]): void {
    expect(roles.slice(0, 3).every((r) => r.system)).toBe(true);
    expect(
      roles
        .slice(0, 3)
        .map((r) => r.name)
        .sort(),
    ).toEqual(["admin", "member", "owner"]);
    expect(roles.slice(3).map((r) => r.name)).toEqual(custom);
    expect(roles.slice(3).some((r) => r.system)).toBe(false);
  }

  const users4 = (tenant: TestTenant) => tenant.users as [TestUser, TestUser, TestUser, TestUser];

  return {
    rolesOf,
    roleIds,
    roleNamesOf,
    createRoleWithKey,
    shapeRoles,
    groupWith,
    sendAs,
    memberRoles,
    latestAudit,
    expectRoleList,
    users4,
  };
}
