import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { type Auth, fails, ok, request } from "../helpers/client.ts";
import { createTenant, createUserWithToken } from "../helpers/fixtures.ts";
import { useServer } from "../helpers/world.ts";
import {
  AddMembers,
  Conversation,
  CreateGroup,
  DeleteGroup,
  RemoveMember,
  SetMemberRole,
  UpdateGroup,
} from "../operations/conversations.ts";
import { outcome, permissionHelpers } from "./helpers.ts";

/** Owners and admins of a group, and what the roles of the tenant add to them. */
describe.each(backends())("roles, permissions and tenant isolation on %s", (backend) => {
  const world = useServer(backend);
  const { createRoleWithKey, shapeRoles, memberRoles, users4 } = permissionHelpers(world);

  describe("group roles", () => {
    it("setMemberRole: owners set any role, admins only MEMBER<->ADMIN, members nothing", async () => {
      const tenant = await createTenant(world.url, ["Owner", "Admin", "Mia", "Max"]);
      const [owner, admin, mia, max] = users4(tenant);
      const created = await ok(
        world.url,
        CreateGroup,
        { input: { name: "Roles", memberIds: [admin.id, mia.id, max.id] } },
        { token: owner.token },
      );
      const groupId = created.createGroup.id;
      const asOwner = { token: owner.token };
      const asAdmin = { token: admin.token };
      const set = (auth: Auth, userId: string, role: "OWNER" | "ADMIN" | "MEMBER") =>
        request(world.url, SetMemberRole, { conversationId: groupId, userId, role }, auth);

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
      expect(
        outcome(await request(world.url, RemoveMember, { conversationId: groupId, userId: owner.id }, asAdmin)),
      ).toBe("FORBIDDEN");
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
      const tenant = await createTenant(world.url, ["Owner", "Admin", "Manager", "Mia"]);
      const apiKey = tenant.apiKey;
      const [owner, admin, manager, mia] = users4(tenant);
      await createRoleWithKey(apiKey, ["groups:update", "chats:read"], "group-manager");
      await shapeRoles(apiKey, manager.id, ["member", "group-manager"]);
      const created = await ok(
        world.url,
        CreateGroup,
        { input: { name: "Keeps", memberIds: [admin.id, manager.id, mia.id] } },
        { token: owner.token },
      );
      const groupId = created.createGroup.id;
      const asOwner = { token: owner.token };
      await ok(world.url, SetMemberRole, { conversationId: groupId, userId: admin.id, role: "ADMIN" }, asOwner);

      // The only owner cannot step down or leave while others remain.
      await fails(
        world.url,
        SetMemberRole,
        { conversationId: groupId, userId: owner.id, role: "ADMIN" },
        asOwner,
        "CONFLICT",
      );
      await fails(world.url, RemoveMember, { conversationId: groupId, userId: owner.id }, asOwner, "CONFLICT");
      expect((await memberRoles({ apiKey }, groupId))[owner.id]).toBe("OWNER");

      // With a second owner, the first may step down.
      await ok(world.url, SetMemberRole, { conversationId: groupId, userId: mia.id, role: "OWNER" }, asOwner);
      await ok(world.url, SetMemberRole, { conversationId: groupId, userId: owner.id, role: "MEMBER" }, asOwner);
      // And now mia is the last owner.
      await fails(
        world.url,
        SetMemberRole,
        { conversationId: groupId, userId: mia.id, role: "MEMBER" },
        { token: mia.token },
        "CONFLICT",
      );

      // The API key may leave the group without an owner.
      await ok(world.url, SetMemberRole, { conversationId: groupId, userId: mia.id, role: "MEMBER" }, { apiKey });
      expect(Object.values(await memberRoles({ apiKey }, groupId))).not.toContain("OWNER");
      // A groups:update holder who is a plain member acts as owner: makes and unmakes owners.
      const asManager = { token: manager.token };
      expect((await memberRoles({ apiKey }, groupId))[manager.id]).toBe("MEMBER");
      await ok(world.url, SetMemberRole, { conversationId: groupId, userId: owner.id, role: "OWNER" }, asManager);
      await ok(world.url, SetMemberRole, { conversationId: groupId, userId: owner.id, role: "ADMIN" }, asManager);
      expect(Object.values(await memberRoles({ apiKey }, groupId))).not.toContain("OWNER");
      await ok(world.url, SetMemberRole, { conversationId: groupId, userId: owner.id, role: "OWNER" }, asManager);
      // ...and may remove the last owner.
      await ok(world.url, RemoveMember, { conversationId: groupId, userId: owner.id }, asManager);
      expect(Object.keys(await memberRoles({ apiKey }, groupId))).not.toContain(owner.id);
      // The API key may too.
      await ok(world.url, SetMemberRole, { conversationId: groupId, userId: mia.id, role: "OWNER" }, { apiKey });
      await ok(world.url, RemoveMember, { conversationId: groupId, userId: mia.id }, { apiKey });
      expect(await memberRoles({ apiKey }, groupId)).toEqual({ [admin.id]: "ADMIN", [manager.id]: "MEMBER" });
    });

    it("groups:update renames a group its holder does not own; groups:delete deletes it", async () => {
      const tenant = await createTenant(world.url, ["Owner", "Admin", "Manager", "Deleter"]);
      const apiKey = tenant.apiKey;
      const [owner, admin, manager, deleter] = users4(tenant);
      await createRoleWithKey(apiKey, ["groups:update", "chats:read"], "renamer");
      await createRoleWithKey(apiKey, ["groups:delete", "chats:read"], "remover");
      await shapeRoles(apiKey, manager.id, ["renamer"]);
      await shapeRoles(apiKey, deleter.id, ["remover"]);
      const mia = await createUserWithToken(world.url, apiKey, "Mia");
      const created = await ok(
        world.url,
        CreateGroup,
        { input: { name: "Original", memberIds: [admin.id, manager.id, deleter.id, mia.id] } },
        { token: owner.token },
      );
      const groupId = created.createGroup.id;
      await ok(world.url, SetMemberRole, { conversationId: groupId, userId: admin.id, role: "ADMIN" }, { apiKey });

      // Renaming: owners, admins, and groups:update; not plain members or groups:delete holders.
      await fails(
        world.url,
        UpdateGroup,
        { id: groupId, input: { name: "By Mia" } },
        { token: mia.token },
        "FORBIDDEN",
      );
      await fails(
        world.url,
        UpdateGroup,
        { id: groupId, input: { name: "By Deleter" } },
        { token: deleter.token },
        "FORBIDDEN",
      );
      const renamed = await ok(
        world.url,
        UpdateGroup,
        { id: groupId, input: { name: "Managed" } },
        { token: manager.token },
      );
      expect(renamed.updateGroup.name).toBe("Managed");
      await ok(world.url, UpdateGroup, { id: groupId, input: { name: "By admin" } }, { token: admin.token });
      // groups:update also manages members of a group it does not own.
      const joiner = await createUserWithToken(world.url, apiKey, "Joiner");
      await ok(world.url, AddMembers, { conversationId: groupId, userIds: [joiner.id] }, { token: manager.token });
      await ok(world.url, RemoveMember, { conversationId: groupId, userId: joiner.id }, { token: manager.token });

      // Deleting: owners or groups:delete; not group admins, plain members or groups:update.
      for (const user of [admin, mia, manager]) {
        await fails(world.url, DeleteGroup, { id: groupId }, { token: user.token }, "FORBIDDEN");
      }
      expect((await ok(world.url, Conversation, { id: groupId }, { apiKey })).conversation?.name).toBe("By admin");
      const { deleteGroup } = await ok(world.url, DeleteGroup, { id: groupId }, { token: deleter.token });
      expect(deleteGroup).toBe(groupId);
      await fails(world.url, Conversation, { id: groupId }, { apiKey }, "NOT_FOUND");
    });
  });
});
