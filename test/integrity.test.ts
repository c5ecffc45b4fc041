/**
 * Integrity under attack, through the real server on each backend: changes to one message
 * racing each other (reactions against a delete or an edit), tenant roles in mutations that
 * used to ignore them (markRead, setTyping, group management by in-group owners and admins),
 * and idempotency under concurrency (addMembers of the same user, sender-less messages with
 * the same clientMessageId).
 */
import { randomBytes } from "node:crypto";
import type { ResultOf } from "@graphql-typed-document-node/core";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backends, createTestDatabase, startServer, type TestDatabase, type TestServer } from "./helpers/backends.ts";
import { type Auth, type GqlResult, ok, request, subscribe, wsClient } from "./helpers/client.ts";
import { createTenant, createUserWithToken, type TestTenant, type TestUser } from "./helpers/fixtures.ts";
import {
  AddMembers,
  CreateGroup,
  DeleteGroup,
  MarkRead,
  RemoveMember,
  SetMemberRole,
  UpdateGroup,
} from "./operations/conversations.ts";
import { ConversationEventsBrief } from "./operations/events.ts";
import {
  AddReaction,
  DeleteMessage,
  EditMessage,
  SearchMessages,
  SendMessage,
  SetTyping,
} from "./operations/messages.ts";
import { AssignRole, CreateRole, Roles, UnassignRole } from "./operations/roles.ts";

type IntEvent = ResultOf<typeof ConversationEventsBrief>["conversationEvents"];

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

const as = (user: TestUser): Auth => ({ token: user.token });
const hex = () => randomBytes(6).toString("hex");
const EMOJIS = ["👍", "🎉", "❤️", "😂", "🔥"];

/** The error code of the first error, or "OK". */
function outcome(result: GqlResult<unknown>): string {
  const error = result.errors?.[0];
  return error ? String(error.extensions?.code ?? "NO_CODE") : "OK";
}

/** An event cursor as the server encodes it (base64url of its tuple): seq 0 replays everything. */
const fromStart = (conversationId: string) =>
  Buffer.from(JSON.stringify(["e1", conversationId, 0])).toString("base64url");

interface StoredEvent {
  seq: number;
  type: string;
  data: string;
}

