import { PERMISSION_CATALOG } from "../auth/permissions.ts";
import * as roles from "../services/roles.ts";
import { rule } from "../services/validation.ts";
import { builder } from "./builder.ts";

export const RoleRef = builder.prismaObject("Role", {
  description: "A named set of permissions that users of the tenant can hold.",
  // Everyone sees the roles they hold; seeing other roles needs rbac:read.
  authScopes: (role) => ({ $any: { permission: "rbac:read", ownRole: role.id } }),
  fields: (t) => ({
    id: t.exposeID("id", { description: "Role id." }),
    name: t.exposeString("name", { description: "Unique name inside the tenant." }),
    description: t.exposeString("description", { nullable: true, description: "What the role is for." }),
    permissions: t.exposeStringList("permissions", {
      description: "`resource:action` strings; `resource:*` and `*` are wildcards.",
    }),
    system: t.boolean({
      description: "True for owner, admin and member: they cannot be deleted, and owner cannot be edited.",
      resolve: (role) => role.systemKey !== null,
    }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When the role was created." }),
    updatedAt: t.expose("updatedAt", { type: "DateTime", description: "When the role last changed." }),
  }),
});

const role = roles.createRoleInput.shape;
const CreateRoleInput = builder.inputType("CreateRoleInput", {
  description: "A new role. You can only grant permissions you hold.",
  fields: (t) => ({
    name: t.string({ required: true, description: `Unique name, ${rule(role.name)}.` }),
    description: t.string({ description: `What the role is for, ${rule(role.description)}.` }),
    permissions: t.stringList({
      required: true,
      description: `Permissions from permissionCatalog, or wildcards; ${rule(role.permissions)}.`,
    }),
  }),
});

const roleChanges = roles.updateRoleInput.shape;
const UpdateRoleInput = builder.inputType("UpdateRoleInput", {
  description: "Changes to a role; omitted fields stay as they are. System roles keep their names.",
  fields: (t) => ({
    name: t.string({ description: `Unique name, ${rule(roleChanges.name)}.` }),
    description: t.string({ description: `What the role is for, ${rule(roleChanges.description)}; null clears it.` }),
    permissions: t.stringList({
      description: `The complete new list of permissions, ${rule(roleChanges.permissions)}.`,
    }),
  }),
});

builder.queryFields((t) => ({
  role: t.prismaField({
    type: "Role",
    nullable: true,
    description: "A role of the tenant, or null.",
    authScopes: { permission: "rbac:read" },
    args: { id: t.arg.id({ required: true, description: "Role id." }) },
    resolve: async (_query, _root, { id }, ctx) => {
      try {
        return await roles.requireRole(ctx, id);
      } catch (error) {
        if ((error as { extensions?: { code?: string } }).extensions?.code === "NOT_FOUND") return null;
        throw error;
      }
    },
  }),
  roles: t.prismaField({
    type: ["Role"],
    description: "Every role of the tenant, system roles first.",
    authScopes: { permission: "rbac:read" },
    resolve: (_query, _root, _args, ctx) => roles.listRoles(ctx),
  }),
  permissionCatalog: t.stringList({
    description: "Every permission a role can hold. Roles may also use `resource:*` wildcards and `*` (everything).",
    authScopes: { authenticated: true },
    resolve: () => [...PERMISSION_CATALOG],
  }),
}));

builder.mutationFields((t) => ({
  createRole: t.prismaField({
    type: "Role",
    description: "Creates a role. Unknown permissions are BAD_USER_INPUT; ones you do not hold are FORBIDDEN.",
    authScopes: { permission: "rbac:create" },
    args: { input: t.arg({ type: CreateRoleInput, required: true, description: "The new role." }) },
    resolve: (_query, _root, { input }, ctx) => roles.createRole(ctx, input),
  }),
  updateRole: t.prismaField({
    type: "Role",
    description: "Changes a role; holders' permissions change at once. The owner role cannot be edited.",
    authScopes: { permission: "rbac:update" },
    args: {
      id: t.arg.id({ required: true, description: "Role id." }),
      input: t.arg({ type: UpdateRoleInput, required: true, description: "The changes." }),
    },
    resolve: (_query, _root, { id, input }, ctx) => roles.updateRole(ctx, id, input),
  }),
  deleteRole: t.id({
    description: "Deletes a custom role and its assignments. System roles and the default role cannot be deleted.",
    authScopes: { permission: "rbac:delete" },
    args: { id: t.arg.id({ required: true, description: "Role id." }) },
    resolve: (_root, { id }, ctx) => roles.deleteRole(ctx, id),
  }),
  assignRole: t.prismaField({
    type: "User",
    description: "Gives a user a role (idempotent). You can only assign roles whose permissions you hold.",
    authScopes: { permission: "rbac:update" },
    args: {
      userId: t.arg.id({ required: true, description: "The user." }),
      roleId: t.arg.id({ required: true, description: "The role." }),
    },
    resolve: (_query, _root, args, ctx) => roles.assignRole(ctx, args.userId, args.roleId),
  }),
  unassignRole: t.prismaField({
    type: "User",
    description: "Takes a role from a user (idempotent). The tenant's last owner keeps the owner role.",
    authScopes: { permission: "rbac:update" },
    args: {
      userId: t.arg.id({ required: true, description: "The user." }),
      roleId: t.arg.id({ required: true, description: "The role." }),
    },
    resolve: (_query, _root, args, ctx) => roles.unassignRole(ctx, args.userId, args.roleId),
  }),
}));
