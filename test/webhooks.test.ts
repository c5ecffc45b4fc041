import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { hostname } from "node:os";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { outboundPost } from "../src/http/outbound.ts";
import { retryDelayMs } from "../src/services/webhook-dispatcher.ts";
import {
  backends,
  capturingLogger,
  createTestDatabase,
  startServer,
  type TestDatabase,
  type TestServer,
} from "./helpers/backends.ts";
import { fails, ok, sleep } from "./helpers/client.ts";
import { createTenant, type TestTenant } from "./helpers/fixtures.ts";
import { readmeVerifier, sign, WebhookReceiver, webhookSettings } from "./helpers/webhook-receiver.ts";
import { test, useServer } from "./helpers/world.ts";
import { AuditLog } from "./operations/audit.ts";
import { AddMembers, CreateGroup, DeleteGroup, RemoveMember } from "./operations/conversations.ts";
import { AddReaction, DeleteMessage, EditMessage, SendMessage } from "./operations/messages.ts";
import { AssignRole, Roles } from "./operations/roles.ts";
import { CreateUser, DeleteUser } from "./operations/users.ts";
import {
  CreateWebhook,
  DeleteWebhook,
  RotateWebhookSecret,
  UpdateWebhook,
  WebhookDeliveries,
  Webhooks,
} from "./operations/webhooks.ts";

const verifyWebhook = readmeVerifier();

type WebhookEventName =
  | "MESSAGE_ADDED"
  | "MESSAGE_EDITED"
  | "MESSAGE_DELETED"
  | "REACTION_CHANGED"
  | "MEMBER_ADDED"
  | "MEMBER_REMOVED"
  | "CONVERSATION_CREATED"
  | "CONVERSATION_DELETED"
  | "USER_CREATED"
  | "USER_DELETED";

async function hook(url: string, tenant: TestTenant, target: string, events: WebhookEventName[]) {
  const { createWebhook } = await ok(url, CreateWebhook, { input: { url: target, events } }, { apiKey: tenant.apiKey });
  return { id: createWebhook.webhook.id, secret: createWebhook.secret };
}

async function groupOf(url: string, tenant: TestTenant): Promise<string> {
  const [alice, bob] = tenant.users;
  const { createGroup } = await ok(
    url,
    CreateGroup,
    { input: { name: "Hooks", memberIds: [bob?.id as string] } },
    { token: alice?.token },
  );
  return createGroup.id;
}

async function send(url: string, tenant: TestTenant, conversationId: string, body: string) {
  const { sendMessage } = await ok(
    url,
    SendMessage,
    { input: { conversationId, body } },
    { token: tenant.users[0]?.token },
  );
  return sendMessage;
}

async function deliveries(url: string, tenant: TestTenant, webhookId: string) {
  const { webhookDeliveries } = await ok(url, WebhookDeliveries, { webhookId, first: 100 }, { apiKey: tenant.apiKey });
  return webhookDeliveries.edges.map((edge) => edge.node);
}

/** Polls the deliveries of a webhook until `done` holds (fails after timeoutMs with what it saw). */
async function deliveriesUntil(
  url: string,
  tenant: TestTenant,
  webhookId: string,
  done: (rows: Awaited<ReturnType<typeof deliveries>>) => boolean,
  timeoutMs = 10_000,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = await deliveries(url, tenant, webhookId);
    if (done(rows)) return rows;
    if (Date.now() > deadline) expect.fail(`deliveries never got there: ${JSON.stringify(rows, null, 2)}`);
    await sleep(50);
  }
}

describe("webhook retry schedule", () => {
  it("waits about base, then base x factor, ... with at most 20% jitter, capped", () => {
    const config = { retryBaseMs: 1000, retryFactor: 4, retryMaxDelayMs: 3_600_000 };
    expect([1, 2, 3].map((n) => retryDelayMs(n, config, () => 0.5))).toEqual([1000, 4000, 16_000]);
    expect(retryDelayMs(1, config, () => 0)).toBe(800);
    expect(retryDelayMs(2, config, () => 1)).toBe(4800);
    expect(retryDelayMs(20, config, () => 0.5)).toBe(3_600_000);
  });
});

