import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { type Auth, fails, type GqlResult, ok, request } from "../helpers/client.ts";
import { createTenant, type TestUser } from "../helpers/fixtures.ts";
import { useServer } from "../helpers/world.ts";
import { AuditLog } from "../operations/audit.ts";
import {
  AddMembers,
  Conversations,
  CreateGroup,
  DeleteGroup,
  Groups,
  HideConversation,
  OpenDirect,
  UpdateGroup,
} from "../operations/conversations.ts";
import { DeleteMessage, EditMessage, Messages, SendMessage } from "../operations/messages.ts";
import { AssignRole, CreateRole, DeleteRole, Role, Roles, UnassignRole, UpdateRole } from "../operations/roles.ts";
import { BlockedUsers, BlockUser, ReportMessage, Reports, ResolveReport } from "../operations/safety.ts";
import { UpdateTenant } from "../operations/tenants.ts";
import { CreateUser, DeleteUser, RevokeUserTokens, UpdateUser, User, Users, Viewer } from "../operations/users.ts";
import {
  CreateWebhook,
  DeleteWebhook,
  RotateWebhookSecret,
  UpdateWebhook,
  WebhookDeliveries,
  Webhooks,
} from "../operations/webhooks.ts";
import { allows, outcome, permissionHelpers, unique } from "./helpers.ts";

