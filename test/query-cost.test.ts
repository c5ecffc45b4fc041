import type { GraphQLFormattedError } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backends, createTestDatabase, startServer, type TestDatabase, type TestServer } from "./helpers/backends.ts";
import {
  type Auth,
  expectOpen,
  fails,
  type GqlResult,
  ok,
  operationErrors,
  request,
  subscribe,
  whenLive,
  wsClient,
} from "./helpers/client.ts";
import { createTenant, type TestTenant } from "./helpers/fixtures.ts";
import {
  ChatScreen,
  Conversation,
  ConversationMembers,
  CreateGroup,
  PinnedMessages,
  RemoveMember,
} from "./operations/conversations.ts";
import { MessageAdded } from "./operations/events.ts";
import { PinMessage, SendMessage } from "./operations/messages.ts";

const MAX_NODES = 100_000;

/** `count` aliases of `field`, each selecting `inner`. */
const aliases = (count: number, field: string, inner: string) =>
  Array.from({ length: count }, (_, i) => `a${i}: ${field} { ${inner} }`).join(" ");

/** `messages(<args>)` nested through Message.conversation.messages, `levels` deep. */
function nestedMessages(levels: number, args: string, leaf = "id body"): string {
  let inner = leaf;
  for (let level = 1; level < levels; level++) {
    inner = `id conversation { messages${args} { edges { node { ${inner} } } } }`;
  }
  return inner;
}

/** The issue's attack: 10 aliases of messages(last: $n), nested three levels through conversation.messages. */
const attack = (withVariable: boolean) => {
  const args = withVariable ? "(last: $n)" : "";
  const rootArgs = withVariable ? "conversationId: $id, last: $n" : "conversationId: $id";
  return `query Attack($id: ID!${withVariable ? ", $n: Int" : ""}) {
    ${aliases(10, `messages(${rootArgs})`, `edges { node { ${nestedMessages(3, args)} } }`)}
  }`;
};

/** The same attack with its selections in named and inline fragments. */
const attackWithFragments = `query AttackFragments($id: ID!, $n: Int) {
  ${aliases(10, "messages(conversationId: $id, last: $n)", "...Page")}
}
fragment Page on MessageConnection { edges { node { ...Level1 } } }
fragment Level1 on Message { id conversation { messages(last: $n) { edges { node { ... on Message { ...Level2 } } } } } }
fragment Level2 on Message { id conversation { ... { messages(last: $n) { edges { node { ...Leaf id } } } } } }
fragment Leaf on Message { id body }`;

/** Two levels, ten aliases: over the limit with page sizes of 100, well under with 10. */
const variablePages = `query VariablePages($id: ID!, $n: Int) {
  ${aliases(10, "messages(conversationId: $id, last: $n)", `edges { node { ${nestedMessages(2, "(last: $n)")} } }`)}
}`;

/** The costly branch is there, but skipped when $heavy is false. */
const skippable = `query Skippable($id: ID!, $heavy: Boolean!) {
  conversation(id: $id) { name }
  ... @include(if: $heavy) { ${aliases(10, "messages(conversationId: $id, last: 100)", `edges { node { ${nestedMessages(2, "(last: 100)")} } }`)} }
}`;

/** A mutation whose result selection is too costly: refused, so nothing is sent. */
const sendAndLoad = `mutation SendAndLoad($input: SendMessageInput!, $n: Int) {
  sendMessage(input: $input) {
    id
    conversation { ${aliases(10, "messages(last: $n)", `edges { node { ${nestedMessages(2, "(last: $n)")} } }`)} }
  }
}`;

/** A subscription whose per-event selection is too costly. */
const costlyEvents = `subscription CostlyEvents($id: ID, $n: Int) {
  messageAdded(conversationId: $id) {
    ${aliases(10, "conversation", `messages(last: $n) { edges { node { ${nestedMessages(2, "(last: $n)")} } } }`)}
  }
}`;

/** Conversations with their members: costs conversations x members. */
const membersOfConversations = `query MembersOfConversations($c: Int, $m: Int) {
  conversations(first: $c) { edges { node { id memberCount members(first: $m) { role joinedAt lastReadSeq user { id name } } } } }
}`;

/** Asserts the refusal: QUERY_TOO_COMPLEX with the cost over the limit, and nothing else. */
function expectTooComplex(errors: readonly GraphQLFormattedError[] | undefined, what: string): number {
  expect(errors?.length, `${what}: ${JSON.stringify(errors)}`).toBe(1);
  const [error] = errors as [GraphQLFormattedError];
  expect(error.extensions?.code, `${what}: ${JSON.stringify(error)}`).toBe("QUERY_TOO_COMPLEX");
  expect(error.extensions?.maxCost).toBe(MAX_NODES);
  const cost = error.extensions?.cost as number;
  expect(cost).toBeGreaterThan(MAX_NODES);
  return cost;
}