describe.each(backends())("webhooks on %s", (backend) => {
  useServer(backend, webhookSettings({ retryBaseMs: 150, retryFactor: 2, maxAgeMs: 4000 }));
  let receiver: WebhookReceiver;
  beforeAll(async () => {
    receiver = await new WebhookReceiver().start();
  });
  afterEach(() => {
    receiver.received.length = 0;
    receiver.answers = [];
    receiver.fallback = 200;
  });
  afterAll(() => receiver.stop());

  test("a new message is POSTed within a second, signed so that the README's check verifies it", async ({
    server,
    tenant,
  }) => {
    const { id, secret } = await hook(server.url, tenant, receiver.url("/signed"), ["MESSAGE_ADDED"]);
    const group = await groupOf(server.url, tenant);
    const sentAt = Date.now();
    const message = await send(server.url, tenant, group, "Ship it?");
    const [request] = await receiver.waitFor(1, (r) => r.path === "/signed");
    // Within about a second of the commit (the send's answer comes after it): not a poll interval later.
    expect((request?.at ?? Number.POSITIVE_INFINITY) - sentAt).toBeLessThan(1500);
    const raw = request?.raw as string;
    const header = request?.headers["x-webhook-signature"] as string;
    expect(header).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    expect(verifyWebhook(raw, header, secret)).toBe(true);
    // Altered body, wrong secret, or an old (replayed) signature: refused.
    expect(verifyWebhook(raw.replace("Ship it?", "Ship it!"), header, secret)).toBe(false);
    expect(verifyWebhook(raw, header, `${secret}x`)).toBe(false);
    expect(verifyWebhook(raw, sign(secret, raw, Math.floor(Date.now() / 1000) - 600), secret)).toBe(false);
    expect(verifyWebhook(raw, sign(secret, raw, Math.floor(Date.now() / 1000)), secret)).toBe(true);

    expect(request?.headers["content-type"]).toBe("application/json");
    expect(request?.headers["x-webhook-event"]).toBe("MESSAGE_ADDED");
    expect(request?.headers["x-webhook-attempt"]).toBe("1");
    expect(request?.body).toMatchObject({
      id: request?.headers["x-webhook-id"],
      event: "MESSAGE_ADDED",
      tenantId: tenant.id,
      webhookId: id,
      data: {
        conversationId: group,
        actorId: tenant.users[0]?.id,
        message: { id: message.id, seq: message.seq, body: "Ship it?", senderId: tenant.users[0]?.id, type: "TEXT" },
      },
    });
    const [row] = await deliveriesUntil(server.url, tenant, id, (rows) => rows[0]?.status === "DELIVERED");
    expect(row).toMatchObject({
      id: request?.body.id,
      event: "MESSAGE_ADDED",
      status: "DELIVERED",
      attempts: 1,
      responseStatus: 200,
      error: null,
      nextAttemptAt: null,
    });
    expect(row?.payload).toEqual(request?.body.data);
    expect(receiver.received).toHaveLength(1);
  });

  test("answers of 500 are retried with growing waits until one succeeds", async ({ server, tenant }) => {
    receiver.answers = [500, 500];
    const { id } = await hook(server.url, tenant, receiver.url("/flaky"), ["MESSAGE_ADDED"]);
    const group = await groupOf(server.url, tenant);
    await send(server.url, tenant, group, "again and again");
    const attempts = await receiver.waitFor(3);
    expect(attempts.map((a) => a.status)).toEqual([500, 500, 200]);
    expect(new Set(attempts.map((a) => a.headers["x-webhook-id"])).size).toBe(1);
    expect(attempts.map((a) => a.headers["x-webhook-attempt"])).toEqual(["1", "2", "3"]);
    // About 150 ms, then about 300 ms (20% jitter).
    const gaps = [(attempts[1]?.at ?? 0) - (attempts[0]?.at ?? 0), (attempts[2]?.at ?? 0) - (attempts[1]?.at ?? 0)];
    expect(gaps[0]).toBeGreaterThanOrEqual(115);
    expect(gaps[1]).toBeGreaterThanOrEqual(235);
    const [row] = await deliveriesUntil(server.url, tenant, id, (rows) => rows[0]?.status === "DELIVERED");
    expect(row).toMatchObject({ status: "DELIVERED", attempts: 3, responseStatus: 200, error: null });
    await sleep(300);
    expect(receiver.received).toHaveLength(3);
  });

  test("a delivery still failing after WEBHOOK_MAX_AGE_SECONDS is marked failed", async ({ server, tenant }) => {
    receiver.fallback = 503;
    const { id } = await hook(server.url, tenant, receiver.url("/down"), ["MESSAGE_ADDED"]);
    const group = await groupOf(server.url, tenant);
    await send(server.url, tenant, group, "into the void");
    const [row] = await deliveriesUntil(server.url, tenant, id, (rows) => rows[0]?.status === "FAILED", 8000);
    expect(row?.attempts).toBeGreaterThanOrEqual(3);
    expect(row).toMatchObject({ status: "FAILED", responseStatus: 503, error: "answered 503", nextAttemptAt: null });
    const count = receiver.received.length;
    await sleep(600);
    expect(receiver.received).toHaveLength(count);
    // Failing for a while (less than WEBHOOK_DISABLE_AFTER_SECONDS) does not disable it.
    const { webhooks } = await ok(server.url, Webhooks, {}, { apiKey: tenant.apiKey });
    expect(webhooks[0]).toMatchObject({ enabled: true, disabledReason: null });
    expect(webhooks[0]?.failingSince).not.toBeNull();
  });

  test("a disabled webhook, and one not subscribed to the event, get nothing", async ({ server, tenant }) => {
    const disabled = await hook(server.url, tenant, receiver.url("/disabled"), ["MESSAGE_ADDED"]);
    const other = await hook(server.url, tenant, receiver.url("/users-only"), ["USER_DELETED"]);
    const updated = await ok(
      server.url,
      UpdateWebhook,
      { id: disabled.id, input: { enabled: false } },
      { apiKey: tenant.apiKey },
    );
    expect(updated.updateWebhook.enabled).toBe(false);
    const group = await groupOf(server.url, tenant);
    await send(server.url, tenant, group, "nobody hears this");
    await sleep(1200);
    expect(receiver.received).toEqual([]);
    expect(await deliveries(server.url, tenant, disabled.id)).toEqual([]);
    expect(await deliveries(server.url, tenant, other.id)).toEqual([]);
    // Enabled again, it gets what happens from then on.
    await ok(server.url, UpdateWebhook, { id: disabled.id, input: { enabled: true } }, { apiKey: tenant.apiKey });
    await send(server.url, tenant, group, "now it does");
    const [request] = await receiver.waitFor(1);
    expect(request?.path).toBe("/disabled");
    expect(request?.body.data.message.body).toBe("now it does");
  });

  test("disabling a webhook fails what it still had pending", async ({ server, tenant }) => {
    receiver.fallback = 500;
    const { id } = await hook(server.url, tenant, receiver.url("/paused"), ["MESSAGE_ADDED"]);
    const group = await groupOf(server.url, tenant);
    await send(server.url, tenant, group, "pending");
    await receiver.waitFor(1);
    await ok(server.url, UpdateWebhook, { id, input: { enabled: false } }, { apiKey: tenant.apiKey });
    const [row] = await deliveries(server.url, tenant, id);
    expect(row).toMatchObject({ status: "FAILED", error: "webhook disabled" });
    const count = receiver.received.length;
    await sleep(700);
    expect(receiver.received).toHaveLength(count);
  });

  test("every event reaches the webhooks that chose it, with its data", async ({ server, tenant }) => {
    const all: WebhookEventName[] = [
      "MESSAGE_ADDED",
      "MESSAGE_EDITED",
      "MESSAGE_DELETED",
      "REACTION_CHANGED",
      "MEMBER_ADDED",
      "MEMBER_REMOVED",
      "CONVERSATION_CREATED",
      "CONVERSATION_DELETED",
      "USER_CREATED",
      "USER_DELETED",
    ];
    const { id: hookId } = await hook(server.url, tenant, receiver.url("/all"), all);
    const key = { apiKey: tenant.apiKey };
    const [alice, bob] = tenant.users;
    const { createUser } = await ok(server.url, CreateUser, { input: { name: "Dana" } }, key);
    const group = await groupOf(server.url, tenant);
    await ok(server.url, AddMembers, { conversationId: group, userIds: [createUser.id] }, key);
    const message = await send(server.url, tenant, group, "hello");
    await ok(server.url, EditMessage, { id: message.id, body: "hello, edited" }, { token: alice?.token });
    await ok(server.url, AddReaction, { messageId: message.id, emoji: "👍" }, { token: bob?.token });
    await ok(server.url, DeleteMessage, { id: message.id }, { token: alice?.token });
    await ok(server.url, RemoveMember, { conversationId: group, userId: bob?.id as string }, key);
    await ok(server.url, DeleteUser, { id: createUser.id }, key);
    await ok(server.url, DeleteGroup, { id: group }, key);

    const received = await receiver.waitFor(13);
    const byEvent = (event: string) => received.filter((r) => r.body.event === event).map((r) => r.body.data);
    expect(received.map((r) => r.body.event).sort()).toEqual(
      [
        "USER_CREATED",
        "CONVERSATION_CREATED",
        "MEMBER_ADDED",
        "MEMBER_ADDED",
        "MEMBER_ADDED",
        "MESSAGE_ADDED",
        "MESSAGE_EDITED",
        "REACTION_CHANGED",
        "MESSAGE_DELETED",
        "MEMBER_REMOVED",
        "MEMBER_REMOVED",
        "USER_DELETED",
        "CONVERSATION_DELETED",
      ].sort(),
    );
    await sleep(300);
    expect(receiver.received).toHaveLength(13);
    expect(new Set(receiver.received.map((r) => r.headers["x-webhook-id"])).size).toBe(13);
    expect(byEvent("USER_CREATED")).toEqual([
      { actorId: null, user: expect.objectContaining({ id: createUser.id, name: "Dana", email: null }) },
    ]);
    expect(byEvent("CONVERSATION_CREATED")).toEqual([
      {
        actorId: alice?.id,
        conversation: expect.objectContaining({ id: group, kind: "GROUP", name: "Hooks" }),
        members: [
          { userId: alice?.id, role: "OWNER" },
          { userId: bob?.id, role: "MEMBER" },
        ],
      },
    ]);
    expect(
      byEvent("MEMBER_ADDED")
        .map((data) => [data.userId, data.role])
        .sort(),
    ).toEqual(
      [
        [alice?.id, "OWNER"],
        [bob?.id, "MEMBER"],
        [createUser.id, "MEMBER"],
      ].sort(),
    );
    expect(byEvent("MESSAGE_EDITED")[0]?.message).toMatchObject({ id: message.id, body: "hello, edited" });
    expect(byEvent("REACTION_CHANGED")[0]).toMatchObject({
      conversationId: group,
      actorId: bob?.id,
      emoji: "👍",
      userId: bob?.id,
      added: true,
      reactions: [{ emoji: "👍", count: 1, userIds: [bob?.id] }],
    });
    expect(byEvent("MESSAGE_DELETED")[0]?.message).toMatchObject({ id: message.id, body: null });
    expect(byEvent("MESSAGE_DELETED")[0]?.message.deletedAt).toBeTruthy();
    expect(
      byEvent("MEMBER_REMOVED")
        .map((data) => data.userId)
        .sort(),
    ).toEqual([bob?.id, createUser.id].sort());
    expect(byEvent("USER_DELETED")).toEqual([{ actorId: null, userId: createUser.id }]);
    expect(byEvent("CONVERSATION_DELETED")).toEqual([{ actorId: null, conversationId: group, name: "Hooks" }]);
    // The deleted message's text survives in no stored delivery (sent before or not).
    const stored = await deliveriesUntil(server.url, tenant, hookId, (rows) =>
      rows.every((row) => row.status === "DELIVERED"),
    );
    type Snapshot = { message?: { id: string; body: unknown; data: unknown; deletedAt: unknown } };
    const ofMessage = stored
      .map((row) => ({ event: row.event, message: (row.payload as Snapshot).message }))
      .filter((row) => row.message?.id === message.id);
    expect(ofMessage.map((row) => row.event).sort()).toEqual(
      ["MESSAGE_ADDED", "MESSAGE_DELETED", "MESSAGE_EDITED", "REACTION_CHANGED"].sort(),
    );
    for (const row of ofMessage) {
      expect(row.message, row.event).toMatchObject({ body: null, data: null });
      expect(row.message?.deletedAt, row.event).toBeTruthy();
    }
    expect(JSON.stringify(stored)).not.toContain("hello");
  });

  test("the secret is shown once, and a rotated one signs from then on", async ({ server, tenant }) => {
    const { id, secret } = await hook(server.url, tenant, receiver.url("/rotated"), ["MESSAGE_ADDED"]);
    expect(secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    const { rotateWebhookSecret } = await ok(server.url, RotateWebhookSecret, { id }, { apiKey: tenant.apiKey });
    expect(rotateWebhookSecret.webhook.id).toBe(id);
    expect(rotateWebhookSecret.secret).not.toBe(secret);
    const group = await groupOf(server.url, tenant);
    await send(server.url, tenant, group, "signed anew");
    const [request] = await receiver.waitFor(1);
    const header = request?.headers["x-webhook-signature"] as string;
    expect(verifyWebhook(request?.raw as string, header, rotateWebhookSecret.secret)).toBe(true);
    expect(verifyWebhook(request?.raw as string, header, secret)).toBe(false);
    // Nothing reads it back.
    const { webhooks } = await ok(server.url, Webhooks, {}, { apiKey: tenant.apiKey });
    expect(JSON.stringify(webhooks)).not.toContain(rotateWebhookSecret.secret);
  });

  test("managing webhooks needs the API key or tenant:*, and checks its input", async ({ server, tenant }) => {
    const [alice, bob] = tenant.users;
    const input = { url: receiver.url("/x"), events: ["MESSAGE_ADDED" as const] };
    await fails(server.url, CreateWebhook, { input }, { token: alice?.token }, "FORBIDDEN");
    await fails(server.url, Webhooks, {}, { token: alice?.token }, "FORBIDDEN");
    // The owner role holds every permission, tenant:* included.
    const { roles } = await ok(server.url, Roles, {}, { apiKey: tenant.apiKey });
    const owner = roles.find((role) => role.name === "owner")?.id as string;
    await ok(server.url, AssignRole, { userId: bob?.id as string, roleId: owner }, { apiKey: tenant.apiKey });
    const { createWebhook } = await ok(
      server.url,
      CreateWebhook,
      { input: { ...input, description: " notes " } },
      { token: bob?.token },
    );
    expect(createWebhook.webhook).toMatchObject({
      url: input.url,
      events: ["MESSAGE_ADDED"],
      description: "notes",
      enabled: true,
    });

    const bad = async (changes: Record<string, unknown>, field: string) => {
      const error = await fails(
        server.url,
        CreateWebhook,
        { input: { ...input, ...changes } as never },
        { apiKey: tenant.apiKey },
        "BAD_USER_INPUT",
      );
      expect(error.extensions?.field).toBe(field);
    };
    await bad({ url: "http://example.com/hook" }, "input.url");
    await bad({ url: "ftp://127.0.0.1/hook" }, "input.url");
    await bad({ url: "https://user:pw@example.com/hook" }, "input.url");
    await bad({ url: "not a url" }, "input.url");
    await bad({ events: [] }, "input.events");
    await bad({ description: "x".repeat(501) }, "input.description");

    const { auditLog } = await ok(server.url, AuditLog, { first: 5 }, { apiKey: tenant.apiKey });
    expect(auditLog.edges[0]?.node).toMatchObject({
      action: "webhook.created",
      target: { type: "Webhook", id: createWebhook.webhook.id },
      actor: { kind: "USER", id: bob?.id },
    });
    const deleted = await ok(server.url, DeleteWebhook, { id: createWebhook.webhook.id }, { apiKey: tenant.apiKey });
    expect(deleted.deleteWebhook).toBe(createWebhook.webhook.id);
    expect((await ok(server.url, Webhooks, {}, { apiKey: tenant.apiKey })).webhooks).toEqual([]);
    await fails(
      server.url,
      UpdateWebhook,
      { id: createWebhook.webhook.id, input: { enabled: true } },
      { apiKey: tenant.apiKey },
      "NOT_FOUND",
    );
  });

  test("a tenant has at most 20 webhooks", async ({ server, tenant }) => {
    for (let n = 0; n < 20; n++) await hook(server.url, tenant, receiver.url(`/n${n}`), ["USER_DELETED"]);
    await fails(
      server.url,
      CreateWebhook,
      { input: { url: receiver.url("/n21"), events: ["USER_DELETED"] } },
      { apiKey: tenant.apiKey },
      "CONFLICT",
    );
  });
});

describe.each(backends())("webhooks failing for long on %s", (backend) => {
  useServer(backend, webhookSettings({ retryBaseMs: 100, retryFactor: 2, disableAfterMs: 800 }));
  let receiver: WebhookReceiver;
  beforeAll(async () => {
    receiver = await new WebhookReceiver().start();
  });
  afterAll(() => receiver.stop());

  test("are disabled, with their pending deliveries failed and an audit entry", async ({ server, tenant }) => {
    receiver.fallback = 500;
    const { id } = await hook(server.url, tenant, receiver.url("/broken"), ["MESSAGE_ADDED"]);
    const group = await groupOf(server.url, tenant);
    await send(server.url, tenant, group, "fail, fail, fail");
    const deadline = Date.now() + 10_000;
    let webhook = (await ok(server.url, Webhooks, {}, { apiKey: tenant.apiKey })).webhooks[0];
    while (webhook?.enabled && Date.now() < deadline) {
      await sleep(100);
      webhook = (await ok(server.url, Webhooks, {}, { apiKey: tenant.apiKey })).webhooks[0];
    }
    expect(webhook?.enabled).toBe(false);
    expect(webhook?.disabledReason).toMatch(/every attempt failed for more than 1 s \(last: answered 500\)/);
    const [row] = await deliveries(server.url, tenant, id);
    expect(row).toMatchObject({ status: "FAILED", error: "webhook disabled" });
    expect(row?.attempts).toBeGreaterThanOrEqual(3);
    const { auditLog } = await ok(server.url, AuditLog, { first: 5 }, { apiKey: tenant.apiKey });
    expect(auditLog.edges[0]?.node).toMatchObject({
      action: "webhook.disabled",
      actor: { kind: "SYSTEM", id: null },
      target: { type: "Webhook", id },
    });
    // Nothing more is recorded or sent for it.
    const count = receiver.received.length;
    await send(server.url, tenant, group, "still there?");
    await sleep(800);
    expect(receiver.received).toHaveLength(count);
    expect(await deliveries(server.url, tenant, id)).toHaveLength(1);
    // Turned back on, it starts afresh.
    receiver.fallback = 200;
    const { updateWebhook } = await ok(
      server.url,
      UpdateWebhook,
      { id, input: { enabled: true } },
      { apiKey: tenant.apiKey },
    );
    expect(updateWebhook).toMatchObject({ enabled: true, disabledReason: null, failingSince: null });
    await send(server.url, tenant, group, "back");
    const [back] = await receiver.waitFor(1, (r) => r.status === 200);
    expect(back?.body.data.message.body).toBe("back");
  });
});

describe.each(backends())("webhooks across instances on %s", (backend) => {
  let database: TestDatabase;
  const servers: TestServer[] = [];
  let receiver: WebhookReceiver;
  beforeAll(async () => {
    database = await createTestDatabase(backend);
    receiver = await new WebhookReceiver().start();
  });
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => server.stop()));
  });
  afterAll(async () => {
    await receiver.stop();
    await database.drop();
  });

  it("two instances send each delivery once, taking turns at one instance's queue", async () => {
    // One attempt at a time per instance and a slow receiver: deliveries recorded by A queue up,
    // and B, looking for due ones every 50 ms, claims some of them.
    const settings = webhookSettings({ pollMs: 50, concurrency: 1 });
    const logs = [capturingLogger(), capturingLogger()];
    servers.push(
      await startServer(database, settings, { log: logs[0]?.log }),
      await startServer(database, settings, { log: logs[1]?.log }),
    );
    const [a] = servers as [TestServer, TestServer];
    receiver.delayMs = 50;
    const tenant = await createTenant(a.url, ["Alice", "Bob"]);
    await hook(a.url, tenant, receiver.url("/once"), ["MESSAGE_ADDED"]);
    const group = await groupOf(a.url, tenant);
    const sent = await Promise.all(Array.from({ length: 30 }, (_, n) => send(a.url, tenant, group, `m${n}`)));
    await receiver.waitFor(30, () => true, 20_000);
    await sleep(500);
    const ids = receiver.received.map((r) => r.headers["x-webhook-id"]);
    expect(ids).toHaveLength(30);
    expect(new Set(ids).size).toBe(30);
    expect(receiver.received.every((r) => r.status === 200)).toBe(true);
    expect(receiver.received.map((r) => r.body.data.message.id).sort()).toEqual(sent.map((m) => m.id).sort());
    // Each instance sent some, and no delivery was attempted by both.
    const sentBy = logs.map(
      ({ lines }) =>
        new Set(lines.filter((line) => line.msg === "webhook delivery attempted").map((line) => line.deliveryId)),
    ) as [Set<unknown>, Set<unknown>];
    expect(sentBy[0].size).toBeGreaterThan(0);
    expect(sentBy[1].size).toBeGreaterThan(0);
    expect(sentBy[0].size + sentBy[1].size).toBe(30);
    expect(new Set([...sentBy[0], ...sentBy[1]])).toEqual(new Set(ids));
  });

  it("an instance restarted while a delivery waits for its retry loses nothing", async () => {
    receiver.received.length = 0;
    receiver.delayMs = 0;
    receiver.answers = [500];
    const settings = webhookSettings({ retryBaseMs: 2500, retryFactor: 2, pollMs: 200 });
    const first = await startServer(database, settings);
    servers.push(first);
    const tenant = await createTenant(first.url, ["Alice", "Bob"]);
    const { id } = await hook(first.url, tenant, receiver.url("/restart"), ["MESSAGE_ADDED"]);
    const group = await groupOf(first.url, tenant);
    await send(first.url, tenant, group, "survives");
    await receiver.waitFor(1);
    // Stopped while the delivery waits for its retry; a new instance on the same storage sends it.
    await first.stop();
    servers.splice(0);
    const stoppedAt = Date.now();
    const second = await startServer(database, settings);
    servers.push(second);
    const [again] = await receiver.waitFor(1, (r) => r.status === 200, 10_000);
    expect(again?.at).toBeGreaterThanOrEqual(stoppedAt);
    expect(receiver.received).toHaveLength(2);
    expect(again?.headers["x-webhook-id"]).toBe(receiver.received[0]?.headers["x-webhook-id"]);
    expect(again?.headers["x-webhook-attempt"]).toBe("2");
    const [row] = await deliveriesUntil(second.url, tenant, id, (rows) => rows[0]?.status === "DELIVERED");
    expect(row).toMatchObject({ status: "DELIVERED", attempts: 2 });
  });
});

