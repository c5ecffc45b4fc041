import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Database, openDatabase, type PrismaClient } from "../src/db/client.ts";
import { tenantScoped } from "../src/db/scoped.ts";
import type { AuditLogQuery } from "./generated/graphql.ts";
import { backends, createTestDatabase, startServer, type TestDatabase, type TestServer } from "./helpers/backends.ts";
import { type Auth, fails, type GqlResult, ok, request } from "./helpers/client.ts";
import { createTenant, createUserWithToken, type TestTenant, type TestUser } from "./helpers/fixtures.ts";
import { AuditLog } from "./operations/audit.ts";
import {
  AddMembers,
  Conversation,
  Conversations,
  CreateGroup,
  DeleteGroup,
  OpenDirect,
  RemoveMember,
  SetMemberRole,
  UpdateGroup,
} from "./operations/conversations.ts";
import { DeleteMessage, EditMessage, Messages, SendMessage } from "./operations/messages.ts";
import {
  AssignRole,
  CreateRole,
  DeleteRole,
  PermissionCatalog,
  Role,
  Roles,
  UnassignRole,
  UpdateRole,
} from "./operations/roles.ts";
import { RotateApiKey, TenantWithDefaultRole, UpdateTenant } from "./operations/tenants.ts";
import {
  CreateUser,
  DeleteUser,
  IssueUserToken,
  RevokeUserTokens,
  UpdateUser,
  User,
  UserRoles,
  Users,
  Viewer,
} from "./operations/users.ts";

// ---------------------------------------------------------------------------------------------
// Permission semantics, written out independently of the server's implementation
// ---------------------------------------------------------------------------------------------

const RESOURCES = ["tenant", "users", "groups", "chats", "rbac"];
const ACTIONS = ["create", "read", "update", "delete"];
const CATALOG = [...RESOURCES.flatMap((r) => ACTIONS.map((a) => `${r}:${a}`)), "chats:moderate"];

