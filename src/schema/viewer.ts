import { type GraphQLResolveInfo, Kind } from "graphql";
import type { Principal } from "../auth/principal.ts";
import type { User } from "../generated/prisma/client.ts";
import { builder } from "./builder.ts";

const ViewerRef = builder.objectRef<{ principal: Principal }>("Viewer").implement({
  description: "Who the current credentials act as.",
  authScopes: { authenticated: true },
  fields: (t) => ({
    user: t.prismaField({
      type: "User",
      nullable: true,
      description: "The user behind a Bearer token; null for the API key (service principal).",
      resolve: (query, viewer, _args, ctx, info) => {
        if (viewer.principal.kind !== "user") return null;
        // Who am I (`user { id }`) needs no read: the credentials were checked against an active user.
        if (selectsOnlyId(info)) return { id: viewer.principal.userId } as User;
        return ctx.prisma.user.findUnique({ ...query, where: { id: viewer.principal.userId } });
      },
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
      description: "Effective permissions: the union of the user's roles (`*` for the API key).",
      resolve: async (_viewer, _args, ctx) => [...(await ctx.permissions())],
    }),
    roles: t.prismaField({
      type: ["Role"],
      description: "The user's roles (empty for the API key).",
      resolve: (query, viewer, _args, ctx) =>
        viewer.principal.kind === "user"
          ? ctx.prisma.role.findMany({
              ...query,
              where: { assignments: { some: { userId: viewer.principal.userId } } },
            })
          : [],
    }),
  }),
});

builder.queryField("viewer", (t) =>
  t.field({
    type: ViewerRef,
    description: "The principal of the current credentials.",
    authScopes: { authenticated: true },
    resolve: (_root, _args, ctx) => ({ principal: ctx.principal as Principal }),
  }),
);

/** Whether the field's selection is `id` (and `__typename`) alone, without fragments or directives. */
function selectsOnlyId(info: GraphQLResolveInfo): boolean {
  return info.fieldNodes.every((node) =>
    (node.selectionSet?.selections ?? []).every(
      (selection) =>
        selection.kind === Kind.FIELD &&
        !selection.directives?.length &&
        (selection.name.value === "id" || selection.name.value === "__typename"),
    ),
  );
}
