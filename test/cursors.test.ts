import { randomUUID } from "node:crypto";
import type { GraphQLFormattedError } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backends, createTestDatabase, startServer, type TestDatabase, type TestServer } from "./helpers/backends.ts";
import {
  type Auth,
  expectOpen,
  type GqlResult,
  ok,
  operationErrors,
  request,
  subscribe,
  wsClient,
} from "./helpers/client.ts";
import { createTenant, type TestTenant } from "./helpers/fixtures.ts";
import { AuditLog } from "./operations/audit.ts";
import { ConversationMessages, Conversations, CreateGroup } from "./operations/conversations.ts";
import { ConversationEvents, MessageAdded } from "./operations/events.ts";
import { LatestMessageReplies, Messages, SearchMessages, SendMessage } from "./operations/messages.ts";
import { Users } from "./operations/users.ts";

/** A cursor as the server encodes it: base64url of the JSON tuple [tag, ...parts]. */
const craft = (...tuple: unknown[]) => Buffer.from(JSON.stringify(tuple)).toString("base64url");

const YEAR_MS = 31_556_952_000;
const someId = randomUUID();

/** [time, uuid] cursors (users u1, conversations c1, auditLog a1) with hostile contents. */
function keysetHostile(tag: string): unknown[][] {
  const now = Date.now();
  return [
    [tag, now, "not-a-uuid"],
    [tag, now, "00000000-0000-0000-0000-00000000000g"],
    [tag, now, `${someId}' OR '1'='1`],
    [tag, now, 42],
    [tag, now, null],
    [tag, "not a date", someId],
    [tag, "2024-01-01T00:00:00.000Z", someId],
    [tag, "+300000-01-01T00:00:00.000Z", someId],
    [tag, 300_000 * YEAR_MS, someId],
    [tag, 200_000 * YEAR_MS, someId],
    [tag, -100_000 * YEAR_MS, someId],
    [tag, 1e300, someId],
    [tag, -1e300, someId],
    [tag, now + 0.5, someId],
    [tag, null, someId],
    [tag, "NaN", someId],
    [tag, "Infinity", someId],
    [tag, { $gt: 0 }, someId],
    [tag, [now], someId],
    [tag, now],
    [tag, now, someId, 1],
  ];
}

/** [uuid, seq] cursors (messages m1, events e1) of the right conversation with hostile contents. */
function seqHostile(tag: string, conversationId: string): unknown[][] {
  return [
    [tag, "not-a-uuid", 1],
    [tag, 7, 1],
    [tag, null, 1],
    [tag, conversationId, 2 ** 31],
    [tag, conversationId, 2 ** 53],
    [tag, conversationId, -1],
    [tag, conversationId, 1e300],
    [tag, conversationId, -1e300],
    [tag, conversationId, 1.5],
    [tag, conversationId, "1"],
    [tag, conversationId, "NaN"],
    [tag, conversationId, null],
    [tag, conversationId, true],
    [tag, conversationId],
    [tag, conversationId, 1, 2],
  ];
}

/** [offset] cursors (searchMessages s1) with hostile contents. */
const offsetHostile: unknown[][] = [
  ["s1", 1e300],
  ["s1", -1],
  ["s1", 2 ** 31],
  ["s1", 2 ** 53],
  ["s1", 10_001],
  ["s1", 1.5],
  ["s1", "10"],
  ["s1", "NaN"],
  ["s1", null],
  ["s1"],
  ["s1", 1, 2],
];

/** Well-formed cursors of every list, to give to the lists they do not belong to. */
function wellFormed(conversationId: string): Record<string, string> {
  const now = Date.now();
  return {
    u1: craft("u1", now, someId),
    c1: craft("c1", now, someId),
    a1: craft("a1", now, someId),
    m1: craft("m1", conversationId, 1),
    e1: craft("e1", conversationId, 1),
    s1: craft("s1", 1),
  };
}

const othersThan = (all: Record<string, string>, tag: string) =>
  Object.entries(all)
    .filter(([other]) => other !== tag)
    .map(([, cursor]) => cursor);

