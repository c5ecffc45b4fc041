import type { VariablesOf } from "@graphql-typed-document-node/core";
import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { type Auth, ok, sleep, subscribe, wsClient } from "../helpers/client.ts";
import { createTenant, type TestUser } from "../helpers/fixtures.ts";
import {
  AddMembers,
  DeleteGroup,
  MarkRead,
  OpenDirect,
  RemoveMember,
  SetMemberRole,
  UpdateGroup,
} from "../operations/conversations.ts";
import { ConversationEvents, MessageAddedSeq, ReadReceipt, Typing } from "../operations/events.ts";
import {
  AddReaction,
  DeleteMessage,
  EditMessage,
  PinMessage,
  RemoveReaction,
  SetTyping,
  UnpinMessage,
} from "../operations/messages.ts";
import {
  as,
  type ConversationEvent,
  cursorOf,
  drain,
  type EventsResult,
  four,
  group,
  ids,
  messageAs,
  mulberry32,
  nextEvent,
  range,
  refusalCode,
  send,
  seqOf,
  takeEvents,
  useMessagingServers,
  whenLive,
} from "./helpers.ts";
import { type LocalCopy, Observer, Scenario, SEED, serverState } from "./scenario.ts";

/** conversationEvents: one ordered stream of everything that changes a conversation, replayable by cursor. The random scenario replays exactly with TEST_SEED=<n>. */
describe.each(backends())("messaging on %s", (backend) => {
  const s = useMessagingServers(backend);
  const { setup, foreigner } = s;

  describe("conversationEvents", () => {
    it("delivers every event type with a cursor and consecutive seqs; replays after a cursor; ends on delete", async () => {
      const { alice, bob, carol, dave, conversationId } = await setup();
      const client = wsClient(s.wsUrl, as(bob));
      const sub = subscribe(client, ConversationEvents, { conversationId });
      let pokes = 0;
      const warmup = await whenLive(sub, () =>
        ok(s.url, UpdateGroup, { id: conversationId, input: { name: `Warmup ${++pokes}` } }, as(alice)),
      );
      const lastWarmup = warmup.at(-1)?.data?.conversationEvents as ConversationEvent;
      expect(lastWarmup.__typename).toBe("ConversationUpdatedEvent");

      const sent = await send(s.url, as(alice), conversationId, "first");
      await ok(s.url, EditMessage, { id: sent.id, body: "first, edited" }, as(alice));
      await ok(s.url, AddReaction, { messageId: sent.id, emoji: "👍" }, as(bob));
      await ok(s.url, RemoveReaction, { messageId: sent.id, emoji: "👍" }, as(bob));
      await ok(s.url, PinMessage, { id: sent.id }, as(carol));
      await ok(s.url, UnpinMessage, { id: sent.id }, as(carol));
      await ok(s.url, UpdateGroup, { id: conversationId, input: { name: "Renamed", description: "About" } }, as(alice));
      await ok(s.url, AddMembers, { conversationId, userIds: [dave.id] }, as(alice));
      await ok(s.url, SetMemberRole, { conversationId, userId: dave.id, role: "ADMIN" }, as(alice));
      await ok(s.url, RemoveMember, { conversationId, userId: dave.id }, as(alice));
      await ok(s.url, DeleteMessage, { id: sent.id }, as(alice));

      const events = await takeEvents(sub, 11);
      expect(events.map((e) => e.__typename)).toEqual([
        "MessageAddedEvent",
        "MessageEditedEvent",
        "ReactionChangedEvent",
        "ReactionChangedEvent",
        "MessagePinnedEvent",
        "MessageUnpinnedEvent",
        "ConversationUpdatedEvent",
        "MemberAddedEvent",
        "MemberRoleChangedEvent",
        "MemberRemovedEvent",
        "MessageDeletedEvent",
      ]);
      const seqs = events.map(seqOf);
      expect(seqs).toEqual(range(seqOf(lastWarmup) + 1, 11));
      const cursors = events.map(cursorOf);
      for (const cursor of cursors) expect(cursor).toMatch(/\S/);
      expect(new Set(cursors).size).toBe(cursors.length);
      for (const event of events) expect(event.conversationId).toBe(conversationId);

      const [added, edited, reacted, unreacted, pinned, unpinned, updated, joined, promoted, removed, deleted] = events;
      expect(added).toMatchObject({
        actor: { id: alice.id },
        message: { id: sent.id, body: "first", seq: sent.seq, sender: { id: alice.id }, type: "TEXT" },
      });
      expect(edited).toMatchObject({ actor: { id: alice.id }, message: { id: sent.id, body: "first, edited" } });
      expect(edited?.__typename === "MessageEditedEvent" && edited.message.editedAt).toBeTruthy();
      expect(reacted).toMatchObject({
        actor: { id: bob.id },
        emoji: "👍",
        added: true,
        user: { id: bob.id },
        message: { id: sent.id },
        reactions: [{ emoji: "👍", count: 1, users: [{ id: bob.id }] }],
      });
      expect(unreacted).toMatchObject({ emoji: "👍", added: false, user: { id: bob.id }, reactions: [] });
      expect(pinned).toMatchObject({ actor: { id: carol.id }, message: { id: sent.id, pinned: true } });
      expect(unpinned).toMatchObject({ actor: { id: carol.id }, message: { id: sent.id, pinned: false } });
      expect(updated).toMatchObject({ actor: { id: alice.id }, name: "Renamed", description: "About" });
      expect(joined).toMatchObject({ actor: { id: alice.id }, user: { id: dave.id }, role: "MEMBER" });
      expect(promoted).toMatchObject({ user: { id: dave.id }, role: "ADMIN" });
      expect(removed).toMatchObject({ actor: { id: alice.id }, user: { id: dave.id } });
      expect(deleted).toMatchObject({
        actor: { id: alice.id },
        message: { id: sent.id, body: null, pinned: false, deletedBy: { id: alice.id } },
      });
      expect(deleted?.__typename === "MessageDeletedEvent" && deleted.message.deletedAt).toBeTruthy();

      // Replay after the third event: exactly the rest, same seqs and cursors, then live.
      const replayClient = wsClient(s.second.wsUrl, as(carol));
      const replay = subscribe(replayClient, ConversationEvents, { conversationId, after: cursors[2] });
      const replayed = await takeEvents(replay, 8);
      expect(replayed.map(seqOf)).toEqual(seqs.slice(3));
      expect(replayed.map(cursorOf)).toEqual(cursors.slice(3));
      expect(replayed.map((e) => e.__typename)).toEqual(events.slice(3).map((e) => e.__typename));
      const live = await send(s.second.url, as(carol), conversationId, "live");
      const [bobsLive, carolsLive] = [await nextEvent(sub), await nextEvent(replay)];
      for (const event of [bobsLive, carolsLive]) {
        expect(event).toMatchObject({ __typename: "MessageAddedEvent", message: { id: live.id } });
        expect(seqOf(event)).toBe((seqs.at(-1) as number) + 1);
      }

      // Deleting the group: ConversationDeletedEvent, then the stream ends.
      await ok(s.url, DeleteGroup, { id: conversationId }, as(alice));
      for (const stream of [sub, replay]) {
        expect(await nextEvent(stream)).toEqual({ __typename: "ConversationDeletedEvent", conversationId });
        expect(await stream.done).toEqual({});
      }
      await client.dispose();
      await replayClient.dispose();
    });

    it("refuses a cursor without conversationId or of another conversation, outsiders and other tenants", async () => {
      const { alice, bob, dave, conversationId } = await setup();
      const other = await group(s.url, as(alice), [bob], "Other");
      const { eve } = await foreigner();
      // A cursor of the other conversation, from a replay of it.
      await send(s.url, as(alice), other, "one");
      await ok(s.url, UpdateGroup, { id: other, input: { name: "Other 2" } }, as(alice));
      const probe = wsClient(s.wsUrl, as(bob));
      const probeSub = subscribe(probe, ConversationEvents, { conversationId: other });
      await whenLive(probeSub, () => ok(s.url, UpdateGroup, { id: other, input: { name: "Other 3" } }, as(alice)));
      await ok(s.url, UpdateGroup, { id: other, input: { name: "Other 4" } }, as(alice));
      const foreignCursor = cursorOf(await nextEvent(probeSub));
      await probe.dispose();

      const cases: [VariablesOf<typeof ConversationEvents>, TestUser, string][] = [
        [{ after: foreignCursor }, bob, "BAD_USER_INPUT"],
        [{ conversationId, after: foreignCursor }, bob, "BAD_USER_INPUT"],
        [{ conversationId, after: "garbage" }, bob, "BAD_USER_INPUT"],
        [{ conversationId }, dave, "FORBIDDEN"],
        [{ conversationId }, eve, "NOT_FOUND"],
      ];
      for (const [variables, user, code] of cases) {
        const client = wsClient(s.wsUrl, as(user));
        const actual = await refusalCode(subscribe(client, ConversationEvents, variables));
        expect(actual, `${user.name} ${JSON.stringify(variables)}`).toBe(code);
        await client.dispose();
      }
    });

    it("without conversationId streams all of the viewer's conversations, including ones joined later", async () => {
      const { alice, bob, carol, conversationId: g1 } = await setup();
      const g2 = await group(s.url, as(carol), [alice], "Carol's");
      const client = wsClient(s.second.wsUrl, as(bob));
      const sub = subscribe(client, ConversationEvents, {});
      await whenLive(sub, () => ok(s.url, UpdateGroup, { id: g1, input: { name: "Poke" } }, as(alice)));

      await send(s.url, as(carol), g2, "not for bob");
      const inG1 = await send(s.url, as(alice), g1, "for bob");
      const first = await nextEvent(sub);
      expect(first).toMatchObject({ __typename: "MessageAddedEvent", conversationId: g1, message: { id: inG1.id } });

      // Added to g2 later: from his own MemberAddedEvent on, g2 is in his stream.
      await ok(s.url, AddMembers, { conversationId: g2, userIds: [bob.id] }, as(carol));
      const joined = await nextEvent(sub);
      expect(joined).toMatchObject({ __typename: "MemberAddedEvent", conversationId: g2, user: { id: bob.id } });
      const inG2 = await send(s.url, as(carol), g2, "now bob is in");
      expect(await nextEvent(sub)).toMatchObject({ conversationId: g2, message: { id: inG2.id } });

      // A group created later with him in it joins the stream at once, with its members' arrival
      // (created on one instance, streamed from the other where there are two).
      const g3 = await group(s.url, as(alice), [bob], "Later");
      expect(await nextEvent(sub)).toMatchObject({
        __typename: "MemberAddedEvent",
        conversationId: g3,
        seq: 1,
        actor: { id: alice.id },
        user: { id: alice.id },
        role: "OWNER",
      });
      expect(await nextEvent(sub)).toMatchObject({
        __typename: "MemberAddedEvent",
        conversationId: g3,
        seq: 2,
        user: { id: bob.id },
        role: "MEMBER",
      });
      const inG3 = await send(s.url, as(alice), g3, "brand new");
      expect(await nextEvent(sub)).toMatchObject({ conversationId: g3, message: { id: inG3.id } });

      // So does a direct conversation someone opens with him, before anything is said in it.
      const { openDirectConversation: direct } = await ok(s.url, OpenDirect, { userId: bob.id }, as(carol));
      const opened = [await nextEvent(sub), await nextEvent(sub)];
      expect(opened.map((e) => [e.__typename, e.conversationId, (e as { user?: { id: string } }).user?.id])).toEqual([
        ["MemberAddedEvent", direct.id, carol.id],
        ["MemberAddedEvent", direct.id, bob.id],
      ]);
      // Opening it again changes nothing.
      await ok(s.url, OpenDirect, { userId: carol.id }, as(bob));

      // Removed from g2: his removal is the last he hears of it.
      await ok(s.url, RemoveMember, { conversationId: g2, userId: bob.id }, as(carol));
      expect(await nextEvent(sub)).toMatchObject({
        __typename: "MemberRemovedEvent",
        conversationId: g2,
        user: { id: bob.id },
      });
      await sleep(200);
      await send(s.url, as(carol), g2, "bob is gone");

      // A deleted group is announced, and the stream goes on for the others.
      await ok(s.url, DeleteGroup, { id: g1 }, as(alice));
      expect(await nextEvent(sub)).toEqual({ __typename: "ConversationDeletedEvent", conversationId: g1 });
      const after = await send(s.url, as(alice), g3, "still here");
      expect(await nextEvent(sub)).toMatchObject({ conversationId: g3, message: { id: after.id } });
      await sub.expectSilence(300);
      await client.dispose();
    });

    it("messageAdded, typing and readReceipt work as before, next to conversationEvents", async () => {
      const { alice, bob, conversationId } = await setup();
      const bobClient = wsClient(s.wsUrl, as(bob));
      const aliceClient = wsClient(s.wsUrl, as(alice));
      const added = subscribe(bobClient, MessageAddedSeq, { conversationId });
      const typing = subscribe(bobClient, Typing, { conversationId });
      const events = subscribe(bobClient, ConversationEvents, { conversationId });
      const receipts = subscribe(aliceClient, ReadReceipt, { conversationId });
      const warm = await whenLive(added, () => send(s.url, as(alice), conversationId, "warmup"));
      await drain(events, 300);
      const warmSeq = (warm.at(-1)?.data?.messageAdded.seq ?? 0) as number;

      const m1 = await send(s.url, as(alice), conversationId, "one");
      expect((await added.next()).data?.messageAdded).toEqual({ id: m1.id, seq: warmSeq + 1, body: "one" });
      expect(await nextEvent(events)).toMatchObject({ __typename: "MessageAddedEvent", message: { id: m1.id } });

      // Edits, reactions and deletes are conversation events, not new messages.
      await ok(s.url, EditMessage, { id: m1.id, body: "one!" }, as(alice));
      await ok(s.url, AddReaction, { messageId: m1.id, emoji: "🎉" }, as(bob));
      const m2 = await send(s.url, as(alice), conversationId, "two");
      expect((await added.next()).data?.messageAdded).toEqual({ id: m2.id, seq: warmSeq + 2, body: "two" });
      expect((await takeEvents(events, 3)).map((e) => e.__typename)).toEqual([
        "MessageEditedEvent",
        "ReactionChangedEvent",
        "MessageAddedEvent",
      ]);

      await ok(s.url, SetTyping, { conversationId, isTyping: true }, as(alice));
      expect((await typing.next()).data?.typing).toEqual({ isTyping: true, user: { id: alice.id } });
      await ok(s.url, SetTyping, { conversationId, isTyping: false }, as(alice));
      expect((await typing.next()).data?.typing).toEqual({ isTyping: false, user: { id: alice.id } });

      await ok(s.url, MarkRead, { conversationId, upToMessageId: m2.id }, as(bob));
      expect((await receipts.next()).data?.readReceipt).toEqual({
        lastReadSeq: m2.seq,
        user: { id: bob.id },
        lastReadMessage: { id: m2.id },
      });
      await added.expectSilence(200);
      await events.expectSilence(0);
      await bobClient.dispose();
      await aliceClient.dispose();
    });

    it("replays more than one page of stored events after a cursor, in order, then continues live", async () => {
      const { alice, bob, carol, conversationId } = await setup();
      const probe = wsClient(s.wsUrl, as(bob));
      const probeSub = subscribe(probe, ConversationEvents, { conversationId });
      const warm = await whenLive(probeSub, () => send(s.url, as(alice), conversationId, "start"));
      const start = warm.at(-1)?.data?.conversationEvents as ConversationEvent;
      await probe.dispose();

      // More than the 200 rows the server reads from storage at a time.
      const total = 210;
      const sent: string[] = [];
      for (let batch = 0; batch < total / 10; batch++) {
        const results = await Promise.all(
          range(batch * 10, 10).map((i) => send(s.url, as(i % 2 ? alice : carol), conversationId, `bulk ${i}`)),
        );
        sent.push(...ids(results));
      }
      const client = wsClient(s.second.wsUrl, as(bob));
      const sub = subscribe(client, ConversationEvents, { conversationId, after: cursorOf(start) });
      const replayed = await takeEvents(sub, total, 20_000);
      expect(replayed.map(seqOf)).toEqual(range(seqOf(start) + 1, total));
      const messageIds = replayed.map((e) => (e.__typename === "MessageAddedEvent" ? e.message.id : e.__typename));
      expect([...messageIds].sort()).toEqual([...sent].sort());
      const live = await send(s.url, as(alice), conversationId, "live again");
      expect(await nextEvent(sub)).toMatchObject({ seq: seqOf(start) + total + 1, message: { id: live.id } });
      await sub.expectSilence(200);
      await client.dispose();
    }, 90_000);

    it("a replay after a message was deleted does not reveal its text", async () => {
      const { alice, bob, conversationId } = await setup();
      const probe = wsClient(s.wsUrl, as(bob));
      const probeSub = subscribe(probe, ConversationEvents, { conversationId });
      const warm = await whenLive(probeSub, () => send(s.url, as(alice), conversationId, "before"));
      const start = warm.at(-1)?.data?.conversationEvents as ConversationEvent;

      const secret = await send(s.url, as(alice), conversationId, "my password is hunter2");
      await ok(s.url, EditMessage, { id: secret.id, body: "my password is hunter3" }, as(alice));
      // Live, before the delete, the text is of course delivered.
      const [liveAdded] = await takeEvents(probeSub, 2);
      expect(liveAdded).toMatchObject({ message: { body: "my password is hunter2" } });
      await ok(s.url, DeleteMessage, { id: secret.id }, as(alice));
      await probe.dispose();

      const client = wsClient(s.wsUrl, as(bob));
      const sub = subscribe(client, ConversationEvents, { conversationId, after: cursorOf(start) });
      const replayed = await takeEvents(sub, 3);
      expect(replayed.map((e) => e.__typename)).toEqual([
        "MessageAddedEvent",
        "MessageEditedEvent",
        "MessageDeletedEvent",
      ]);
      for (const event of replayed) {
        expect(JSON.stringify(event)).not.toContain("hunter");
      }
      await client.dispose();
    });

    it("a removed member's conversation stream tells them, then ends", async () => {
      const { alice, dave, conversationId } = await setup();
      await ok(s.url, AddMembers, { conversationId, userIds: [dave.id] }, as(alice));
      const client = wsClient(s.wsUrl, as(dave));
      const sub = subscribe(client, ConversationEvents, { conversationId });
      await whenLive(sub, () => send(s.url, as(alice), conversationId, "welcome"));
      await ok(s.url, RemoveMember, { conversationId, userId: dave.id }, as(alice));
      expect(await nextEvent(sub)).toMatchObject({ __typename: "MemberRemovedEvent", user: { id: dave.id } });
      expect(await sub.done).toEqual({});
      await client.dispose();
    });

    it("repeating the same change concurrently records it once: one reaction, one pin, one delete, one event each", async () => {
      const { alice, bob, carol, conversationId } = await setup();
      const client = wsClient(s.wsUrl, as(bob));
      const sub = subscribe(client, ConversationEvents, { conversationId });
      await whenLive(sub, () => send(s.url, as(alice), conversationId, "warmup"));
      const target = await send(s.url, as(alice), conversationId, "target");
      const times = 6;
      const burst = <T>(run: () => Promise<T>) => Promise.all(Array.from({ length: times }, run));

      await burst(() => ok(s.url, AddReaction, { messageId: target.id, emoji: "👍" }, as(carol)));
      await burst(() => ok(s.url, PinMessage, { id: target.id }, as(carol)));
      await burst(() => ok(s.url, UnpinMessage, { id: target.id }, as(carol)));
      await burst(() => ok(s.url, RemoveReaction, { messageId: target.id, emoji: "👍" }, as(carol)));
      const deletes = await burst(() => ok(s.url, DeleteMessage, { id: target.id }, as(alice)));
      const end = await send(s.url, as(alice), conversationId, "end");

      const events: ConversationEvent[] = [];
      while (true) {
        const event = await nextEvent(sub);
        if (event.__typename === "MessageAddedEvent" && event.message.id === end.id) break;
        events.push(event);
      }
      expect(events.map((e) => e.__typename)).toEqual([
        "MessageAddedEvent",
        "ReactionChangedEvent",
        "MessagePinnedEvent",
        "MessageUnpinnedEvent",
        "ReactionChangedEvent",
        "MessageDeletedEvent",
      ]);
      const stored = await messageAs(s.url, as(bob), conversationId, target.id);
      expect(new Set(deletes.map((d) => d.deleteMessage.deletedAt))).toEqual(new Set([stored.deletedAt]));
      await client.dispose();
    });

    it(`a client applying only conversationEvents ends with exactly the server's state (seed ${SEED})`, async () => {
      const rand = mulberry32(SEED);
      const tenant = await createTenant(s.url, ["Alice", "Bob", "Carol", "Dave"]);
      const [alice, bob, carol, dave] = four(tenant);
      const key: Auth = { apiKey: tenant.apiKey };
      const urls = s.second === s.server ? [s.url] : [s.url, s.second.url];

      // The API key creates an empty group, so the first events describe everything in it.
      const conversationId = await group(s.url, key, [], "Seed");
      const watcher = new Observer(key, conversationId);
      const watcherSub = watcher.connect(s.wsUrl, { conversationId });
      let pokes = 0;
      const poke = () => ok(s.url, UpdateGroup, { id: conversationId, input: { name: `Seed ${++pokes}` } }, key);
      for (const result of await whenLive(watcherSub, poke)) {
        watcher.copy.apply((result.data as EventsResult).conversationEvents);
      }

      // Alice follows all of her conversations before she is added: her stream must start with her own arrival.
      const lobby = await group(s.url, as(alice), [], "Lobby");
      const alices = new Observer(as(alice), conversationId);
      const alicesSub = alices.connect(s.second.wsUrl, {});
      await whenLive(alicesSub, () => ok(s.url, UpdateGroup, { id: lobby, input: { name: "Lobby!" } }, as(alice)));

      await ok(s.url, AddMembers, { conversationId, userIds: [alice.id, bob.id, carol.id] }, key);
      await ok(s.url, SetMemberRole, { conversationId, userId: alice.id, role: "OWNER" }, key);
      await ok(s.url, SetMemberRole, { conversationId, userId: bob.id, role: "ADMIN" }, key);
      // Alice's stream starts at her arrival: the group is named again after it.
      const team = { name: "Team", description: "A random mix" };
      await ok(s.second.url, UpdateGroup, { id: conversationId, input: team }, as(alice));

      const scenario = new Scenario(rand, urls, { alice, bob, carol, dave }, conversationId);
      const total = 60;
      for (let i = 0; i < total; i++) {
        if (i === 25) await watcher.disconnect();
        if (i === 40) {
          expect(watcher.copy.lastCursor).toBeTruthy();
          // Reconnect through the other instance where there is one.
          watcher.connect(s.second.wsUrl, { conversationId, after: watcher.copy.lastCursor });
        }
        await scenario.step(i);
      }
      const sentinel = await send(s.url, key, conversationId, "sentinel");
      const seen = (copy: LocalCopy) => copy.messages.has(sentinel.id);
      await watcher.until(seen);
      await alices.until(seen);
      await watcher.pump(300);
      await alices.pump(300);

      const context = `seed ${SEED}; ops ${scenario.log.join(" ")}`;
      // No gap and no duplicate, across the reconnect.
      const watcherSeqs = watcher.copy.seqs;
      expect(watcherSeqs, context).toEqual(range(watcherSeqs[0] as number, watcherSeqs.length));
      expect(alices.copy.seqs, context).toEqual(range(pokes + 1, alices.copy.seqs.length));
      expect(
        alices.received.find((e) => e.conversationId === conversationId),
        context,
      ).toMatchObject({
        __typename: "MemberAddedEvent",
        user: { id: alice.id },
      });
      // Alice's stream carried her lobby too, and nothing else.
      for (const event of alices.received) expect([conversationId, lobby]).toContain(event.conversationId);

      const truth = await serverState(s.url, key, conversationId);
      expect(truth.messages.length, context).toBeGreaterThan(10);
      expect(truth.members.map((m) => m.id)).toEqual(expect.arrayContaining([alice.id, bob.id, carol.id]));
      expect(watcher.copy.state(), context).toEqual(truth);
      expect(alices.copy.state(), context).toEqual(await serverState(s.second.url, as(alice), conversationId));

      await watcher.disconnect();
      await alices.disconnect();
    }, 120_000);
  });
});
