import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { contextFor } from "../src/context.ts";
import { messageFeed } from "../src/services/messages.ts";
import { backends, createTestDatabase, startServer, type TestDatabase, type TestServer } from "./helpers/backends.ts";
import { ok, sleep, subscribe, wsClient } from "./helpers/client.ts";
import { createTenant, type TestTenant } from "./helpers/fixtures.ts";
import { PrivateRedis } from "./helpers/redis-server.ts";
import { test, useServer } from "./helpers/world.ts";
import { AddMembers, CreateGroup, DeleteGroup, MarkRead } from "./operations/conversations.ts";
import { MessageAdded, ReadReceipt, TypingInConversation } from "./operations/events.ts";
import { Messages, SendMessage, SetTyping } from "./operations/messages.ts";

async function group(url: string, tenant: TestTenant, name = "Room"): Promise<string> {
  const [owner, ...others] = tenant.users;
  const { createGroup } = await ok(
    url,
    CreateGroup,
    { input: { name, memberIds: others.map((u) => u.id) } },
    { token: owner?.token },
  );
  return createGroup.id;
}

async function send(url: string, token: string, conversationId: string, body: string) {
  return (await ok(url, SendMessage, { input: { conversationId, body } }, { token })).sendMessage;
}

function bodiesOf(events: { data?: { messageAdded: { body?: string | null } } | null }[]) {
  return events.map((event) => event.data?.messageAdded.body);
}

