import { z } from "zod";
import { generateApiKey } from "../auth/secrets.ts";
import type { Context } from "../context.ts";
import { notFound } from "../errors.ts";
import { type ApiKeyEvent, topics } from "../realtime/topics.ts";
import { tenantOf } from "./access.ts";
import { parseAuthSettings } from "./accounts.ts";
import { audit } from "./audit.ts";
import { announceSafetyChange } from "./blocks.ts";
import { applyExternalJwt, prepareExternalJwt } from "./external-jwt.ts";
import { announceCredentialChange } from "./membership-events.ts";
import { assertCanGrant } from "./policies.ts";
import { createSystemRoles, requireRole } from "./roles.ts";
import { validate, zLine } from "./validation.ts";
import { parseRules, wordFilterInput } from "./word-filter.ts";

// Tenant names go into mail sent to end users: one line, no control or direction characters.
export const createTenantInput = z.object({ name: zLine(200) });
export const updateTenantInput = z.object({
  name: createTenantInput.shape.name.nullish(),
  defaultRoleId: z.string().nullish(),
  auth: z.unknown().optional(),
  wordFilter: wordFilterInput.nullish(),
});

/** A tenant, its first API key and its system roles (owner, admin, member), in one transaction. */
export async function createTenant(ctx: Context, input: unknown) {
  const { name } = validate(createTenantInput, input, "input");
  const key = generateApiKey();
  // Not the request's tenant-scoped client: the caller may hold credentials of another tenant.
  const tenant = await ctx.deps.db.prisma.$transaction(async (tx) => {
    const created = await tx.tenant.create({
      data: { name, apiKeys: { create: { hash: key.hash, prefix: key.prefix } } },
    });
    const member = await createSystemRoles(tx, created.id);
    return tx.tenant.update({ where: { id: created.id }, data: { defaultRoleId: member.id } });
  });
  ctx.deps.log.info({ tenantId: tenant.id, requestId: ctx.requestId }, "tenant created");
  return { tenant, apiKey: key.key };
}

export async function getTenant(ctx: Context) {
  const tenant = await ctx.prisma.tenant.findUnique({ where: { id: tenantOf(ctx) } });
  if (!tenant) throw notFound("Tenant");
  return tenant;
}

export async function updateTenant(ctx: Context, input: unknown) {
  const data = validate(updateTenantInput, input, "input");
  const auth = data.auth ? parseAuthSettings(data.auth) : null;
  const defaultRole = data.defaultRoleId ? await requireRole(ctx, data.defaultRoleId, "input.defaultRoleId") : null;
  // The default role is granted to every new user: choosing it is granting it.
  if (defaultRole) await assertCanGrant(ctx, defaultRole.permissions);
  const externalJwtValues = await prepareExternalJwt(ctx, auth?.externalJwt);
  const words = data.wordFilter?.words ? parseRules("input.wordFilter.words", data.wordFilter.words) : null;
  const wordFilterAction = data.wordFilter?.action ?? null;
  const updated = await ctx.prisma.$transaction(async (tx) => {
    const externalJwt = await applyExternalJwt(ctx, tx, externalJwtValues);
    const tenant = await tx.tenant.update({
      where: { id: tenantOf(ctx) },
      data: {
        ...(data.name ? { name: data.name } : {}),
        ...(defaultRole ? { defaultRoleId: defaultRole.id } : {}),
        ...(auth?.selfSignUp != null ? { selfSignUp: auth.selfSignUp } : {}),
        ...(auth?.signInMethods ? { signInMethods: [...new Set(auth.signInMethods)] } : {}),
        ...(auth?.accessTokenTtlSeconds ? { accessTokenTtlSeconds: auth.accessTokenTtlSeconds } : {}),
        ...(auth?.refreshTokenTtlSeconds ? { refreshTokenTtlSeconds: auth.refreshTokenTtlSeconds } : {}),
        ...(auth?.oauthRedirectUris ? { oauthRedirectUris: [...new Set(auth.oauthRedirectUris)] } : {}),
        ...(words ? { wordFilterRules: words } : {}),
        ...(wordFilterAction ? { wordFilterAction } : {}),
      },
    });
    await audit(
      ctx,
      "tenant.updated",
      { type: "Tenant", id: tenant.id },
      // The provider's secret stays out of the log: only whether there is one.
      {
        name: data.name,
        defaultRole: defaultRole?.name,
        auth: auth && { ...auth, externalJwt },
        wordFilter: data.wordFilter && { words, action: wordFilterAction },
      },
      tx,
    );
    return { tenant, externalJwtChanged: externalJwt !== undefined };
  });
  if (words || wordFilterAction) {
    await announceSafetyChange(ctx, { type: "wordFilterChanged", tenantId: updated.tenant.id });
  }
  if (updated.externalJwtChanged) {
    await announceCredentialChange(ctx, { type: "externalJwtChanged", tenantId: updated.tenant.id });
  }
  return updated.tenant;
}

/** Replaces every active key of the tenant with a new one; old keys and their sockets stop at once. */
export async function rotateApiKey(ctx: Context) {
  const tenantId = tenantOf(ctx);
  const key = generateApiKey();
  const revoked = await ctx.prisma.$transaction(async (tx) => {
    const old = await tx.apiKey.findMany({ where: { tenantId, revokedAt: null }, select: { id: true } });
    await tx.apiKey.updateMany({ where: { tenantId, revokedAt: null }, data: { revokedAt: new Date() } });
    const created = await tx.apiKey.create({ data: { tenantId, hash: key.hash, prefix: key.prefix } });
    await audit(
      ctx,
      "apiKey.rotated",
      { type: "ApiKey", id: created.id },
      { revoked: old.length, prefix: key.prefix },
      tx,
    );
    return old.map((row) => row.id);
  });
  await announceCredentialChange(ctx, { type: "apiKeysRevoked", tenantId, keyIds: revoked });
  const event: ApiKeyEvent = { type: "revoked", keyIds: revoked };
  await ctx.deps.pubsub.publish(topics.apiKeys(tenantId), event).catch((error: unknown) => {
    ctx.deps.log.warn({ err: error, requestId: ctx.requestId }, "api key event publish failed");
    ctx.deps.credentialResync.request();
  });
  ctx.deps.log.info({ tenantId, requestId: ctx.requestId }, "api key rotated");
  return { apiKey: key.key };
}
