import type { Context } from "../context.ts";
import { forbidden, unauthenticated } from "../errors.ts";

/** The tenant every read and write of this request is confined to. */
export function tenantOf(ctx: Context): string {
  if (!ctx.principal) throw unauthenticated(ctx.authError);
  return ctx.principal.tenantId;
}

/** The acting user id, or null for the service principal. */
export function actingUserId(ctx: Context): string | null {
  if (!ctx.principal) throw unauthenticated(ctx.authError);
  return ctx.principal.kind === "user" ? ctx.principal.userId : null;
}

export function requireUserPrincipal(ctx: Context, what: string): string {
  const userId = actingUserId(ctx);
  if (!userId) throw forbidden(`${what} needs a user token, not an API key`);
  return userId;
}