describe.each(backends())("realtime on %s", (backend) => {
  useServer(backend, { typingTimeoutMs: 700 });
  test.override("userNames", ["Alice", "Bob"]);

  test("delivers live messages to a real graphql-ws client, in order", async ({ server, tenant, sockets }) => {
    const [alice, bob] = tenant.users as [TestTenant["users"][0], TestTenant["users"][0]];
    const conversationId = await group(server.url, tenant);
    const client = sockets.open({ token: bob.token });
    const sub = subscribe(client, MessageAdded, { conversationId });
    await sleep(200);
    for (const body of ["one", "two", "three"]) await send(server.url, alice.token, conversationId, body);
    const events = await sub.take(3);
    expect(bodiesOf(events)).toEqual(["one", "two", "three"]);
    expect(events.map((e) => e.data?.messageAdded.seq)).toEqual([1, 2, 3]);
    expect(events[0]?.data?.messageAdded.sender?.id).toBe(alice.id);
    await sub.expectSilence(200);
  });

  test("replays exactly the missed messages after a disconnect, then continues live", async ({
    server,
    tenant,
    sockets,
  }) => {
    const [alice, bob] = tenant.users as [TestTenant["users"][0], TestTenant["users"][0]];
    const conversationId = await group(server.url, tenant);
    const first = sockets.open({ token: bob.token });
    const sub1 = subscribe(first, MessageAdded, { conversationId });
    await sleep(200);
    await send(server.url, alice.token, conversationId, "m1");
    await send(server.url, alice.token, conversationId, "m2");
    const seen = await sub1.take(2);
    const lastCursor = seen[1]?.data?.messageAdded.cursor as string;
    await first.dispose();

    for (const body of ["m3", "m4", "m5"]) await send(server.url, alice.token, conversationId, body);

    const second = sockets.open({ token: bob.token });
    const sub2 = subscribe(second, MessageAdded, { conversationId, after: lastCursor });
    expect(bodiesOf(await sub2.take(3))).toEqual(["m3", "m4", "m5"]);
    await send(server.url, alice.token, conversationId, "m6");
    expect(bodiesOf(await sub2.take(1))).toEqual(["m6"]);
    await sub2.expectSilence(200);
  });

  test("has no gap and no duplicate when subscribing with a cursor while messages keep coming", async ({
    server,
    sockets,
  }) => {
    const tenant = await createTenant(server.url, ["Alice", "Bob", "Carol"]);
    const [alice, bob, carol] = tenant.users as [
      TestTenant["users"][0],
      TestTenant["users"][0],
      TestTenant["users"][0],
    ];
    const conversationId = await group(server.url, tenant);
    for (let i = 1; i <= 5; i++) await send(server.url, alice.token, conversationId, `pre${i}`);
    const page = await ok(server.url, Messages, { conversationId, first: 2 }, { token: bob.token });
    const after = page.messages.pageInfo.endCursor as string;

    const total = 40;
    const senders = (async () => {
      for (let i = 1; i <= total; i++) {
        await send(server.url, i % 2 ? alice.token : carol.token, conversationId, `live${i}`);
      }
    })();
    await sleep(20);
    const client = sockets.open({ token: bob.token });
    const sub = subscribe(client, MessageAdded, { conversationId, after });
    const events = await sub.take(3 + total, 20_000);
    await senders;
    const seqs = events.map((e) => e.data?.messageAdded.seq);
    expect(seqs).toEqual(Array.from({ length: 3 + total }, (_, i) => i + 3));
    await sub.expectSilence(300);
  });

  test("without an id streams all of the viewer's conversations, including ones joined later", async ({
    server,
    sockets,
  }) => {
    const tenant = await createTenant(server.url, ["Alice", "Bob", "Carol"]);
    const [alice, bob, carol] = tenant.users as [
      TestTenant["users"][0],
      TestTenant["users"][0],
      TestTenant["users"][0],
    ];
    const both = await group(server.url, { ...tenant, users: [alice, bob] }, "both");
    const aliceCarol = await group(server.url, { ...tenant, users: [alice, carol] }, "alice+carol");
    const client = sockets.open({ token: bob.token });
    const sub = subscribe(client, MessageAdded, {});
    await sleep(200);
    await send(server.url, alice.token, both, "for bob");
    await send(server.url, alice.token, aliceCarol, "not for bob");
    expect(bodiesOf(await sub.take(1))).toEqual(["for bob"]);

    await ok(server.url, AddMembers, { conversationId: aliceCarol, userIds: [bob.id] }, { token: alice.token });
    await sleep(200);
    await send(server.url, carol.token, aliceCarol, "now bob is in");
    const later = await sub.take(1);
    expect(bodiesOf(later)).toEqual(["now bob is in"]);
    expect(later[0]?.data?.messageAdded.conversation.id).toBe(aliceCarol);
    await sub.expectSilence(200);
  });

  test("the API key's stream covers every conversation of the tenant, including new ones, and ends on delete", async ({
    server,
    tenant,
    sockets,
  }) => {
    const [alice] = tenant.users as [TestTenant["users"][0]];
    const existing = await group(server.url, tenant, "existing");
    const client = sockets.open({ apiKey: tenant.apiKey });
    const all = subscribe(client, MessageAdded, {});
    const one = subscribe(client, MessageAdded, { conversationId: existing });
    await sleep(200);
    await send(server.url, alice.token, existing, "old room");
    const created = await group(server.url, tenant, "created later");
    await sleep(200);
    await send(server.url, alice.token, created, "new room");
    expect(bodiesOf(await all.take(2))).toEqual(["old room", "new room"]);
    expect(bodiesOf(await one.take(1))).toEqual(["old room"]);
    await ok(server.url, DeleteGroup, { id: existing }, { apiKey: tenant.apiKey });
    expect(await one.done).toEqual({});
  });

  test("typing: coalesced, not echoed to the typist, and expires by itself", async ({ server, tenant, sockets }) => {
    const [alice, bob] = tenant.users as [TestTenant["users"][0], TestTenant["users"][0]];
    const conversationId = await group(server.url, tenant);
    const bobClient = sockets.open({ token: bob.token });
    const aliceClient = sockets.open({ token: alice.token });
    const bobSees = subscribe(bobClient, TypingInConversation, { conversationId });
    const aliceSees = subscribe(aliceClient, TypingInConversation, { conversationId });
    await sleep(200);
    await ok(server.url, SetTyping, { conversationId, isTyping: true }, { token: alice.token });
    await ok(server.url, SetTyping, { conversationId, isTyping: true }, { token: alice.token });
    const started = await bobSees.next();
    expect(started.data?.typing).toMatchObject({
      isTyping: true,
      user: { id: alice.id },
      conversation: { id: conversationId },
    });
    // No refresh: reported stopped after the timeout (700 ms here), exactly once.
    const stopped = await bobSees.next(3000);
    expect(stopped.data?.typing).toMatchObject({ isTyping: false, user: { id: alice.id } });
    await bobSees.expectSilence(300);
    // Alice heard nothing of her own typing, yet her stream is live: Bob's typing reaches her.
    await aliceSees.expectSilence(0, () =>
      ok(server.url, SetTyping, { conversationId, isTyping: true }, { token: bob.token }),
    );

    await ok(server.url, SetTyping, { conversationId, isTyping: true }, { token: alice.token });
    expect((await bobSees.next()).data?.typing.isTyping).toBe(true);
    await ok(server.url, SetTyping, { conversationId, isTyping: false }, { token: alice.token });
    expect((await bobSees.next()).data?.typing.isTyping).toBe(false);
    await bobSees.expectSilence(900);
  });

  test("read receipts reach the other members and are stored", async ({ server, tenant, sockets }) => {
    const [alice, bob] = tenant.users as [TestTenant["users"][0], TestTenant["users"][0]];
    const conversationId = await group(server.url, tenant);
    const message = await send(server.url, alice.token, conversationId, "read me");
    const client = sockets.open({ token: alice.token });
    const sub = subscribe(client, ReadReceipt, { conversationId });
    await sleep(200);
    await ok(server.url, MarkRead, { conversationId, upToMessageId: message.id }, { token: bob.token });
    const event = await sub.next();
    expect(event.data?.readReceipt).toMatchObject({
      lastReadSeq: 1,
      user: { id: bob.id },
      lastReadMessage: { id: message.id },
    });
  });

  test("a subscriber that cannot keep up is closed with SLOW_CONSUMER instead of buffering without bound", async ({
    server,
    tenant,
  }) => {
    const [alice, bob] = tenant.users as [TestTenant["users"][0], TestTenant["users"][0]];
    const conversationId = await group(server.url, tenant);
    const deps = { ...server.app.deps, config: { ...server.app.deps.config, subscriberBufferSize: 16 } };
    const ctx = contextFor(deps, {
      kind: "user",
      tenantId: tenant.id,
      userId: bob.id,
      tokenId: "t",
      sessionId: null,
      expiresAt: new Date(Date.now() + 60_000),
    });
    const feed = messageFeed(ctx, { conversationId, afterSeq: null });
    // Start the feed, then stop consuming while 40 messages arrive.
    const firstPending = feed.next();
    await send(server.url, alice.token, conversationId, "first");
    expect((await firstPending).value?.body).toBe("first");
    await Promise.all(Array.from({ length: 40 }, (_, i) => send(server.url, alice.token, conversationId, `flood${i}`)));
    await sleep(300);
    const drained: unknown[] = [];
    const error = await (async () => {
      try {
        for (let i = 0; i < 100; i++) {
          const next = await feed.next();
          if (next.done) return null;
          drained.push(next.value);
        }
        return null;
      } catch (caught) {
        return caught as { extensions?: { code?: string } };
      }
    })();
    expect(error?.extensions?.code).toBe("SLOW_CONSUMER");
    expect(drained.length).toBeLessThanOrEqual(16);
  });
});

