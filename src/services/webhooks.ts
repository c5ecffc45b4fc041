import { z } from "zod";
import { generateWebhookSecret, sealSecret } from "../auth/secrets.ts";
import type { Context } from "../context.ts";
import { badInput, conflict, notFound } from "../errors.ts";
import type { Webhook, WebhookDelivery } from "../generated/prisma/client.ts";
import { outboundUrlProblem } from "../http/outbound.ts";
import { topics } from "../realtime/topics.ts";
import { tenantOf } from "./access.ts";
import { audit } from "./audit.ts";
import { connectionOf, decodeCursor, encodeCursor } from "./cursors.ts";
import { pageSize, parseId, validate, zOptionalText } from "./validation.ts";
import { WEBHOOK_EVENTS } from "./webhook-outbox.ts";

export type { Webhook, WebhookDelivery };

/** Most webhooks one tenant may have. */
export const MAX_WEBHOOKS_PER_TENANT = 20;
const URL_MAX = 2048;

const zWebhookUrl = z
  .string()
  .trim()
  .min(1, "must not be empty")
  .max(URL_MAX, `must be at most ${URL_MAX} characters`)
  .describe(
    `an https URL of at most ${URL_MAX} characters (plain http only to a loopback host outside production mode; in production mode never a private or loopback address)`,
  );
const zEvents = z
  .array(z.enum(WEBHOOK_EVENTS))
  .min(1, "must name at least one event")
  .max(WEBHOOK_EVENTS.length)
  .describe("at least one event");
const zDescription = zOptionalText(500);

export const createWebhookInput = z.object({
  url: zWebhookUrl,
  events: zEvents,
  description: zDescription.nullish(),
});

export const updateWebhookInput = z.object({
  url: zWebhookUrl.nullish(),
  events: zEvents.nullish(),
  description: zDescription.nullish(),
  enabled: z.boolean().nullish(),
});

function checkUrl(ctx: Context, url: string, field: string): string {
  const problem = outboundUrlProblem(url, { production: ctx.deps.config.production });
  if (problem) throw badInput(field, `${field} ${problem}`);
  return url;
}

/** Every instance forgets what the tenant's webhooks want; this one at once. */
async function announceChange(ctx: Context, tenantId: string): Promise<void> {
  ctx.deps.webhooks.invalidate(tenantId);
  await ctx.deps.pubsub.publish(topics.webhooks, { tenantId }).catch((error: unknown) => {
    // Other instances pick the change up when their entry expires (CREDENTIAL_RESYNC_SECONDS).
    ctx.deps.log.warn({ err: error, requestId: ctx.requestId }, "webhook change publish failed");
  });
}

export async function requireWebhook(ctx: Context, id: string, field = "id"): Promise<Webhook> {
  const webhook = await ctx.prisma.webhook.findFirst({ where: { id: parseId(field, id), tenantId: tenantOf(ctx) } });
  if (!webhook) throw notFound("Webhook");
  return webhook;
}

export async function listWebhooks(ctx: Context): Promise<Webhook[]> {
  return ctx.prisma.webhook.findMany({
    where: { tenantId: tenantOf(ctx) },
    orderBy: [{ createdAt: "asc" }, { id: "asc" }],
  });
}

/** Creates a webhook with a fresh signing secret, returned only here (and by rotateWebhookSecret). */
export async function createWebhook(ctx: Context, rawInput: unknown): Promise<{ webhook: Webhook; secret: string }> {
  const input = validate(createWebhookInput, rawInput, "input");
  const tenantId = tenantOf(ctx);
  const url = checkUrl(ctx, input.url, "input.url");
  const secret = generateWebhookSecret();
  const webhook = await ctx.prisma.$transaction(async (tx) => {
    // Locks the tenant row, so two creations cannot both pass the count.
    await tx.$queryRaw`SELECT 1 FROM "Tenant" WHERE "id" = ${tenantId}::uuid FOR NO KEY UPDATE`;
    if ((await tx.webhook.count({ where: { tenantId } })) >= MAX_WEBHOOKS_PER_TENANT) {
      throw conflict(`A tenant has at most ${MAX_WEBHOOKS_PER_TENANT} webhooks`);
    }
    const created = await tx.webhook.create({
      data: {
        tenantId,
        url,
        events: [...new Set(input.events)],
        description: input.description?.trim() || null,
        secret: sealSecret(ctx.deps.sealingKey, secret),
      },
    });
    await audit(ctx, "webhook.created", { type: "Webhook", id: created.id }, { url, events: created.events }, tx);
    return created;
  });
  await announceChange(ctx, tenantId);
  return { webhook, secret };
}