describe("webhook outbound rules", () => {
  it("in production mode, a host name resolving to a loopback or private address is refused at connect time", async () => {
    // The machine's own name resolves to a loopback or private address (never a public one).
    await expect(
      outboundPost(`https://${hostname()}:9/hook`, { production: true }, { headers: {}, body: "{}", timeoutMs: 2000 }),
    ).rejects.toThrow(/private or loopback/);
    await expect(
      outboundPost("http://127.0.0.1:9/hook", { production: true }, { headers: {}, body: "{}", timeoutMs: 2000 }),
    ).rejects.toThrow(/https/);
  });

  it("follows no redirect, reads at most the first bytes of an answer, and gives up after the time limit", async () => {
    let hits = 0;
    const target = createServer((request, response) => {
      hits += 1;
      if (request.url === "/redirect") response.writeHead(302, { location: "/elsewhere" }).end();
      else if (request.url === "/big") response.writeHead(200).end("x".repeat(1_000_000));
      // /slow never answers
    });
    await new Promise<void>((resolve) => target.listen(0, "127.0.0.1", resolve));
    const base = `http://127.0.0.1:${(target.address() as AddressInfo).port}`;
    const post = (path: string, timeoutMs = 2000) =>
      outboundPost(`${base}${path}`, { production: false }, { headers: {}, body: "{}", timeoutMs });
    try {
      expect(await post("/redirect")).toEqual({ status: 302, body: "" });
      expect(hits).toBe(1);
      const big = await post("/big");
      expect(big.status).toBe(200);
      expect(big.body.length).toBe(1024);
      const started = Date.now();
      await expect(post("/slow", 300)).rejects.toThrow();
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      target.closeAllConnections();
      await new Promise<void>((resolve) => target.close(() => resolve()));
    }
  });

  describe.each(backends())("on %s in production mode", (backend) => {
    useServer(backend, { production: true, ...webhookSettings({ retryBaseMs: 100 }) });
    let receiver: WebhookReceiver;
    beforeAll(async () => {
      receiver = await new WebhookReceiver().start();
    });
    afterAll(() => receiver.stop());

    test("loopback and private targets are refused, at creation and at connect time", async ({ server, tenant }) => {
      for (const url of [
        receiver.url("/hook"),
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.0.0.8/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest",
      ]) {
        const error = await fails(
          server.url,
          CreateWebhook,
          { input: { url, events: ["MESSAGE_ADDED"] } },
          { apiKey: tenant.apiKey },
          "BAD_USER_INPUT",
        );
        expect(error.extensions?.field, url).toBe("input.url");
      }
      // A name is only resolved when connecting: accepted now, refused then.
      const port = new URL(receiver.url()).port;
      const { id } = await hook(server.url, tenant, `https://${hostname()}:${port}/hook`, ["MESSAGE_ADDED"]);
      const group = await groupOf(server.url, tenant);
      await send(server.url, tenant, group, "not to my own network");
      const [row] = await deliveriesUntil(server.url, tenant, id, (rows) => (rows[0]?.attempts ?? 0) >= 2);
      expect(row?.error).toMatch(/private or loopback/);
      expect(row?.responseStatus).toBeNull();
      expect(receiver.received).toEqual([]);
    });
  });
});