/** Whether a list of held permissions (with `resource:*` and `*` wildcards) allows a concrete permission. */
function allows(held: readonly string[], needed: string): boolean {
  const [resource] = needed.split(":");
  return held.includes("*") || held.includes(needed) || held.includes(`${resource}:*`);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const unique = (prefix: string) => `${prefix}-${randomBytes(4).toString("hex")}`;

type RoleRow = { id: string; name: string; description?: string | null; permissions: string[]; system: boolean };

/** The error code of the first error, or "OK" when the operation succeeded. */
function outcome(result: GqlResult<unknown>): string {
  const error = result.errors?.[0];
  if (!error) return "OK";
  return String(error.extensions?.code ?? "NO_CODE");
}

describe.each(backends())("roles, permissions and tenant isolation on %s", (backend) => {
  let database: TestDatabase;
  let server: TestServer;
  let url: string;

  beforeAll(async () => {
    database = await createTestDatabase(backend);
    server = await startServer(database);
    url = server.url;
  });
  afterAll(async () => {
    await server?.stop();
    await database?.drop();
  });

  // -------------------------------------------------------------------------------------------
  // Helpers bound to this backend's server
  // -------------------------------------------------------------------------------------------

  async function rolesOf(apiKey: string): Promise<RoleRow[]> {
    return (await ok(url, Roles, {}, { apiKey })).roles;
  }

  async function roleIds(apiKey: string): Promise<Record<string, string>> {
    return Object.fromEntries((await rolesOf(apiKey)).map((role) => [role.name, role.id]));
  }

  async function roleNamesOf(apiKey: string, userId: string): Promise<string[]> {
    const { user } = await ok(url, UserRoles, { id: userId }, { apiKey });
    return (user?.roles ?? []).map((role) => role.name).sort();
  }

  async function createRoleWithKey(apiKey: string, permissions: string[], name = unique("role")): Promise<string> {
    return (await ok(url, CreateRole, { input: { name, permissions } }, { apiKey })).createRole.id;
  }

  /** Makes the user hold exactly the given roles (by name), using the API key. */
  async function shapeRoles(apiKey: string, userId: string, wanted: string[]): Promise<void> {
    const ids = await roleIds(apiKey);
    for (const name of wanted) await ok(url, AssignRole, { userId, roleId: ids[name] as string }, { apiKey });
    for (const name of await roleNamesOf(apiKey, userId)) {
      if (!wanted.includes(name)) await ok(url, UnassignRole, { userId, roleId: ids[name] as string }, { apiKey });
    }
    expect(await roleNamesOf(apiKey, userId)).toEqual([...wanted].sort());
  }

  async function groupWith(apiKey: string, memberIds: string[], name = unique("group")): Promise<string> {
    return (await ok(url, CreateGroup, { input: { name, memberIds } }, { apiKey })).createGroup.id;
  }

  async function sendAs(apiKey: string, senderId: string, conversationId: string, body = "hello"): Promise<string> {
    return (await ok(url, SendMessage, { input: { conversationId, senderId, body } }, { apiKey })).sendMessage.id;
  }

  async function memberRoles(auth: Auth, conversationId: string): Promise<Record<string, string>> {
    const { conversation } = await ok(url, Conversation, { id: conversationId }, auth);
    return Object.fromEntries((conversation?.members ?? []).map((m) => [m.user.id, m.role]));
  }

  async function latestAudit(auth: Auth) {
    const { auditLog } = await ok(url, AuditLog, { first: 1 }, auth);
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

  // -------------------------------------------------------------------------------------------
  // 1. Roles CRUD
  // -------------------------------------------------------------------------------------------

  describe("roles CRUD", () => {
    it("permissionCatalog lists exactly the 21 resource:action permissions, for any signed-in principal", async () => {
      expect(CATALOG).toHaveLength(21);
      const tenant = await createTenant(url, ["Reader"]);
      const [reader] = tenant.users as [TestUser];
      const asService = await ok(url, PermissionCatalog, {}, { apiKey: tenant.apiKey });
      expect([...asService.permissionCatalog].sort()).toEqual([...CATALOG].sort());
      expect(new Set(asService.permissionCatalog).size).toBe(21);
      const asUser = await ok(url, PermissionCatalog, {}, { token: reader.token });
      expect([...asUser.permissionCatalog].sort()).toEqual([...CATALOG].sort());
      await fails(url, PermissionCatalog, {}, {}, "UNAUTHENTICATED");
    });

    it("each tenant starts with the system roles owner (*), admin and member; new users get member", async () => {
      const tenant = await createTenant(url, ["Newbie"]);
      const [newbie] = tenant.users as [TestUser];
      const roles = await rolesOf(tenant.apiKey);
      expectRoleList(roles, []);
      expect(roles.every((r) => r.system)).toBe(true);
      const byName = Object.fromEntries(roles.map((r) => [r.name, r]));
      expect(byName.owner?.permissions).toEqual(["*"]);
      for (const role of roles) {
        for (const permission of role.permissions) {
          expect(permission === "*" || permission.endsWith(":*") || CATALOG.includes(permission)).toBe(true);
        }
      }
      const { tenant: info } = await ok(url, TenantWithDefaultRole, {}, { apiKey: tenant.apiKey });
      expect(info.defaultRole).toEqual({ id: byName.member?.id, name: "member" });
      expect(await roleNamesOf(tenant.apiKey, newbie.id)).toEqual(["member"]);
      const viewer = await ok(url, Viewer, {}, { token: newbie.token });
      expect([...viewer.viewer.permissions].sort()).toEqual([...(byName.member?.permissions ?? [])].sort());

      // Another tenant has its own, distinct system roles.
      const other = await createTenant(url, []);
      const otherRoles = await rolesOf(other.apiKey);
      expectRoleList(otherRoles, []);
      expect(otherRoles.map((r) => r.id).filter((id) => roles.some((r) => r.id === id))).toEqual([]);
    });

    it("createRole, role, roles, updateRole, deleteRole, assignRole and unassignRole", async () => {
      const tenant = await createTenant(url, ["Holder"]);
      const apiKey = tenant.apiKey;
      const [holder] = tenant.users as [TestUser];

      const { createRole } = await ok(
        url,
        CreateRole,
        { input: { name: "support", description: "Answers chats", permissions: ["chats:read", "users:read"] } },
        { apiKey },
      );
      expect(createRole).toMatchObject({
        name: "support",
        description: "Answers chats",
        permissions: ["chats:read", "users:read"],
        system: false,
      });
      expect(createRole.id).toMatch(UUID);

      const fetched = await ok(url, Role, { id: createRole.id }, { apiKey });
      expect(fetched.role).toEqual(createRole);
      expectRoleList(await rolesOf(apiKey), ["support"]);

      const { updateRole } = await ok(
        url,
        UpdateRole,
        { id: createRole.id, input: { name: "helpdesk", description: null, permissions: ["chats:*"] } },
        { apiKey },
      );
      expect(updateRole).toMatchObject({ id: createRole.id, name: "helpdesk", description: null });
      expect(updateRole.permissions).toEqual(["chats:*"]);
      // Omitted fields stay as they are.
      const renamedOnly = await ok(url, UpdateRole, { id: createRole.id, input: { description: "x" } }, { apiKey });
      expect(renamedOnly.updateRole).toMatchObject({ name: "helpdesk", description: "x", permissions: ["chats:*"] });

      await ok(url, AssignRole, { userId: holder.id, roleId: createRole.id }, { apiKey });
      // Assigning twice is idempotent.
      await ok(url, AssignRole, { userId: holder.id, roleId: createRole.id }, { apiKey });
      expect(await roleNamesOf(apiKey, holder.id)).toEqual(["helpdesk", "member"]);
      await ok(url, UnassignRole, { userId: holder.id, roleId: createRole.id }, { apiKey });
      await ok(url, UnassignRole, { userId: holder.id, roleId: createRole.id }, { apiKey });
      expect(await roleNamesOf(apiKey, holder.id)).toEqual(["member"]);

      // Deleting a role removes it and its assignments.
      await ok(url, AssignRole, { userId: holder.id, roleId: createRole.id }, { apiKey });
      const { deleteRole } = await ok(url, DeleteRole, { id: createRole.id }, { apiKey });
      expect(deleteRole).toBe(createRole.id);
      expect((await ok(url, Role, { id: createRole.id }, { apiKey })).role).toBeNull();
      expectRoleList(await rolesOf(apiKey), []);
      expect(await roleNamesOf(apiKey, holder.id)).toEqual(["member"]);
      await fails(url, DeleteRole, { id: createRole.id }, { apiKey }, "NOT_FOUND");
      await fails(url, UpdateRole, { id: createRole.id, input: { name: "ghost" } }, { apiKey }, "NOT_FOUND");
    });

    it("validates permissions against the catalog, accepts wildcards and refuses duplicate names", async () => {
      const tenant = await createTenant(url, []);
      const apiKey = tenant.apiKey;

      for (const bad of ["chats:fly", "tenant:moderate", "users", "*:read", "rbac:**", "", "CHATS:READ"]) {
        const error = await fails(
          url,
          CreateRole,
          { input: { name: unique("bad"), permissions: ["chats:read", bad] } },
          { apiKey },
          "BAD_USER_INPUT",
        );
        expect(error.extensions?.field).toBe("input.permissions.1");
      }
      const role = await createRoleWithKey(apiKey, ["chats:read"], "checked");
      const updateError = await fails(
        url,
        UpdateRole,
        { id: role, input: { permissions: ["users:read", "users:fly"] } },
        { apiKey },
        "BAD_USER_INPUT",
      );
      expect(updateError.extensions?.field).toBe("input.permissions.1");
      expect((await ok(url, Role, { id: role }, { apiKey })).role?.permissions).toEqual(["chats:read"]);
      // Nothing was created by the refused calls.
      expectRoleList(await rolesOf(apiKey), ["checked"]);

      // Every catalog entry, every resource wildcard and `*` are accepted.
      const all = await ok(
        url,
        CreateRole,
        { input: { name: "everything", permissions: [...CATALOG, ...RESOURCES.map((r) => `${r}:*`), "*"] } },
        { apiKey },
      );
      expect(all.createRole.permissions).toHaveLength(27);
      const chats = await ok(url, CreateRole, { input: { name: "chatter", permissions: ["chats:*"] } }, { apiKey });
      expect(chats.createRole.permissions).toEqual(["chats:*"]);
      const star = await ok(url, CreateRole, { input: { name: "star", permissions: ["*"] } }, { apiKey });
      expect(star.createRole.permissions).toEqual(["*"]);

      // Names are unique inside the tenant: on create and on rename, system names included.
      for (const name of ["chatter", "owner", "member"]) {
        const error = await fails(url, CreateRole, { input: { name, permissions: [] } }, { apiKey }, "CONFLICT");
        expect(error.extensions?.field).toBe("input.name");
      }
      await fails(url, UpdateRole, { id: star.createRole.id, input: { name: "chatter" } }, { apiKey }, "CONFLICT");
      expect((await ok(url, Role, { id: star.createRole.id }, { apiKey })).role?.name).toBe("star");
      // The same name in another tenant is fine.
      const other = await createTenant(url, []);
      await ok(url, CreateRole, { input: { name: "chatter", permissions: [] } }, { apiKey: other.apiKey });
    });

    it("system roles cannot be deleted, owner cannot be edited, system roles keep their names", async () => {
      const tenant = await createTenant(url, []);
      const apiKey = tenant.apiKey;
      const before = await rolesOf(apiKey);
      const ids = Object.fromEntries(before.map((r) => [r.name, r.id]));

      for (const name of ["owner", "admin", "member"]) {
        await fails(url, DeleteRole, { id: ids[name] as string }, { apiKey }, "FORBIDDEN");
      }
      await fails(
        url,
        UpdateRole,
        { id: ids.owner as string, input: { description: "mine" } },
        { apiKey },
        "FORBIDDEN",
      );
      await fails(
        url,
        UpdateRole,
        { id: ids.owner as string, input: { permissions: ["chats:read"] } },
        { apiKey },
        "FORBIDDEN",
      );
      for (const name of ["admin", "member"]) {
        const error = await fails(
          url,
          UpdateRole,
          { id: ids[name] as string, input: { name: `${name}-renamed` } },
          { apiKey },
          "BAD_USER_INPUT",
        );
        expect(error.extensions?.field).toBe("input.name");
      }
      expect(await rolesOf(apiKey)).toEqual(before);

      // Other changes to admin and member are allowed (and keeping the same name is not a rename).
      const edited = await ok(
        url,
        UpdateRole,
        { id: ids.member as string, input: { name: "member", description: "Everyone", permissions: ["chats:read"] } },
        { apiKey },
      );
      expect(edited.updateRole).toMatchObject({ name: "member", description: "Everyone", permissions: ["chats:read"] });
      expect(edited.updateRole.system).toBe(true);
    });

    it("updateTenant(defaultRoleId) changes the role new users get; the default role cannot be deleted", async () => {
      const tenant = await createTenant(url, []);
      const apiKey = tenant.apiKey;
      const guest = await createRoleWithKey(apiKey, ["chats:read"], "guest");
      const ids = await roleIds(apiKey);

      await ok(url, UpdateTenant, { input: { defaultRoleId: guest } }, { apiKey });
      const { tenant: info } = await ok(url, TenantWithDefaultRole, {}, { apiKey });
      expect(info.defaultRole).toEqual({ id: guest, name: "guest" });
      const newcomer = await createUserWithToken(url, apiKey, "Newcomer");
      expect(await roleNamesOf(apiKey, newcomer.id)).toEqual(["guest"]);
      const viewer = await ok(url, Viewer, {}, { token: newcomer.token });
      expect(viewer.viewer.permissions).toEqual(["chats:read"]);

      await fails(url, DeleteRole, { id: guest }, { apiKey }, "CONFLICT");
      expect((await ok(url, Role, { id: guest }, { apiKey })).role?.name).toBe("guest");
      expect(await roleNamesOf(apiKey, newcomer.id)).toEqual(["guest"]);
      // An id that is not a role of this tenant is refused and changes nothing.
      const other = await createTenant(url, []);
      const foreign = await createRoleWithKey(other.apiKey, [], "foreign");
      await fails(url, UpdateTenant, { input: { defaultRoleId: foreign } }, { apiKey }, "NOT_FOUND");
      expect((await ok(url, TenantWithDefaultRole, {}, { apiKey })).tenant.defaultRole?.id).toBe(guest);

      // Once it is no longer the default it can go; new users get member again.
      await ok(url, UpdateTenant, { input: { defaultRoleId: ids.member } }, { apiKey });
      await ok(url, DeleteRole, { id: guest }, { apiKey });
      const later = await createUserWithToken(url, apiKey, "Later");
      expect(await roleNamesOf(apiKey, later.id)).toEqual(["member"]);
      expect(await roleNamesOf(apiKey, newcomer.id)).toEqual([]);
    });
  });

  // -------------------------------------------------------------------------------------------
  // 2. Permission matrix
  // -------------------------------------------------------------------------------------------

  interface MatrixEnv {
    apiKey: string;
    actor: TestUser;
    other: TestUser;
    poster: TestUser;
    groupId: string;
  }

  interface MatrixOp {
    name: string;
    permission: string;
    run(env: MatrixEnv): Promise<GqlResult<unknown>>;
  }

  const as = (env: MatrixEnv): Auth => ({ token: env.actor.token });

  const matrixOps: MatrixOp[] = [
    {
      name: "createUser",
      permission: "users:create",
      run: (env) => request(url, CreateUser, { input: { name: "Made" } }, as(env)),
    },
    { name: "users", permission: "users:read", run: (env) => request(url, Users, { first: 5 }, as(env)) },
    { name: "user", permission: "users:read", run: (env) => request(url, User, { id: env.other.id }, as(env)) },
    {
      name: "updateUser of another user",
      permission: "users:update",
      run: (env) => request(url, UpdateUser, { id: env.other.id, input: { name: "Renamed" } }, as(env)),
    },
    {
      name: "revokeUserTokens of another user",
      permission: "users:update",
      run: (env) => request(url, RevokeUserTokens, { userId: env.other.id }, as(env)),
    },
    {
      name: "deleteUser",
      permission: "users:delete",
      run: async (env) => {
        const victim = await ok(url, CreateUser, { input: { name: "Victim" } }, { apiKey: env.apiKey });
        return request(url, DeleteUser, { id: victim.createUser.id }, as(env));
      },
    },
    {
      name: "createGroup",
      permission: "groups:create",
      run: (env) => request(url, CreateGroup, { input: { name: "Matrix" } }, as(env)),
    },
    {
      name: "updateGroup as a plain group member",
      permission: "groups:update",
      run: (env) => request(url, UpdateGroup, { id: env.groupId, input: { name: "Renamed" } }, as(env)),
    },
    {
      name: "addMembers as a plain group member",
      permission: "groups:update",
      run: async (env) => {
        const joiner = await ok(url, CreateUser, { input: { name: "Joiner" } }, { apiKey: env.apiKey });
        return request(url, AddMembers, { conversationId: env.groupId, userIds: [joiner.createUser.id] }, as(env));
      },
    },
    {
      name: "deleteGroup as a plain group member",
      permission: "groups:delete",
      run: async (env) => {
        const doomed = await groupWith(env.apiKey, [env.actor.id, env.other.id]);
        return request(url, DeleteGroup, { id: doomed }, as(env));
      },
    },
    {
      name: "createRole",
      permission: "rbac:create",
      run: (env) => request(url, CreateRole, { input: { name: unique("made"), permissions: [] } }, as(env)),
    },
    { name: "roles", permission: "rbac:read", run: (env) => request(url, Roles, {}, as(env)) },
    {
      name: "role",
      permission: "rbac:read",
      run: async (env) => request(url, Role, { id: (await roleIds(env.apiKey)).member as string }, as(env)),
    },
    {
      name: "updateRole",
      permission: "rbac:update",
      run: async (env) => {
        const role = await createRoleWithKey(env.apiKey, []);
        return request(url, UpdateRole, { id: role, input: { description: "changed" } }, as(env));
      },
    },
    {
      name: "assignRole",
      permission: "rbac:update",
      run: async (env) => {
        const role = await createRoleWithKey(env.apiKey, []);
        return request(url, AssignRole, { userId: env.other.id, roleId: role }, as(env));
      },
    },
    {
      name: "unassignRole",
      permission: "rbac:update",
      run: async (env) => {
        const role = await createRoleWithKey(env.apiKey, []);
        await ok(url, AssignRole, { userId: env.other.id, roleId: role }, { apiKey: env.apiKey });
        return request(url, UnassignRole, { userId: env.other.id, roleId: role }, as(env));
      },
    },
    {
      name: "deleteRole",
      permission: "rbac:delete",
      run: async (env) => request(url, DeleteRole, { id: await createRoleWithKey(env.apiKey, []) }, as(env)),
    },
    { name: "auditLog", permission: "tenant:read", run: (env) => request(url, AuditLog, { first: 5 }, as(env)) },
    {
      name: "updateTenant",
      permission: "tenant:update",
      run: (env) => request(url, UpdateTenant, { input: { name: "Renamed tenant" } }, as(env)),
    },
    {
      name: "sendMessage",
      permission: "chats:create",
      run: (env) => request(url, SendMessage, { input: { conversationId: env.groupId, body: "hi" } }, as(env)),
    },
    {
      name: "openDirectConversation",
      permission: "chats:create",
      run: (env) => request(url, OpenDirect, { userId: env.other.id }, as(env)),
    },
    {
      name: "messages",
      permission: "chats:read",
      run: (env) => request(url, Messages, { conversationId: env.groupId }, as(env)),
    },
    {
      name: "conversations",
      permission: "chats:read",
      run: (env) => request(url, Conversations, { first: 5 }, as(env)),
    },
    {
      name: "editMessage of an own message",
      permission: "chats:update",
      run: async (env) => {
        const mine = await sendAs(env.apiKey, env.actor.id, env.groupId, "mine");
        return request(url, EditMessage, { id: mine, body: "edited" }, as(env));
      },
    },
    {
      name: "deleteMessage of an own message",
      permission: "chats:delete",
      run: async (env) => {
        const mine = await sendAs(env.apiKey, env.actor.id, env.groupId, "mine");
        return request(url, DeleteMessage, { id: mine }, as(env));
      },
    },
    {
      name: "deleteMessage of someone else's message",
      permission: "chats:moderate",
      run: async (env) => {
        const theirs = await sendAs(env.apiKey, env.poster.id, env.groupId, "theirs");
        return request(url, DeleteMessage, { id: theirs }, as(env));
      },
    },
  ];

  const profiles: { label: string; systemRole?: string; permissions?: string[] }[] = [
    { label: "owner", systemRole: "owner" },
    { label: "admin", systemRole: "admin" },
    { label: "member", systemRole: "member" },
    { label: "custom [chats:read]", permissions: ["chats:read"] },
    { label: "custom [users:read, users:create]", permissions: ["users:read", "users:create"] },
    {
      label: "custom [chats:read, chats:moderate, groups:*]",
      permissions: ["chats:read", "chats:moderate", "groups:*"],
    },
  ];

  describe("permission matrix", () => {
    it.each(profiles)("a user holding only $label", async (profile) => {
      const tenant = await createTenant(url, ["Actor", "Other", "Poster"]);
      const apiKey = tenant.apiKey;
      const [actor, other, poster] = tenant.users as [TestUser, TestUser, TestUser];
      let roleName = profile.systemRole;
      if (!roleName) {
        roleName = unique("custom");
        await createRoleWithKey(apiKey, profile.permissions ?? [], roleName);
      }
      await shapeRoles(apiKey, actor.id, [roleName]);
      const held = (await rolesOf(apiKey)).find((r) => r.name === roleName)?.permissions ?? [];
      const viewer = await ok(url, Viewer, {}, { token: actor.token });
      expect([...viewer.viewer.permissions].sort()).toEqual([...held].sort());

      const groupId = await groupWith(apiKey, [actor.id, other.id, poster.id]);
      const env: MatrixEnv = { apiKey, actor, other, poster, groupId };
      const rows: string[] = [];
      const expected: string[] = [];
      for (const op of matrixOps) {
        const result = await op.run(env);
        const want = allows(held, op.permission) ? "OK" : "FORBIDDEN";
        rows.push(`${op.name} (${op.permission}): ${outcome(result)}`);
        expected.push(`${op.name} (${op.permission}): ${want}`);
        if (want === "FORBIDDEN" && result.errors?.length) {
          // A refusal carries no data: the root field is null (or data itself is).
          const values = Object.values((result.data ?? {}) as Record<string, unknown>);
          expect(
            values.filter((value) => value !== null),
            `${op.name} returned data while refused`,
          ).toEqual([]);
        }
      }
      expect(rows).toEqual(expected);
    });

    /**
     * Changes a user's roles with the API key and checks, on the very next request with the
     * same token, what the viewer reports and what the user may do. With `withRoles` the
     * viewer's own `roles { name }` are read too (a user may always see their own roles).
     */
    async function roleChangeFlow(withRoles: boolean) {
      const tenant = await createTenant(url, ["Changer"]);
      const apiKey = tenant.apiKey;
      const [user] = tenant.users as [TestUser];
      const auth = { token: user.token };
      const roles = Object.fromEntries((await rolesOf(apiKey)).map((r) => [r.name, r]));
      const sorted = (list: readonly string[]) => [...new Set(list)].sort();
      const view = async () => {
        if (!withRoles) return { ...(await ok(url, Viewer, {}, auth)).viewer, roles: null };
        const { viewer } = await ok(url, Viewer, {}, auth);
        expect(viewer.user?.id).toBe(user.id);
        return { permissions: viewer.permissions, roles: viewer.roles.map((r) => r.name).sort() };
      };
      const expectRoles = (actual: string[] | null, names: string[]) => {
        if (withRoles) expect(actual).toEqual(names);
      };

      const first = await view();
      expectRoles(first.roles, ["member"]);
      expect(sorted(first.permissions)).toEqual(sorted(roles.member?.permissions ?? []));
      await fails(url, AuditLog, {}, auth, "FORBIDDEN");

      // Granting admin: the same token may now read the audit log.
      await ok(url, AssignRole, { userId: user.id, roleId: roles.admin?.id as string }, { apiKey });
      const granted = await view();
      expectRoles(granted.roles, ["admin", "member"]);
      expect(sorted(granted.permissions)).toEqual(
        sorted([...(roles.member?.permissions ?? []), ...(roles.admin?.permissions ?? [])]),
      );
      await ok(url, AuditLog, {}, auth);

      // Taking it away works at once as well.
      await ok(url, UnassignRole, { userId: user.id, roleId: roles.admin?.id as string }, { apiKey });
      const revoked = await view();
      expectRoles(revoked.roles, ["member"]);
      expect(sorted(revoked.permissions)).toEqual(sorted(roles.member?.permissions ?? []));
      await fails(url, AuditLog, {}, auth, "FORBIDDEN");

      // Editing a held role's permissions, then deleting the role.
      const custom = await createRoleWithKey(apiKey, ["tenant:read"], "auditor");
      await ok(url, AssignRole, { userId: user.id, roleId: custom }, { apiKey });
      expectRoles((await view()).roles, ["auditor", "member"]);
      await ok(url, AuditLog, {}, auth);
      await ok(url, UpdateRole, { id: custom, input: { permissions: ["users:create"] } }, { apiKey });
      const edited = await view();
      expect(edited.permissions).toContain("users:create");
      expect(edited.permissions).not.toContain("tenant:read");
      await fails(url, AuditLog, {}, auth, "FORBIDDEN");
      await ok(url, CreateUser, { input: { name: "Allowed now" } }, auth);
      await ok(url, DeleteRole, { id: custom }, { apiKey });
      const deleted = await view();
      expectRoles(deleted.roles, ["member"]);
      expect(deleted.permissions).not.toContain("users:create");
      await fails(url, CreateUser, { input: { name: "Refused again" } }, auth, "FORBIDDEN");

      // With no role at all the user holds nothing.
      await ok(url, UnassignRole, { userId: user.id, roleId: roles.member?.id as string }, { apiKey });
      const bare = await view();
      expect(bare.permissions).toEqual([]);
      expectRoles(bare.roles, []);
      await fails(url, Messages, { conversationId: await groupWith(apiKey, [user.id]) }, auth, "FORBIDDEN");
    }

    it("viewer.permissions and what the user may do follow role changes on the very next request", async () => {
      await roleChangeFlow(false);
    });

    it("viewer { permissions roles { name } } shows the user's own roles and follows changes at once", async () => {
      await roleChangeFlow(true);
    });
  });

  // -------------------------------------------------------------------------------------------
  // 3. Escalation attempts
  // -------------------------------------------------------------------------------------------

  describe("escalation", () => {
    it("a holder of rbac:* (admin) cannot grant what they do not hold, nor touch owner", async () => {
      const tenant = await createTenant(url, ["Owner", "Admin", "Bob", "Carol"]);
      const apiKey = tenant.apiKey;
      const [owner, admin, bob] = users4(tenant);
      await shapeRoles(apiKey, owner.id, ["owner"]);
      await shapeRoles(apiKey, admin.id, ["admin"]);
      const asAdmin = { token: admin.token };
      const ids = await roleIds(apiKey);
      const adminPermissions = (await ok(url, Viewer, {}, asAdmin)).viewer.permissions;
      expect(adminPermissions).toContain("rbac:*");
      expect(adminPermissions).not.toContain("*");

      const rolesBefore = await rolesOf(apiKey);
      for (const permissions of [["*"], ["tenant:*"], ["tenant:delete"], ["chats:read", "tenant:update"]]) {
        await fails(url, CreateRole, { input: { name: unique("grab"), permissions } }, asAdmin, "FORBIDDEN");
      }
      expect(await rolesOf(apiKey)).toEqual(rolesBefore);

      // What the admin holds they may hand on, wildcards included.
      const own = await ok(
        url,
        CreateRole,
        { input: { name: "delegate", permissions: ["chats:read", "rbac:*", "tenant:read"] } },
        asAdmin,
      );
      const delegate = own.createRole.id;

      // Adding a permission they do not hold, to a custom or a system role.
      await fails(
        url,
        UpdateRole,
        { id: delegate, input: { permissions: ["chats:read", "tenant:update"] } },
        asAdmin,
        "FORBIDDEN",
      );
      await fails(url, UpdateRole, { id: delegate, input: { permissions: ["*"] } }, asAdmin, "FORBIDDEN");
      await fails(
        url,
        UpdateRole,
        { id: ids.admin as string, input: { permissions: ["tenant:*", "users:*", "groups:*", "chats:*", "rbac:*"] } },
        asAdmin,
        "FORBIDDEN",
      );
      await fails(
        url,
        UpdateRole,
        { id: ids.member as string, input: { permissions: ["tenant:delete"] } },
        asAdmin,
        "FORBIDDEN",
      );
      // Editing owner, by anyone.
      await fails(url, UpdateRole, { id: ids.owner as string, input: { description: "x" } }, asAdmin, "FORBIDDEN");
      await fails(
        url,
        UpdateRole,
        { id: ids.owner as string, input: { description: "x" } },
        { token: owner.token },
        "FORBIDDEN",
      );

      // A role holding more than the admin cannot be handed out (or deleted) by them either.
      const powerful = await createRoleWithKey(apiKey, ["tenant:update"], "powerful");
      await fails(url, AssignRole, { userId: admin.id, roleId: powerful }, asAdmin, "FORBIDDEN");
      await fails(url, AssignRole, { userId: bob.id, roleId: powerful }, asAdmin, "FORBIDDEN");
      await fails(url, DeleteRole, { id: powerful }, asAdmin, "FORBIDDEN");

      // Owner: not to themselves, not to others, and not taken from an owner.
      await fails(url, AssignRole, { userId: admin.id, roleId: ids.owner as string }, asAdmin, "FORBIDDEN");
      await fails(url, AssignRole, { userId: bob.id, roleId: ids.owner as string }, asAdmin, "FORBIDDEN");
      await fails(url, UnassignRole, { userId: owner.id, roleId: ids.owner as string }, asAdmin, "FORBIDDEN");

      // Nothing changed.
      const rolesAfter = await rolesOf(apiKey);
      expect(rolesAfter.filter((r) => r.id !== delegate && r.id !== powerful)).toEqual(rolesBefore);
      expect(rolesAfter.find((r) => r.id === delegate)?.permissions).toEqual(["chats:read", "rbac:*", "tenant:read"]);
      expect(await roleNamesOf(apiKey, owner.id)).toEqual(["owner"]);
      expect(await roleNamesOf(apiKey, admin.id)).toEqual(["admin"]);
      expect(await roleNamesOf(apiKey, bob.id)).toEqual(["member"]);
      const adminAfter = (await ok(url, Viewer, {}, asAdmin)).viewer.permissions;
      expect([...adminAfter].sort()).toEqual([...adminPermissions].sort());
      await fails(url, UpdateTenant, { input: { name: "Taken" } }, asAdmin, "FORBIDDEN");

      // The owner, who holds `*`, may do all of it.
      await ok(url, AssignRole, { userId: bob.id, roleId: powerful }, { token: owner.token });
      await ok(url, AssignRole, { userId: bob.id, roleId: ids.owner as string }, { token: owner.token });
      expect(await roleNamesOf(apiKey, bob.id)).toEqual(["member", "owner", "powerful"]);
    });

    it("changing the default role grants it: tenant:update alone cannot make new users owners", async () => {
      const tenant = await createTenant(url, ["Manager"]);
      const apiKey = tenant.apiKey;
      const [manager] = tenant.users as [TestUser];
      await createRoleWithKey(apiKey, ["tenant:update", "users:create", "users:read"], "tenant-manager");
      await shapeRoles(apiKey, manager.id, ["tenant-manager"]);
      const asManager = { token: manager.token };
      const ids = await roleIds(apiKey);
      const defaultBefore = (await ok(url, TenantWithDefaultRole, {}, { apiKey })).tenant.defaultRole;
      expect(defaultBefore?.name).toBe("member");

      // The manager may rename the tenant (tenant:update)...
      await ok(url, UpdateTenant, { input: { name: "Renamed by manager" } }, asManager);
      // ...but not make a role they do not hold the default for every new user.
      for (const name of ["owner", "admin"]) {
        await fails(url, UpdateTenant, { input: { defaultRoleId: ids[name] } }, asManager, "FORBIDDEN");
      }
      expect((await ok(url, TenantWithDefaultRole, {}, { apiKey })).tenant.defaultRole).toEqual(defaultBefore);
      const created = await ok(url, CreateUser, { input: { name: "Fresh" } }, asManager);
      expect(await roleNamesOf(apiKey, created.createUser.id)).toEqual(["member"]);
    });

    it("the last owner cannot be removed, deleted or deactivated; with two owners one may go", async () => {
      const tenant = await createTenant(url, ["First", "Second", "Third", "Admin"]);
      const apiKey = tenant.apiKey;
      const [first, second, third, admin] = users4(tenant);
      const ids = await roleIds(apiKey);
      const ownerId = ids.owner as string;
      await shapeRoles(apiKey, first.id, ["owner"]);
      await shapeRoles(apiKey, admin.id, ["admin"]);

      // Only one owner: every way of removing them is a CONFLICT, for the API key and the owner alike.
      for (const auth of [{ apiKey }, { token: first.token }]) {
        await fails(url, UnassignRole, { userId: first.id, roleId: ownerId }, auth, "CONFLICT");
        await fails(url, DeleteUser, { id: first.id }, auth, "CONFLICT");
        await fails(url, UpdateUser, { id: first.id, input: { active: false } }, auth, "CONFLICT");
      }
      const { user } = await ok(url, UserRoles, { id: first.id }, { apiKey });
      expect(user).toMatchObject({ id: first.id, active: true, roles: [{ name: "owner" }] });
      await ok(url, Viewer, {}, { token: first.token });

      // Three owners: one may be unassigned, one deactivated; then the last active one stays.
      await ok(url, AssignRole, { userId: second.id, roleId: ownerId }, { apiKey });
      await ok(url, AssignRole, { userId: third.id, roleId: ownerId }, { token: first.token });
      await ok(url, UnassignRole, { userId: third.id, roleId: ownerId }, { token: first.token });
      expect(await roleNamesOf(apiKey, third.id)).toEqual(["member"]);
      await ok(url, UpdateUser, { id: second.id, input: { active: false } }, { apiKey });
      // An inactive owner does not count: first is the last one again.
      await fails(url, DeleteUser, { id: first.id }, { apiKey }, "CONFLICT");
      await fails(url, UnassignRole, { userId: first.id, roleId: ownerId }, { apiKey }, "CONFLICT");
      await fails(url, UpdateUser, { id: first.id, input: { active: false } }, { apiKey }, "CONFLICT");

      // Reactivated, the second owner lets the first be deleted. Deactivation ended their
      // tokens, so they need a fresh one.
      await ok(url, UpdateUser, { id: second.id, input: { active: true } }, { apiKey });
      await fails(url, Viewer, {}, { token: second.token }, "UNAUTHENTICATED");
      const fresh = await ok(url, IssueUserToken, { userId: second.id }, { apiKey });
      await ok(url, DeleteUser, { id: first.id }, { token: fresh.issueUserToken.token });
      await fails(url, Viewer, {}, { token: first.token }, "UNAUTHENTICATED");
      // The survivor is now the last owner.
      await fails(url, UnassignRole, { userId: second.id, roleId: ownerId }, { apiKey }, "CONFLICT");
      await fails(url, DeleteUser, { id: second.id }, { apiKey }, "CONFLICT");
      // Admins cannot take owner away at all; that stays FORBIDDEN, not CONFLICT.
      await fails(url, UnassignRole, { userId: second.id, roleId: ownerId }, { token: admin.token }, "FORBIDDEN");
      expect(await roleNamesOf(apiKey, second.id)).toEqual(["member", "owner"]);
    });

    it("users edit only their own messages; deleting needs chats:delete (own) or chats:moderate (others')", async () => {
      const tenant = await createTenant(url, ["Alice", "Bob", "Moderator", "Owner"]);
      const apiKey = tenant.apiKey;
      const [alice, bob, moderator, owner] = users4(tenant);
      await shapeRoles(apiKey, moderator.id, ["admin"]);
      await shapeRoles(apiKey, owner.id, ["owner"]);
      await createRoleWithKey(apiKey, ["chats:create", "chats:read", "chats:update"], "no-delete");
      await createRoleWithKey(apiKey, ["chats:read", "chats:moderate"], "mod-only");
      const extra = await createUserWithToken(url, apiKey, "Extra");
      const pureMod = await createUserWithToken(url, apiKey, "PureMod");
      await shapeRoles(apiKey, extra.id, ["no-delete"]);
      await shapeRoles(apiKey, pureMod.id, ["mod-only"]);
      const groupId = await groupWith(apiKey, [alice.id, bob.id, moderator.id, owner.id, extra.id, pureMod.id]);

      const sent = await ok(url, SendMessage, { input: { conversationId: groupId, body: "original" } }, alice);
      const messageId = sent.sendMessage.id;
      for (const editor of [bob, moderator, owner, pureMod]) {
        await fails(url, EditMessage, { id: messageId, body: "hijacked" }, { token: editor.token }, "FORBIDDEN");
      }
      const untouched = await ok(url, Messages, { first: 100, conversationId: groupId }, { apiKey });
      expect(untouched.messages.edges.find((e) => e.node.id === messageId)?.node).toMatchObject({
        body: "original",
        editedAt: null,
      });
      const edited = await ok(url, EditMessage, { id: messageId, body: "changed" }, { token: alice.token });
      expect(edited.editMessage.body).toBe("changed");
      expect(edited.editMessage.editedAt).toBeTruthy();

      // Others' messages: members may not delete them; moderators (chats:moderate) may.
      await fails(url, DeleteMessage, { id: messageId }, { token: bob.token }, "FORBIDDEN");
      await fails(url, DeleteMessage, { id: messageId }, { token: extra.token }, "FORBIDDEN");
      const stillThere = await ok(url, Messages, { first: 100, conversationId: groupId }, { apiKey });
      expect(stillThere.messages.edges.find((e) => e.node.id === messageId)?.node).toMatchObject({
        body: "changed",
        deletedAt: null,
      });
      const moderated = await ok(url, DeleteMessage, { id: messageId }, { token: pureMod.token });
      expect(moderated.deleteMessage).toMatchObject({ id: messageId, body: null, deletedBy: { id: pureMod.id } });
      expect(moderated.deleteMessage.deletedAt).toBeTruthy();

      // Own messages: chats:delete is needed, chats:moderate alone is not enough.
      const own = await ok(url, SendMessage, { input: { conversationId: groupId, body: "mine" } }, alice);
      const tombstone = await ok(url, DeleteMessage, { id: own.sendMessage.id }, { token: alice.token });
      expect(tombstone.deleteMessage).toMatchObject({ body: null, deletedBy: { id: alice.id } });
      expect(tombstone.deleteMessage.deletedAt).toBeTruthy();
      const extrasOwn = await ok(url, SendMessage, { input: { conversationId: groupId, body: "keep" } }, extra);
      await fails(url, DeleteMessage, { id: extrasOwn.sendMessage.id }, { token: extra.token }, "FORBIDDEN");
      const modsOwn = await sendAs(apiKey, pureMod.id, groupId, "mod's own");
      await fails(url, DeleteMessage, { id: modsOwn }, { token: pureMod.token }, "FORBIDDEN");

      // Everybody sees the tombstones with who deleted them.
      const history = await ok(url, Messages, { first: 100, conversationId: groupId }, { token: bob.token });
      const byId = Object.fromEntries(history.messages.edges.map((e) => [e.node.id, e.node]));
      expect(byId[messageId]).toMatchObject({ body: null, deletedBy: { id: pureMod.id } });
      expect(byId[own.sendMessage.id]).toMatchObject({ body: null, deletedBy: { id: alice.id } });
      expect(byId[extrasOwn.sendMessage.id]).toMatchObject({ body: "keep", deletedAt: null, deletedBy: null });
      expect(byId[modsOwn]).toMatchObject({ body: "mod's own", deletedAt: null });
      // A deleted message cannot be edited back to life.
      await fails(url, EditMessage, { id: own.sendMessage.id, body: "back" }, { token: alice.token }, "BAD_USER_INPUT");
    });
  });

  // -------------------------------------------------------------------------------------------
  // 4. Group roles
  // -------------------------------------------------------------------------------------------

  describe("group roles", () => {
    it("setMemberRole: owners set any role, admins only MEMBER<->ADMIN, members nothing", async () => {
      const tenant = await createTenant(url, ["Owner", "Admin", "Mia", "Max"]);
      const [owner, admin, mia, max] = users4(tenant);
      const created = await ok(
        url,
        CreateGroup,
        { input: { name: "Roles", memberIds: [admin.id, mia.id, max.id] } },
        { token: owner.token },
      );
      const groupId = created.createGroup.id;
      const asOwner = { token: owner.token };
      const asAdmin = { token: admin.token };
      const set = (auth: Auth, userId: string, role: "OWNER" | "ADMIN" | "MEMBER") =>
        request(url, SetMemberRole, { conversationId: groupId, userId, role }, auth);

      expect(outcome(await set(asOwner, admin.id, "ADMIN"))).toBe("OK");
      expect(outcome(await set(asOwner, mia.id, "OWNER"))).toBe("OK");
      expect(outcome(await set(asOwner, mia.id, "ADMIN"))).toBe("OK");
      expect(outcome(await set(asOwner, mia.id, "MEMBER"))).toBe("OK");
      expect(await memberRoles(asOwner, groupId)).toEqual({
        [owner.id]: "OWNER",
        [admin.id]: "ADMIN",
        [mia.id]: "MEMBER",
        [max.id]: "MEMBER",
      });

      // Admins move members between MEMBER and ADMIN.
      expect(outcome(await set(asAdmin, mia.id, "ADMIN"))).toBe("OK");
      expect(outcome(await set(asAdmin, mia.id, "MEMBER"))).toBe("OK");
      // But cannot make or unmake owners.
      expect(outcome(await set(asAdmin, mia.id, "OWNER"))).toBe("FORBIDDEN");
      expect(outcome(await set(asAdmin, admin.id, "OWNER"))).toBe("FORBIDDEN");
      expect(outcome(await set(asAdmin, owner.id, "MEMBER"))).toBe("FORBIDDEN");
      expect(outcome(await set(asAdmin, owner.id, "ADMIN"))).toBe("FORBIDDEN");
      expect(outcome(await request(url, RemoveMember, { conversationId: groupId, userId: owner.id }, asAdmin))).toBe(
        "FORBIDDEN",
      );
      // Plain members cannot change roles at all.
      expect(outcome(await set({ token: max.token }, mia.id, "ADMIN"))).toBe("FORBIDDEN");
      expect(outcome(await set({ token: max.token }, max.id, "ADMIN"))).toBe("FORBIDDEN");
      expect(outcome(await set({ token: max.token }, owner.id, "MEMBER"))).toBe("FORBIDDEN");

      expect(await memberRoles(asOwner, groupId)).toEqual({
        [owner.id]: "OWNER",
        [admin.id]: "ADMIN",
        [mia.id]: "MEMBER",
        [max.id]: "MEMBER",
      });
    });

    it("a group keeps an owner against member-level actors; the API key and groups:update may act anyway", async () => {
      const tenant = await createTenant(url, ["Owner", "Admin", "Manager", "Mia"]);
      const apiKey = tenant.apiKey;
      const [owner, admin, manager, mia] = users4(tenant);
      await createRoleWithKey(apiKey, ["groups:update", "chats:read"], "group-manager");
      await shapeRoles(apiKey, manager.id, ["member", "group-manager"]);
      const created = await ok(
        url,
        CreateGroup,
        { input: { name: "Keeps", memberIds: [admin.id, manager.id, mia.id] } },
        { token: owner.token },
      );
      const groupId = created.createGroup.id;
      const asOwner = { token: owner.token };
      await ok(url, SetMemberRole, { conversationId: groupId, userId: admin.id, role: "ADMIN" }, asOwner);

      // The only owner cannot step down or leave while others remain.
      await fails(
        url,
        SetMemberRole,
        { conversationId: groupId, userId: owner.id, role: "ADMIN" },
        asOwner,
        "CONFLICT",
      );
      await fails(url, RemoveMember, { conversationId: groupId, userId: owner.id }, asOwner, "CONFLICT");
      expect((await memberRoles({ apiKey }, groupId))[owner.id]).toBe("OWNER");

      // With a second owner, the first may step down.
      await ok(url, SetMemberRole, { conversationId: groupId, userId: mia.id, role: "OWNER" }, asOwner);
      await ok(url, SetMemberRole, { conversationId: groupId, userId: owner.id, role: "MEMBER" }, asOwner);
      // And now mia is the last owner.
      await fails(
        url,
        SetMemberRole,
        { conversationId: groupId, userId: mia.id, role: "MEMBER" },
        { token: mia.token },
        "CONFLICT",
      );

      // The API key may leave the group without an owner.
      await ok(url, SetMemberRole, { conversationId: groupId, userId: mia.id, role: "MEMBER" }, { apiKey });
      expect(Object.values(await memberRoles({ apiKey }, groupId))).not.toContain("OWNER");
      // A groups:update holder who is a plain member acts as owner: makes and unmakes owners.
      const asManager = { token: manager.token };
      expect((await memberRoles({ apiKey }, groupId))[manager.id]).toBe("MEMBER");
      await ok(url, SetMemberRole, { conversationId: groupId, userId: owner.id, role: "OWNER" }, asManager);
      await ok(url, SetMemberRole, { conversationId: groupId, userId: owner.id, role: "ADMIN" }, asManager);
      expect(Object.values(await memberRoles({ apiKey }, groupId))).not.toContain("OWNER");
      await ok(url, SetMemberRole, { conversationId: groupId, userId: owner.id, role: "OWNER" }, asManager);
      // ...and may remove the last owner.
      await ok(url, RemoveMember, { conversationId: groupId, userId: owner.id }, asManager);
      expect(Object.keys(await memberRoles({ apiKey }, groupId))).not.toContain(owner.id);
      // The API key may too.
      await ok(url, SetMemberRole, { conversationId: groupId, userId: mia.id, role: "OWNER" }, { apiKey });
      await ok(url, RemoveMember, { conversationId: groupId, userId: mia.id }, { apiKey });
      expect(await memberRoles({ apiKey }, groupId)).toEqual({ [admin.id]: "ADMIN", [manager.id]: "MEMBER" });
    });

    it("groups:update renames a group its holder does not own; groups:delete deletes it", async () => {
      const tenant = await createTenant(url, ["Owner", "Admin", "Manager", "Deleter"]);
      const apiKey = tenant.apiKey;
      const [owner, admin, manager, deleter] = users4(tenant);
      await createRoleWithKey(apiKey, ["groups:update", "chats:read"], "renamer");
      await createRoleWithKey(apiKey, ["groups:delete", "chats:read"], "remover");
      await shapeRoles(apiKey, manager.id, ["renamer"]);
      await shapeRoles(apiKey, deleter.id, ["remover"]);
      const mia = await createUserWithToken(url, apiKey, "Mia");
      const created = await ok(
        url,
        CreateGroup,
        { input: { name: "Original", memberIds: [admin.id, manager.id, deleter.id, mia.id] } },
        { token: owner.token },
      );
      const groupId = created.createGroup.id;
      await ok(url, SetMemberRole, { conversationId: groupId, userId: admin.id, role: "ADMIN" }, { apiKey });

      // Renaming: owners, admins, and groups:update; not plain members or groups:delete holders.
      await fails(url, UpdateGroup, { id: groupId, input: { name: "By Mia" } }, { token: mia.token }, "FORBIDDEN");
      await fails(
        url,
        UpdateGroup,
        { id: groupId, input: { name: "By Deleter" } },
        { token: deleter.token },
        "FORBIDDEN",
      );
      const renamed = await ok(url, UpdateGroup, { id: groupId, input: { name: "Managed" } }, { token: manager.token });
      expect(renamed.updateGroup.name).toBe("Managed");
      await ok(url, UpdateGroup, { id: groupId, input: { name: "By admin" } }, { token: admin.token });
      // groups:update also manages members of a group it does not own.
      const joiner = await createUserWithToken(url, apiKey, "Joiner");
      await ok(url, AddMembers, { conversationId: groupId, userIds: [joiner.id] }, { token: manager.token });
      await ok(url, RemoveMember, { conversationId: groupId, userId: joiner.id }, { token: manager.token });

      // Deleting: owners or groups:delete; not group admins, plain members or groups:update.
      for (const user of [admin, mia, manager]) {
        await fails(url, DeleteGroup, { id: groupId }, { token: user.token }, "FORBIDDEN");
      }
      expect((await ok(url, Conversation, { id: groupId }, { apiKey })).conversation?.name).toBe("By admin");
      const { deleteGroup } = await ok(url, DeleteGroup, { id: groupId }, { token: deleter.token });
      expect(deleteGroup).toBe(groupId);
      await fails(url, Conversation, { id: groupId }, { apiKey }, "NOT_FOUND");
    });
  });

  // -------------------------------------------------------------------------------------------
  // 5. Audit log
  // -------------------------------------------------------------------------------------------

  describe("audit log", () => {
    it("records security-relevant actions with actor and target, newest first, paged by cursor", async () => {
      const tenant = await createTenant(url, ["Admin", "Alice", "Bob", "Carol"]);
      const [admin, alice, bob, carol] = users4(tenant);
      const asAdmin = { token: admin.token };
      const ids = await roleIds(tenant.apiKey);
      const recorded: { id: string; action: string }[] = [];
      let reader: Auth = { apiKey: tenant.apiKey };

      async function expectEntry(
        action: string,
        actor: { kind: "SERVICE" | "USER"; id: string | null },
        target: { type: string; id: string | null },
      ) {
        const entry = await latestAudit(reader);
        expect({ action: entry.action, actor: entry.actor, target: entry.target }).toEqual({ action, actor, target });
        expect(recorded.map((r) => r.id)).not.toContain(entry.id);
        recorded.push({ id: entry.id, action });
        return entry;
      }

      // Rotation: the actor is the old key, the target the new one, which acts from then on.
      const { rotateApiKey } = await ok(url, RotateApiKey, {}, { apiKey: tenant.apiKey });
      const apiKey = rotateApiKey.apiKey;
      reader = { apiKey };
      const rotated = await latestAudit(reader);
      expect(rotated.action).toBe("apiKey.rotated");
      expect(rotated.actor.kind).toBe("SERVICE");
      expect(rotated.actor.id).toMatch(UUID);
      expect(rotated.target.type).toBe("ApiKey");
      expect(rotated.target.id).toMatch(UUID);
      expect(rotated.target.id).not.toBe(rotated.actor.id);
      recorded.push({ id: rotated.id, action: "apiKey.rotated" });
      const service = { kind: "SERVICE" as const, id: rotated.target.id ?? null };
      const byAdmin = { kind: "USER" as const, id: admin.id };

      await ok(url, AssignRole, { userId: admin.id, roleId: ids.admin as string }, { apiKey });
      await expectEntry("role.assigned", service, { type: "User", id: admin.id });
      await ok(url, UnassignRole, { userId: admin.id, roleId: ids.member as string }, { apiKey });
      await expectEntry("role.unassigned", service, { type: "User", id: admin.id });
      reader = asAdmin;

      const { createRole } = await ok(
        url,
        CreateRole,
        { input: { name: "auditors", permissions: ["chats:read"] } },
        asAdmin,
      );
      const roleId = createRole.id;
      await expectEntry("role.created", byAdmin, { type: "Role", id: roleId });
      await ok(url, UpdateRole, { id: roleId, input: { permissions: ["chats:read", "users:read"] } }, asAdmin);
      await expectEntry("role.updated", byAdmin, { type: "Role", id: roleId });
      await ok(url, AssignRole, { userId: alice.id, roleId }, asAdmin);
      await expectEntry("role.assigned", byAdmin, { type: "User", id: alice.id });
      await ok(url, UnassignRole, { userId: alice.id, roleId }, asAdmin);
      await expectEntry("role.unassigned", byAdmin, { type: "User", id: alice.id });
      await ok(url, DeleteRole, { id: roleId }, asAdmin);
      await expectEntry("role.deleted", byAdmin, { type: "Role", id: roleId });

      await ok(url, UpdateUser, { id: bob.id, input: { active: false } }, asAdmin);
      await expectEntry("user.deactivated", byAdmin, { type: "User", id: bob.id });
      await ok(url, RevokeUserTokens, { userId: carol.id }, asAdmin);
      await expectEntry("user.tokensRevoked", byAdmin, { type: "User", id: carol.id });
      await ok(url, RevokeUserTokens, { userId: alice.id }, { token: alice.token });
      await expectEntry("user.tokensRevoked", { kind: "USER", id: alice.id }, { type: "User", id: alice.id });
      const aliceToken = (await ok(url, IssueUserToken, { userId: alice.id }, { apiKey })).issueUserToken.token;

      const group = await ok(url, CreateGroup, { input: { name: "Audited", memberIds: [alice.id] } }, asAdmin);
      const groupId = group.createGroup.id;
      await ok(url, AddMembers, { conversationId: groupId, userIds: [carol.id] }, asAdmin);
      await expectEntry("member.added", byAdmin, { type: "Conversation", id: groupId });
      await ok(url, SetMemberRole, { conversationId: groupId, userId: alice.id, role: "ADMIN" }, asAdmin);
      await expectEntry("member.roleChanged", byAdmin, { type: "Conversation", id: groupId });
      await ok(url, RemoveMember, { conversationId: groupId, userId: carol.id }, asAdmin);
      await expectEntry("member.removed", byAdmin, { type: "Conversation", id: groupId });
      const sent = await ok(
        url,
        SendMessage,
        { input: { conversationId: groupId, body: "bad" } },
        { token: aliceToken },
      );
      await ok(url, DeleteMessage, { id: sent.sendMessage.id }, asAdmin);
      await expectEntry("message.moderated", byAdmin, { type: "Message", id: sent.sendMessage.id });
      await ok(url, DeleteGroup, { id: groupId }, asAdmin);
      await expectEntry("group.deleted", byAdmin, { type: "Conversation", id: groupId });
      await ok(url, DeleteUser, { id: bob.id }, { apiKey });
      await expectEntry("user.deleted", service, { type: "User", id: bob.id });

      // The whole log, newest first, is exactly what was done.
      const all = await ok(url, AuditLog, { first: 100 }, asAdmin);
      expect(all.auditLog.edges.map((e) => e.node.id)).toEqual([...recorded].reverse().map((r) => r.id));
      expect(all.auditLog.edges.map((e) => e.node.action)).toEqual([...recorded].reverse().map((r) => r.action));
      const times = all.auditLog.edges.map((e) => Date.parse(e.node.createdAt));
      expect([...times].sort((a, b) => b - a)).toEqual(times);
      expect(all.auditLog.pageInfo).toMatchObject({ hasNextPage: false, hasPreviousPage: false });

      // Cursor paging visits every entry once, in order.
      const paged: string[] = [];
      let after: string | null | undefined = null;
      let pages = 0;
      for (;;) {
        const page: AuditLogQuery = await ok(url, AuditLog, { first: 4, after }, asAdmin);
        pages++;
        expect(page.auditLog.edges.length).toBeLessThanOrEqual(4);
        expect(page.auditLog.pageInfo.hasPreviousPage).toBe(after !== null);
        paged.push(...page.auditLog.edges.map((e) => e.node.id));
        if (page.auditLog.edges.length) {
          expect(page.auditLog.pageInfo.endCursor).toBe(page.auditLog.edges.at(-1)?.cursor);
        }
        if (!page.auditLog.pageInfo.hasNextPage) break;
        after = page.auditLog.pageInfo.endCursor;
        expect(pages).toBeLessThan(20);
      }
      expect(paged).toEqual(all.auditLog.edges.map((e) => e.node.id));
      expect(pages).toBe(Math.ceil(recorded.length / 4));
      const fromMiddle = await ok(url, AuditLog, { first: 2, after: all.auditLog.edges[2]?.cursor }, asAdmin);
      expect(fromMiddle.auditLog.edges.map((e) => e.node.id)).toEqual(
        all.auditLog.edges.slice(3, 5).map((e) => e.node.id),
      );
      await fails(url, AuditLog, { first: 1, after: "garbage" }, asAdmin, "BAD_USER_INPUT");

      // tenant:read is needed: members are refused.
      await fails(url, AuditLog, { first: 1 }, { token: aliceToken }, "FORBIDDEN");
      const carolToken = (await ok(url, IssueUserToken, { userId: carol.id }, { apiKey })).issueUserToken.token;
      await fails(url, AuditLog, { first: 1 }, { token: carolToken }, "FORBIDDEN");

      // Another tenant never sees any of it, not even with this tenant's cursors.
      const other = await createTenant(url, ["Stranger"]);
      await ok(
        url,
        AssignRole,
        { userId: other.users[0]?.id as string, roleId: (await roleIds(other.apiKey)).admin as string },
        { apiKey: other.apiKey },
      );
      const theirs = await ok(url, AuditLog, { first: 100 }, { apiKey: other.apiKey });
      const theirIds = theirs.auditLog.edges.map((e) => e.node.id);
      expect(theirIds.length).toBeGreaterThan(0);
      expect(theirIds.filter((id) => recorded.some((r) => r.id === id))).toEqual([]);
      const mine = new Set([admin.id, alice.id, bob.id, carol.id, groupId, roleId, sent.sendMessage.id]);
      expect(
        theirs.auditLog.edges.filter((e) => mine.has(e.node.target.id ?? "") || mine.has(e.node.actor.id ?? "")),
      ).toEqual([]);
      const viaCursor = await request(
        url,
        AuditLog,
        { first: 100, after: all.auditLog.edges[0]?.cursor },
        { apiKey: other.apiKey },
      );
      expect((viaCursor.data?.auditLog.edges ?? []).filter((e) => recorded.some((r) => r.id === e.node.id))).toEqual(
        [],
      );
      // And this tenant does not see theirs.
      const ownAgain = await ok(url, AuditLog, { first: 100 }, asAdmin);
      expect(ownAgain.auditLog.edges.map((e) => e.node.id).filter((id) => theirIds.includes(id))).toEqual([]);
    });
  });

  // -------------------------------------------------------------------------------------------
  // 6. Tenant isolation in depth
  // -------------------------------------------------------------------------------------------

  describe("tenant isolation in depth", () => {
    let prisma: PrismaClient;
    let own: Database | undefined;
    let pool: pg.Pool | undefined;

    beforeAll(async () => {
      if (database.db) {
        prisma = database.db.prisma;
      } else {
        own = await openDatabase({ databaseUrl: database.url, poolSize: 2 });
        prisma = own.prisma;
        pool = new pg.Pool({ connectionString: database.url, max: 2 });
      }
    });
    afterAll(async () => {
      await own?.close();
      await pool?.end();
    });

    async function rawSql(sql: string, params: unknown[]): Promise<unknown> {
      if (pool) return (await pool.query(sql, params)).rows;
      return database.db?.sql.query(sql, params);
    }

    /** A tenant with users, a group, messages and a custom role, made through the API. */
    async function populated(label: string) {
      const tenant = await createTenant(url, [`${label}1`, `${label}2`]);
      const [one, two] = tenant.users as [TestUser, TestUser];
      const groupId = await groupWith(tenant.apiKey, [one.id, two.id], `${label} group`);
      const messageId = await sendAs(tenant.apiKey, one.id, groupId, `${label} says hi`);
      const roleId = await createRoleWithKey(tenant.apiKey, ["chats:read"], `${label}-role`);
      return { tenant, one, two, groupId, messageId, roleId };
    }

    async function snapshot(tenantId: string) {
      return {
        users: await prisma.user.findMany({ where: { tenantId }, orderBy: { id: "asc" } }),
        conversations: await prisma.conversation.findMany({ where: { tenantId }, orderBy: { id: "asc" } }),
        messages: await prisma.message.findMany({ where: { tenantId }, orderBy: { id: "asc" } }),
        roles: await prisma.role.findMany({ where: { tenantId }, orderBy: { id: "asc" } }),
        members: await prisma.member.findMany({
          where: { tenantId },
          orderBy: [{ conversationId: "asc" }, { userId: "asc" }],
        }),
      };
    }

    it("tenantScoped confines unfiltered reads, updates and deletes to its tenant and stamps creates", async () => {
      const a = await populated("A");
      const b = await populated("B");
      const scoped = tenantScoped(prisma, a.tenant.id);
      const bBefore = await snapshot(b.tenant.id);
      const aBefore = await snapshot(a.tenant.id);
      expect(bBefore.users).toHaveLength(2);
      expect(bBefore.messages).toHaveLength(1);

      // Reads without any tenant filter.
      const users = await scoped.user.findMany();
      expect(users.map((u) => u.id).sort()).toEqual(aBefore.users.map((u) => u.id));
      expect(await scoped.conversation.findMany()).toHaveLength(aBefore.conversations.length);
      expect((await scoped.message.findMany()).map((m) => m.id)).toEqual([a.messageId]);
      expect((await scoped.role.findMany()).every((r) => r.tenantId === a.tenant.id)).toBe(true);
      expect((await scoped.role.findMany()).map((r) => r.id)).toContain(a.roleId);
      expect(await scoped.user.findFirst({ where: { id: b.one.id } })).toBeNull();
      expect(await scoped.user.findUnique({ where: { id: b.one.id } })).toBeNull();
      expect(await scoped.conversation.findFirst({ where: { id: b.groupId } })).toBeNull();
      expect(await scoped.message.findFirst({ where: { id: b.messageId } })).toBeNull();
      expect(await scoped.role.findFirst({ where: { id: b.roleId } })).toBeNull();
      expect(await scoped.member.findFirst({ where: { userId: b.one.id } })).toBeNull();
      expect(await scoped.user.count()).toBe(aBefore.users.length);
      expect(await scoped.conversation.count()).toBe(aBefore.conversations.length);
      expect(await scoped.message.count()).toBe(1);
      expect(await scoped.role.count()).toBe(aBefore.roles.length);
      // Even an explicit filter naming the other tenant finds nothing.
      expect(await scoped.user.findMany({ where: { tenantId: b.tenant.id } })).toEqual([]);
      expect(await scoped.tenant.findFirst({ where: { id: b.tenant.id } })).toBeNull();

      // Updates without a filter touch only tenant A.
      expect((await scoped.user.updateMany({ data: { name: "Scoped" } })).count).toBe(aBefore.users.length);
      expect((await scoped.conversation.updateMany({ data: { description: "scoped" } })).count).toBe(
        aBefore.conversations.length,
      );
      expect((await scoped.message.updateMany({ data: { pinned: true } })).count).toBe(1);
      expect((await scoped.role.updateMany({ data: { description: "scoped" } })).count).toBe(aBefore.roles.length);
      await expect(scoped.user.update({ where: { id: b.one.id }, data: { name: "Hijacked" } })).rejects.toThrow();
      expect(await snapshot(b.tenant.id)).toEqual(bBefore);
      expect((await prisma.user.findMany({ where: { tenantId: a.tenant.id } })).every((u) => u.name === "Scoped")).toBe(
        true,
      );

      // Creates are stamped with tenant A whatever the data says.
      const stampedRole = await scoped.role.create({
        data: { tenantId: b.tenant.id, name: "stamped", permissions: [] },
      });
      expect(stampedRole.tenantId).toBe(a.tenant.id);
      const stampedUser = await scoped.user.create({ data: { tenantId: b.tenant.id, name: "Stamped" } });
      expect(stampedUser.tenantId).toBe(a.tenant.id);
      const stampedMany = await scoped.user.createMany({ data: [{ tenantId: b.tenant.id, name: "Stamped 2" }] });
      expect(stampedMany.count).toBe(1);
      expect(await prisma.user.count({ where: { tenantId: b.tenant.id } })).toBe(2);
      expect(await prisma.user.count({ where: { tenantId: a.tenant.id, name: { startsWith: "Stamped" } } })).toBe(2);

      // Deletes without a filter remove only tenant A's rows.
      expect((await scoped.message.deleteMany({})).count).toBe(1);
      expect((await scoped.conversation.deleteMany({})).count).toBe(aBefore.conversations.length);
      expect((await scoped.role.deleteMany({})).count).toBe(aBefore.roles.length + 1);
      expect((await scoped.user.deleteMany({})).count).toBe(aBefore.users.length + 2);
      await expect(scoped.user.delete({ where: { id: b.one.id } })).rejects.toThrow();
      expect(await snapshot(b.tenant.id)).toEqual(bBefore);
      const aAfter = await snapshot(a.tenant.id);
      expect([aAfter.users, aAfter.conversations, aAfter.messages, aAfter.roles, aAfter.members]).toEqual([
        [],
        [],
        [],
        [],
        [],
      ]);

      // Tenant B still works end to end through the API.
      const history = await ok(url, Messages, { conversationId: b.groupId }, { token: b.two.token });
      expect(history.messages.edges.map((e) => e.node.body)).toEqual(["B says hi"]);
    });

    it("the database refuses rows that point into another tenant (composite foreign keys)", async () => {
      const a = await populated("FA");
      const b = await populated("FB");
      const extraA = await ok(url, CreateUser, { input: { name: "Unjoined" } }, { apiKey: a.tenant.apiKey });

      async function expectForeignKeyViolation(sql: string, params: unknown[]) {
        let caught: unknown;
        try {
          await rawSql(sql, params);
        } catch (error) {
          caught = error;
        }
        expect(caught, `${sql} ${JSON.stringify(params)} was accepted`).toBeDefined();
        expect((caught as { code?: string }).code).toBe("23503");
      }
      const insertMember = `INSERT INTO "Member" ("tenantId", "conversationId", "userId") VALUES ($1::uuid, $2::uuid, $3::uuid)`;

      // A's conversation with B's user: under either tenant id.
      await expectForeignKeyViolation(insertMember, [a.tenant.id, a.groupId, b.one.id]);
      await expectForeignKeyViolation(insertMember, [b.tenant.id, a.groupId, b.one.id]);
      // A's user into B's conversation.
      await expectForeignKeyViolation(insertMember, [a.tenant.id, b.groupId, a.one.id]);
      // A message in A's conversation sent by B's user.
      await expectForeignKeyViolation(
        `INSERT INTO "Message" ("id", "tenantId", "conversationId", "seq", "senderId", "body") VALUES (gen_random_uuid(), $1::uuid, $2::uuid, 999, $3::uuid, 'x')`,
        [a.tenant.id, a.groupId, b.one.id],
      );
      // A reply pointing at B's message.
      await expectForeignKeyViolation(
        `INSERT INTO "Message" ("id", "tenantId", "conversationId", "seq", "senderId", "body", "replyToId") VALUES (gen_random_uuid(), $1::uuid, $2::uuid, 998, $3::uuid, 'x', $4::uuid)`,
        [a.tenant.id, a.groupId, a.one.id, b.messageId],
      );
      // B's role assigned to A's user.
      await expectForeignKeyViolation(
        `INSERT INTO "UserRole" ("tenantId", "userId", "roleId") VALUES ($1::uuid, $2::uuid, $3::uuid)`,
        [a.tenant.id, a.one.id, b.roleId],
      );
      expect(await prisma.member.count({ where: { conversationId: a.groupId } })).toBe(2);
      expect(await prisma.member.count({ where: { conversationId: b.groupId } })).toBe(2);
      expect(await prisma.userRole.count({ where: { roleId: b.roleId } })).toBe(0);

      // The same statement inside one tenant is accepted: the refusals above are about tenants.
      await rawSql(insertMember, [a.tenant.id, a.groupId, extraA.createUser.id]);
      expect(await prisma.member.count({ where: { conversationId: a.groupId } })).toBe(3);
    });
  });
});
