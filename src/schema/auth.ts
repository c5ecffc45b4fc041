import { issueUserToken, revokeUserTokens, USER_TOKEN_TTL } from "../services/users.ts";
import { builder } from "./builder.ts";

const AuthTokenRef = builder.objectRef<{ token: string; expiresAt: Date }>("AuthToken").implement({
  // Returned only by issueUserToken, which the API key alone may call.
  authScopes: { public: true },
  description: "A signed user token; send it as `Authorization: Bearer <token>` or in connection_init.",
  fields: (t) => ({
    token: t.exposeString("token", { description: "The JWT." }),
    expiresAt: t.expose("expiresAt", { type: "DateTime", description: "When it stops being accepted." }),
  }),
});

builder.mutationField("issueUserToken", (t) =>
  t.field({
    type: AuthTokenRef,
    description: "Mints a token for a user of the tenant (API key only). Default lifetime USER_TOKEN_TTL_SECONDS.",
    authScopes: { service: true },
    args: {
      userId: t.arg.id({ required: true, description: "The user." }),
      expiresInSeconds: t.arg.int({
        description: `Lifetime in seconds, ${USER_TOKEN_TTL.min} to ${USER_TOKEN_TTL.max} (${USER_TOKEN_TTL.max / 86_400} days).`,
      }),
    },
    resolve: (_root, args, ctx) => issueUserToken(ctx, args.userId, args.expiresInSeconds),
  }),
);

builder.mutationField("revokeUserTokens", (t) =>
  t.boolean({
    description:
      "Revokes every token of a user: they stop working on HTTP at once and the user's sockets close with 4403. Users may revoke their own; others need users:update.",
    authScopes: { authenticated: true },
    args: { userId: t.arg.id({ required: true, description: "The user." }) },
    resolve: (_root, args, ctx) => revokeUserTokens(ctx, args.userId),
  }),
);
