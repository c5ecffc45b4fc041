import type { Webhook } from "../generated/prisma/client.ts";
import { rule } from "../services/validation.ts";
import { WEBHOOK_EVENTS, type WebhookEvent as WebhookEventName } from "../services/webhook-outbox.ts";
import * as webhooks from "../services/webhooks.ts";
import { builder } from "./builder.ts";

/** Managing webhooks is tenant administration: the API key, or a user holding every tenant permission. */
const ADMIN = { permission: "tenant:*" } as const;

const EVENT_DESCRIPTIONS: Record<WebhookEventName, string> = {
  MESSAGE_ADDED: "A message was sent (`data.message`, `data.conversationId`).",
  MESSAGE_EDITED: "A message was edited (`data.message` as edited).",
  MESSAGE_DELETED: "A message was deleted (`data.message` is the tombstone, without text).",
  REACTION_CHANGED: "A reaction was added or removed (`data.emoji`, `data.userId`, `data.added`, `data.reactions`).",
  MEMBER_ADDED: "A user joined a conversation (`data.userId`, `data.role`).",
  MEMBER_REMOVED: "A user left or was removed from a conversation (`data.userId`).",
  CONVERSATION_CREATED: "A group or direct conversation was created (`data.conversation`).",
  CONVERSATION_DELETED: "A group was deleted (`data.conversationId`).",
  USER_CREATED: "A user was created (`data.user`).",
  USER_DELETED: "A user was deleted (`data.userId`).",
};

export const WebhookEventEnum = builder.enumType("WebhookEvent", {
  description: "What a webhook can be called for; each delivery's `event` and `X-Webhook-Event` header name one.",
  values: Object.fromEntries(WEBHOOK_EVENTS.map((event) => [event, { description: EVENT_DESCRIPTIONS[event] }])) as {
    [K in WebhookEventName]: { description: string };
  },
});

const WebhookDeliveryStatus = builder.enumType("WebhookDeliveryStatus", {
  description: "Where a delivery stands.",
  values: {
    PENDING: { description: "Not delivered yet: waiting for its first attempt or a retry." },
    DELIVERED: { description: "The endpoint answered with a 2xx status." },
    FAILED: { description: "Given up: not delivered within WEBHOOK_MAX_AGE_SECONDS, or the webhook was disabled." },
  } as const,
});