/** Asserts BAD_USER_INPUT naming the cursor argument, and that nothing internal leaked. */
function expectBadCursor(errors: readonly GraphQLFormattedError[] | undefined, field: string, what: string): void {
  if (!errors?.length) expect.fail(`${what}: expected BAD_USER_INPUT, got no error`);
  for (const error of errors)
    expect(error.extensions?.code, `${what}: ${JSON.stringify(errors)}`).not.toBe("INTERNAL_SERVER_ERROR");
  const [error] = errors;
  expect(error?.extensions?.code, `${what}: ${JSON.stringify(errors)}`).toBe("BAD_USER_INPUT");
  expect(error?.extensions?.field, `${what}: ${JSON.stringify(errors)}`).toBe(field);
  expect(error?.message).toBe(`${field} is not a valid cursor`);
}

function expectRefused(result: GqlResult<unknown>, field: string, what: string): void {
  expectBadCursor(result.errors, field, what);
}

describe.each(backends())("cursor contents on %s", (backend) => {
  let database: TestDatabase;
  let server: TestServer;
  let url: string;
  let tenant: TestTenant;
  let alice: Auth;
  let service: Auth;
  let conversationId: string;

  beforeAll(async () => {
    database = await createTestDatabase(backend);
    server = await startServer(database);
    url = server.url;
    tenant = await createTenant(url, ["Alice", "Bob"]);
    const [a, b] = tenant.users;
    if (!a || !b) throw new Error("fixture users missing");
    alice = { token: a.token };
    service = { apiKey: tenant.apiKey };
    const group = await ok(url, CreateGroup, { input: { name: "Cursors", memberIds: [b.id] } }, alice);
    conversationId = group.createGroup.id;
    const first = await ok(url, SendMessage, { input: { conversationId, body: "cursor one" } }, alice);
    await ok(url, SendMessage, { input: { conversationId, body: "cursor two" } }, alice);
    await ok(
      url,
      SendMessage,
      { input: { conversationId, body: "cursor reply", replyToId: first.sendMessage.id } },
      { token: b.token },
    );
  });
  afterAll(async () => {
    await server?.stop();
    await database?.drop();
  });

  it("users(after): hostile contents and other lists' cursors are BAD_USER_INPUT naming after", async () => {
    await ok(url, Users, { first: 5, after: craft("u1", Date.now(), someId) }, service);
    const cursors = [...keysetHostile("u1").map((t) => craft(...t)), ...othersThan(wellFormed(conversationId), "u1")];
    for (const after of cursors) {
      expectRefused(await request(url, Users, { first: 5, after }, service), "after", `users ${after}`);
    }
  });

  it("conversations(after): hostile contents and other lists' cursors are BAD_USER_INPUT naming after", async () => {
    await ok(url, Conversations, { first: 5, after: craft("c1", Date.now(), someId) }, alice);
    const cursors = [...keysetHostile("c1").map((t) => craft(...t)), ...othersThan(wellFormed(conversationId), "c1")];
    for (const after of cursors) {
      expectRefused(await request(url, Conversations, { first: 5, after }, alice), "after", `conversations ${after}`);
    }
  });

  it("auditLog(after): hostile contents and other lists' cursors are BAD_USER_INPUT naming after", async () => {
    await ok(url, AuditLog, { first: 5, after: craft("a1", Date.now(), someId) }, service);
    const cursors = [...keysetHostile("a1").map((t) => craft(...t)), ...othersThan(wellFormed(conversationId), "a1")];
    for (const after of cursors) {
      expectRefused(await request(url, AuditLog, { first: 5, after }, service), "after", `auditLog ${after}`);
    }
  });

  it("searchMessages(after): hostile offsets and other lists' cursors are BAD_USER_INPUT naming after", async () => {
    const page = await ok(url, SearchMessages, { query: "cursor", first: 5, after: craft("s1", 0) }, alice);
    expect(page.searchMessages.edges.length).toBeGreaterThan(0);
    await ok(url, SearchMessages, { query: "cursor", first: 5, after: craft("s1", 10_000) }, alice);
    const cursors = [...offsetHostile.map((t) => craft(...t)), ...othersThan(wellFormed(conversationId), "s1")];
    for (const after of cursors) {
      expectRefused(
        await request(url, SearchMessages, { query: "cursor", first: 5, after }, alice),
        "after",
        `searchMessages ${after}`,
      );
    }
  });

  it("messages(after/before) and Conversation.messages: hostile contents are BAD_USER_INPUT naming the argument", async () => {
    const page = await ok(url, Messages, { conversationId, after: craft("m1", conversationId, 0) }, alice);
    expect(page.messages.edges.length).toBeGreaterThan(0);
    await ok(url, ConversationMessages, { id: conversationId, last: 2, before: craft("m1", conversationId, 2) }, alice);
    const cursors = [
      ...seqHostile("m1", conversationId).map((t) => craft(...t)),
      ...othersThan(wellFormed(conversationId), "m1"),
    ];
    for (const cursor of cursors) {
      expectRefused(await request(url, Messages, { conversationId, after: cursor }, alice), "after", `after ${cursor}`);
      expectRefused(
        await request(url, Messages, { conversationId, last: 2, before: cursor }, alice),
        "before",
        `before ${cursor}`,
      );
      expectRefused(
        await request(url, ConversationMessages, { id: conversationId, after: cursor }, alice),
        "after",
        `Conversation.messages after ${cursor}`,
      );
      expectRefused(
        await request(url, ConversationMessages, { id: conversationId, last: 2, before: cursor }, alice),
        "before",
        `Conversation.messages before ${cursor}`,
      );
    }
  });

  it("replies(after): hostile contents are BAD_USER_INPUT naming after", async () => {
    await ok(url, LatestMessageReplies, { conversationId, after: craft("m1", conversationId, 0) }, alice);
    const cursors = [
      ...seqHostile("m1", conversationId).map((t) => craft(...t)),
      ...othersThan(wellFormed(conversationId), "m1"),
    ];
    for (const after of cursors) {
      expectRefused(
        await request(url, LatestMessageReplies, { conversationId, after }, alice),
        "after",
        `replies ${after}`,
      );
    }
  });

  it("messageAdded(after) over graphql-ws: hostile contents fail that operation with BAD_USER_INPUT; the socket stays", async () => {
    const client = wsClient(server.wsUrl, alice, { keepOpen: true });
    try {
      // A well-formed cursor replays what follows it.
      const replay = subscribe(client, MessageAdded, { conversationId, after: craft("m1", conversationId, 0) });
      const event = await replay.next();
      expect(event.errors).toBeUndefined();
      expect(event.data?.messageAdded.seq).toBe(1);
      replay.unsubscribe();

      const cursors = [
        ...seqHostile("m1", conversationId).map((t) => craft(...t)),
        ...othersThan(wellFormed(conversationId), "m1"),
      ];
      for (const after of cursors) {
        const errors = await operationErrors(client, MessageAdded, { conversationId, after });
        expectBadCursor(errors, "after", `messageAdded ${after}`);
      }
      await expectOpen(client, "the socket after refused cursors");
    } finally {
      await client.dispose();
    }
  });

  it("conversationEvents(after) over graphql-ws: hostile contents fail that operation with BAD_USER_INPUT; the socket stays", async () => {
    const client = wsClient(server.wsUrl, alice, { keepOpen: true });
    try {
      const replay = subscribe(client, ConversationEvents, {
        conversationId,
        after: craft("e1", conversationId, 0),
      });
      const event = await replay.next();
      expect(event.errors).toBeUndefined();
      expect(event.data?.conversationEvents.__typename).toBeDefined();
      replay.unsubscribe();

      const cursors = [
        ...seqHostile("e1", conversationId).map((t) => craft(...t)),
        ...othersThan(wellFormed(conversationId), "e1"),
      ];
      for (const after of cursors) {
        const errors = await operationErrors(client, ConversationEvents, { conversationId, after });
        expectBadCursor(errors, "after", `conversationEvents ${after}`);
      }
      await expectOpen(client, "the socket after refused cursors");
    } finally {
      await client.dispose();
    }
  });
});