/**
 * Changes a webhook; omitted fields stay. Disabling it fails its pending deliveries (a disabled
 * webhook is sent nothing); enabling it clears why the server had disabled it.
 */
export async function updateWebhook(ctx: Context, id: string, rawInput: unknown): Promise<Webhook> {
  const input = validate(updateWebhookInput, rawInput, "input");
  const current = await requireWebhook(ctx, id);
  const url = input.url != null ? checkUrl(ctx, input.url, "input.url") : undefined;
  const updated = await ctx.prisma.$transaction(async (tx) => {
    const next = await tx.webhook.update({
      where: { id: current.id },
      data: {
        ...(url !== undefined ? { url } : {}),
        ...(input.events != null ? { events: [...new Set(input.events)] } : {}),
        ...(input.description !== undefined ? { description: input.description?.trim() || null } : {}),
        ...(input.enabled === true ? { enabled: true, disabledReason: null, failingSince: null } : {}),
        ...(input.enabled === false ? { enabled: false } : {}),
      },
    });
    if (input.enabled === false) {
      await tx.webhookDelivery.updateMany({
        where: { webhookId: current.id, status: "PENDING" },
        data: { status: "FAILED", error: "webhook disabled" },
      });
    }
    await audit(
      ctx,
      "webhook.updated",
      { type: "Webhook", id: current.id },
      { url: next.url, events: next.events, enabled: next.enabled },
      tx,
    );
    return next;
  });
  await announceChange(ctx, current.tenantId);
  return updated;
}

/** Deletes a webhook with its deliveries, pending ones included. */
export async function deleteWebhook(ctx: Context, id: string): Promise<string> {
  const current = await requireWebhook(ctx, id);
  await ctx.prisma.$transaction(async (tx) => {
    await tx.webhook.delete({ where: { id: current.id } });
    await audit(ctx, "webhook.deleted", { type: "Webhook", id: current.id }, { url: current.url }, tx);
  });
  await announceChange(ctx, current.tenantId);
  return current.id;
}

/** Replaces the signing secret; attempts from now on are signed with the new one. */
export async function rotateWebhookSecret(ctx: Context, id: string): Promise<{ webhook: Webhook; secret: string }> {
  const current = await requireWebhook(ctx, id);
  const secret = generateWebhookSecret();
  const webhook = await ctx.prisma.$transaction(async (tx) => {
    const next = await tx.webhook.update({
      where: { id: current.id },
      data: { secret: sealSecret(ctx.deps.sealingKey, secret) },
    });
    await audit(ctx, "webhook.secretRotated", { type: "Webhook", id: current.id }, undefined, tx);
    return next;
  });
  return { webhook, secret };
}

/** A webhook's deliveries, newest first. */
export async function listDeliveries(
  ctx: Context,
  args: { webhookId: string; first?: number | null; after?: string | null },
) {
  const webhook = await requireWebhook(ctx, args.webhookId, "webhookId");
  const first = pageSize("first", args.first, 20);
  let keyset = {};
  if (args.after) {
    const [date, id] = decodeCursor("after", args.after, "wd1", ["time", "uuid"]);
    keyset = { OR: [{ createdAt: { lt: date } }, { createdAt: date, id: { lt: id } }] };
  }
  const rows = await ctx.prisma.webhookDelivery.findMany({
    where: { tenantId: webhook.tenantId, webhookId: webhook.id, ...keyset },
    orderBy: [{ createdAt: "desc" }, { id: "desc" }],
    take: first + 1,
  });
  return connectionOf(rows.slice(0, first), (row) => encodeCursor("wd1", [row.createdAt.getTime(), row.id]), {
    hasNextPage: rows.length > first,
    hasPreviousPage: !!args.after,
  });
}
