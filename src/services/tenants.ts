import { z } from "zod";
import { generateApiKey } from "../auth/secrets.ts";
import type { Context } from "../context.ts";
import { notFound } from "../errors.ts";
import { tenantOf } from "./access.ts";
import { validate, zText } from "./validation.ts";

const createTenantInput = z.object({ name: zText(200) });
const updateTenantInput = z.object({ name: zText(200).optional() });

export async function createTenant(ctx: Context, input: unknown) {
  const { name } = validate(createTenantInput, input, "input");
  const key = generateApiKey();
  const tenant = await ctx.prisma.tenant.create({
    data: { name, apiKeys: { create: { hash: key.hash, prefix: key.prefix } } },
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
  return ctx.prisma.tenant.update({ where: { id: tenantOf(ctx) }, data });
}

/** Replaces every active key of the tenant with a new one; old keys stop working at once. */
export async function rotateApiKey(ctx: Context) {
  const tenantId = tenantOf(ctx);
  const key = generateApiKey();
  await ctx.prisma.$transaction([
    ctx.prisma.apiKey.updateMany({ where: { tenantId, revokedAt: null }, data: { revokedAt: new Date() } }),
    ctx.prisma.apiKey.create({ data: { tenantId, hash: key.hash, prefix: key.prefix } }),
  ]);
  ctx.deps.log.info({ tenantId, requestId: ctx.requestId }, "api key rotated");
  return { apiKey: key.key };
}
