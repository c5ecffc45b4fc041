import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { fails, ok } from "../helpers/client.ts";
import { createTenant, createUserWithToken, type TestUser } from "../helpers/fixtures.ts";
import { useServer } from "../helpers/world.ts";
import {
  AssignRole,
  CreateRole,
  DeleteRole,
  PermissionCatalog,
  Role,
  UnassignRole,
  UpdateRole,
} from "../operations/roles.ts";
import { TenantWithDefaultRole, UpdateTenant } from "../operations/tenants.ts";
import { Viewer } from "../operations/users.ts";
import { CATALOG, permissionHelpers, RESOURCES, UUID, unique } from "./helpers.ts";

/** Roles CRUD: the permission catalog, system and custom roles, assigning and unassigning them. */
describe.each(backends())("roles, permissions and tenant isolation on %s", (backend) => {
  const world = useServer(backend);
  const { rolesOf, roleIds, roleNamesOf, createRoleWithKey, expectRoleList } = permissionHelpers(world);

  describe("roles CRUD", () => {
    it("permissionCatalog lists exactly the 21 resource:action permissions, for any signed-in principal", async () => {
      expect(CATALOG).toHaveLength(21);
      const tenant = await createTenant(world.url, ["Reader"]);
      const [reader] = tenant.users as [TestUser];
      const asService = await ok(world.url, PermissionCatalog, {}, { apiKey: tenant.apiKey });
      expect([...asService.permissionCatalog].sort()).toEqual([...CATALOG].sort());
      expect(new Set(asService.permissionCatalog).size).toBe(21);
      const asUser = await ok(world.url, PermissionCatalog, {}, { token: reader.token });
      expect([...asUser.permissionCatalog].sort()).toEqual([...CATALOG].sort());
      await fails(world.url, PermissionCatalog, {}, {}, "UNAUTHENTICATED");
    });

    it("each tenant starts with the system roles owner (*), admin and member; new users get member", async () => {
      const tenant = await createTenant(world.url, ["Newbie"]);
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
      const { tenant: info } = await ok(world.url, TenantWithDefaultRole, {}, { apiKey: tenant.apiKey });
      expect(info.defaultRole).toEqual({ id: byName.member?.id, name: "member" });
      expect(await roleNamesOf(tenant.apiKey, newbie.id)).toEqual(["member"]);
      const viewer = await ok(world.url, Viewer, {}, { token: newbie.token });
      expect([...viewer.viewer.permissions].sort()).toEqual([...(byName.member?.permissions ?? [])].sort());

      // Another tenant has its own, distinct system roles.
      const other = await createTenant(world.url, []);
      const otherRoles = await rolesOf(other.apiKey);
      expectRoleList(otherRoles, []);
      expect(otherRoles.map((r) => r.id).filter((id) => roles.some((r) => r.id === id))).toEqual([]);
    });

    it("createRole, role, roles, updateRole, deleteRole, assignRole and unassignRole", async () => {
      const tenant = await createTenant(world.url, ["Holder"]);
      const apiKey = tenant.apiKey;
      const [holder] = tenant.users as [TestUser];

      const { createRole } = await ok(
        world.url,
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

      const fetched = await ok(world.url, Role, { id: createRole.id }, { apiKey });
      expect(fetched.role).toEqual(createRole);
      expectRoleList(await rolesOf(apiKey), ["support"]);

      const { updateRole } = await ok(
        world.url,
        UpdateRole,
        { id: createRole.id, input: { name: "helpdesk", description: null, permissions: ["chats:*"] } },
        { apiKey },
      );
      expect(updateRole).toMatchObject({ id: createRole.id, name: "helpdesk", description: null });
      expect(updateRole.permissions).toEqual(["chats:*"]);
      // Omitted fields stay as they are.
      const renamedOnly = await ok(
        world.url,
        UpdateRole,
        { id: createRole.id, input: { description: "x" } },
        { apiKey },
      );
      expect(renamedOnly.updateRole).toMatchObject({ name: "helpdesk", description: "x", permissions: ["chats:*"] });

      await ok(world.url, AssignRole, { userId: holder.id, roleId: createRole.id }, { apiKey });
      // Assigning twice is idempotent.
      await ok(world.url, AssignRole, { userId: holder.id, roleId: createRole.id }, { apiKey });
      expect(await roleNamesOf(apiKey, holder.id)).toEqual(["helpdesk", "member"]);
      await ok(world.url, UnassignRole, { userId: holder.id, roleId: createRole.id }, { apiKey });
      await ok(world.url, UnassignRole, { userId: holder.id, roleId: createRole.id }, { apiKey });
      expect(await roleNamesOf(apiKey, holder.id)).toEqual(["member"]);

      // Deleting a role removes it and its assignments.
      await ok(world.url, AssignRole, { userId: holder.id, roleId: createRole.id }, { apiKey });
      const { deleteRole } = await ok(world.url, DeleteRole, { id: createRole.id }, { apiKey });
      expect(deleteRole).toBe(createRole.id);
      expect((await ok(world.url, Role, { id: createRole.id }, { apiKey })).role).toBeNull();
      expectRoleList(await rolesOf(apiKey), []);
      expect(await roleNamesOf(apiKey, holder.id)).toEqual(["member"]);
      await fails(world.url, DeleteRole, { id: createRole.id }, { apiKey }, "NOT_FOUND");
      await fails(world.url, UpdateRole, { id: createRole.id, input: { name: "ghost" } }, { apiKey }, "NOT_FOUND");
    });

    it("validates permissions against the catalog, accepts wildcards and refuses duplicate names", async () => {
      const tenant = await createTenant(world.url, []);
      const apiKey = tenant.apiKey;

      for (const bad of ["chats:fly", "tenant:moderate", "users", "*:read", "rbac:**", "", "CHATS:READ"]) {
        const error = await fails(
          world.url,
          CreateRole,
          { input: { name: unique("bad"), permissions: ["chats:read", bad] } },
          { apiKey },
          "BAD_USER_INPUT",
        );
        expect(error.extensions?.field).toBe("input.permissions.1");
      }
      const role = await createRoleWithKey(apiKey, ["chats:read"], "checked");
      const updateError = await fails(
        world.url,
        UpdateRole,
        { id: role, input: { permissions: ["users:read", "users:fly"] } },
        { apiKey },
        "BAD_USER_INPUT",
      );
      expect(updateError.extensions?.field).toBe("input.permissions.1");
      expect((await ok(world.url, Role, { id: role }, { apiKey })).role?.permissions).toEqual(["chats:read"]);
      // Nothing was created by the refused calls.
      expectRoleList(await rolesOf(apiKey), ["checked"]);

      // Every catalog entry, every resource wildcard and `*` are accepted.
      const all = await ok(
        world.url,
        CreateRole,
        { input: { name: "everything", permissions: [...CATALOG, ...RESOURCES.map((r) => `${r}:*`), "*"] } },
        { apiKey },
      );
      expect(all.createRole.permissions).toHaveLength(27);
      const chats = await ok(
        world.url,
        CreateRole,
        { input: { name: "chatter", permissions: ["chats:*"] } },
        { apiKey },
      );
      expect(chats.createRole.permissions).toEqual(["chats:*"]);
      const star = await ok(world.url, CreateRole, { input: { name: "star", permissions: ["*"] } }, { apiKey });
      expect(star.createRole.permissions).toEqual(["*"]);

      // Names are unique inside the tenant: on create and on rename, system names included.
      for (const name of ["chatter", "owner", "member"]) {
        const error = await fails(world.url, CreateRole, { input: { name, permissions: [] } }, { apiKey }, "CONFLICT");
        expect(error.extensions?.field).toBe("input.name");
      }
      await fails(
        world.url,
        UpdateRole,
        { id: star.createRole.id, input: { name: "chatter" } },
        { apiKey },
        "CONFLICT",
      );
      expect((await ok(world.url, Role, { id: star.createRole.id }, { apiKey })).role?.name).toBe("star");
      // The same name in another tenant is fine.
      const other = await createTenant(world.url, []);
      await ok(world.url, CreateRole, { input: { name: "chatter", permissions: [] } }, { apiKey: other.apiKey });
    });

    it("system roles cannot be deleted, owner cannot be edited, system roles keep their names", async () => {
      const tenant = await createTenant(world.url, []);
      const apiKey = tenant.apiKey;
      const before = await rolesOf(apiKey);
      const ids = Object.fromEntries(before.map((r) => [r.name, r.id]));

      for (const name of ["owner", "admin", "member"]) {
        await fails(world.url, DeleteRole, { id: ids[name] as string }, { apiKey }, "FORBIDDEN");
      }
      await fails(
        world.url,
        UpdateRole,
        { id: ids.owner as string, input: { description: "mine" } },
        { apiKey },
        "FORBIDDEN",
      );
      await fails(
        world.url,
        UpdateRole,
        { id: ids.owner as string, input: { permissions: ["chats:read"] } },
        { apiKey },
        "FORBIDDEN",
      );
      for (const name of ["admin", "member"]) {
        const error = await fails(
          world.url,
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
        world.url,
        UpdateRole,
        { id: ids.member as string, input: { name: "member", description: "Everyone", permissions: ["chats:read"] } },
        { apiKey },
      );
      expect(edited.updateRole).toMatchObject({ name: "member", description: "Everyone", permissions: ["chats:read"] });
      expect(edited.updateRole.system).toBe(true);
    });

    it("updateTenant(defaultRoleId) changes the role new users get; the default role cannot be deleted", async () => {
      const tenant = await createTenant(world.url, []);
      const apiKey = tenant.apiKey;
      const guest = await createRoleWithKey(apiKey, ["chats:read"], "guest");
      const ids = await roleIds(apiKey);

      await ok(world.url, UpdateTenant, { input: { defaultRoleId: guest } }, { apiKey });
      const { tenant: info } = await ok(world.url, TenantWithDefaultRole, {}, { apiKey });
      expect(info.defaultRole).toEqual({ id: guest, name: "guest" });
      const newcomer = await createUserWithToken(world.url, apiKey, "Newcomer");
      expect(await roleNamesOf(apiKey, newcomer.id)).toEqual(["guest"]);
      const viewer = await ok(world.url, Viewer, {}, { token: newcomer.token });
      expect(viewer.viewer.permissions).toEqual(["chats:read"]);

      await fails(world.url, DeleteRole, { id: guest }, { apiKey }, "CONFLICT");
      expect((await ok(world.url, Role, { id: guest }, { apiKey })).role?.name).toBe("guest");
      expect(await roleNamesOf(apiKey, newcomer.id)).toEqual(["guest"]);
      // An id that is not a role of this tenant is refused and changes nothing.
      const other = await createTenant(world.url, []);
      const foreign = await createRoleWithKey(other.apiKey, [], "foreign");
      await fails(world.url, UpdateTenant, { input: { defaultRoleId: foreign } }, { apiKey }, "NOT_FOUND");
      expect((await ok(world.url, TenantWithDefaultRole, {}, { apiKey })).tenant.defaultRole?.id).toBe(guest);

      // Once it is no longer the default it can go; new users get member again.
      await ok(world.url, UpdateTenant, { input: { defaultRoleId: ids.member } }, { apiKey });
      await ok(world.url, DeleteRole, { id: guest }, { apiKey });
      const later = await createUserWithToken(world.url, apiKey, "Later");
      expect(await roleNamesOf(apiKey, later.id)).toEqual(["member"]);
      expect(await roleNamesOf(apiKey, newcomer.id)).toEqual([]);
    });
  });
});
