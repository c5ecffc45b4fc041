import { badInput, forbidden } from "../errors.ts";
import { requireUser } from "../services/users.ts";
import { builder } from "./builder.ts";

const AuthTokenRef = builder.objectRef<{ token: string; expiresAt: Date }>("AuthToken").implement({
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
      expiresInSeconds: t.arg.int({ description: "Lifetime in seconds, 60 to 2592000 (30 days)." }),
    },
    resolve: async (_root, args, ctx) => {
      const ttl = args.expiresInSeconds ?? ctx.deps.config.userTokenTtlSeconds;
      if (!Number.isInteger(ttl) || ttl < 60 || ttl > 2_592_000) {
        throw badInput("expiresInSeconds", "expiresInSeconds must be between 60 and 2592000");
      }
      const user = await requireUser(ctx, args.userId, "userId");
      if (!user.active) {
        throw forbidden("The user is deactivated");
      }
      const { token, expiresAt } = await ctx.deps.tokens.issue(user.id, user.tenantId, ttl);
      return { token, expiresAt };
    },
  }),
);
