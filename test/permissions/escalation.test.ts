import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { fails, ok } from "../helpers/client.ts";
import { createTenant, createUserWithToken, type TestUser } from "../helpers/fixtures.ts";
import { useServer } from "../helpers/world.ts";
import { DeleteMessage, EditMessage, Messages, SendMessage } from "../operations/messages.ts";
import { AssignRole, CreateRole, DeleteRole, UnassignRole, UpdateRole } from "../operations/roles.ts";
import { TenantWithDefaultRole, UpdateTenant } from "../operations/tenants.ts";
import { CreateUser, DeleteUser, IssueUserToken, UpdateUser, UserRoles, Viewer } from "../operations/users.ts";
import { permissionHelpers, unique } from "./helpers.ts";

/** No one grants themselves or others more than they hold, by any path. */
describe.each(backends())("roles, permissions and tenant isolation on %s", (backend) => {
  const world = useServer(backend);
  const { rolesOf, roleIds, roleNamesOf, createRoleWithKey, shapeRoles, groupWith, sendAs, users4 } =
    permissionHelpers(world);

  describe("escalation", () => {
    it("a holder of rbac:* (admin) cannot grant what they do not hold, nor touch owner", async () => {
      const tenant = await createTenant(world.url, ["Owner", "Admin", "Bob", "Carol"]);
      const apiKey = tenant.apiKey;
      const [owner, admin, bob] = users4(tenant);
      await shapeRoles(apiKey, owner.id, ["owner"]);
      await shapeRoles(apiKey, admin.id, ["admin"]);
      const asAdmin = { token: admin.token };
      const ids = await roleIds(apiKey);
      const adminPermissions = (await ok(world.url, Viewer, {}, asAdmin)).viewer.permissions;
      expect(adminPermissions).toContain("rbac:*");
      expect(adminPermissions).not.toContain("*");

      const rolesBefore = await rolesOf(apiKey);
      for (const permissions of [["*"], ["tenant:*"], ["tenant:delete"], ["chats:read", "tenant:update"]]) {
        await fails(world.url, CreateRole, { input: { name: unique("grab"), permissions } }, asAdmin, "FORBIDDEN");
      }
      expect(await rolesOf(apiKey)).toEqual(rolesBefore);

      // What the admin holds they may hand on, wildcards included.
      const own = await ok(
        world.url,
        CreateRole,
        { input: { name: "delegate", permissions: ["chats:read", "rbac:*", "tenant:read"] } },
        asAdmin,
      );
      const delegate = own.createRole.id;

      // Adding a permission they do not hold, to a custom or a system role.
      await fails(
        world.url,
        UpdateRole,
        { id: delegate, input: { permissions: ["chats:read", "tenant:update"] } },
        asAdmin,
        "FORBIDDEN",
      );
      await fails(world.url, UpdateRole, { id: delegate, input: { permissions: ["*"] } }, asAdmin, "FORBIDDEN");
      await fails(
        world.url,
        UpdateRole,
        { id: ids.admin as string, input: { permissions: ["tenant:*", "users:*", "groups:*", "chats:*", "rbac:*"] } },
        asAdmin,
        "FORBIDDEN",
      );
      await fails(
        world.url,
        UpdateRole,
        { id: ids.member as string, input: { permissions: ["tenant:delete"] } },
        asAdmin,
        "FORBIDDEN",
      );
      // Editing owner, by anyone.
      await fails(
        world.url,
        UpdateRole,
        { id: ids.owner as string, input: { description: "x" } },
        asAdmin,
        "FORBIDDEN",
      );
      await fails(
        world.url,
        UpdateRole,
        { id: ids.owner as string, input: { description: "x" } },
        { token: owner.token },
        "FORBIDDEN",
      );

      // A role holding more than the admin cannot be handed out (or deleted) by them either.
      const powerful = await createRoleWithKey(apiKey, ["tenant:update"], "powerful");
      await fails(world.url, AssignRole, { userId: admin.id, roleId: powerful }, asAdmin, "FORBIDDEN");
      await fails(world.url, AssignRole, { userId: bob.id, roleId: powerful }, asAdmin, "FORBIDDEN");
      await fails(world.url, DeleteRole, { id: powerful }, asAdmin, "FORBIDDEN");

      // Owner: not to themselves, not to others, and not taken from an owner.
      await fails(world.url, AssignRole, { userId: admin.id, roleId: ids.owner as string }, asAdmin, "FORBIDDEN");
      await fails(world.url, AssignRole, { userId: bob.id, roleId: ids.owner as string }, asAdmin, "FORBIDDEN");
      await fails(world.url, UnassignRole, { userId: owner.id, roleId: ids.owner as string }, asAdmin, "FORBIDDEN");

      // Nothing changed.
      const rolesAfter = await rolesOf(apiKey);
      expect(rolesAfter.filter((r) => r.id !== delegate && r.id !== powerful)).toEqual(rolesBefore);
      expect(rolesAfter.find((r) => r.id === delegate)?.permissions).toEqual(["chats:read", "rbac:*", "tenant:read"]);
      expect(await roleNamesOf(apiKey, owner.id)).toEqual(["owner"]);
      expect(await roleNamesOf(apiKey, admin.id)).toEqual(["admin"]);
      expect(await roleNamesOf(apiKey, bob.id)).toEqual(["member"]);
      const adminAfter = (await ok(world.url, Viewer, {}, asAdmin)).viewer.permissions;
      expect([...adminAfter].sort()).toEqual([...adminPermissions].sort());
      await fails(world.url, UpdateTenant, { input: { name: "Taken" } }, asAdmin, "FORBIDDEN");

      // The owner, who holds `*`, may do all of it.
      await ok(world.url, AssignRole, { userId: bob.id, roleId: powerful }, { token: owner.token });
      await ok(world.url, AssignRole, { userId: bob.id, roleId: ids.owner as string }, { token: owner.token });
      expect(await roleNamesOf(apiKey, bob.id)).toEqual(["member", "owner", "powerful"]);
    });

    it("changing the default role grants it: tenant:update alone cannot make new users owners", async () => {
      const tenant = await createTenant(world.url, ["Manager"]);
      const apiKey = tenant.apiKey;
      const [manager] = tenant.users as [TestUser];
      await createRoleWithKey(apiKey, ["tenant:update", "users:create", "users:read"], "tenant-manager");
      await shapeRoles(apiKey, manager.id, ["tenant-manager"]);
      const asManager = { token: manager.token };
      const ids = await roleIds(apiKey);
      const defaultBefore = (await ok(world.url, TenantWithDefaultRole, {}, { apiKey })).tenant.defaultRole;
      expect(defaultBefore?.name).toBe("member");

      // The manager may rename the tenant (tenant:update)...
      await ok(world.url, UpdateTenant, { input: { name: "Renamed by manager" } }, asManager);
      // ...but not make a role they do not hold the default for every new user.
      for (const name of ["owner", "admin"]) {
        await fails(world.url, UpdateTenant, { input: { defaultRoleId: ids[name] } }, asManager, "FORBIDDEN");
      }
      expect((await ok(world.url, TenantWithDefaultRole, {}, { apiKey })).tenant.defaultRole).toEqual(defaultBefore);
      const created = await ok(world.url, CreateUser, { input: { name: "Fresh" } }, asManager);
      expect(await roleNamesOf(apiKey, created.createUser.id)).toEqual(["member"]);
    });

    it("the last owner cannot be removed, deleted or deactivated; with two owners one may go", async () => {
      const tenant = await createTenant(world.url, ["First", "Second", "Third", "Admin"]);
      const apiKey = tenant.apiKey;
      const [first, second, third, admin] = users4(tenant);
      const ids = await roleIds(apiKey);
      const ownerId = ids.owner as string;
      await shapeRoles(apiKey, first.id, ["owner"]);
      await shapeRoles(apiKey, admin.id, ["admin"]);

      // Only one owner: every way of removing them is a CONFLICT, for the API key and the owner alike.
      for (const auth of [{ apiKey }, { token: first.token }]) {
        await fails(world.url, UnassignRole, { userId: first.id, roleId: ownerId }, auth, "CONFLICT");
        await fails(world.url, DeleteUser, { id: first.id }, auth, "CONFLICT");
        await fails(world.url, UpdateUser, { id: first.id, input: { active: false } }, auth, "CONFLICT");
      }
      const { user } = await ok(world.url, UserRoles, { id: first.id }, { apiKey });
      expect(user).toMatchObject({ id: first.id, active: true, roles: [{ name: "owner" }] });
      await ok(world.url, Viewer, {}, { token: first.token });

      // Three owners: one may be unassigned, one deactivated; then the last active one stays.
      await ok(world.url, AssignRole, { userId: second.id, roleId: ownerId }, { apiKey });
      await ok(world.url, AssignRole, { userId: third.id, roleId: ownerId }, { token: first.token });
      await ok(world.url, UnassignRole, { userId: third.id, roleId: ownerId }, { token: first.token });
      expect(await roleNamesOf(apiKey, third.id)).toEqual(["member"]);
      await ok(world.url, UpdateUser, { id: second.id, input: { active: false } }, { apiKey });
      // An inactive owner does not count: first is the last one again.
      await fails(world.url, DeleteUser, { id: first.id }, { apiKey }, "CONFLICT");
      await fails(world.url, UnassignRole, { userId: first.id, roleId: ownerId }, { apiKey }, "CONFLICT");
      await fails(world.url, UpdateUser, { id: first.id, input: { active: false } }, { apiKey }, "CONFLICT");

      // Reactivated, the second owner lets the first be deleted. Deactivation ended their
      // tokens, so they need a fresh one.
      await ok(world.url, UpdateUser, { id: second.id, input: { active: true } }, { apiKey });
      await fails(world.url, Viewer, {}, { token: second.token }, "UNAUTHENTICATED");
      const fresh = await ok(world.url, IssueUserToken, { userId: second.id }, { apiKey });
      await ok(world.url, DeleteUser, { id: first.id }, { token: fresh.issueUserToken.token });
      await fails(world.url, Viewer, {}, { token: first.token }, "UNAUTHENTICATED");
      // The survivor is now the last owner.
      await fails(world.url, UnassignRole, { userId: second.id, roleId: ownerId }, { apiKey }, "CONFLICT");
      await fails(world.url, DeleteUser, { id: second.id }, { apiKey }, "CONFLICT");
      // Admins cannot take owner away at all; that stays FORBIDDEN, not CONFLICT.
      await fails(world.url, UnassignRole, { userId: second.id, roleId: ownerId }, { token: admin.token }, "FORBIDDEN");
      expect(await roleNamesOf(apiKey, second.id)).toEqual(["member", "owner"]);
    });

    it("users edit only their own messages; deleting needs chats:delete (own) or chats:moderate (others')", async () => {
      const tenant = await createTenant(world.url, ["Alice", "Bob", "Moderator", "Owner"]);
      const apiKey = tenant.apiKey;
      const [alice, bob, moderator, owner] = users4(tenant);
      await shapeRoles(apiKey, moderator.id, ["admin"]);
      await shapeRoles(apiKey, owner.id, ["owner"]);
      await createRoleWithKey(apiKey, ["chats:create", "chats:read", "chats:update"], "no-delete");
      await createRoleWithKey(apiKey, ["chats:read", "chats:moderate"], "mod-only");
      const extra = await createUserWithToken(world.url, apiKey, "Extra");
      const pureMod = await createUserWithToken(world.url, apiKey, "PureMod");
      await shapeRoles(apiKey, extra.id, ["no-delete"]);
      await shapeRoles(apiKey, pureMod.id, ["mod-only"]);
      const groupId = await groupWith(apiKey, [alice.id, bob.id, moderator.id, owner.id, extra.id, pureMod.id]);

      const sent = await ok(world.url, SendMessage, { input: { conversationId: groupId, body: "original" } }, alice);
      const messageId = sent.sendMessage.id;
      for (const editor of [bob, moderator, owner, pureMod]) {
        await fails(world.url, EditMessage, { id: messageId, body: "hijacked" }, { token: editor.token }, "FORBIDDEN");
      }
      const untouched = await ok(world.url, Messages, { first: 100, conversationId: groupId }, { apiKey });
      expect(untouched.messages.edges.find((e) => e.node.id === messageId)?.node).toMatchObject({
        body: "original",
        editedAt: null,
      });
      const edited = await ok(world.url, EditMessage, { id: messageId, body: "changed" }, { token: alice.token });
      expect(edited.editMessage.body).toBe("changed");
      expect(edited.editMessage.editedAt).toBeTruthy();

      // Others' messages: members may not delete them; moderators (chats:moderate) may.
      await fails(world.url, DeleteMessage, { id: messageId }, { token: bob.token }, "FORBIDDEN");
      await fails(world.url, DeleteMessage, { id: messageId }, { token: extra.token }, "FORBIDDEN");
      const stillThere = await ok(world.url, Messages, { first: 100, conversationId: groupId }, { apiKey });
      expect(stillThere.messages.edges.find((e) => e.node.id === messageId)?.node).toMatchObject({
        body: "changed",
        deletedAt: null,
      });
      const moderated = await ok(world.url, DeleteMessage, { id: messageId }, { token: pureMod.token });
      expect(moderated.deleteMessage).toMatchObject({ id: messageId, body: null, deletedBy: { id: pureMod.id } });
      expect(moderated.deleteMessage.deletedAt).toBeTruthy();

      // Own messages: chats:delete is needed, chats:moderate alone is not enough.
      const own = await ok(world.url, SendMessage, { input: { conversationId: groupId, body: "mine" } }, alice);
      const tombstone = await ok(world.url, DeleteMessage, { id: own.sendMessage.id }, { token: alice.token });
      expect(tombstone.deleteMessage).toMatchObject({ body: null, deletedBy: { id: alice.id } });
      expect(tombstone.deleteMessage.deletedAt).toBeTruthy();
      const extrasOwn = await ok(world.url, SendMessage, { input: { conversationId: groupId, body: "keep" } }, extra);
      await fails(world.url, DeleteMessage, { id: extrasOwn.sendMessage.id }, { token: extra.token }, "FORBIDDEN");
      const modsOwn = await sendAs(apiKey, pureMod.id, groupId, "mod's own");
      await fails(world.url, DeleteMessage, { id: modsOwn }, { token: pureMod.token }, "FORBIDDEN");

      // Everybody sees the tombstones with who deleted them.
      const history = await ok(world.url, Messages, { first: 100, conversationId: groupId }, { token: bob.token });
      const byId = Object.fromEntries(history.messages.edges.map((e) => [e.node.id, e.node]));
      expect(byId[messageId]).toMatchObject({ body: null, deletedBy: { id: pureMod.id } });
      expect(byId[own.sendMessage.id]).toMatchObject({ body: null, deletedBy: { id: alice.id } });
      expect(byId[extrasOwn.sendMessage.id]).toMatchObject({ body: "keep", deletedAt: null, deletedBy: null });
      expect(byId[modsOwn]).toMatchObject({ body: "mod's own", deletedAt: null });
      // A deleted message cannot be edited back to life.
      await fails(
        world.url,
        EditMessage,
        { id: own.sendMessage.id, body: "back" },
        { token: alice.token },
        "BAD_USER_INPUT",
      );
    });
  });
});