describe.each(backends())("integrity under concurrency and tenant roles on %s", (backend) => {
  let database: TestDatabase;
  let server: TestServer;
  let url: string;
  let wsUrl: string;
  let pool: pg.Pool | undefined;

  beforeAll(async () => {
    database = await createTestDatabase(backend);
    server = await startServer(database);
    ({ url, wsUrl } = server);
    if (database.url) pool = new pg.Pool({ connectionString: database.url, max: 2 });
  });
  afterAll(async () => {
    await pool?.end();
    await server?.stop();
    await database?.drop();
  });

  async function sql<T>(text: string, params: unknown[] = []): Promise<T[]> {
    if (pool) return (await pool.query(text, params)).rows as T[];
    return (await database.db?.sql.query(text, params)) as T[];
  }

  function storedEvents(conversationId: string): Promise<StoredEvent[]> {
    return sql<StoredEvent>(
      `SELECT "seq", "type", "data"::text AS "data" FROM "ConversationEvent" WHERE "conversationId" = $1 ORDER BY "seq"`,
      [conversationId],
    );
  }

  /** Every event of a conversation as a client replaying from the start receives it. */
  async function replay(auth: Auth, conversationId: string): Promise<IntEvent[]> {
    const [{ count }] = (await sql<{ count: number }>(
      `SELECT "lastEventSeq" AS count FROM "Conversation" WHERE "id" = $1`,
      [conversationId],
    )) as [{ count: number }];
    const client = wsClient(wsUrl, auth);
    const sub = subscribe(client, ConversationEventsBrief, { conversationId, after: fromStart(conversationId) });
    try {
      const results = await sub.take(count);
      return results.map((result) => {
        if (result.errors?.length || !result.data) return expect.fail(`event with errors: ${JSON.stringify(result)}`);
        return result.data.conversationEvents;
      });
    } finally {
      sub.unsubscribe();
      await client.dispose();
    }
  }

  async function group(owner: Auth, members: TestUser[], name = `Group ${hex()}`): Promise<string> {
    const { createGroup } = await ok(url, CreateGroup, { input: { name, memberIds: members.map((m) => m.id) } }, owner);
    return createGroup.id;
  }

  async function send(auth: Auth, conversationId: string, body: string) {
    return (await ok(url, SendMessage, { input: { conversationId, body } }, auth)).sendMessage;
  }

  /** Every (reactor, emoji) pair adds its reaction, all at once; each answers OK or the given codes. */
  function reactionStorm(reactors: TestUser[], messageId: string) {
    return reactors.flatMap((reactor) =>
      EMOJIS.map((emoji) => request(url, AddReaction, { messageId, emoji }, as(reactor))),
    );
  }

  // -------------------------------------------------------------------------------------
  // Changes to one message apply one at a time
  // -------------------------------------------------------------------------------------

  describe("a message's changes apply one at a time, and a deleted message keeps no text", () => {
    it("reactions racing a delete: nothing after the delete carries the text; the row, search and history keep none", async () => {
      const tenant = await createTenant(url, ["Alice", "Bob", "Carol", "Dave", "Erin"]);
      const [alice, ...reactors] = tenant.users as [TestUser, ...TestUser[]];
      const conversationId = await group(as(alice), reactors);

      for (let round = 0; round < 3; round++) {
        const word = `secret${hex()}`;
        const sent = await send(as(alice), conversationId, `the code is ${word}`);
        const found = await ok(url, SearchMessages, { first: 50, query: word, conversationId }, as(alice));
        expect(found.searchMessages.edges.map((e) => e.node.id)).toEqual([sent.id]);

        const storm = reactionStorm(reactors, sent.id);
        const half = Math.floor(storm.length / 2);
        const results = await Promise.all([
          ...storm.slice(0, half),
          request(url, DeleteMessage, { id: sent.id }, as(alice)),
          ...storm.slice(half),
        ]);
        const deletion = results[half] as GqlResult<ResultOf<typeof DeleteMessage>>;
        expect(outcome(deletion), JSON.stringify(deletion)).toBe("OK");
        expect(deletion.data?.deleteMessage.body).toBeNull();
        // A reaction that lost the race is refused, not recorded on the tombstone.
        for (const result of results) expect(["OK", "BAD_USER_INPUT"]).toContain(outcome(result));

        // Stored history: no event anywhere keeps the text, and none about the message follows its deletion.
        const stored = await storedEvents(conversationId);
        expect.soft(stored.filter((event) => event.data.includes(word)).map((e) => `${e.seq} ${e.type}`)).toEqual([]);
        const deletedAt = stored.find(
          (event) => event.type === "MESSAGE_DELETED" && JSON.parse(event.data).message.id === sent.id,
        )?.seq;
        expect(deletedAt).toBeDefined();
        const after = stored.filter(
          (event) => event.seq > (deletedAt as number) && JSON.parse(event.data).message?.id === sent.id,
        );
        expect.soft(after.map((e) => `${e.seq} ${e.type}`)).toEqual([]);

        // The row itself, its reactions and the search index.
        const [row] = await sql<{ body: string | null; hit: boolean | null; reactions: number }>(
          `SELECT m."body", m."searchVector" @@ to_tsquery('simple', $2) AS hit,
                  (SELECT count(*)::int FROM "Reaction" r WHERE r."messageId" = m."id") AS reactions
             FROM "Message" m WHERE m."id" = $1`,
          [sent.id, word],
        );
        expect.soft(row?.body).toBeNull();
        expect.soft(row?.hit ?? false).toBe(false);
        expect.soft(row?.reactions).toBe(0);
        for (const auth of [as(alice), { apiKey: tenant.apiKey }]) {
          const search = await ok(url, SearchMessages, { first: 50, query: word }, auth);
          expect(search.searchMessages.edges).toEqual([]);
        }
      }

      // What a client replaying the whole history sees: the text nowhere, every tombstone without body.
      const events = await replay(as(reactors[0] as TestUser), conversationId);
      const withMessage = events.filter((event) => "message" in event);
      expect(withMessage.length).toBeGreaterThan(0);
      for (const event of withMessage) {
        if (!("message" in event)) continue;
        expect.soft(event.message.body, JSON.stringify(event)).toBeNull();
        expect.soft(event.message.deletedAt, JSON.stringify(event)).not.toBeNull();
      }
    });

    it("reactions racing an edit: no event after the edit's carries the text from before it", async () => {
      const tenant = await createTenant(url, ["Alice", "Bob", "Carol", "Dave", "Erin"]);
      const [alice, ...reactors] = tenant.users as [TestUser, ...TestUser[]];
      const conversationId = await group(as(alice), reactors);

      const messages: { id: string; before: string; after: string }[] = [];
      for (let round = 0; round < 3; round++) {
        const before = `before-${hex()}`;
        const after = `after-${hex()}`;
        const sent = await send(as(alice), conversationId, before);
        messages.push({ id: sent.id, before, after });
        const storm = reactionStorm(reactors, sent.id);
        const half = Math.floor(storm.length / 2);
        // Replies lock the conversation and check their parent while the parent is being changed.
        const replies = reactors.map((reactor) =>
          request(url, SendMessage, { input: { conversationId, body: "re", replyToId: sent.id } }, as(reactor)),
        );
        const results = await Promise.all([
          ...storm.slice(0, half),
          ...replies.slice(0, 2),
          request(url, EditMessage, { id: sent.id, body: after }, as(alice)),
          ...replies.slice(2),
          ...storm.slice(half),
        ]);
        for (const result of results) expect(outcome(result), JSON.stringify(result)).toBe("OK");
      }

      const events = await replay(as(reactors[0] as TestUser), conversationId);
      for (const { id, before, after } of messages) {
        const about = events.filter((event) => "message" in event && event.message.id === id);
        const editedAt = about.findIndex((event) => event.__typename === "MessageEditedEvent");
        expect(editedAt).toBeGreaterThan(0);
        // Every event records the message as it was when the event committed.
        const bodies = about.map((event) => ("message" in event ? event.message.body : undefined));
        const expected = about.map((_, index) => (index < editedAt ? before : after));
        expect(bodies).toEqual(expected);
        const reactions = about.filter((event) => event.__typename === "ReactionChangedEvent");
        expect(reactions).toHaveLength(EMOJIS.length * reactors.length);
      }
    });

    it("a group deleted while its messages change: every request ends cleanly and nothing of the group remains", async () => {
      const tenant = await createTenant(url, ["Alice", "Bob", "Carol", "Dave", "Erin"]);
      const [alice, ...reactors] = tenant.users as [TestUser, ...TestUser[]];
      const conversationId = await group(as(alice), reactors);
      const first = await send(as(alice), conversationId, "first");
      const second = await send(as(alice), conversationId, "second");
      const storm = reactionStorm(reactors, first.id);
      const half = Math.floor(storm.length / 2);
      const results = await Promise.all([
        ...storm.slice(0, half),
        request(url, EditMessage, { id: second.id, body: "second, edited" }, as(alice)),
        request(
          url,
          SendMessage,
          { input: { conversationId, body: "re", replyToId: first.id } },
          as(reactors[0] as TestUser),
        ),
        request(url, DeleteGroup, { id: conversationId }, as(alice)),
        request(url, DeleteMessage, { id: second.id }, as(alice)),
        ...storm.slice(half),
      ]);
      expect(outcome(results[half + 2] as GqlResult<unknown>)).toBe("OK");
      // Losing the race is a client error (the message, the group or the membership is gone,
      // even while the answer of a committed reply is being resolved), never an internal one.
      for (const result of results) {
        expect(["OK", "NOT_FOUND", "BAD_USER_INPUT", "FORBIDDEN"], JSON.stringify(result)).toContain(outcome(result));
      }
      const left = await sql<{ messages: number; events: number }>(
        `SELECT (SELECT count(*)::int FROM "Message" WHERE "conversationId" = $1) AS messages,
                (SELECT count(*)::int FROM "ConversationEvent" WHERE "conversationId" = $1) AS events`,
        [conversationId],
      );
      expect(left).toEqual([{ messages: 0, events: 0 }]);
    });
  });

  // -------------------------------------------------------------------------------------
  // Tenant roles in every mutation
  // -------------------------------------------------------------------------------------

  describe("tenant roles in mutations that used to ignore them", () => {
    async function roleIds(apiKey: string): Promise<Record<string, string>> {
      return Object.fromEntries((await ok(url, Roles, {}, { apiKey })).roles.map((r) => [r.name, r.id]));
    }

    /** Gives the user exactly one custom role holding `permissions` (the member role goes). */
    async function onlyRole(tenant: TestTenant, user: TestUser, permissions: string[]): Promise<void> {
      const apiKey = tenant.apiKey;
      const { createRole } = await ok(url, CreateRole, { input: { name: `role-${hex()}`, permissions } }, { apiKey });
      await ok(url, AssignRole, { userId: user.id, roleId: createRole.id }, { apiKey });
      const member = (await roleIds(apiKey)).member as string;
      await ok(url, UnassignRole, { userId: user.id, roleId: member }, { apiKey });
    }

    it("markRead needs chats:read and setTyping needs chats:create", async () => {
      const tenant = await createTenant(url, ["Alice", "Blind", "Mute"]);
      const [alice, blind, mute] = tenant.users as [TestUser, TestUser, TestUser];
      const conversationId = await group(as(alice), [blind, mute]);
      const { id: messageId } = await send(as(alice), conversationId, "hello");
      await onlyRole(tenant, blind, ["chats:create", "groups:create", "users:read"]);
      await onlyRole(tenant, mute, ["chats:read", "groups:create", "users:read"]);

      const read = (user: TestUser) => request(url, MarkRead, { conversationId, upToMessageId: messageId }, as(user));
      const typing = (user: TestUser) => request(url, SetTyping, { conversationId, isTyping: true }, as(user));
      expect(outcome(await read(blind))).toBe("FORBIDDEN");
      expect(outcome(await typing(blind))).toBe("OK");
      expect(outcome(await read(mute))).toBe("OK");
      expect(outcome(await typing(mute))).toBe("FORBIDDEN");
      // The member role holds both.
      expect(outcome(await read(alice))).toBe("OK");
      expect(outcome(await typing(alice))).toBe("OK");
      // The refused receipt moved nothing.
      const [horizon] = await sql<{ lastReadSeq: number }>(
        `SELECT "lastReadSeq" FROM "Member" WHERE "conversationId" = $1 AND "userId" = $2`,
        [conversationId, blind.id],
      );
      expect(horizon?.lastReadSeq).toBe(0);
    });

    it("in-group owners and admins manage their group only with groups:create; groups:update and groups:delete manage any", async () => {
      const tenant = await createTenant(url, ["Owner", "Admin", "Mia", "Max", "Manager", "Remover"]);
      const [owner, admin, mia, max, manager, remover] = tenant.users as [
        TestUser,
        TestUser,
        TestUser,
        TestUser,
        TestUser,
        TestUser,
      ];
      const apiKey = tenant.apiKey;
      const groupId = await group(as(owner), [admin, mia, max, manager, remover]);
      await ok(url, SetMemberRole, { conversationId: groupId, userId: admin.id, role: "ADMIN" }, as(owner));
      // Owner and admin keep their places in the group but lose groups:create in the tenant.
      const chatOnly = ["chats:read", "chats:create", "users:read"];
      await onlyRole(tenant, owner, chatOnly);
      await onlyRole(tenant, admin, chatOnly);
      await onlyRole(tenant, manager, ["groups:update", ...chatOnly]);
      await onlyRole(tenant, remover, ["groups:delete", ...chatOnly]);

      const manage = (user: TestUser) => ({
        rename: () => request(url, UpdateGroup, { id: groupId, input: { name: `By ${user.name}` } }, as(user)),
        add: (userId: string) => request(url, AddMembers, { conversationId: groupId, userIds: [userId] }, as(user)),
        remove: (userId: string) => request(url, RemoveMember, { conversationId: groupId, userId }, as(user)),
        role: (userId: string, role: "OWNER" | "ADMIN" | "MEMBER") =>
          request(url, SetMemberRole, { conversationId: groupId, userId, role }, as(user)),
        delete: () => request(url, DeleteGroup, { id: groupId }, as(user)),
      });
      const joiner = (await createUserWithToken(url, apiKey, "Joiner")).id;

      for (const user of [owner, admin]) {
        const actor = manage(user);
        expect(outcome(await actor.rename()), `${user.name} renames`).toBe("FORBIDDEN");
        expect(outcome(await actor.add(joiner)), `${user.name} adds`).toBe("FORBIDDEN");
        expect(outcome(await actor.remove(max.id)), `${user.name} removes`).toBe("FORBIDDEN");
        expect(outcome(await actor.role(mia.id, "ADMIN")), `${user.name} promotes`).toBe("FORBIDDEN");
      }
      expect(outcome(await manage(owner).delete())).toBe("FORBIDDEN");
      // Leaving is not managing: it needs no permission.
      expect(outcome(await manage(max).remove(max.id))).toBe("OK");

      // groups:update manages a group its holder is a plain member of.
      const asManager = manage(manager);
      expect(outcome(await asManager.rename())).toBe("OK");
      expect(outcome(await asManager.add(joiner))).toBe("OK");
      expect(outcome(await asManager.role(mia.id, "ADMIN"))).toBe("OK");
      expect(outcome(await asManager.remove(joiner))).toBe("OK");
      expect(outcome(await asManager.delete())).toBe("FORBIDDEN");

      // With groups:create back, the owner manages again.
      await ok(url, AssignRole, { userId: owner.id, roleId: (await roleIds(apiKey)).member as string }, { apiKey });
      expect(outcome(await manage(owner).rename())).toBe("OK");
      expect(outcome(await manage(admin).rename())).toBe("FORBIDDEN");

      // groups:delete deletes a group its holder does not own.
      expect(outcome(await manage(remover).delete())).toBe("OK");
    });
  });

  // -------------------------------------------------------------------------------------
  // Idempotency under concurrency
  // -------------------------------------------------------------------------------------

  describe("idempotent writes stay idempotent when they race", () => {
    it("ten concurrent addMembers of the same user: one member, one MemberAdded event, one audit entry", async () => {
      const tenant = await createTenant(url, ["Alice", "Bob", "Joiner"]);
      const [alice, bob, joiner] = tenant.users as [TestUser, TestUser, TestUser];
      const conversationId = await group(as(alice), [bob]);
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          request(
            url,
            AddMembers,
            { conversationId, userIds: [joiner.id] },
            i % 2 ? as(alice) : { apiKey: tenant.apiKey },
          ),
        ),
      );
      for (const result of results) expect(outcome(result), JSON.stringify(result)).toBe("OK");

      const members = await sql<{ userId: string }>(
        `SELECT "userId" FROM "Member" WHERE "conversationId" = $1 AND "userId" = $2`,
        [conversationId, joiner.id],
      );
      expect(members).toHaveLength(1);
      const added = (await storedEvents(conversationId)).filter(
        (event) => event.type === "MEMBER_ADDED" && JSON.parse(event.data).userId === joiner.id,
      );
      expect(added).toHaveLength(1);
      const audits = await sql<{ details: string }>(
        `SELECT "details" FROM "AuditEntry" WHERE "tenantId" = $1 AND "action" = 'member.added' AND "targetId" = $2`,
        [tenant.id, conversationId],
      );
      expect(audits.map((a) => JSON.parse(a.details))).toEqual([{ userIds: [joiner.id] }]);
      // What subscribers replay agrees (after the group's first members, recorded with it).
      const events = await replay(as(bob), conversationId);
      expect(events.filter((e) => e.__typename === "MemberAddedEvent")).toEqual([
        expect.objectContaining({ user: { id: alice.id } }),
        expect.objectContaining({ user: { id: bob.id } }),
        expect.objectContaining({ user: { id: joiner.id } }),
      ]);
    });

    it("ten concurrent sender-less sends with one clientMessageId: one message, the same answer, one event", async () => {
      const tenant = await createTenant(url, ["Alice"]);
      const [alice] = tenant.users as [TestUser];
      const conversationId = await group({ apiKey: tenant.apiKey }, [alice]);
      const clientMessageId = `system-${hex()}`;
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          request(
            url,
            SendMessage,
            { input: { conversationId, body: `notice ${i}`, clientMessageId } },
            { apiKey: tenant.apiKey },
          ),
        ),
      );
      for (const result of results) expect(outcome(result), JSON.stringify(result)).toBe("OK");
      const ids = new Set(results.map((result) => result.data?.sendMessage.id));
      expect(ids.size).toBe(1);
      const [first] = results;
      expect(first?.data?.sendMessage).toMatchObject({ type: "SYSTEM", sender: null, clientMessageId });

      const rows = await sql<{ id: string }>(
        `SELECT "id" FROM "Message" WHERE "conversationId" = $1 AND "clientMessageId" = $2`,
        [conversationId, clientMessageId],
      );
      expect(rows.map((row) => row.id)).toEqual([...ids]);
      const events = await storedEvents(conversationId);
      expect(events.filter((event) => event.type === "MESSAGE_ADDED")).toHaveLength(1);
      // A later repeat returns the original as well, and the same key in another conversation is another message.
      const again = await ok(
        url,
        SendMessage,
        { input: { conversationId, body: "later", clientMessageId } },
        { apiKey: tenant.apiKey },
      );
      expect(again.sendMessage.id).toBe([...ids][0]);
      const elsewhere = await group({ apiKey: tenant.apiKey }, [alice]);
      const other = await ok(
        url,
        SendMessage,
        { input: { conversationId: elsewhere, body: "other", clientMessageId } },
        { apiKey: tenant.apiKey },
      );
      expect(other.sendMessage.id).not.toBe([...ids][0]);
    });
  });
});