const WebhookRef = builder.prismaObject("Webhook", {
  description: "An endpoint of the tenant's backend, called (HTTP POST, signed) when the chosen events happen.",
  authScopes: ADMIN,
  fields: (t) => ({
    id: t.exposeID("id", { description: "Webhook id." }),
    url: t.exposeString("url", { description: "Where deliveries are POSTed." }),
    description: t.exposeString("description", { nullable: true, description: "A note of the tenant's." }),
    events: t.field({
      type: [WebhookEventEnum],
      description: "The events it receives.",
      resolve: (webhook) =>
        webhook.events.filter((event): event is WebhookEventName =>
          (WEBHOOK_EVENTS as readonly string[]).includes(event),
        ),
    }),
    enabled: t.exposeBoolean("enabled", {
      description: "Whether it receives deliveries. A disabled webhook is sent nothing; its pending deliveries failed.",
    }),
    disabledReason: t.exposeString("disabledReason", {
      nullable: true,
      description:
        "Why the server disabled it (every attempt failing for WEBHOOK_DISABLE_AFTER_SECONDS); null otherwise.",
    }),
    failingSince: t.expose("failingSince", {
      type: "DateTime",
      nullable: true,
      description: "Since when every attempt has failed; null after a success.",
    }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When it was created." }),
    updatedAt: t.expose("updatedAt", { type: "DateTime", description: "When it last changed." }),
  }),
});

const WebhookDeliveryRef = builder.prismaObject("WebhookDelivery", {
  description: "One event sent (or to be sent) to one webhook.",
  authScopes: ADMIN,
  fields: (t) => ({
    id: t.exposeID("id", {
      description:
        "Delivery id: the body's `id` and the `X-Webhook-Id` header, the same on every retry (idempotency key).",
    }),
    event: t.field({
      type: WebhookEventEnum,
      description: "What happened.",
      resolve: (delivery) => delivery.event as WebhookEventName,
    }),
    payload: t.field({
      type: "JSON",
      description: "The body's `data`: what the event says.",
      resolve: (d) => d.payload,
    }),
    status: t.field({
      type: WebhookDeliveryStatus,
      description: "Where it stands.",
      resolve: (delivery) => delivery.status as "PENDING" | "DELIVERED" | "FAILED",
    }),
    attempts: t.exposeInt("attempts", { description: "Attempts made so far." }),
    responseStatus: t.exposeInt("responseStatus", {
      nullable: true,
      description: "HTTP status of the last answer (null when there was none).",
    }),
    error: t.exposeString("error", {
      nullable: true,
      description: "Why the last attempt failed; null after a success.",
    }),
    createdAt: t.expose("createdAt", {
      type: "DateTime",
      description: "When the event happened (its change committed).",
    }),
    lastAttemptAt: t.expose("lastAttemptAt", {
      type: "DateTime",
      nullable: true,
      description: "When the last attempt started.",
    }),
    nextAttemptAt: t.field({
      type: "DateTime",
      nullable: true,
      description: "When the next attempt is due (PENDING only).",
      resolve: (delivery) => (delivery.status === "PENDING" ? delivery.nextAttemptAt : null),
    }),
    deliveredAt: t.expose("deliveredAt", {
      type: "DateTime",
      nullable: true,
      description: "When the endpoint accepted it.",
    }),
  }),
});

const WebhookDeliveryConnection = builder.connectionObject(
  { type: WebhookDeliveryRef, name: "WebhookDeliveryConnection", description: "A page of deliveries, newest first." },
  { description: "A delivery with its cursor." },
);

const CreateWebhookPayload = builder.objectRef<{ webhook: Webhook; secret: string }>("CreateWebhookPayload").implement({
  description: "A webhook and its signing secret. The secret is shown only here; store it safely.",
  authScopes: ADMIN,
  fields: (t) => ({
    webhook: t.field({ type: WebhookRef, description: "The webhook.", resolve: (payload) => payload.webhook }),
    secret: t.exposeString("secret", {
      description:
        'Signing secret: each delivery carries `X-Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" with this secret>`.',
    }),
  }),
});

const create = webhooks.createWebhookInput.shape;
const CreateWebhookInput = builder.inputType("CreateWebhookInput", {
  description: "A new webhook.",
  fields: (t) => ({
    url: t.string({ required: true, description: `Endpoint, ${rule(create.url)}.` }),
    events: t.field({
      type: [WebhookEventEnum],
      required: true,
      description: `Events it receives, ${rule(create.events)}.`,
    }),
    description: t.string({ description: `A note, ${rule(create.description)}.` }),
  }),
});

const UpdateWebhookInput = builder.inputType("UpdateWebhookInput", {
  description: "Changes to a webhook; omitted fields stay as they are.",
  fields: (t) => ({
    url: t.string({ description: `Endpoint, ${rule(create.url)}.` }),
    events: t.field({ type: [WebhookEventEnum], description: `Events it receives, ${rule(create.events)}.` }),
    description: t.string({ description: `A note, ${rule(create.description)}; null or blank removes it.` }),
    enabled: t.boolean({
      description:
        "false: send nothing more (pending deliveries fail); true: deliver again (also after the server disabled it).",
    }),
  }),
});

builder.queryFields((t) => ({
  webhooks: t.prismaField({
    type: ["Webhook"],
    description: "The tenant's webhooks, oldest first. Needs the API key or `tenant:*`.",
    authScopes: ADMIN,
    resolve: (_query, _root, _args, ctx) => webhooks.listWebhooks(ctx),
  }),
  webhookDeliveries: t.field({
    type: WebhookDeliveryConnection,
    description: "A webhook's deliveries, newest first, with their state. Needs the API key or `tenant:*`.",
    authScopes: ADMIN,
    args: {
      webhookId: t.arg.id({ required: true, description: "The webhook." }),
      first: t.arg.int({ description: "Page size, 0-100 (default 20)." }),
      after: t.arg.string({ description: "Cursor of the last delivery of the previous page." }),
    },
    resolve: (_root, args, ctx) => webhooks.listDeliveries(ctx, args),
  }),
}));

builder.mutationFields((t) => ({
  createWebhook: t.field({
    type: CreateWebhookPayload,
    description: `Creates a webhook (at most ${webhooks.MAX_WEBHOOKS_PER_TENANT} per tenant) and returns its signing secret once. Needs the API key or \`tenant:*\`.`,
    authScopes: ADMIN,
    args: { input: t.arg({ type: CreateWebhookInput, required: true, description: "The new webhook." }) },
    resolve: (_root, { input }, ctx) => webhooks.createWebhook(ctx, input),
  }),
  updateWebhook: t.prismaField({
    type: "Webhook",
    description: "Changes a webhook. Needs the API key or `tenant:*`.",
    authScopes: ADMIN,
    args: {
      id: t.arg.id({ required: true, description: "The webhook." }),
      input: t.arg({ type: UpdateWebhookInput, required: true, description: "The changes." }),
    },
    resolve: (_query, _root, { id, input }, ctx) => webhooks.updateWebhook(ctx, id, input),
  }),
  deleteWebhook: t.id({
    description:
      "Deletes a webhook and its deliveries (pending ones are not sent); returns its id. Needs the API key or `tenant:*`.",
    authScopes: ADMIN,
    args: { id: t.arg.id({ required: true, description: "The webhook." }) },
    resolve: (_root, { id }, ctx) => webhooks.deleteWebhook(ctx, id),
  }),
  rotateWebhookSecret: t.field({
    type: CreateWebhookPayload,
    description:
      "Replaces a webhook's signing secret and returns the new one once; attempts from now on, retries included, are signed with it. Needs the API key or `tenant:*`.",
    authScopes: ADMIN,
    args: { id: t.arg.id({ required: true, description: "The webhook." }) },
    resolve: (_root, { id }, ctx) => webhooks.rotateWebhookSecret(ctx, id),
  }),
}));
