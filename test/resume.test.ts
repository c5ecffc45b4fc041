/**
 * Resuming the streams of all of a viewer's conversations (`messageAdded` and
 * `conversationEvents` without conversationId) from the cursor of the last item received:
 * exactly what was missed, in each conversation's order, nothing twice, then live.
 */
import type { ResultOf } from "@graphql-typed-document-node/core";
import type { ExecutionResult, GraphQLFormattedError } from "graphql";
import { describe, expect } from "vitest";
import { contextFor } from "../src/context.ts";
import { decodeStreamCursor, encodeStreamCursor, Positioned } from "../src/realtime/positions.ts";
import { messageFeed } from "../src/services/messages.ts";
import { backends, createTestDatabase, startServer } from "./helpers/backends.ts";
import {
  type Auth,
  drain,
  ok,
  operationErrors,
  type Subscription,
  sleep,
  subscribe,
  whenLive,
  wsClient,
} from "./helpers/client.ts";
import { createTenant, type TestTenant, type TestUser } from "./helpers/fixtures.ts";
import { test, useServer } from "./helpers/world.ts";
import { AddMembers, CreateGroup, RemoveMember, UpdateGroup } from "./operations/conversations.ts";
import { ConversationEvents, MessageAdded } from "./operations/events.ts";
import { AddReaction, Messages, SendMessage } from "./operations/messages.ts";

type Added = ResultOf<typeof MessageAdded>["messageAdded"];
type Event = ResultOf<typeof ConversationEvents>["conversationEvents"];
type Sent = ResultOf<typeof SendMessage>["sendMessage"];

const as = (user: TestUser): Auth => ({ token: user.token });

function trio(tenant: TestTenant): [TestUser, TestUser, TestUser] {
  const [a, b, c] = tenant.users;
  if (!a || !b || !c) throw new Error("the tenant needs three users");
  return [a, b, c];
}

function dataOf<T>(results: ExecutionResult<T>[]): T[] {
  return results.map((result) => {
    expect(result.errors, JSON.stringify(result)).toBeUndefined();
    return result.data as T;
  });
}

const added = async (sub: Subscription<ResultOf<typeof MessageAdded>>, n: number): Promise<Added[]> =>
  dataOf(await sub.take(n)).map((data) => data.messageAdded);

const events = async (sub: Subscription<ResultOf<typeof ConversationEvents>>, n: number): Promise<Event[]> =>
  dataOf(await sub.take(n)).map((data) => data.conversationEvents);

const idsOf = (list: readonly { id: string }[]) => list.map((item) => item.id);

/** Messages grouped by conversation, each group in the order received. */
function byConversation(list: readonly { id: string; conversation: { id: string } }[]): Record<string, string[]> {
  const groups: Record<string, string[]> = {};
  for (const item of list) groups[item.conversation.id] = [...(groups[item.conversation.id] ?? []), item.id];
  return groups;
}

function cursorOf(event: Event): string {
  if (!("cursor" in event)) return expect.fail(`${event.__typename} has no cursor`);
  return event.cursor;
}

function seqOf(event: Event): number {
  if (!("seq" in event)) return expect.fail(`${event.__typename} has no seq`);
  return event.seq;
}

