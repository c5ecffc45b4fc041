import type { ResultOf } from "@graphql-typed-document-node/core";
import type { Client } from "graphql-ws";
import { describe, expect } from "vitest";
import { WebSocket } from "ws";
import { backends, startServer, TEST_JWT_SECRET, type TestServer } from "./helpers/backends.ts";
import {
  type Auth,
  drain,
  expectOpen,
  ok,
  operationErrors,
  type Subscription,
  sleep,
  subscribe,
  whenLive,
  wsClient,
} from "./helpers/client.ts";
import { createTenant, type TestTenant } from "./helpers/fixtures.ts";
import { freePort, runServer, waitFor } from "./helpers/process.ts";
import { test, useServer } from "./helpers/world.ts";
import { CreateGroup } from "./operations/conversations.ts";
import { ConversationEvents, MessageAdded, Typing } from "./operations/events.ts";
import { SendMessage } from "./operations/messages.ts";
import { ConversationConnections, ConversationPresence, PresenceChanged, UserPresence } from "./operations/presence.ts";

type Change = ResultOf<typeof PresenceChanged>["presenceChanged"];

/** Polls until `read` gives a value that passes `check`, or fails after `timeoutMs` with the last value. */
async function until<T>(read: () => Promise<T>, check: (value: T) => boolean, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let value = await read();
  while (!check(value)) {
    if (Date.now() > deadline)
      expect.fail(`condition not met within ${timeoutMs} ms; last value: ${JSON.stringify(value)}`);
    await sleep(50);
    value = await read();
  }
  return value;
}

const presenceOf = async (url: string, tenant: TestTenant, userId: string) =>
  (await ok(url, UserPresence, { id: userId }, { apiKey: tenant.apiKey })).user;

const onlineNow = (url: string, tenant: TestTenant, userId: string, online: boolean, timeoutMs?: number) =>
  until(
    () => presenceOf(url, tenant, userId),
    (user) => user?.online === online,
    timeoutMs,
  );

/** The next change of this user on the subscription (others' changes, the subscriber's own, are skipped). */
async function changeOf(sub: Subscription<{ presenceChanged: Change }>, userId: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const event = await sub.next(Math.max(1, deadline - Date.now()));
    expect(event.errors, JSON.stringify(event)).toBeUndefined();
    const change = event.data?.presenceChanged as Change;
    if (change.user.id === userId) return change;
  }
}

/** Changes up to and including the first of `fenceUserId` (which must come). */
async function changesUntil(sub: Subscription<{ presenceChanged: Change }>, fenceUserId: string) {
  const seen: Change[] = [];
  while (true) {
    const event = await sub.next(10_000);
    expect(event.errors, JSON.stringify(event)).toBeUndefined();
    const change = event.data?.presenceChanged as Change;
    seen.push(change);
    if (change.user.id === fenceUserId) return seen;
  }
}

/** A socket that connects at once (not lazily) and stays open until disposed. */
const connect = (wsUrl: string, auth: Auth) => wsClient(wsUrl, auth, { keepOpen: true });

/**
 * Expects that no change of `userId` was announced so far: `fence`, another user, connects on
 * `wsUrl`, and every change announced before theirs is checked. Returns the fence's socket.
 */
async function expectNoChangeOf(
  sub: Subscription<{ presenceChanged: Change }>,
  userId: string,
  wsUrl: string,
  fence: User,
): Promise<Client> {
  const socket = connect(wsUrl, { token: fence.token });
  const seen = await changesUntil(sub, fence.id);
  expect(seen.filter((change) => change.user.id === userId)).toEqual([]);
  return socket;
}

/** Resolves once the server has accepted the socket's connection_init (an operation gets an answer). */
async function acknowledged(client: Client): Promise<void> {
  const errors = await operationErrors(client, PresenceChanged, { conversationId: "not-an-id" });
  expect(errors[0]?.extensions?.code, JSON.stringify(errors)).toBe("BAD_USER_INPUT");
}

type User = TestTenant["users"][number];
const usersOf = (tenant: TestTenant) => tenant.users as [User, User, User, User];

