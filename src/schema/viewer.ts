import type { Principal } from "../auth/principal.ts";
import { builder } from "./builder.ts";

const ViewerRef = builder.objectRef<{ principal: Principal; permissions: readonly string[] }>("Viewer").implement({
  description: "Who the current credentials act as.",
  fields: (t) => ({
    user: t.prismaField({
      type: "User",
      nullable: true,
      description: "The user behind a Bearer token; null for the API key (service principal).",
      resolve: (query, viewer, _args, ctx) =>
        viewer.principal.kind === "user"
          ? ctx.prisma.user.findUnique({ ...query, where: { id: viewer.principal.userId } })
          : null,
    }),
    tenant: t.prismaField({
      type: "Tenant",
      description: "The tenant the credentials belong to.",
      resolve: (query, viewer, _args, ctx) =>
        ctx.prisma.tenant.findUniqueOrThrow({ ...query, where: { id: viewer.principal.tenantId } }),
    }),
    isService: t.boolean({
      description: "True when acting with the tenant's API key.",
      resolve: (viewer) => viewer.principal.kind === "service",
    }),
    permissions: t.stringList({
      description: "Permissions held, as `resource:action` strings (`*` means all).",
      resolve: (viewer) => [...viewer.permissions],
    }),
  }),
});

builder.queryField("viewer", (t) =>
  t.field({
    type: ViewerRef,
    description: "The principal of the current credentials.",
    authScopes: { authenticated: true },
    resolve: (_root, _args, ctx) => ({ principal: ctx.principal as Principal, permissions: ctx.permissions }),
  }),
);