/** Events as conversation -> seqs, each list in the order received. */
function eventSeqs(list: readonly Event[]): Record<string, number[]> {
  const groups: Record<string, number[]> = {};
  for (const event of list) groups[event.conversationId] = [...(groups[event.conversationId] ?? []), seqOf(event)];
  return groups;
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe.each(backends())("resuming streams of all conversations on %s", (backend) => {
  const world = useServer(backend);

  async function group(owner: TestUser, members: TestUser[], name: string): Promise<string> {
    const { createGroup } = await ok(world.url, CreateGroup, { input: { name, memberIds: idsOf(members) } }, as(owner));
    return createGroup.id;
  }

  async function send(sender: TestUser, conversationId: string, body: string): Promise<Sent> {
    return (await ok(world.url, SendMessage, { input: { conversationId, body } }, as(sender))).sendMessage;
  }

  test("messageAdded: the missed messages of every conversation the viewer is in now, once each, then live", async ({
    tenant,
    sockets,
  }) => {
    const [alice, bob, carol] = trio(tenant);
    const g1 = await group(alice, [bob], "one");
    const g2 = await group(alice, [bob], "two");
    const leaving = await group(alice, [bob], "Bob leaves");
    const joining = await group(carol, [alice], "Bob joins");

    const first = sockets.open(as(bob));
    const stream = subscribe(first, MessageAdded, {});
    await whenLive(stream, () => send(alice, g1, "poke"));
    const received = [
      await send(alice, g1, "r1"),
      await send(alice, g2, "r2"),
      await send(alice, leaving, "r3"),
      await send(alice, g1, "r4"),
    ];
    const got = await added(stream, received.length);
    expect(new Set(idsOf(got))).toEqual(new Set(idsOf(received)));
    const cursor = (got.at(-1) as Added).cursor;
    await first.dispose();

    // While Bob is away: messages everywhere, Bob removed from one group and added to another.
    await send(carol, joining, "before Bob joined");
    const missed = [await send(alice, g2, "m1"), await send(alice, g1, "m2")];
    await ok(world.url, RemoveMember, { conversationId: leaving, userId: bob.id }, as(alice));
    await send(alice, leaving, "after Bob left");
    await ok(world.url, AddMembers, { conversationId: joining, userIds: [bob.id] }, as(carol));
    missed.push(await send(carol, joining, "m3"), await send(alice, g2, "m4"), await send(alice, joining, "m5"));
    missed.push(await send(alice, g1, "m6"));

    const second = sockets.open(as(bob));
    const resumed = subscribe(second, MessageAdded, { after: cursor });
    const replayed = await added(resumed, missed.length);
    expect(new Set(idsOf(replayed)).size).toBe(replayed.length);
    expect(byConversation(replayed)).toEqual(byConversation(missed));
    // Live next, and nothing else before it: the replay held exactly the missed messages.
    const live = await send(alice, g2, "live");
    const [next] = await added(resumed, 1);
    expect(next?.id).toBe(live.id);

    // The resumed stream's own cursors resume it again.
    await second.dispose();
    const later = [await send(carol, joining, "l1"), await send(alice, g1, "l2"), await send(alice, g2, "l3")];
    const third = sockets.open(as(bob));
    const again = subscribe(third, MessageAdded, { after: (next as Added).cursor });
    const replayedAgain = await added(again, later.length);
    expect(byConversation(replayedAgain)).toEqual(byConversation(later));
    const last = await send(alice, joining, "live again");
    expect(idsOf(await added(again, 1))).toEqual([last.id]);
  });

  test("conversationEvents: every kind of missed event, once each in each conversation's order, then live", async ({
    tenant,
    sockets,
  }) => {
    const [alice, bob, carol] = trio(tenant);
    const g1 = await group(alice, [bob], "one");
    const g2 = await group(alice, [bob], "two");
    const leaving = await group(alice, [bob], "Bob leaves");
    const joining = await group(carol, [alice], "Bob joins");

    const first = sockets.open(as(bob));
    const stream = subscribe(first, ConversationEvents, {});
    await whenLive(stream, () => ok(world.url, UpdateGroup, { id: g1, input: { name: "poke" } }, as(alice)));
    const target = await send(alice, g1, "r1");
    await send(alice, g2, "r2");
    await send(alice, leaving, "r3");
    const got = await events(stream, 3);
    const lastSeen = Object.fromEntries(
      Object.entries(eventSeqs(got)).map(([conversationId, seqs]) => [conversationId, seqs.at(-1)]),
    );
    const cursor = cursorOf(got.at(-1) as Event);
    await first.dispose();

    await send(carol, joining, "before Bob joined");
    await ok(world.url, AddReaction, { messageId: target.id, emoji: "👍" }, as(alice));
    await ok(world.url, UpdateGroup, { id: g2, input: { name: "renamed" } }, as(alice));
    await ok(world.url, RemoveMember, { conversationId: leaving, userId: bob.id }, as(alice));
    await send(alice, leaving, "after Bob left");
    await ok(world.url, AddMembers, { conversationId: joining, userIds: [bob.id] }, as(carol));
    await send(carol, joining, "welcome");
    await send(alice, g1, "m1");

    const second = sockets.open(as(bob));
    const resumed = subscribe(second, ConversationEvents, { after: cursor });
    // g1: the reaction and a message; g2: the rename; joining: Bob's own MemberAddedEvent and a message.
    const replayed = await events(resumed, 5);
    const seqs = eventSeqs(replayed);
    expect(Object.keys(seqs).sort()).toEqual([g1, g2, joining].sort());
    expect(seqs[g1]).toEqual(range((lastSeen[g1] as number) + 1, (lastSeen[g1] as number) + 2));
    expect(seqs[g2]).toEqual([(lastSeen[g2] as number) + 1]);
    const inJoining = replayed.filter((event) => event.conversationId === joining);
    expect(inJoining.map((event) => event.__typename)).toEqual(["MemberAddedEvent", "MessageAddedEvent"]);
    expect(inJoining[0]).toMatchObject({ user: { id: bob.id } });
    expect(seqs[joining]).toEqual(range(seqs[joining]?.[0] as number, (seqs[joining]?.[0] as number) + 1));
    expect(replayed.filter((event) => event.conversationId === g1).map((event) => event.__typename)).toEqual([
      "ReactionChangedEvent",
      "MessageAddedEvent",
    ]);

    const live = await send(alice, g1, "live");
    const [next] = await events(resumed, 1);
    expect(next).toMatchObject({ __typename: "MessageAddedEvent", message: { id: live.id } });
  });

  test("the API key's stream resumes over every conversation of the tenant, new ones included", async ({
    tenant,
    sockets,
  }) => {
    const [alice, bob] = trio(tenant);
    const g1 = await group(alice, [bob], "one");
    const service = sockets.open({ apiKey: tenant.apiKey });
    const stream = subscribe(service, MessageAdded, {});
    await whenLive(stream, () => send(alice, g1, "poke"));
    await send(bob, g1, "seen");
    const cursor = ((await added(stream, 1))[0] as Added).cursor;
    await service.dispose();

    const created = await group(bob, [alice], "created meanwhile");
    const missed = [await send(bob, created, "n1"), await send(alice, g1, "n2"), await send(alice, created, "n3")];
    const again = sockets.open({ apiKey: tenant.apiKey });
    const resumed = subscribe(again, MessageAdded, { after: cursor });
    expect(byConversation(await added(resumed, missed.length))).toEqual(byConversation(missed));
    const live = await send(alice, g1, "live");
    expect(idsOf(await added(resumed, 1))).toEqual([live.id]);
  });

  test("a stream cursor also works where a message cursor does", async ({ tenant, sockets }) => {
    const [alice, bob] = trio(tenant);
    const g1 = await group(alice, [bob], "one");
    const stream = subscribe(sockets.open(as(bob)), MessageAdded, {});
    await whenLive(stream, () => send(alice, g1, "poke"));
    const mark = await send(alice, g1, "mark");
    const [seen] = await added(stream, 1);
    expect(seen?.id).toBe(mark.id);
    const after = await send(alice, g1, "after the mark");
    const page = await ok(world.url, Messages, { conversationId: g1, after: seen?.cursor }, as(bob));
    expect(page.messages.edges.map((edge) => edge.node.id)).toEqual([after.id]);
    const one = subscribe(sockets.open(as(bob)), MessageAdded, { conversationId: g1, after: seen?.cursor });
    expect(idsOf(await added(one, 1))).toEqual([after.id]);
  });

  test("cursors of another viewer or tenant replay nothing of conversations the viewer is not in", async ({
    tenant,
    sockets,
  }) => {
    const [alice, bob, carol] = trio(tenant);
    const other = await createTenant(world.url, ["Eve"]);
    const eve = other.users[0] as TestUser;
    const evesOwn = await group(eve, [], "Eve's");
    await send(eve, evesOwn, "before");
    const g1 = await group(alice, [bob], "Bob and Alice");
    const shared = await group(alice, [bob, carol], "with Carol");

    const stream = subscribe(sockets.open(as(bob)), MessageAdded, {});
    await whenLive(stream, () => send(alice, g1, "poke"));
    await send(alice, g1, "private");
    await send(alice, shared, "shared");
    const bobsCursor = ((await added(stream, 2)).at(-1) as Added).cursor;
    await send(alice, g1, "private, missed");
    const sharedMissed = await send(alice, shared, "shared, missed");

    // Carol: the shared group's messages after Bob's position there, nothing of g1.
    const asCarol = subscribe(sockets.open(as(carol)), MessageAdded, { after: bobsCursor });
    expect(idsOf(await added(asCarol, 1))).toEqual([sharedMissed.id]);
    await send(alice, g1, "private, live");
    const sharedLive = await send(alice, shared, "shared, live");
    expect(idsOf(await added(asCarol, 1))).toEqual([sharedLive.id]);

    // Eve, in another tenant: nothing at all until her own conversation speaks.
    const asEve = subscribe(sockets.open(as(eve)), MessageAdded, { after: bobsCursor });
    await send(alice, g1, "private, again");
    await send(alice, shared, "shared, again");
    const own = await send(eve, evesOwn, "hers");
    expect(idsOf(await added(asEve, 1))).toEqual([own.id]);
  });

  test("malformed, foreign-shaped and expired cursors are refused with a code the client can act on", async ({
    tenant,
    sockets,
  }) => {
    const [alice, bob] = trio(tenant);
    const g1 = await group(alice, [bob], "one");
    const client = sockets.open(as(bob), { keepOpen: true });
    const messagesStream = subscribe(client, MessageAdded, {});
    await whenLive(messagesStream, () => send(alice, g1, "poke"));
    const eventsStream = subscribe(client, ConversationEvents, {});
    await whenLive(eventsStream, () => send(alice, g1, "poke events"));
    await send(alice, g1, "cursors");
    const [message] = await added(messagesStream, 1);
    const [event] = await events(eventsStream, 1);
    const streamCursor = (message as Added).cursor;
    const eventStreamCursor = cursorOf(event as Event);
    const oneConversation = (await send(alice, g1, "plain")).cursor;

    const expectCode = (errors: readonly GraphQLFormattedError[], code: string, what: string) => {
      expect(errors[0]?.extensions?.code, `${what}: ${JSON.stringify(errors)}`).toBe(code);
      if (code === "BAD_USER_INPUT") expect(errors[0]?.extensions?.field).toBe("after");
    };
    const decoded = decodeStreamCursor("after", streamCursor, "messages");
    const expired = encodeStreamCursor({ ...decoded, at: Math.floor(Date.now() / 1000) - 8 * 24 * 3600 });
    const bytes = Buffer.from(streamCursor, "base64url");
    const malformed = [
      "garbage",
      streamCursor.slice(0, -3),
      `${streamCursor}AAAA`,
      Buffer.concat([Buffer.from([9]), bytes.subarray(1)]).toString("base64url"),
      Buffer.from([1, 1, 0, 0, 0, 0, 0, 0, 0, 0]).toString("base64url"),
      "A".repeat(300_000),
      oneConversation,
    ];
    for (const after of malformed) {
      expectCode(await operationErrors(client, MessageAdded, { after }), "BAD_USER_INPUT", `messageAdded ${after}`);
    }
    // Each stream takes only its own cursors.
    expectCode(
      await operationErrors(client, MessageAdded, { after: eventStreamCursor }),
      "BAD_USER_INPUT",
      "an events cursor",
    );
    expectCode(
      await operationErrors(client, ConversationEvents, { after: streamCursor }),
      "BAD_USER_INPUT",
      "a messages cursor",
    );
    const expiredErrors = await operationErrors(client, MessageAdded, { after: expired });
    expectCode(expiredErrors, "CURSOR_EXPIRED", "an expired cursor");
    expect(expiredErrors[0]?.extensions?.field).toBe("after");
    // The socket and its other streams stay.
    await drain(messagesStream, 200);
    const still = await send(alice, g1, "still here");
    expect(idsOf(await added(messagesStream, 1))).toEqual([still.id]);
  });
});

describe.each(backends())("stream positions on %s", (backend) => {
  const world = useServer(backend);

  /** Stores a message the way sendMessage does, but tells no one: a sender that stopped right after its commit. */
  async function storeUnannounced(tenantId: string, conversationId: string, senderId: string, body: string) {
    return world.server.app.deps.db.prisma.$transaction(async (tx) => {
      const [bumped] = await tx.$queryRaw<{ lastSeq: number }[]>`
        UPDATE "Conversation" SET "lastSeq" = "lastSeq" + 1 WHERE "id" = ${conversationId}::uuid RETURNING "lastSeq"`;
      return tx.message.create({
        data: { tenantId, conversationId, seq: (bumped as { lastSeq: number }).lastSeq, senderId, body },
      });
    });
  }

  test("a stream takes fresh snapshots: it delivers what it missed, its cursors stay small and still resume exactly", async ({
    tenant,
    sockets,
  }) => {
    const [alice, bob] = trio(tenant);
    const [a, b] = (await Promise.all(
      ["A", "B"].map(async (name) => {
        const { createGroup } = await ok(world.url, CreateGroup, { input: { name, memberIds: [bob.id] } }, as(alice));
        return createGroup.id;
      }),
    )) as [string, string];
    const send = async (conversationId: string, body: string) =>
      (await ok(world.url, SendMessage, { input: { conversationId, body } }, as(alice))).sendMessage;
    const ctx = contextFor(world.server.app.deps, {
      kind: "user",
      tenantId: tenant.id,
      userId: bob.id,
      tokenId: "t",
      sessionId: null,
      expiresAt: new Date(Date.now() + 600_000),
    });
    // A new snapshot before every wait, so each step below shows one.
    const feed = messageFeed(ctx, {
      conversationId: null,
      afterSeq: null,
      rebase: { soonEntries: 0, maxEntries: 2000, intervalMs: 0, refreshMs: 3_600_000 },
    });
    const read = async () => {
      const step = await feed.next();
      if (step.done || !(step.value instanceof Positioned)) return expect.fail("expected a positioned message");
      const { item, cursor } = step.value;
      return { item, cursor, exceptions: decodeStreamCursor("after", cursor, "messages").entries };
    };
    // One read at a time: a read given up on by `within` is the one the next call waits for.
    let waiting: ReturnType<typeof read> | null = null;
    const next = () => {
      const step = waiting ?? read();
      waiting = null;
      return step;
    };
    const within = async (ms: number) => {
      waiting ??= read();
      const step = await Promise.race([waiting, sleep(ms).then(() => null)]);
      if (step) waiting = null;
      return step;
    };
    let first: Awaited<ReturnType<typeof read>> | null = null;
    for (let attempt = 0; attempt < 20 && !first; attempt++) {
      await send(a, "poke");
      first = await within(300);
    }
    expect(first?.item.conversationId).toBe(a);
    while ((await within(300)) !== null);

    // Stored in A without a word on pub/sub: the next snapshot, taken after B's message, finds it.
    const lost = await storeUnannounced(tenant.id, a, alice.id, "never announced");
    const inB = await send(b, "b1");
    const [one, two] = [await next(), await next()];
    expect(new Set([one.item.id, two.item.id])).toEqual(new Set([inB.id, lost.id]));
    // A few snapshots later only the conversation of the items themselves is an exception.
    let settled = two;
    for (const body of ["b2", "b3", "b4"]) {
      await send(b, body);
      settled = await next();
    }
    expect([...settled.exceptions.keys()]).toEqual([b]);
    await feed.return(undefined);

    const inConversation = (message: { id: string; conversationId: string }) => ({
      id: message.id,
      conversation: { id: message.conversationId },
    });
    const missed = [
      inConversation({ ...(await send(a, "m1")), conversationId: a }),
      inConversation({ ...(await send(b, "m2")), conversationId: b }),
      inConversation(await storeUnannounced(tenant.id, a, alice.id, "unannounced too")),
      inConversation({ ...(await send(a, "m3")), conversationId: a }),
    ];
    const resumed = subscribe(sockets.open(as(bob)), MessageAdded, { after: settled.cursor });
    expect(byConversation(await added(resumed, missed.length))).toEqual(byConversation(missed));
  });
});

describe.each(backends())("stream cursors under shared execution on %s", (backend) => {
  const world = useServer(backend);

  test("subscribers sharing one execution each get the cursor of their own stream", async ({ tenant, sockets }) => {
    const [alice, bob] = trio(tenant);
    const [g1, g2] = (await Promise.all(
      ["one", "two"].map(async (name) => {
        const { createGroup } = await ok(world.url, CreateGroup, { input: { name, memberIds: [bob.id] } }, as(alice));
        return createGroup.id;
      }),
    )) as [string, string];
    const send = async (conversationId: string, body: string) =>
      (await ok(world.url, SendMessage, { input: { conversationId, body } }, as(alice))).sendMessage;
    const early = subscribe(sockets.open(as(bob)), MessageAdded, {});
    await whenLive(early, () => send(g1, "poke"));
    await send(g1, "only the early stream sees this one");
    await added(early, 1);
    const late = subscribe(sockets.open(as(bob)), MessageAdded, {});
    await whenLive(late, () => send(g2, "poke"));
    await drain(early, 200);

    const both = await send(g2, "both");
    const [fromEarly] = await added(early, 1);
    const [fromLate] = await added(late, 1);
    expect([fromEarly?.id, fromLate?.id]).toEqual([both.id, both.id]);
    const exceptions = (cursor: string) => [...decodeStreamCursor("after", cursor, "messages").entries.keys()];
    expect(exceptions((fromEarly as Added).cursor)).toEqual([g2, g1]);
    expect(exceptions((fromLate as Added).cursor)).toEqual([g2]);
  });
});

describe.each(backends())("resuming after a server restart on %s", (backend) => {
  test("a stream cursor from the old server resumes on the new one", async () => {
    const database = await createTestDatabase(backend);
    let server = await startServer(database);
    try {
      const tenant = await createTenant(server.url, ["Alice", "Bob"]);
      const [alice, bob] = tenant.users as [TestUser, TestUser];
      const groups = await Promise.all(
        ["one", "two"].map(async (name) => {
          const { createGroup } = await ok(
            server.url,
            CreateGroup,
            { input: { name, memberIds: [bob.id] } },
            as(alice),
          );
          return createGroup.id;
        }),
      );
      const [g1, g2] = groups as [string, string];
      const send = async (conversationId: string, body: string) =>
        (await ok(server.url, SendMessage, { input: { conversationId, body } }, as(alice))).sendMessage;

      const client = wsClient(server.wsUrl, as(bob));
      const stream = subscribe(client, MessageAdded, {});
      await whenLive(stream, () => send(g1, "poke"));
      await send(g2, "seen");
      const cursor = ((await added(stream, 1))[0] as Added).cursor;
      await server.stop();
      await client.dispose();

      server = await startServer(database);
      const missed = [await send(g1, "m1"), await send(g2, "m2"), await send(g1, "m3")];
      const after = wsClient(server.wsUrl, as(bob));
      try {
        const resumed = subscribe(after, MessageAdded, { after: cursor });
        expect(byConversation(await added(resumed, missed.length))).toEqual(byConversation(missed));
        const live = await send(g2, "live");
        expect(idsOf(await added(resumed, 1))).toEqual([live.id]);
      } finally {
        await after.dispose();
      }
    } finally {
      await server.stop();
      await database.drop();
    }
  }, 60_000);
});