function expectRefusedOverHttp(result: GqlResult<unknown>, what: string): number {
  expect(result.data ?? null, what).toBeNull();
  return expectTooComplex(result.errors, what);
}

describe.each(backends())("query cost on %s", (backend) => {
  let database: TestDatabase;
  let server: TestServer;
  let url: string;
  let tenant: TestTenant;
  let alice: Auth;
  let conversationId: string;
  const messageIds: string[] = [];

  beforeAll(async () => {
    database = await createTestDatabase(backend);
    server = await startServer(database);
    url = server.url;
    tenant = await createTenant(url, ["Alice", "Bob", "Carol", "Dave"]);
    const [a, ...others] = tenant.users;
    if (!a) throw new Error("fixture users missing");
    alice = { token: a.token };
    const group = await ok(
      url,
      CreateGroup,
      { input: { name: "Costs", memberIds: others.map((user) => user.id) } },
      alice,
    );
    conversationId = group.createGroup.id;
    for (let i = 1; i <= 4; i++) {
      const sent = await ok(url, SendMessage, { input: { conversationId, body: `cost ${i}` } }, alice);
      messageIds.push(sent.sendMessage.id);
    }
  });
  afterAll(async () => {
    await server?.stop();
    await database?.drop();
  });

  describe("over HTTP", () => {
    it("refuses the issue's attack with $n = 100 and with the default page size, without data", async () => {
      const withVariable = await request(url, attack(true), { id: conversationId, n: 100 }, alice);
      const cost = expectRefusedOverHttp(withVariable, "attack with $n = 100");
      expect(cost).toBeGreaterThan(10 * 100 ** 3);
      const withDefaults = await request(url, attack(false), { id: conversationId }, alice);
      expect(expectRefusedOverHttp(withDefaults, "attack with default page sizes")).toBeGreaterThan(10 * 50 ** 3);
    });

    it("counts named and inline fragments like the fields they hold", async () => {
      const plain = expectRefusedOverHttp(
        await request(url, attack(true), { id: conversationId, n: 100 }, alice),
        "plain attack",
      );
      const fragments = expectRefusedOverHttp(
        await request(url, attackWithFragments, { id: conversationId, n: 100 }, alice),
        "attack in fragments",
      );
      // Leaf repeats `id` through a fragment: one field, as execution merges it.
      expect(fragments).toBe(plain);
    });

    it("refuses a query only when its variables make it too costly", async () => {
      expectRefusedOverHttp(await request(url, variablePages, { id: conversationId, n: 100 }, alice), "n = 100");
      const small = await request(url, variablePages, { id: conversationId, n: 10 }, alice);
      expect(small.errors).toBeUndefined();
      expect(Object.keys(small.data as object)).toHaveLength(10);

      expectRefusedOverHttp(await request(url, membersOfConversations, { c: 100, m: 500 }, alice), "100 x 500 members");
      expectRefusedOverHttp(await request(url, membersOfConversations, { c: 100 }, alice), "members at their default");
      const few = await request(url, membersOfConversations, { c: 100, m: 5 }, alice);
      expect(few.errors).toBeUndefined();

      expectRefusedOverHttp(await request(url, skippable, { id: conversationId, heavy: true }, alice), "included");
      const skipped = await request(url, skippable, { id: conversationId, heavy: false }, alice);
      expect(skipped.errors).toBeUndefined();
    });

    it("a refused mutation runs nothing", async () => {
      const before = await ok(url, Conversation, { id: conversationId }, alice);
      const result = await request(
        url,
        sendAndLoad,
        { input: { conversationId, body: "must not be sent", clientMessageId: "refused-http" }, n: 100 },
        alice,
      );
      expectRefusedOverHttp(result, "costly mutation");
      const after = await ok(url, Conversation, { id: conversationId }, alice);
      expect(after.conversation?.lastSeq).toBe(before.conversation?.lastSeq);
    });

    it("lets README's chat screen and oversized page arguments through to their own checks", async () => {
      const screen = await ok(url, ChatScreen, { id: conversationId }, alice);
      expect(screen.conversation?.messages.edges.length).toBe(4);
      expect(screen.conversation?.memberCount).toBe(4);
      // A page size over the field's maximum is the field's BAD_USER_INPUT, not a cost refusal.
      const huge = await request(url, attack(true), { id: conversationId, n: 1_000_000_000 }, alice);
      expectRefusedOverHttp(huge, "huge $n is counted at the field maximum");
      const tooLarge = await fails(
        url,
        "query($id: ID!, $n: Int) { messages(conversationId: $id, last: $n) { edges { node { id } } } }",
        { id: conversationId, n: 1_000_000_000 },
        alice,
        "BAD_USER_INPUT",
      );
      expect(tooLarge.extensions?.field).toBe("last");
    });
  });

  describe("over WebSocket", () => {
    it("refuses a costly query, mutation and subscription for that operation only; the socket stays usable", async () => {
      const client = wsClient(server.wsUrl, alice, { keepOpen: true });
      try {
        const live = subscribe(client, MessageAdded, { conversationId });
        await whenLive(live, () => ok(url, SendMessage, { input: { conversationId, body: "poke before" } }, alice));

        expectTooComplex(await operationErrors(client, attack(true), { id: conversationId, n: 100 }), "query");
        expectTooComplex(await operationErrors(client, attack(false), { id: conversationId }), "query, defaults");

        const before = await ok(url, Conversation, { id: conversationId }, alice);
        expectTooComplex(
          await operationErrors(client, sendAndLoad, {
            input: { conversationId, body: "must not be sent either", clientMessageId: "refused-ws" },
            n: 100,
          }),
          "mutation",
        );
        const after = await ok(url, Conversation, { id: conversationId }, alice);
        expect(after.conversation?.lastSeq).toBe(before.conversation?.lastSeq);

        expectTooComplex(await operationErrors(client, costlyEvents, { id: conversationId, n: 100 }), "subscription");
        await expectOpen(client, "the socket after the refusals");

        // The subscription opened before still delivers, and a cheap one still starts.
        const body = `after refusals ${Date.now()}`;
        await ok(url, SendMessage, { input: { conversationId, body } }, alice);
        const event = await live.next();
        expect(event.data?.messageAdded.body).toBe(body);
        const cheap = subscribe(client, MessageAdded, { conversationId });
        await whenLive(cheap, () => ok(url, SendMessage, { input: { conversationId, body: "poke after" } }, alice));
        live.unsubscribe();
        cheap.unsubscribe();
      } finally {
        await client.dispose();
      }
    });
  });

  describe("Conversation.members, memberCount and pinnedMessages", () => {
    it("members(first) takes the first members in join order and memberCount counts them all", async () => {
      const all = await ok(url, ConversationMembers, { id: conversationId }, alice);
      expect(all.conversation?.memberCount).toBe(4);
      const order = all.conversation?.members.map((m) => m.user.id) ?? [];
      expect([...order].sort()).toEqual(tenant.users.map((user) => user.id).sort());
      const two = await ok(url, ConversationMembers, { id: conversationId, first: 2 }, alice);
      expect(two.conversation?.members.map((m) => m.user.id)).toEqual(order.slice(0, 2));
      expect(two.conversation?.memberCount).toBe(4);
      const none = await ok(url, ConversationMembers, { id: conversationId, first: 0 }, alice);
      expect(none.conversation?.members).toEqual([]);
      await ok(url, ConversationMembers, { id: conversationId, first: 500 }, alice);
      for (const first of [501, -1, 100_000]) {
        const error = await fails(url, ConversationMembers, { id: conversationId, first }, alice, "BAD_USER_INPUT");
        expect(error.extensions?.field).toBe("first");
      }
    });

    it("memberCount follows membership changes", async () => {
      const { createGroup } = await ok(
        url,
        CreateGroup,
        { input: { name: "Shrinking", memberIds: tenant.users.slice(1).map((user) => user.id) } },
        alice,
      );
      const carol = tenant.users[2]?.id as string;
      const removed = await ok(url, RemoveMember, { conversationId: createGroup.id, userId: carol }, alice);
      expect(removed.removeMember.memberCount).toBe(3);
      expect(removed.removeMember.members.map((m) => m.user.id)).not.toContain(carol);
    });

    it("pinnedMessages(first) takes the most recently pinned first and validates first", async () => {
      for (const id of messageIds.slice(0, 3)) await ok(url, PinMessage, { id }, alice);
      const all = await ok(url, PinnedMessages, { id: conversationId }, alice);
      expect(all.conversation?.pinnedMessages.map((m) => m.id)).toEqual(messageIds.slice(0, 3).reverse());
      const two = await ok(url, PinnedMessages, { id: conversationId, first: 2 }, alice);
      expect(two.conversation?.pinnedMessages.map((m) => m.id)).toEqual([messageIds[2], messageIds[1]]);
      const none = await ok(url, PinnedMessages, { id: conversationId, first: 0 }, alice);
      expect(none.conversation?.pinnedMessages).toEqual([]);
      for (const first of [501, -1]) {
        const error = await fails(url, PinnedMessages, { id: conversationId, first }, alice, "BAD_USER_INPUT");
        expect(error.extensions?.field).toBe("first");
      }
    });
  });

  it("MAX_QUERY_NODES sets the limit", async () => {
    const strict = await startServer(database, { maxQueryNodes: 200 });
    try {
      const result = await request(strict.url, membersOfConversations, { c: 10, m: 10 }, alice);
      expect(result.errors?.[0]?.extensions).toMatchObject({ code: "QUERY_TOO_COMPLEX", maxCost: 200 });
      const small = await request(strict.url, membersOfConversations, { c: 2, m: 2 }, alice);
      expect(small.errors).toBeUndefined();
    } finally {
      await strict.stop();
    }
  });
});
