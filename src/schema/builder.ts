import SchemaBuilder from "@pothos/core";
import PrismaPlugin from "@pothos/plugin-prisma";
import RelayPlugin from "@pothos/plugin-relay";
import ScopeAuthPlugin from "@pothos/plugin-scope-auth";
import { GraphQLError, Kind, valueFromASTUntyped } from "graphql";
import { grants } from "../auth/permissions.ts";
import type { Context } from "../context.ts";
import type PrismaTypes from "../generated/pothos-types.ts";
import { getDatamodel } from "../generated/pothos-types.ts";

export const builder = new SchemaBuilder<{
  Context: Context;
  PrismaTypes: PrismaTypes;
  DefaultFieldNullability: false;
  DefaultEdgesNullability: false;
  DefaultNodeNullability: false;
  AuthScopes: {
    /** Open to anyone; marks a deliberate decision that a field needs no credentials. */
    public: boolean;
    /** Any verified principal: a user token or the tenant's API key. */
    authenticated: boolean;
    /** The tenant's service principal (X-API-Key). */
    service: boolean;
    /** A user principal (Bearer token). */
    user: boolean;
    /** The principal holds this `resource:action` permission. */
    permission: string;
    /** The principal is this user. */
    self: string;
    /** The principal holds this role. */
    ownRole: string;
    /** Allowed to create tenants (anyone, unless PLATFORM_ADMIN_KEY is set). */
    platformAdmin: boolean;
  };
  Scalars: {
    DateTime: { Input: Date; Output: Date | string };
    ID: { Input: string; Output: string };
    File: { Input: File; Output: never };
    JSON: { Input: unknown; Output: unknown };
  };
}>({
  plugins: [ScopeAuthPlugin, PrismaPlugin, RelayPlugin],
  defaultFieldNullability: false,
  scopeAuth: {
    authorizeOnSubscribe: true,
    authScopes: (ctx) => ({
      public: true,
      authenticated: !!ctx.principal,
      service: ctx.principal?.kind === "service",
      user: ctx.principal?.kind === "user",
      permission: async (needed: string) => grants(await ctx.permissions(), needed),
      self: (userId: string) =>
        (ctx.principal?.kind === "user" && ctx.principal.userId === userId) || ctx.signedInUserId === userId,
      ownRole: async (roleId: string) => (await ctx.roleIds()).includes(roleId),
      platformAdmin: ctx.platformAdmin,
    }),
    unauthorizedError: (_parent, ctx) =>
      ctx.principal
        ? new GraphQLError("Not allowed", { extensions: { code: "FORBIDDEN" } })
        : new GraphQLError(ctx.authError ?? "Authentication required", {
            extensions: { code: "UNAUTHENTICATED" },
          }),
  },
  prisma: {
    client: (ctx) => ctx.prisma,
    dmmf: getDatamodel(),
    exposeDescriptions: false,
    filterConnectionTotalCount: true,
    onUnusedQuery: null,
  },
  relay: {
    clientMutationId: "omit",
    cursorType: "String",
    edgesFieldOptions: { nullable: false, description: "The items of this page, each with its cursor." },
    nodeFieldOptions: { nullable: false, description: "The item." },
    cursorFieldOptions: { description: "Opaque cursor of this item, for `after`/`before`." },
    pageInfoFieldOptions: { description: "Where this page sits in the whole list." },
    pageInfoTypeOptions: { description: "Pagination state of a connection." },
    hasNextPageFieldOptions: { description: "Whether items follow this page." },
    hasPreviousPageFieldOptions: { description: "Whether items precede this page." },
    startCursorFieldOptions: { description: "Cursor of the first item of this page." },
    endCursorFieldOptions: { description: "Cursor of the last item of this page." },
  },
});

builder.scalarType("DateTime", {
  description: "An instant in time, as an ISO 8601 string in UTC.",
  serialize: (value) => (value instanceof Date ? value : new Date(value)).toISOString(),
  parseValue: (value) => {
    const date = typeof value === "string" ? new Date(value) : null;
    if (!date || Number.isNaN(date.getTime())) {
      throw new GraphQLError("DateTime must be an ISO 8601 string", {
        extensions: { code: "BAD_USER_INPUT" },
      });
    }
    return date;
  },
  parseLiteral: (ast) => {
    const date = ast.kind === Kind.STRING ? new Date(ast.value) : null;
    if (!date || Number.isNaN(date.getTime())) {
      throw new GraphQLError("DateTime must be an ISO 8601 string", {
        extensions: { code: "BAD_USER_INPUT" },
      });
    }
    return date;
  },
});

builder.queryType({ description: "Reads. Every field needs credentials unless marked otherwise." });
builder.mutationType({ description: "Writes." });
builder.subscriptionType({ description: "Live events over graphql-ws." });

builder.scalarType("File", {
  description: "A file sent with a GraphQL multipart request (input only).",
  serialize: () => {
    throw new Error("File is an input-only scalar");
  },
});

builder.scalarType("JSON", {
  description:
    "A JSON value, as JSON in variables or as a GraphQL literal; each field that takes one says which values it accepts (CUSTOM message data: an object).",
  serialize: (value) => value,
  parseValue: (value) => value,
  // Literals become plain values; variables inside them are read from the operation's variables.
  parseLiteral: (ast, variables) => valueFromASTUntyped(ast, variables),
});
