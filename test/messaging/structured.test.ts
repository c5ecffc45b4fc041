import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { MAX_CUSTOM_DATA_BYTES } from "../../src/services/messages.ts";
import { backends } from "../helpers/backends.ts";
import { ok, request, subscribe, whenLive, wsClient } from "../helpers/client.ts";
import { ConversationEvents, MessageAddedStructured } from "../operations/events.ts";
import {
  DeleteMessage,
  EditMessage,
  EditMessageData,
  SearchMessages,
  SendFullMessage,
} from "../operations/messages.ts";
import {
  as,
  drain,
  type EventsResult,
  history,
  messageAs,
  refused,
  send,
  text,
  upload,
  useMessagingServers,
} from "./helpers.ts";

/** A poll as a client would send it: nested objects, arrays, numbers, booleans, null and non-ASCII text. */
const poll = () => ({
  question: "Lunch? 🍜",
  options: [
    { id: 1, label: "Ramen", votes: 0 },
    { id: 2, label: "Crêpes", votes: 2.5 },
  ],
  closes: null,
  anonymous: false,
  meta: { nested: { deeper: ["a", { b: true }] } },
});

type MessageEvent = Extract<EventsResult["conversationEvents"], { __typename: "MessageAddedEvent" }>;

/** Structured messages: type CUSTOM with customType and a JSON object as data. */
describe.each(backends())("structured messages on %s", (backend) => {
  const s = useMessagingServers(backend);
  const { setup, foreigner } = s;

  describe("sendMessage with type CUSTOM", () => {
    it("stores customType and data, and every read returns the same object (on both instances)", async () => {
      const { alice, bob, conversationId } = await setup();
      const data = poll();
      const sent = await send(s.url, as(alice), conversationId, "A poll: lunch?", {
        type: "CUSTOM",
        customType: "poll",
        data,
      });
      expect(sent).toMatchObject({ type: "CUSTOM", customType: "poll", data, body: "A poll: lunch?" });
      expect(sent.sender?.id).toBe(alice.id);
      for (const url of [s.url, s.second.url]) {
        const seen = await messageAs(url, as(bob), conversationId, sent.id);
        expect(seen).toMatchObject({ type: "CUSTOM", customType: "poll", body: "A poll: lunch?" });
        expect(seen.data).toEqual(data);
      }
    });

    it("keeps body optional: without fallback text (or with blank text) body is null", async () => {
      const { alice, conversationId } = await setup();
      const bare = await send(s.url, as(alice), conversationId, "", {
        type: "CUSTOM",
        customType: "card",
        data: { title: "x" },
      });
      expect(bare).toMatchObject({ type: "CUSTOM", body: null, data: { title: "x" } });
      const { sendMessage: noBody } = await ok(
        s.url,
        SendFullMessage,
        { input: { conversationId, type: "CUSTOM", customType: "card", data: {} } },
        as(alice),
      );
      expect(noBody).toMatchObject({ type: "CUSTOM", customType: "card", body: null, data: {} });
    });

    it("accepts data written as a GraphQL literal, with variables inside it", async () => {
      const { alice, conversationId } = await setup();
      const result = await request(
        s.url,
        `mutation ($c: ID!, $n: Int) {
          sendMessage(input: { conversationId: $c, type: CUSTOM, customType: "app.counter:v2",
                               data: { count: $n, tags: ["a", "b"], ok: true, ratio: 0.5, none: null, kind: LARGE } }) {
            type customType data body
          }
        }`,
        { c: conversationId, n: 7 },
        as(alice),
      );
      expect(result.errors, JSON.stringify(result)).toBeUndefined();
      expect(result.data).toEqual({
        sendMessage: {
          type: "CUSTOM",
          customType: "app.counter:v2",
          data: { count: 7, tags: ["a", "b"], ok: true, ratio: 0.5, none: null, kind: "LARGE" },
          body: null,
        },
      });
    });

    it("lets the API key send a CUSTOM message with or without a sender", async () => {
      const { tenant, alice, conversationId } = await setup();
      const key = { apiKey: tenant.apiKey };
      const asBackend = await send(s.url, key, conversationId, "", {
        type: "CUSTOM",
        customType: "bot.card",
        data: { a: 1 },
      });
      expect(asBackend).toMatchObject({ type: "CUSTOM", customType: "bot.card", sender: null, data: { a: 1 } });
      const asAlice = await send(s.url, key, conversationId, "", {
        type: "CUSTOM",
        customType: "bot.card",
        data: { a: 2 },
        senderId: alice.id,
      });
      expect(asAlice).toMatchObject({ type: "CUSTOM", sender: { id: alice.id }, data: { a: 2 } });
      // Without type the API key's senderless message is still SYSTEM, and has no customType or data.
      const system = await send(s.url, key, conversationId, "maintenance tonight");
      expect(system).toMatchObject({ type: "SYSTEM", customType: null, data: null, sender: null });
    });

    it("carries attachments, replies and mentions like a text message, and stays CUSTOM", async () => {
      const { alice, bob, conversationId } = await setup();
      const parent = await send(s.url, as(bob), conversationId, "where to eat?");
      const file = await upload(s.url, as(alice), conversationId, text("menu"));
      const sent = await send(s.url, as(alice), conversationId, "", {
        type: "CUSTOM",
        customType: "poll",
        data: { a: 1 },
        attachmentIds: [file.id],
        replyToId: parent.id,
        mentionedUserIds: [bob.id],
      });
      expect(sent).toMatchObject({
        type: "CUSTOM",
        data: { a: 1 },
        attachments: [{ id: file.id }],
        replyTo: { id: parent.id },
        mentions: [{ id: bob.id }],
      });
    });

    it("returns the original on an idempotent resend, storing nothing twice", async () => {
      const { alice, conversationId } = await setup();
      const input = { type: "CUSTOM" as const, customType: "poll", data: poll(), clientMessageId: "poll-1" };
      const first = await send(s.url, as(alice), conversationId, "", input);
      const again = await send(s.second.url, as(alice), conversationId, "", { ...input, data: { other: true } });
      expect(again).toEqual(first);
      expect(again.data).toEqual(poll());
      const stored = (await history(s.url, as(alice), conversationId)).filter((m) => m.clientMessageId === "poll-1");
      expect(stored.map((m) => m.id)).toEqual([first.id]);
    });

    it("refuses what does not fit the type, naming the field, and stores nothing", async () => {
      const { tenant, alice, conversationId } = await setup();
      const base = { conversationId };
      const cases: [Record<string, unknown>, string][] = [
        [{ body: "hi", data: { a: 1 } }, "input.data"],
        [{ body: "hi", type: "TEXT", data: { a: 1 } }, "input.data"],
        [{ body: "hi", customType: "poll" }, "input.customType"],
        [{ type: "TEXT" }, "input.body"],
        [{ type: "CUSTOM", data: { a: 1 } }, "input.customType"],
        [{ type: "CUSTOM", customType: "poll" }, "input.data"],
        [{ type: "CUSTOM", customType: "poll", data: null }, "input.data"],
        [{ type: "CUSTOM", customType: "", data: { a: 1 } }, "input.customType"],
        [{ type: "CUSTOM", customType: "with space", data: { a: 1 } }, "input.customType"],
        [{ type: "CUSTOM", customType: "x".repeat(65), data: { a: 1 } }, "input.customType"],
        [{ type: "CUSTOM", customType: "poll", data: [1, 2] }, "input.data"],
        [{ type: "CUSTOM", customType: "poll", data: "text" }, "input.data"],
        [{ type: "CUSTOM", customType: "poll", data: 42 }, "input.data"],
        [{ type: "CUSTOM", customType: "poll", data: true }, "input.data"],
        [{ type: "CUSTOM", customType: "poll", data: { big: "x".repeat(MAX_CUSTOM_DATA_BYTES) } }, "input.data"],
        // Multi-byte text counts in bytes: under the limit in characters, over it in UTF-8.
        [{ type: "CUSTOM", customType: "poll", data: { big: "é".repeat(MAX_CUSTOM_DATA_BYTES / 2) } }, "input.data"],
        [{ type: "CUSTOM", customType: "poll", data: { "k\u0000": 1 } }, "input.data"],
        [{ type: "CUSTOM", customType: "poll", data: { text: "x\ud800y" } }, "input.data"],
        [{ type: "CUSTOM", customType: "poll", data: { "x\udc00": 1 } }, "input.data"],
        [{ body: "hi", type: "SYSTEM" }, "input.type"],
        [{ body: "hi", type: "FILE" }, "input.type"],
      ];
      const before = await history(s.url, as(alice), conversationId);
      for (const [input, field] of cases) {
        const error = await refused(
          s.url,
          SendFullMessage,
          { input: { ...base, ...input } as never },
          as(alice),
          "BAD_USER_INPUT",
          field,
        );
        expect(error.message, JSON.stringify(input).slice(0, 100)).toContain(field);
      }
      // The API key may not choose SYSTEM either: it gets SYSTEM by sending without a sender.
      await refused(
        s.url,
        SendFullMessage,
        { input: { ...base, body: "hi", type: "SYSTEM" } },
        { apiKey: tenant.apiKey },
        "BAD_USER_INPUT",
        "input.type",
      );
      expect(await history(s.url, as(alice), conversationId)).toEqual(before);
    });

    it("accepts data of exactly the limit", async () => {
      const { alice, conversationId } = await setup();
      const overhead = JSON.stringify({ big: "" }).length;
      const data = { big: "x".repeat(MAX_CUSTOM_DATA_BYTES - overhead) };
      const sent = await send(s.url, as(alice), conversationId, "", { type: "CUSTOM", customType: "blob", data });
      expect(sent.data).toEqual(data);
    });

    it("answers a foreign conversation like a missing one", async () => {
      const { alice } = await setup();
      const { conversationId: elsewhere } = await foreigner();
      const input = { type: "CUSTOM" as const, customType: "poll", data: { a: 1 } };
      await refused(s.url, SendFullMessage, { input: { conversationId: elsewhere, ...input } }, as(alice), "NOT_FOUND");
      await refused(
        s.url,
        SendFullMessage,
        { input: { conversationId: randomUUID(), ...input } },
        as(alice),
        "NOT_FOUND",
      );
    });
  });

  describe("live delivery", () => {
    it("messageAdded delivers type, customType and data over graphql-ws, across instances", async () => {
      const { alice, bob, conversationId } = await setup();
      const client = wsClient(s.second.wsUrl, as(bob));
      try {
        const sub = subscribe(client, MessageAddedStructured, { conversationId });
        await whenLive(sub, () => send(s.url, as(alice), conversationId, "poke"));
        // The stream of all of Bob's conversations, too.
        const everywhere = subscribe(client, MessageAddedStructured, {});
        await whenLive(everywhere, () => send(s.url, as(alice), conversationId, "poke all"));
        await drain(sub);
        const data = poll();
        const sent = await send(s.url, as(alice), conversationId, "fallback", {
          type: "CUSTOM",
          customType: "poll",
          data,
        });
        const event = await sub.next();
        expect(event.errors).toBeUndefined();
        expect(event.data?.messageAdded).toEqual({
          id: sent.id,
          seq: sent.seq,
          type: "CUSTOM",
          customType: "poll",
          data,
          body: "fallback",
          sender: { id: alice.id },
        });
        expect((await everywhere.next()).data?.messageAdded).toEqual(event.data?.messageAdded);
        // Replayed from storage after a cursor, the same.
        const replay = subscribe(client, MessageAddedStructured, { conversationId, after: sent.cursor });
        const text = await send(s.url, as(alice), conversationId, "plain");
        expect((await replay.next()).data?.messageAdded).toMatchObject({
          id: text.id,
          type: "TEXT",
          customType: null,
          data: null,
        });
        const fromStart = subscribe(client, MessageAddedStructured, {
          conversationId,
          after: (await history(s.url, as(bob), conversationId)).find((m) => m.seq === sent.seq - 1)?.cursor,
        });
        const replayed = await fromStart.take(2);
        expect(replayed.map((e) => e.data?.messageAdded)).toEqual([
          expect.objectContaining({ id: sent.id, type: "CUSTOM", customType: "poll", data }),
          expect.objectContaining({ id: text.id, type: "TEXT", data: null }),
        ]);
      } finally {
        await client.dispose();
      }
    });

    it("conversationEvents carries the data of added, edited and deleted CUSTOM messages, live and replayed", async () => {
      const { alice, bob, conversationId } = await setup();
      const client = wsClient(s.second.wsUrl, as(bob));
      try {
        const sub = subscribe(client, ConversationEvents, { conversationId });
        await whenLive(sub, () => send(s.url, as(alice), conversationId, "poke"));
        const data = poll();
        const sent = await send(s.url, as(alice), conversationId, "", { type: "CUSTOM", customType: "poll", data });
        const added = (await sub.next()).data?.conversationEvents as MessageEvent;
        expect(added.__typename).toBe("MessageAddedEvent");
        expect(added.message).toMatchObject({ id: sent.id, type: "CUSTOM", customType: "poll", data, body: null });

        const voted = { ...data, options: [{ id: 1, label: "Ramen", votes: 1 }] };
        await ok(s.url, EditMessageData, { id: sent.id, body: "", data: voted }, as(alice));
        const edited = (await sub.next()).data?.conversationEvents as MessageEvent;
        expect(edited).toMatchObject({ __typename: "MessageEditedEvent", message: { id: sent.id, data: voted } });

        await ok(s.url, DeleteMessage, { id: sent.id }, as(alice));
        const deleted = (await sub.next()).data?.conversationEvents as MessageEvent;
        expect(deleted).toMatchObject({
          __typename: "MessageDeletedEvent",
          message: { id: sent.id, data: null, body: null, customType: "poll" },
        });

        // Replayed from the event log: the deletion erased the data from every earlier event too.
        const replay = subscribe(client, ConversationEvents, { conversationId, after: added.cursor });
        const [again] = await replay.take(1);
        expect(again?.data?.conversationEvents).toMatchObject({
          __typename: "MessageEditedEvent",
          message: { id: sent.id, data: null, body: null },
        });
      } finally {
        await client.dispose();
      }
    });
  });

  describe("editMessage and deleteMessage", () => {
    it("replaces the data of a CUSTOM message only when given; customType stays", async () => {
      const { alice, bob, conversationId } = await setup();
      const sent = await send(s.url, as(alice), conversationId, "fallback", {
        type: "CUSTOM",
        customType: "poll",
        data: { v: 1 },
      });
      const textOnly = await ok(s.url, EditMessage, { id: sent.id, body: "new fallback" }, as(alice));
      expect(textOnly.editMessage).toMatchObject({ body: "new fallback", data: { v: 1 }, customType: "poll" });
      const both = await ok(s.url, EditMessageData, { id: sent.id, body: "", data: { v: 2 } }, as(alice));
      expect(both.editMessage).toMatchObject({ body: null, data: { v: 2 }, customType: "poll", type: "CUSTOM" });
      expect(both.editMessage.editedAt).toBeTruthy();
      expect(await messageAs(s.second.url, as(bob), conversationId, sent.id)).toMatchObject({ data: { v: 2 } });

      await refused(s.url, EditMessageData, { id: sent.id, body: "", data: [1] }, as(alice), "BAD_USER_INPUT", "data");
      const big = { big: "x".repeat(MAX_CUSTOM_DATA_BYTES) };
      await refused(s.url, EditMessageData, { id: sent.id, body: "", data: big }, as(alice), "BAD_USER_INPUT", "data");
      await refused(s.url, EditMessageData, { id: sent.id, body: "", data: { v: 3 } }, as(bob), "FORBIDDEN");
      expect(await messageAs(s.url, as(bob), conversationId, sent.id)).toMatchObject({ data: { v: 2 } });
    });

    it("refuses data on messages that are not CUSTOM, and a foreign id like a missing one", async () => {
      const { alice, conversationId } = await setup();
      const { eve, conversationId: elsewhere } = await foreigner();
      const plain = await send(s.url, as(alice), conversationId, "plain");
      await refused(
        s.url,
        EditMessageData,
        { id: plain.id, body: "plain", data: { a: 1 } },
        as(alice),
        "BAD_USER_INPUT",
        "data",
      );
      await refused(s.url, EditMessage, { id: plain.id, body: " " }, as(alice), "BAD_USER_INPUT", "body");
      expect(await messageAs(s.url, as(alice), conversationId, plain.id)).toMatchObject({ body: "plain", data: null });

      const theirs = await send(s.url, as(eve), elsewhere, "", { type: "CUSTOM", customType: "poll", data: { a: 1 } });
      const foreign = await request(s.url, EditMessageData, { id: theirs.id, body: "", data: { a: 2 } }, as(alice));
      const missing = await request(s.url, EditMessageData, { id: randomUUID(), body: "", data: { a: 2 } }, as(alice));
      expect(foreign.errors?.[0]?.extensions?.code).toBe("NOT_FOUND");
      expect(foreign.errors?.[0]?.message).toBe(missing.errors?.[0]?.message);
      expect(foreign.errors?.[0]?.extensions).toEqual(missing.errors?.[0]?.extensions);
      expect(await messageAs(s.url, as(eve), elsewhere, theirs.id)).toMatchObject({ data: { a: 1 } });
    });

    it("a deleted CUSTOM message keeps its customType and loses its data and text", async () => {
      const { alice, bob, conversationId } = await setup();
      const sent = await send(s.url, as(alice), conversationId, "secret fallback", {
        type: "CUSTOM",
        customType: "poll",
        data: { secret: "ballot" },
      });
      await ok(s.url, DeleteMessage, { id: sent.id }, as(alice));
      const tombstone = await messageAs(s.url, as(bob), conversationId, sent.id);
      expect(tombstone).toMatchObject({ type: "CUSTOM", customType: "poll", data: null, body: null });
      expect(tombstone.deletedAt).toBeTruthy();
    });
  });

  describe("search", () => {
    it("finds CUSTOM messages by their fallback text and is not disturbed by ones without", async () => {
      const { alice, conversationId } = await setup();
      const word = `zebra${Date.now().toString(36)}`;
      await send(s.url, as(alice), conversationId, "", { type: "CUSTOM", customType: "poll", data: { q: word } });
      const withText = await send(s.url, as(alice), conversationId, `poll about ${word}`, {
        type: "CUSTOM",
        customType: "poll",
        data: { q: "x" },
      });
      const { searchMessages } = await ok(s.url, SearchMessages, { query: word, conversationId }, as(alice));
      expect(searchMessages.edges.map((e) => e.node.id)).toEqual([withText.id]);
    });
  });
});