/** The permission matrix: each operation is allowed exactly to the holders of its permission. */
describe.each(backends())("roles, permissions and tenant isolation on %s", (backend) => {
  const world = useServer(backend);
  const { rolesOf, roleIds, createRoleWithKey, shapeRoles, groupWith, sendAs } = permissionHelpers(world);

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

  /** Webhooks of the matrix go nowhere (an unused loopback port) and only hear of deleted users. */
  const HOOK_URL = "http://127.0.0.1:9/matrix";
  const webhookOf = async (env: MatrixEnv) =>
    (await ok(world.url, CreateWebhook, { input: { url: HOOK_URL, events: ["USER_DELETED"] } }, { apiKey: env.apiKey }))
      .createWebhook.webhook.id;

  const matrixOps: MatrixOp[] = [
    {
      name: "createUser",
      permission: "users:create",
      run: (env) => request(world.url, CreateUser, { input: { name: "Made" } }, as(env)),
    },
    { name: "users", permission: "users:read", run: (env) => request(world.url, Users, { first: 5 }, as(env)) },
    { name: "user", permission: "users:read", run: (env) => request(world.url, User, { id: env.other.id }, as(env)) },
    {
      name: "updateUser of another user",
      permission: "users:update",
      run: (env) => request(world.url, UpdateUser, { id: env.other.id, input: { name: "Renamed" } }, as(env)),
    },
    {
      name: "revokeUserTokens of another user",
      permission: "users:update",
      run: (env) => request(world.url, RevokeUserTokens, { userId: env.other.id }, as(env)),
    },
    {
      name: "deleteUser",
      permission: "users:delete",
      run: async (env) => {
        const victim = await ok(world.url, CreateUser, { input: { name: "Victim" } }, { apiKey: env.apiKey });
        return request(world.url, DeleteUser, { id: victim.createUser.id }, as(env));
      },
    },
    {
      name: "createGroup",
      permission: "groups:create",
      run: (env) => request(world.url, CreateGroup, { input: { name: "Matrix" } }, as(env)),
    },
    {
      name: "updateGroup as a plain group member",
      permission: "groups:update",
      run: (env) => request(world.url, UpdateGroup, { id: env.groupId, input: { name: "Renamed" } }, as(env)),
    },
    {
      name: "addMembers as a plain group member",
      permission: "groups:update",
      run: async (env) => {
        const joiner = await ok(world.url, CreateUser, { input: { name: "Joiner" } }, { apiKey: env.apiKey });
        return request(
          world.url,
          AddMembers,
          { conversationId: env.groupId, userIds: [joiner.createUser.id] },
          as(env),
        );
      },
    },
    {
      name: "deleteGroup as a plain group member",
      permission: "groups:delete",
      run: async (env) => {
        const doomed = await groupWith(env.apiKey, [env.actor.id, env.other.id]);
        return request(world.url, DeleteGroup, { id: doomed }, as(env));
      },
    },
    {
      name: "createRole",
      permission: "rbac:create",
      run: (env) => request(world.url, CreateRole, { input: { name: unique("made"), permissions: [] } }, as(env)),
    },
    { name: "roles", permission: "rbac:read", run: (env) => request(world.url, Roles, {}, as(env)) },
    {
      name: "role",
      permission: "rbac:read",
      run: async (env) => request(world.url, Role, { id: (await roleIds(env.apiKey)).member as string }, as(env)),
    },
    {
      name: "updateRole",
      permission: "rbac:update",
      run: async (env) => {
        const role = await createRoleWithKey(env.apiKey, []);
        return request(world.url, UpdateRole, { id: role, input: { description: "changed" } }, as(env));
      },
    },
    {
      name: "assignRole",
      permission: "rbac:update",
      run: async (env) => {
        const role = await createRoleWithKey(env.apiKey, []);
        return request(world.url, AssignRole, { userId: env.other.id, roleId: role }, as(env));
      },
    },
    {
      name: "unassignRole",
      permission: "rbac:update",
      run: async (env) => {
        const role = await createRoleWithKey(env.apiKey, []);
        await ok(world.url, AssignRole, { userId: env.other.id, roleId: role }, { apiKey: env.apiKey });
        return request(world.url, UnassignRole, { userId: env.other.id, roleId: role }, as(env));
      },
    },
    {
      name: "deleteRole",
      permission: "rbac:delete",
      run: async (env) => request(world.url, DeleteRole, { id: await createRoleWithKey(env.apiKey, []) }, as(env)),
    },
    { name: "auditLog", permission: "tenant:read", run: (env) => request(world.url, AuditLog, { first: 5 }, as(env)) },
    {
      name: "createWebhook",
      permission: "tenant:*",
      run: (env) => request(world.url, CreateWebhook, { input: { url: HOOK_URL, events: ["USER_DELETED"] } }, as(env)),
    },
    { name: "webhooks", permission: "tenant:*", run: (env) => request(world.url, Webhooks, {}, as(env)) },
    {
      name: "updateWebhook",
      permission: "tenant:*",
      run: async (env) =>
        request(world.url, UpdateWebhook, { id: await webhookOf(env), input: { description: "changed" } }, as(env)),
    },
    {
      name: "rotateWebhookSecret",
      permission: "tenant:*",
      run: async (env) => request(world.url, RotateWebhookSecret, { id: await webhookOf(env) }, as(env)),
    },
    {
      name: "webhookDeliveries",
      permission: "tenant:*",
      run: async (env) => request(world.url, WebhookDeliveries, { webhookId: await webhookOf(env) }, as(env)),
    },
    {
      name: "deleteWebhook",
      permission: "tenant:*",
      run: async (env) => request(world.url, DeleteWebhook, { id: await webhookOf(env) }, as(env)),
    },
    { name: "groups", permission: "groups:read", run: (env) => request(world.url, Groups, { first: 5 }, as(env)) },
    {
      name: "updateTenant",
      permission: "tenant:update",
      run: (env) => request(world.url, UpdateTenant, { input: { name: "Renamed tenant" } }, as(env)),
    },
    {
      name: "sendMessage",
      permission: "chats:create",
      run: (env) => request(world.url, SendMessage, { input: { conversationId: env.groupId, body: "hi" } }, as(env)),
    },
    {
      name: "openDirectConversation",
      permission: "chats:create",
      run: (env) => request(world.url, OpenDirect, { userId: env.other.id }, as(env)),
    },
    {
      name: "messages",
      permission: "chats:read",
      run: (env) => request(world.url, Messages, { conversationId: env.groupId }, as(env)),
    },
    {
      name: "conversations",
      permission: "chats:read",
      run: (env) => request(world.url, Conversations, { first: 5 }, as(env)),
    },
    {
      name: "hideConversation of an own direct conversation",
      permission: "chats:read",
      run: async (env) => {
        const { sendMessage } = await ok(
          world.url,
          SendMessage,
          { input: { recipientId: env.actor.id, senderId: env.poster.id, body: "hi" } },
          { apiKey: env.apiKey },
        );
        return request(world.url, HideConversation, { id: sendMessage.conversation.id }, as(env));
      },
    },
    {
      name: "editMessage of an own message",
      permission: "chats:update",
      run: async (env) => {
        const mine = await sendAs(env.apiKey, env.actor.id, env.groupId, "mine");
        return request(world.url, EditMessage, { id: mine, body: "edited" }, as(env));
      },
    },
    {
      name: "deleteMessage of an own message",
      permission: "chats:delete",
      run: async (env) => {
        const mine = await sendAs(env.apiKey, env.actor.id, env.groupId, "mine");
        return request(world.url, DeleteMessage, { id: mine }, as(env));
      },
    },
    {
      name: "deleteMessage of someone else's message",
      permission: "chats:moderate",
      run: async (env) => {
        const theirs = await sendAs(env.apiKey, env.poster.id, env.groupId, "theirs");
        return request(world.url, DeleteMessage, { id: theirs }, as(env));
      },
    },
    {
      name: "blockUser",
      permission: "chats:read",
      run: (env) => request(world.url, BlockUser, { userId: env.other.id }, as(env)),
    },
    { name: "blockedUsers", permission: "chats:read", run: (env) => request(world.url, BlockedUsers, {}, as(env)) },
    {
      name: "reportMessage of someone else's message",
      permission: "chats:read",
      run: async (env) => {
        const theirs = await sendAs(env.apiKey, env.poster.id, env.groupId, "report me");
        return request(world.url, ReportMessage, { messageId: theirs, reason: "spam" }, as(env));
      },
    },
    {
      name: "reports",
      permission: "chats:moderate",
      run: (env) => request(world.url, Reports, { first: 5 }, as(env)),
    },
    {
      name: "resolveReport with DISMISS",
      permission: "chats:moderate",
      run: async (env) => {
        // Reported by the poster: the actor may have revoked the other user's tokens by now.
        const theirs = await sendAs(env.apiKey, env.other.id, env.groupId, "reported");
        const { reportMessage } = await ok(
          world.url,
          ReportMessage,
          { messageId: theirs, reason: "spam" },
          { token: env.poster.token },
        );
        return request(world.url, ResolveReport, { id: reportMessage.id, action: "DISMISS" }, as(env));
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
      const tenant = await createTenant(world.url, ["Actor", "Other", "Poster"]);
      const apiKey = tenant.apiKey;
      const [actor, other, poster] = tenant.users as [TestUser, TestUser, TestUser];
      let roleName = profile.systemRole;
      if (!roleName) {
        roleName = unique("custom");
        await createRoleWithKey(apiKey, profile.permissions ?? [], roleName);
      }
      await shapeRoles(apiKey, actor.id, [roleName]);
      const held = (await rolesOf(apiKey)).find((r) => r.name === roleName)?.permissions ?? [];
      const viewer = await ok(world.url, Viewer, {}, { token: actor.token });
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
      const tenant = await createTenant(world.url, ["Changer"]);
      const apiKey = tenant.apiKey;
      const [user] = tenant.users as [TestUser];
      const auth = { token: user.token };
      const roles = Object.fromEntries((await rolesOf(apiKey)).map((r) => [r.name, r]));
      const sorted = (list: readonly string[]) => [...new Set(list)].sort();
      const view = async () => {
        if (!withRoles) return { ...(await ok(world.url, Viewer, {}, auth)).viewer, roles: null };
        const { viewer } = await ok(world.url, Viewer, {}, auth);
        expect(viewer.user?.id).toBe(user.id);
        return { permissions: viewer.permissions, roles: viewer.roles.map((r) => r.name).sort() };
      };
      const expectRoles = (actual: string[] | null, names: string[]) => {
        if (withRoles) expect(actual).toEqual(names);
      };

      const first = await view();
      expectRoles(first.roles, ["member"]);
      expect(sorted(first.permissions)).toEqual(sorted(roles.member?.permissions ?? []));
      await fails(world.url, AuditLog, {}, auth, "FORBIDDEN");

      // Granting admin: the same token may now read the audit log.
      await ok(world.url, AssignRole, { userId: user.id, roleId: roles.admin?.id as string }, { apiKey });
      const granted = await view();
      expectRoles(granted.roles, ["admin", "member"]);
      expect(sorted(granted.permissions)).toEqual(
        sorted([...(roles.member?.permissions ?? []), ...(roles.admin?.permissions ?? [])]),
      );
      await ok(world.url, AuditLog, {}, auth);

      // Taking it away works at once as well.
      await ok(world.url, UnassignRole, { userId: user.id, roleId: roles.admin?.id as string }, { apiKey });
      const revoked = await view();
      expectRoles(revoked.roles, ["member"]);
      expect(sorted(revoked.permissions)).toEqual(sorted(roles.member?.permissions ?? []));
      await fails(world.url, AuditLog, {}, auth, "FORBIDDEN");

      // Editing a held role's permissions, then deleting the role.
      const custom = await createRoleWithKey(apiKey, ["tenant:read"], "auditor");
      await ok(world.url, AssignRole, { userId: user.id, roleId: custom }, { apiKey });
      expectRoles((await view()).roles, ["auditor", "member"]);
      await ok(world.url, AuditLog, {}, auth);
      await ok(world.url, UpdateRole, { id: custom, input: { permissions: ["users:create"] } }, { apiKey });
      const edited = await view();
      expect(edited.permissions).toContain("users:create");
      expect(edited.permissions).not.toContain("tenant:read");
      await fails(world.url, AuditLog, {}, auth, "FORBIDDEN");
      await ok(world.url, CreateUser, { input: { name: "Allowed now" } }, auth);
      await ok(world.url, DeleteRole, { id: custom }, { apiKey });
      const deleted = await view();
      expectRoles(deleted.roles, ["member"]);
      expect(deleted.permissions).not.toContain("users:create");
      await fails(world.url, CreateUser, { input: { name: "Refused again" } }, auth, "FORBIDDEN");

      // With no role at all the user holds nothing.
      await ok(world.url, UnassignRole, { userId: user.id, roleId: roles.member?.id as string }, { apiKey });
      const bare = await view();
      expect(bare.permissions).toEqual([]);
      expectRoles(bare.roles, []);
      await fails(world.url, Messages, { conversationId: await groupWith(apiKey, [user.id]) }, auth, "FORBIDDEN");
    }

    it("viewer.permissions and what the user may do follow role changes on the very next request", async () => {
      await roleChangeFlow(false);
    });

    it("viewer { permissions roles { name } } shows the user's own roles and follows changes at once", async () => {
      await roleChangeFlow(true);
    });
  });
});