/** A group of the given users, created by the API key. */
async function groupWith(url: string, tenant: TestTenant, members: User[]): Promise<string> {
  const { createGroup } = await ok(
    url,
    CreateGroup,
    { input: { name: "Presence", memberIds: members.map((u) => u.id) } },
    { apiKey: tenant.apiKey },
  );
  return createGroup.id;
}

describe.each(backends())("presence on %s", (backend) => {
  const world = useServer(backend);
  test.override("userNames", ["Alice", "Bob", "Carol", "Dave"]);

  /** A group of Alice, Bob and Carol (not Dave). */
  const groupOf = (url: string, tenant: TestTenant) => groupWith(url, tenant, usersOf(tenant).slice(0, 3));

  test("a user is online while any socket is open, and lastSeenAt is set when the last one closes", async ({
    server,
    tenant,
    sockets,
  }) => {
    const [alice, bob, carol] = usersOf(tenant);
    await groupOf(server.url, tenant);
    const before = await presenceOf(server.url, tenant, alice.id);
    expect(before).toEqual({ id: alice.id, online: false, lastSeenAt: null });

    const watcher = sockets.open({ token: bob.token }, { keepOpen: true });
    const sub = subscribe(watcher, PresenceChanged, {});
    await until(
      () => presenceOf(server.url, tenant, bob.id),
      (user) => user?.online === true,
    );

    const first = connect(server.wsUrl, { token: alice.token });
    const second = connect(server.wsUrl, { token: alice.token });
    try {
      expect(await changeOf(sub, alice.id)).toMatchObject({ online: true, lastSeenAt: null, conversationId: null });
      await onlineNow(server.url, tenant, alice.id, true);
      // Both sockets count once the second one is accepted too.
      await acknowledged(second);

      // One of two sockets closes: still online, and no change is announced (Carol's change is the fence).
      await first.dispose();
      const fence = await expectNoChangeOf(sub, alice.id, server.wsUrl, carol);
      expect((await presenceOf(server.url, tenant, alice.id))?.online).toBe(true);
      await fence.dispose();

      // The last one closes: offline, with the time it closed.
      const closedAt = Date.now();
      await second.dispose();
      const offline = await changeOf(sub, alice.id);
      expect(offline).toMatchObject({ online: false, conversationId: null });
      expect(Date.parse(offline.lastSeenAt as string)).toBeGreaterThanOrEqual(closedAt - 1000);
      const after = await onlineNow(server.url, tenant, alice.id, false);
      const stored = await until(
        () => presenceOf(server.url, tenant, alice.id),
        (user) => user?.lastSeenAt === offline.lastSeenAt,
      );
      expect(after?.online).toBe(false);
      expect(stored?.lastSeenAt).toBe(offline.lastSeenAt);
      // Stored in the user's row (in a batch shortly after), not only held in memory.
      const row = () =>
        server.app.deps.db.sql
          .query<{ lastSeenAt: Date | null }>(`SELECT "lastSeenAt" FROM "User" WHERE "id" = $1::uuid`, [alice.id])
          .then((rows) => rows[0]?.lastSeenAt?.toISOString() ?? null);
      expect(await until(row, (value) => value === offline.lastSeenAt)).toBe(offline.lastSeenAt);
    } finally {
      await Promise.allSettled([first.dispose(), second.dispose()]);
    }
  });

  test("onlineCount counts the members online, the viewer included when connected", async ({
    server,
    tenant,
    sockets,
  }) => {
    const [alice, bob, carol, dave] = usersOf(tenant);
    const group = await groupOf(server.url, tenant);
    const count = (auth: Auth) =>
      ok(server.url, ConversationPresence, { id: group }, auth).then((r) => r.conversation?.onlineCount);
    expect(await count({ token: alice.token })).toBe(0);
    sockets.open({ token: alice.token }, { keepOpen: true });
    sockets.open({ token: bob.token }, { keepOpen: true });
    // Dave is not a member: his socket does not count.
    sockets.open({ token: dave.token }, { keepOpen: true });
    await onlineNow(server.url, tenant, dave.id, true);
    expect(
      await until(
        () => count({ token: alice.token }),
        (n) => n === 2,
      ),
    ).toBe(2);
    expect(await count({ token: carol.token })).toBe(2);
    expect(await count({ apiKey: tenant.apiKey })).toBe(2);
    const members = (await ok(server.url, ConversationPresence, { id: group }, { token: carol.token })).conversation
      ?.members;
    expect(Object.fromEntries((members ?? []).map((m) => [m.user.id, m.user.online]))).toEqual({
      [alice.id]: true,
      [bob.id]: true,
      [carol.id]: false,
    });
  });

  test("presenceChanged(conversationId) delivers changes of that conversation's members only", async ({
    server,
    tenant,
    sockets,
  }) => {
    const [, bob, carol, dave] = usersOf(tenant);
    const group = await groupOf(server.url, tenant);
    const sub = subscribe(sockets.open({ token: bob.token }, { keepOpen: true }), PresenceChanged, {
      conversationId: group,
    });
    await onlineNow(server.url, tenant, bob.id, true);
    // The subscription is live once it delivers a change: Carol's.
    const carolSocket = connect(server.wsUrl, { token: carol.token });
    try {
      expect(await changeOf(sub, carol.id)).toMatchObject({ online: true, lastSeenAt: null, conversationId: group });
      // Dave (not a member) comes online first, then Carol goes offline: only Carol's change arrives.
      const daveSocket = sockets.open({ token: dave.token }, { keepOpen: true });
      await onlineNow(server.url, tenant, dave.id, true);
      await carolSocket.dispose();
      const seen = await changesUntil(sub, carol.id);
      expect(seen.filter((change) => change.user.id === dave.id)).toEqual([]);
      const offline = seen.at(-1) as Change;
      expect(offline).toMatchObject({ online: false, conversationId: group });
      expect(offline.lastSeenAt).not.toBeNull();
      await daveSocket.dispose();
    } finally {
      await carolSocket.dispose();
    }
  });

  test("presenceChanged without conversationId delivers changes of everyone sharing a conversation with the viewer", async ({
    server,
    tenant,
    sockets,
  }) => {
    const [alice, bob, carol, dave] = usersOf(tenant);
    await groupOf(server.url, tenant);
    const sub = subscribe(sockets.open({ token: alice.token }, { keepOpen: true }), PresenceChanged, {});
    // The API key hears of every user of its tenant.
    const keySub = subscribe(sockets.open({ apiKey: tenant.apiKey }, { keepOpen: true }), PresenceChanged, {});
    await onlineNow(server.url, tenant, alice.id, true);
    const bobSocket = connect(server.wsUrl, { token: bob.token });
    try {
      expect(await changeOf(sub, bob.id)).toMatchObject({ online: true, conversationId: null });
      // Dave shares nothing with Alice: his change is not delivered; Carol's (after it) is.
      sockets.open({ token: dave.token }, { keepOpen: true });
      await onlineNow(server.url, tenant, dave.id, true);
      sockets.open({ token: carol.token }, { keepOpen: true });
      const seen = await changesUntil(sub, carol.id);
      expect(seen.filter((change) => change.user.id === dave.id)).toEqual([]);
      expect(await changeOf(keySub, dave.id)).toMatchObject({ online: true, conversationId: null });
      await bobSocket.dispose();
      expect(await changeOf(sub, bob.id)).toMatchObject({ online: false, conversationId: null });
    } finally {
      await bobSocket.dispose();
    }
  });

  test("presenceChanged(conversationId): a non-member gets FORBIDDEN, another tenant's conversation NOT_FOUND", async ({
    server,
    tenant,
    sockets,
  }) => {
    const dave = usersOf(tenant)[3];
    const group = await groupOf(server.url, tenant);
    const other = await createTenant(server.url, ["Erin", "Frank"]);
    const foreign = await groupWith(server.url, other, other.users);
    const client = sockets.open({ token: dave.token }, { keepOpen: true });
    const forbidden = await operationErrors(client, PresenceChanged, { conversationId: group });
    expect(forbidden[0]?.extensions?.code, JSON.stringify(forbidden)).toBe("FORBIDDEN");
    const notFound = await operationErrors(client, PresenceChanged, { conversationId: foreign });
    expect(notFound[0]?.extensions?.code, JSON.stringify(notFound)).toBe("NOT_FOUND");
    // The same as conversation(id) answers.
    const erinsView = await operationErrors(
      sockets.open({ token: other.users[0]?.token }, { keepOpen: true }),
      PresenceChanged,
      { conversationId: group },
    );
    expect(erinsView[0]?.extensions?.code).toBe("NOT_FOUND");
  });

  test("connectionCount counts the sockets with a live subscription following the conversation", async ({
    server,
    tenant,
    sockets,
  }) => {
    const [alice, bob, carol] = usersOf(tenant);
    const group = await groupOf(server.url, tenant);
    const connections = () =>
      ok(server.url, ConversationConnections, { id: group }, { token: alice.token }).then(
        (r) => r.conversation?.connectionCount,
      );
    const counted = (n: number) => until(connections, (count) => count === n);
    expect(await connections()).toBe(0);
    // A socket without subscriptions does not count.
    sockets.open({ token: alice.token }, { keepOpen: true });
    const bobs = sockets.open({ token: bob.token }, { keepOpen: true });
    const typing = subscribe(bobs, Typing, { conversationId: group });
    await counted(1);
    // A second subscription of the same socket on the same conversation: still one socket.
    const messages = subscribe(bobs, MessageAdded, { conversationId: group });
    await whenLive(messages, () =>
      ok(server.url, SendMessage, { input: { conversationId: group, body: "hello" } }, { token: carol.token }),
    );
    expect(await connections()).toBe(1);
    // A refused subscription (Dave is not a member) does not count.
    const daves = sockets.open({ token: usersOf(tenant)[3].token }, { keepOpen: true });
    const refused = await operationErrors(daves, Typing, { conversationId: group });
    expect(refused[0]?.extensions?.code).toBe("FORBIDDEN");
    expect(await connections()).toBe(1);
    // Following all of a member's conversations, or all of the tenant's (the API key), counts too.
    subscribe(sockets.open({ token: carol.token }, { keepOpen: true }), ConversationEvents, {});
    await counted(2);
    const keys = sockets.open({ apiKey: tenant.apiKey }, { keepOpen: true });
    const all = subscribe(keys, MessageAdded, {});
    await counted(3);
    // Unsubscribing one of Bob's two leaves his socket counted; the other one ends it.
    messages.unsubscribe();
    all.unsubscribe();
    await counted(2);
    expect(await connections()).toBe(2);
    typing.unsubscribe();
    await counted(1);
  });

  test("a change reaching many subscribers costs the instance a few statements, not some per subscriber", async ({
    server,
    tenant,
    sockets,
  }) => {
    const [alice, bob, carol] = usersOf(tenant);
    const group = await groupOf(server.url, tenant);
    const subs = Array.from({ length: 10 }, (_, i) =>
      subscribe(
        sockets.open({ token: bob.token }, { keepOpen: true }),
        PresenceChanged,
        i % 2 ? { conversationId: group } : {},
      ),
    );
    // Every subscription is live once it delivered one of Carol's changes (she comes and goes until then).
    const live = new Set<number>();
    for (let attempt = 0; live.size < subs.length && attempt < 20; attempt++) {
      const carols = connect(server.wsUrl, { token: carol.token });
      await acknowledged(carols);
      await carols.dispose();
      // Gone for good (past the offline delay), so her next socket is announced again.
      await onlineNow(server.url, tenant, carol.id, false);
      for (const [i, sub] of subs.entries()) {
        if (live.has(i)) continue;
        await changeOf(sub, carol.id, 500).then(
          () => live.add(i),
          () => {},
        );
      }
    }
    expect(live.size).toBe(subs.length);
    await onlineNow(server.url, tenant, carol.id, false);
    for (const sub of subs) await drain(sub, 200);
    const aliceSocket = connect(server.wsUrl, { token: alice.token });
    try {
      for (const sub of subs) await changeOf(sub, alice.id);
      const before = server.app.deps.db.stats.statements;
      await aliceSocket.dispose();
      for (const sub of subs) expect(await changeOf(sub, alice.id)).toMatchObject({ online: false });
      const spent = server.app.deps.db.stats.statements - before;
      // Per change and instance: the members of the group, Alice's partners, Alice's row per
      // document and variables, and the last-seen batch; per subscriber it would be 20 or more.
      expect(spent, `${spent} statements`).toBeLessThan(10);
    } finally {
      await aliceSocket.dispose();
    }
  });

  test("a reload (the last socket closes, a new one opens within the offline delay) announces nothing; going offline is announced once, after the delay, with the time the socket closed", {
    timeout: 30_000,
  }, async ({ tenant }) => {
    const [alice, bob, carol] = usersOf(tenant);
    const reloading = await startServer(world.database, { presenceOfflineDelayMs: 4000 });
    const watcher = connect(reloading.wsUrl, { token: bob.token });
    const opened: Client[] = [watcher];
    try {
      await groupOf(reloading.url, tenant);
      const sub = subscribe(watcher, PresenceChanged, {});
      await onlineNow(reloading.url, tenant, bob.id, true);
      const page = connect(reloading.wsUrl, { token: alice.token });
      opened.push(page);
      expect(await changeOf(sub, alice.id)).toMatchObject({ online: true });
      await acknowledged(page);
      // The page reloads: its socket closes and the new page's one opens.
      await page.dispose();
      const reloaded = connect(reloading.wsUrl, { token: alice.token });
      opened.push(reloaded);
      await acknowledged(reloaded);
      const fence = await expectNoChangeOf(sub, alice.id, reloading.wsUrl, carol);
      opened.push(fence);
      expect((await presenceOf(reloading.url, tenant, alice.id))?.online).toBe(true);

      // Now she leaves for good: one change, offline, dated when the socket closed.
      const closedAt = Date.now();
      await reloaded.dispose();
      const offline = await changeOf(sub, alice.id);
      expect(offline).toMatchObject({ online: false });
      expect(Date.parse(offline.lastSeenAt as string)).toBeGreaterThanOrEqual(closedAt - 1000);
      expect(Date.parse(offline.lastSeenAt as string)).toBeLessThanOrEqual(closedAt + 1000);
      // Read at once it is the announced time, before or after its batch is stored.
      expect(await presenceOf(reloading.url, tenant, alice.id)).toEqual({
        id: alice.id,
        online: false,
        lastSeenAt: offline.lastSeenAt,
      });
      const row = () =>
        reloading.app.deps.db.sql
          .query<{ lastSeenAt: Date | null }>(`SELECT "lastSeenAt" FROM "User" WHERE "id" = $1::uuid`, [alice.id])
          .then((rows) => rows[0]?.lastSeenAt?.toISOString() ?? null);
      expect(await until(row, (value) => value === offline.lastSeenAt)).toBe(offline.lastSeenAt);
    } finally {
      await Promise.allSettled(opened.map((client) => client.dispose()));
      await reloading.stop();
    }
  });

  test("a user still within the offline delay when the server stops goes offline then, with their last-seen time stored", {
    timeout: 30_000,
  }, async ({ server, tenant }) => {
    const [alice] = usersOf(tenant);
    const stopping = await startServer(world.database, { presenceOfflineDelayMs: 60_000 });
    const page = connect(stopping.wsUrl, { token: alice.token });
    let stopped = false;
    try {
      await acknowledged(page);
      await onlineNow(stopping.url, tenant, alice.id, true);
      const closedAt = Date.now();
      await page.dispose();
      // Within the delay: still online, nothing stored yet.
      expect(await presenceOf(stopping.url, tenant, alice.id)).toEqual({
        id: alice.id,
        online: true,
        lastSeenAt: null,
      });
      stopped = true;
      await stopping.stop();
      // Stored by the stopping server before it closed, dated when the socket closed.
      const rows = await server.app.deps.db.sql.query<{ lastSeenAt: Date | null }>(
        `SELECT "lastSeenAt" FROM "User" WHERE "id" = $1::uuid`,
        [alice.id],
      );
      const stored = rows[0]?.lastSeenAt?.getTime();
      expect(stored).toBeGreaterThanOrEqual(closedAt - 1000);
      expect(stored).toBeLessThanOrEqual(closedAt + 1000);
    } finally {
      await page.dispose();
      if (!stopped) await stopping.stop();
    }
  });

  if (backend === "postgres+redis") {
    describe("across instances", () => {
      test("a socket on another instance makes the user online here, and offline once it closes", async ({
        server,
        tenant,
        sockets,
      }) => {
        const [alice, bob, carol] = usersOf(tenant);
        await groupOf(server.url, tenant);
        const other: TestServer = await startServer(world.database);
        try {
          const sub = subscribe(sockets.open({ token: bob.token }, { keepOpen: true }), PresenceChanged, {});
          await onlineNow(server.url, tenant, bob.id, true);
          const remote = connect(other.wsUrl, { token: alice.token });
          expect(await changeOf(sub, alice.id)).toMatchObject({ online: true });
          await onlineNow(server.url, tenant, alice.id, true);
          // A second socket here and one there: closing the remote one leaves her online.
          const local = connect(server.wsUrl, { token: alice.token });
          await acknowledged(local);
          await remote.dispose();
          const fence = await expectNoChangeOf(sub, alice.id, other.wsUrl, carol);
          expect((await presenceOf(server.url, tenant, alice.id))?.online).toBe(true);
          await local.dispose();
          expect(await changeOf(sub, alice.id)).toMatchObject({ online: false });
          await onlineNow(other.url, tenant, alice.id, false);
          await fence.dispose();
          // A subscription on the other instance counts in connectionCount here.
          const group = await groupOf(server.url, tenant);
          const follower = connect(other.wsUrl, { token: carol.token });
          const typing = subscribe(follower, Typing, { conversationId: group });
          const count = () =>
            ok(server.url, ConversationConnections, { id: group }, { apiKey: tenant.apiKey }).then(
              (r) => r.conversation?.connectionCount,
            );
          await until(count, (n) => n === 1);
          typing.unsubscribe();
          await until(count, (n) => n === 0);
          await follower.dispose();
        } finally {
          await other.stop();
        }
      });

      test("a reload onto another instance within the offline delay announces nothing", {
        timeout: 30_000,
      }, async ({ server, tenant, sockets }) => {
        const [alice, bob, carol] = usersOf(tenant);
        await groupOf(server.url, tenant);
        // The instance she leaves waits long enough that the test never races its delay.
        const left = await startServer(world.database, { presenceOfflineDelayMs: 5000 });
        const sub = subscribe(sockets.open({ token: bob.token }, { keepOpen: true }), PresenceChanged, {});
        await onlineNow(server.url, tenant, bob.id, true);
        const page = connect(left.wsUrl, { token: alice.token });
        try {
          expect(await changeOf(sub, alice.id)).toMatchObject({ online: true });
          await acknowledged(page);
          await page.dispose();
          const reloaded = connect(server.wsUrl, { token: alice.token });
          await acknowledged(reloaded);
          const fence = await expectNoChangeOf(sub, alice.id, server.wsUrl, carol);
          await fence.dispose();
          // Past the other instance's delay she is still online (its departure found her here).
          await sleep(5500);
          const later = await drain(sub);
          expect(later.map((event) => event.data?.presenceChanged?.user.id)).not.toContain(alice.id);
          expect((await presenceOf(left.url, tenant, alice.id))?.online).toBe(true);
          await reloaded.dispose();
          expect(await changeOf(sub, alice.id)).toMatchObject({ online: false });
        } finally {
          await page.dispose();
          await left.stop();
        }
      });

      test("the users of an instance that dies without closing its sockets go offline within the TTL", {
        timeout: 90_000,
      }, async ({ tenant }) => {
        const [alice, bob] = usersOf(tenant);
        const short = { presenceTtlSeconds: 2, presenceHeartbeatSeconds: 1 };
        // An instance of its own with a short TTL, to watch from.
        const watcher = await startServer(world.database, short);
        const port = await freePort();
        const child = runServer({
          DATABASE_URL: world.database.url as string,
          REDIS_URL: process.env.TEST_REDIS_URL as string,
          JWT_SECRET: TEST_JWT_SECRET,
          HOST: "127.0.0.1",
          PORT: String(port),
          WEB_CONCURRENCY: "1",
          PRESENCE_TTL_SECONDS: "2",
          PRESENCE_HEARTBEAT_SECONDS: "1",
          LOG_LEVEL: "info",
        });
        const observer = connect(watcher.wsUrl, { token: bob.token });
        let remote: ReturnType<typeof connect> | undefined;
        try {
          await waitFor(child, /chat API ready/);
          await groupOf(watcher.url, tenant);
          const sub = subscribe(observer, PresenceChanged, {});
          await onlineNow(watcher.url, tenant, bob.id, true);
          remote = connect(`ws://127.0.0.1:${port}/graphql`, { token: alice.token });
          expect(await changeOf(sub, alice.id)).toMatchObject({ online: true });
          child.child.kill("SIGKILL");
          await child.exited;
          // TTL 2 s, plus up to a heartbeat (1 s) of the instance that notices, plus slack for a busy machine.
          const offline = await changeOf(sub, alice.id, 10_000);
          expect(offline).toMatchObject({ online: false });
          expect(offline.lastSeenAt).not.toBeNull();
          await onlineNow(watcher.url, tenant, alice.id, false);
        } finally {
          if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill("SIGKILL");
          await Promise.allSettled([remote?.dispose(), observer.dispose()]);
          await watcher.stop();
        }
      });
    });
  }
});

