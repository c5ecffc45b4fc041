import { z } from "zod";
import { OWN_ISSUER } from "../auth/tokens.ts";
import type { Context } from "../context.ts";
import type { TransactionClient } from "../db/client.ts";
import { isUniqueViolation } from "../db/errors.ts";
import { badInput, conflict } from "../errors.ts";
import { outboundUrlProblem } from "../http/outbound.ts";
import { tenantOf } from "./access.ts";
import { validate, zLine } from "./validation.ts";

const HMAC_SECRET_MIN_BYTES = 32;
const HMAC_SECRET_MAX_BYTES = 512;
const zClaim = zLine(100);

export const externalJwtInput = z.object({
  issuer: zLine(500).refine((value) => value !== OWN_ISSUER, `must not be "${OWN_ISSUER}" (this server's own issuer)`),
  audience: zLine(500).nullish(),
  hmacSecret: z
    .string()
    .refine(
      (value) => Buffer.byteLength(value) >= HMAC_SECRET_MIN_BYTES,
      `must be at least ${HMAC_SECRET_MIN_BYTES} bytes`,
    )
    .refine(
      (value) => Buffer.byteLength(value) <= HMAC_SECRET_MAX_BYTES,
      `must be at most ${HMAC_SECRET_MAX_BYTES} bytes`,
    )
    .describe(`${HMAC_SECRET_MIN_BYTES}-${HMAC_SECRET_MAX_BYTES} bytes`)
    .nullish(),
  jwksUrl: z.string().trim().max(2048).describe("an https URL, up to 2048 characters").nullish(),
  userIdClaim: zClaim.nullish(),
  nameClaim: zClaim.nullish(),
  emailClaim: zClaim.nullish(),
  groupsClaim: zClaim.nullish(),
});

export type ExternalJwtValues = Awaited<ReturnType<typeof prepareExternalJwt>>;

/**
 * Checks a new identity provider setting (before the tenant update's transaction: the check
 * reads across tenants). Undefined: left alone; null: removed.
 */
export async function prepareExternalJwt(ctx: Context, raw: unknown) {
  if (raw === undefined) return undefined;
  if (raw === null) return null;
  const tenantId = tenantOf(ctx);
  const field = "input.auth.externalJwt";
  const data = validate(externalJwtInput, raw, field);
  if (!data.hmacSecret === !data.jwksUrl) {
    throw badInput(field, `${field} needs either hmacSecret or jwksUrl (not both)`);
  }
  if (data.jwksUrl) {
    const problem = outboundUrlProblem(data.jwksUrl, { production: ctx.deps.config.production });
    if (problem) throw badInput(`${field}.jwksUrl`, `${field}.jwksUrl ${problem}`);
  }
  const audience = data.audience ?? "";
  // An issuer without audience takes every token of that issuer: it cannot be shared with any
  // other tenant, with or without audience. (Read across tenants: the issuer names the tenant.)
  const clash = await ctx.deps.db.prisma.tenantExternalJwt.findFirst({
    where: {
      issuer: data.issuer,
      tenantId: { not: tenantId },
      ...(audience ? { audience: { in: ["", audience] } } : {}),
    },
    select: { tenantId: true },
  });
  if (clash) throw conflict("Another tenant already uses this issuer (and audience)", `${field}.issuer`);
  const values = {
    issuer: data.issuer,
    audience,
    hmacSecret: data.hmacSecret ?? null,
    jwksUrl: data.jwksUrl ?? null,
    userIdClaim: data.userIdClaim ?? "sub",
    nameClaim: data.nameClaim ?? "name",
    emailClaim: data.emailClaim ?? "email",
    groupsClaim: data.groupsClaim ?? "groups",
  };
  return values;
}

/**
 * Writes a checked setting inside the tenant update's transaction. Returns what the audit log
 * may record (never the secret), or undefined when the input left it alone.
 */
export async function applyExternalJwt(
  ctx: Context,
  tx: TransactionClient,
  values: ExternalJwtValues,
): Promise<Record<string, unknown> | null | undefined> {
  if (values === undefined) return undefined;
  const tenantId = tenantOf(ctx);
  if (values === null) {
    await tx.tenantExternalJwt.deleteMany({ where: { tenantId } });
    return null;
  }
  const field = "input.auth.externalJwt";
  try {
    await tx.tenantExternalJwt.upsert({
      where: { tenantId },
      create: { tenantId, ...values },
      update: values,
    });
  } catch (error) {
    if (isUniqueViolation(error)) {
      throw conflict("Another tenant already uses this issuer (and audience)", `${field}.issuer`);
    }
    throw error;
  }
  const { hmacSecret, ...shown } = values;
  return { ...shown, hasHmacSecret: !!hmacSecret };
}