describe("realtime with a Redis of the test's own", () => {
  let redis: PrivateRedis;
  let database: TestDatabase;
  let servers: TestServer[] = [];
  const backend = backends().includes("postgres+redis") ? "postgres+redis" : "pglite";

  beforeAll(async () => {
    redis = await PrivateRedis.start();
    database = await createTestDatabase(backend);
    servers.push(await startServer(database, { redisUrl: redis.url }));
    // A second instance needs a shared database, which PGlite (single process) cannot be.
    if (backend === "postgres+redis") servers.push(await startServer(database, { redisUrl: redis.url }));
  });
  afterAll(async () => {
    for (const s of servers) await s.stop();
    servers = [];
    await database?.drop();
    await redis?.stop();
  });

  // A second instance needs a shared database: PGlite is single-process, so this case
  // exists only where PostgreSQL is configured (CI always configures it).
  const withTwoInstances = backend === "postgres+redis" ? it : null;
  withTwoInstances?.("delivers across two server instances sharing PostgreSQL and Redis", async () => {
    const [a, b] = servers as [TestServer, TestServer];
    const tenant = await createTenant(a.url, ["Alice", "Bob"]);
    const [alice, bob] = tenant.users as [TestTenant["users"][0], TestTenant["users"][0]];
    const conversationId = await group(a.url, tenant);
    const client = wsClient(a.wsUrl, { token: bob.token });
    const sub = subscribe(client, MessageAdded, { conversationId });
    const allClient = wsClient(a.wsUrl, { token: bob.token });
    const all = subscribe(allClient, MessageAdded, {});
    await sleep(300);
    await send(b.url, alice.token, conversationId, "via B");
    await send(a.url, alice.token, conversationId, "via A");
    expect(bodiesOf(await sub.take(2))).toEqual(["via B", "via A"]);
    expect(bodiesOf(await all.take(2))).toEqual(["via B", "via A"]);
    await client.dispose();
    await allClient.dispose();
  });

  it("loses nothing when Redis drops the server's connections", async () => {
    const first = servers[0] as TestServer;
    const sender = (servers[1] ?? first) as TestServer;
    const tenant = await createTenant(first.url, ["Alice", "Bob"]);
    const [alice, bob] = tenant.users as [TestTenant["users"][0], TestTenant["users"][0]];
    const conversationId = await group(first.url, tenant);
    const client = wsClient(first.wsUrl, { token: bob.token });
    const sub = subscribe(client, MessageAdded, { conversationId });
    await sleep(300);
    await send(sender.url, alice.token, conversationId, "before");
    expect(bodiesOf(await sub.take(1))).toEqual(["before"]);

    const killed = await redis.killClients();
    expect(killed).toBeGreaterThan(0);
    const during = ["d1", "d2", "d3", "d4", "d5"];
    for (const body of during) await send(sender.url, alice.token, conversationId, body);
    expect(bodiesOf(await sub.take(during.length, 15_000))).toEqual(during);
    await send(sender.url, alice.token, conversationId, "after");
    expect(bodiesOf(await sub.take(1))).toEqual(["after"]);
    await sub.expectSilence(300);
    await client.dispose();
  });

  it("loses nothing when Redis restarts, including messages sent while it was down", async () => {
    const first = servers[0] as TestServer;
    const sender = (servers[1] ?? first) as TestServer;
    const tenant = await createTenant(first.url, ["Alice", "Bob"]);
    const [alice, bob] = tenant.users as [TestTenant["users"][0], TestTenant["users"][0]];
    const conversationId = await group(first.url, tenant);
    const client = wsClient(first.wsUrl, { token: bob.token });
    const sub = subscribe(client, MessageAdded, { conversationId });
    const allClient = wsClient(first.wsUrl, { token: bob.token });
    const all = subscribe(allClient, MessageAdded, {});
    await sleep(300);
    await send(sender.url, alice.token, conversationId, "up");
    expect(bodiesOf(await sub.take(1))).toEqual(["up"]);
    expect(bodiesOf(await all.take(1))).toEqual(["up"]);

    const down = ["while-down-1", "while-down-2", "while-down-3"];
    await redis.restart(200, async () => {
      // Sends still succeed: storage is the source of truth, pub/sub only carries news.
      for (const body of down) await send(sender.url, alice.token, conversationId, body);
    });
    expect(bodiesOf(await sub.take(down.length, 20_000))).toEqual(down);
    expect(bodiesOf(await all.take(down.length, 20_000))).toEqual(down);
    await send(sender.url, alice.token, conversationId, "back");
    expect(bodiesOf(await sub.take(1, 15_000))).toEqual(["back"]);
    expect(bodiesOf(await all.take(1, 15_000))).toEqual(["back"]);
    await client.dispose();
    await allClient.dispose();
  });
});
