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

export const MAX_EMBED_ORIGINS = 20;
const DNS_LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?";
/**
 * An origin as a frame-ancestors source: http(s), a host name (optionally under a leading
 * `*.` wildcard label), an IPv4 address or a bracketed IPv6 one, an optional port. Nothing
 * else, so an entry can go into the Content-Security-Policy header as it is.
 */
const EMBED_ORIGIN = new RegExp(
  `^https?://(?:(?:\\*\\.)?${DNS_LABEL}(?:\\.${DNS_LABEL})*|\\[[0-9a-f:.]+\\])(?::(?:[1-9][0-9]{0,4}))?$`,
);
const EMBED_ORIGIN_RULE =
  "an origin like https://app.example.com or https://*.example.com (no path, query or fragment)";
/** One entry of Tenant.embedOrigins, lower-cased; a single trailing `/` is dropped. */
const zEmbedOrigin = z
  .string()
  .max(300)
  .transform((value, ctx) => {
    const origin = value
      .trim()
      .toLowerCase()
      .replace(/(?<=\/\/[^/]+)\/$/, "");
    const port = /:(\d+)$/.exec(origin)?.[1];
    if (origin === "*" || (EMBED_ORIGIN.test(origin) && (!port || Number(port) <= 65_535))) return origin;
    ctx.addIssue({ code: "custom", message: `${JSON.stringify(value)} is not ${EMBED_ORIGIN_RULE}, nor *` });
    return z.NEVER;
  });
export const embedOriginsInput = z
  .array(zEmbedOrigin)
  .max(MAX_EMBED_ORIGINS, `accepts at most ${MAX_EMBED_ORIGINS} origins`)
  .transform((origins, ctx) => {
    if (origins.includes("*") && origins.length > 1) {
      ctx.addIssue({ code: "custom", message: "* allows every origin and must be the only entry" });
      return z.NEVER;
    }
    return [...new Set(origins)];
  })
  .describe(
    `up to ${MAX_EMBED_ORIGINS} http(s) origins (scheme, host, optional port; a leading \`*.\` label matches subdomains), or \`*\` alone for any origin`,
  );

export const updateTenantInput = z.object({
  name: createTenantInput.shape.name.nullish(),
  defaultRoleId: z.string().nullish(),
  auth: z.unknown().optional(),
  wordFilter: wordFilterInput.nullish(),
  embedOrigins: embedOriginsInput.nullish(),
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
        ...(data.embedOrigins ? { embedOrigins: data.embedOrigins } : {}),
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
        embedOrigins: data.embedOrigins ?? undefined,
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
