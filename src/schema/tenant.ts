import * as tenantData from "../services/tenant-data.ts";
import * as tenants from "../services/tenants.ts";
import { rule } from "../services/validation.ts";
import { TenantAuthSettingsInput } from "./account.ts";
import { builder } from "./builder.ts";
import { WordFilterInput } from "./safety.ts";

export const TenantRef = builder.prismaObject("Tenant", {
  description: "A company using the chat API. Every other object belongs to exactly one tenant.",
  // Reachable only as the caller's own tenant, or in the payload of the createTenant that made it.
  authScopes: { public: true },
  fields: (t) => ({
    id: t.exposeID("id", { description: "Tenant id." }),
    name: t.exposeString("name", { description: "Display name of the tenant." }),
    active: t.exposeBoolean("active", { description: "Inactive tenants cannot authenticate." }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When the tenant was created." }),
    embedOrigins: t.exposeStringList("embedOrigins", {
      description:
        "Origins allowed to embed the UI pages (/ui/*) in a frame (their Content-Security-Policy frame-ancestors, besides the server's own origin); `*` is any origin. Needs tenant:read.",
      authScopes: { permission: "tenant:read" },
    }),
    defaultRole: t.prismaField({
      type: "Role",
      nullable: true,
      description: "The role new users get.",
      authScopes: { permission: "rbac:read" },
      resolve: (query, tenant, _args, ctx) =>
        tenant.defaultRoleId ? ctx.prisma.role.findFirst({ ...query, where: { id: tenant.defaultRoleId } }) : null,
    }),
  }),
});

const CreateTenantPayload = builder
  .objectRef<{ tenant: { id: string }; apiKey: string }>("CreateTenantPayload")
  .implement({
    authScopes: { public: true },
    description: "The new tenant and its API key. The key is shown only here; store it safely.",
    fields: (t) => ({
      tenant: t.field({ type: TenantRef, description: "The created tenant.", resolve: (p) => p.tenant as never }),
      apiKey: t.exposeString("apiKey", { description: "Secret API key; send it as the X-API-Key header." }),
    }),
  });

const RotateApiKeyPayload = builder.objectRef<{ apiKey: string }>("RotateApiKeyPayload").implement({
  authScopes: { service: true },
  description: "A freshly issued API key; every earlier key stopped working.",
  fields: (t) => ({
    apiKey: t.exposeString("apiKey", { description: "The new secret API key, shown only once." }),
  }),
});

const CreateTenantInput = builder.inputType("CreateTenantInput", {
  description: "A new tenant.",
  fields: (t) => ({
    name: t.string({ required: true, description: `Display name, ${rule(tenants.createTenantInput.shape.name)}.` }),
  }),
});

const UpdateTenantInput = builder.inputType("UpdateTenantInput", {
  description: "Changes to the tenant; omitted fields stay as they are.",
  fields: (t) => ({
    name: t.string({ description: `Display name, ${rule(tenants.updateTenantInput.shape.name)}.` }),
    defaultRoleId: t.id({ description: "The role new users get." }),
    auth: t.field({ type: TenantAuthSettingsInput, description: "How end users sign in." }),
    wordFilter: t.field({ type: WordFilterInput, description: "The word filter of the tenant's messages." }),
    embedOrigins: t.stringList({
      description: `Origins allowed to embed the UI pages (/ui/*) in a frame, ${rule(tenants.updateTenantInput.shape.embedOrigins)}; lower-cased, duplicates dropped; replaces the list (empty: only the server's own origin).`,
    }),
  }),
});

builder.queryField("tenant", (t) =>
  t.prismaField({
    type: "Tenant",
    description: "The tenant of the current credentials.",
    authScopes: { authenticated: true },
    resolve: (_query, _root, _args, ctx) => tenants.getTenant(ctx),
  }),
);

builder.mutationFields((t) => ({
  createTenant: t.field({
    type: CreateTenantPayload,
    description:
      "Creates a tenant and returns its API key once. Open to anyone unless the server sets PLATFORM_ADMIN_KEY (required in production mode); then the X-Platform-Admin-Key header must carry it.",
    authScopes: { platformAdmin: true },
    args: { input: t.arg({ type: CreateTenantInput, required: true, description: "The new tenant." }) },
    resolve: (_root, { input }, ctx) => tenants.createTenant(ctx, input),
  }),
  updateTenant: t.prismaField({
    type: "Tenant",
    description: "Updates the tenant of the current credentials.",
    authScopes: { permission: "tenant:update" },
    args: { input: t.arg({ type: UpdateTenantInput, required: true, description: "The changes." }) },
    resolve: (_query, _root, { input }, ctx) => tenants.updateTenant(ctx, input),
  }),
  deleteTenant: t.boolean({
    // The resolver decides which tenant each of the two may delete.
    authScopes: { $any: { service: true, platformAdmin: true } },
    description:
      "Deletes a tenant and everything it holds, at once and for good: users, conversations, messages, files, keys; its sockets close on every instance. With the tenant's API key: that tenant. With the platform admin key (X-Platform-Admin-Key; only where PLATFORM_ADMIN_KEY is set): the tenant named by tenantId. confirmName must be the tenant's name (BAD_USER_INPUT otherwise).",
    args: {
      confirmName: t.arg.string({
        required: true,
        description: "The tenant's name, exactly: a guard against deleting the wrong one.",
      }),
      tenantId: t.arg.id({
        description: "The tenant to delete; required with the platform admin key, else the API key's own.",
      }),
    },
    resolve: (_root, { confirmName, tenantId }, ctx) =>
      tenantData.deleteTenant(ctx, confirmName, tenantId ? String(tenantId) : null),
  }),
  rotateApiKey: t.field({
    type: RotateApiKeyPayload,
    description: "Issues a new API key and revokes every earlier one at once. Needs the API key itself.",
    authScopes: { service: true },
    resolve: (_root, _args, ctx) => tenants.rotateApiKey(ctx),
  }),
}));