describe.each(backends())("WebSocket liveness on %s", (backend) => {
  useServer(backend, { wsPingSeconds: 1 });

  test("a socket that misses two pongs is dropped and its user goes offline; one that answers stays", {
    timeout: 30_000,
  }, async ({ server, tenant, sockets }) => {
    const [alice, bob] = usersOf(tenant);
    // A client that never answers pings (the ws library answers them unless told not to).
    const silent = new WebSocket(server.wsUrl, "graphql-transport-ws", { autoPong: false });
    const closed = new Promise<number>((resolve) => silent.once("close", (code) => resolve(code)));
    await new Promise((resolve, reject) => silent.once("open", resolve).once("error", reject));
    silent.send(JSON.stringify({ type: "connection_init", payload: { authorization: `Bearer ${alice.token}` } }));
    await onlineNow(server.url, tenant, alice.id, true);
    const answering = sockets.open({ token: bob.token }, { keepOpen: true });
    await acknowledged(answering);
    // One that answers every other ping never misses two in a row: it stays.
    const patchy = new WebSocket(server.wsUrl, "graphql-transport-ws", { autoPong: false });
    let pings = 0;
    patchy.on("ping", () => {
      if (pings++ % 2 === 1) patchy.pong();
    });
    const patchyClosed = new Promise<number>((resolve) => patchy.once("close", (code) => resolve(code)));
    await new Promise((resolve, reject) => patchy.once("open", resolve).once("error", reject));
    patchy.send(JSON.stringify({ type: "connection_init", payload: { authorization: `Bearer ${bob.token}` } }));
    // Pinged every second: dropped at the third tick, after two pings went unanswered.
    expect(await closed).toBe(1006);
    await onlineNow(server.url, tenant, alice.id, false);
    await expectOpen(answering, "a socket that answers pings", 1_500);
    expect((await presenceOf(server.url, tenant, bob.id))?.online).toBe(true);
    expect(pings, "the patchy socket was pinged often enough to matter").toBeGreaterThanOrEqual(3);
    expect(await Promise.race([patchyClosed, sleep(0).then(() => "open")])).toBe("open");
    patchy.close();
  });
});
