import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { ok } from "../helpers/client.ts";
import type { TestUser } from "../helpers/fixtures.ts";
import { ConversationSummaries, MarkRead } from "../operations/conversations.ts";
import { DeleteMessage, SendFullMessage, Threads } from "../operations/messages.ts";
import {
  as,
  conversationAs,
  group,
  history,
  ids,
  type MessageFields,
  messageAs,
  refused,
  send,
  useMessagingServers,
} from "./helpers.ts";

/** Replies and mentions. */
describe.each(backends())("messaging on %s", (backend) => {
  const s = useMessagingServers(backend);
  const { setup, foreigner } = s;

  describe("replies", () => {
    it("replyTo, a thread paged with replies(first, after), and replyCount without deleted replies", async () => {
      const { alice, bob, carol, conversationId } = await setup();
      const root = await send(s.url, as(alice), conversationId, "root");
      await send(s.url, as(carol), conversationId, "not in the thread");
      const replies: MessageFields[] = [];
      for (let i = 1; i <= 5; i++) {
        const reply = await send(s.url, as(i % 2 ? bob : carol), conversationId, `r${i}`, { replyToId: root.id });
        expect(reply.replyTo?.id).toBe(root.id);
        replies.push(reply);
      }
      const doomed = await send(s.url, as(carol), conversationId, "r6", { replyToId: root.id });
      await ok(s.url, DeleteMessage, { id: doomed.id }, as(carol));

      const rootAs = async (first: number, after?: string | null) => {
        const { messages } = await ok(s.url, Threads, { conversationId, first, after }, as(bob));
        const node = messages.edges.find((edge) => edge.node.id === root.id)?.node;
        if (!node) return expect.fail("root not found");
        return node;
      };
      const page1 = await rootAs(2);
      expect(page1.replyCount).toBe(5);
      expect(page1.replies.edges.map((e) => e.node.body)).toEqual(["r1", "r2"]);
      expect(page1.replies.pageInfo.hasNextPage).toBe(true);
      const page2 = await rootAs(2, page1.replies.pageInfo.endCursor);
      expect(page2.replies.edges.map((e) => e.node.body)).toEqual(["r3", "r4"]);
      const page3 = await rootAs(2, page2.replies.pageInfo.endCursor);
      const rest = page3.replies.edges.map((e) => e.node);
      // The rest of the thread: r5 and, if the thread lists it, r6 only as a tombstone.
      expect(rest[0]?.body).toBe("r5");
      for (const node of rest.slice(1)) expect(node).toMatchObject({ id: doomed.id, body: null });
      expect(page3.replies.pageInfo.hasNextPage).toBe(false);
      for (const node of [...page1.replies.edges, ...page2.replies.edges].map((e) => e.node)) {
        expect(node.replyTo?.id).toBe(root.id);
      }
      const all = await rootAs(100);
      expect(all.replies.edges.map((e) => e.node.id).filter((id) => id !== doomed.id)).toEqual(ids(replies));

      // A reply deleted later stops counting too.
      await ok(s.url, DeleteMessage, { id: (replies[0] as MessageFields).id }, as(bob));
      expect((await rootAs(1)).replyCount).toBe(4);
      expect((await messageAs(s.url, as(alice), conversationId, root.id)).replyCount).toBe(4);
    });

    it("refuses a replyToId from another conversation, another tenant or a malformed one", async () => {
      const { alice, bob, conversationId } = await setup();
      const other = await group(s.url, as(alice), [bob], "Other");
      const elsewhere = await send(s.url, as(alice), other, "elsewhere");
      const { eve, conversationId: evesRoom } = await foreigner();
      const foreign = await send(s.url, as(eve), evesRoom, "foreign");
      const input = (replyToId: string) => ({ input: { conversationId, body: "reply", replyToId } });
      await refused(s.url, SendFullMessage, input(elsewhere.id), as(bob), "NOT_FOUND");
      await refused(s.url, SendFullMessage, input(foreign.id), as(bob), "NOT_FOUND");
      await refused(s.url, SendFullMessage, input("nope"), as(bob), "BAD_USER_INPUT", "input.replyToId");
      expect(await history(s.url, as(bob), conversationId)).toEqual([]);
    });
  });

  describe("mentions", () => {
    it("records mentions, mentionsViewer, and a mentionCount after the read horizon that markRead clears", async () => {
      const { alice, bob, carol, conversationId } = await setup();
      const m1 = await send(s.url, as(alice), conversationId, "hi @bob @carol", {
        mentionedUserIds: [bob.id, carol.id],
      });
      expect(ids(m1.mentions).sort()).toEqual([bob.id, carol.id].sort());
      expect(m1.mentionsViewer).toBe(false);
      const seenByBob = await messageAs(s.url, as(bob), conversationId, m1.id);
      expect(seenByBob.mentionsViewer).toBe(true);
      expect(ids(seenByBob.mentions).sort()).toEqual([bob.id, carol.id].sort());

      const mentionCount = async (user: TestUser) =>
        (await conversationAs(s.url, as(user), conversationId)).mentionCount;
      expect(await mentionCount(bob)).toBe(1);
      expect(await mentionCount(alice)).toBe(0);
      const m2 = await send(s.url, as(carol), conversationId, "@bob again", { mentionedUserIds: [bob.id] });
      await send(s.url, as(alice), conversationId, "@carol only", { mentionedUserIds: [carol.id] });
      await send(s.url, as(alice), conversationId, "nobody");
      expect(await mentionCount(bob)).toBe(2);
      // Carol's own message moved her read horizon past m1: only "@carol only" is left for her.
      expect(await mentionCount(carol)).toBe(1);

      await ok(s.url, MarkRead, { conversationId, upToMessageId: m1.id }, as(bob));
      expect(await mentionCount(bob)).toBe(1);
      await ok(s.url, MarkRead, { conversationId, upToMessageId: m2.id }, as(bob));
      expect(await mentionCount(bob)).toBe(0);
      const list = await ok(s.url, ConversationSummaries, { first: 50 }, as(bob));
      expect(list.conversations.edges.find((e) => e.node.id === conversationId)?.node.mentionCount).toBe(0);

      // A new mention counts; once deleted it no longer does.
      const m5 = await send(s.url, as(alice), conversationId, "@bob last", { mentionedUserIds: [bob.id] });
      expect(await mentionCount(bob)).toBe(1);
      await ok(s.url, DeleteMessage, { id: m5.id }, as(alice));
      expect(await mentionCount(bob)).toBe(0);
    });

    it("refuses mentioning non-members or users of another tenant, and stores nothing", async () => {
      const { alice, bob, dave, conversationId } = await setup();
      const { eve } = await foreigner();
      for (const mentioned of [[dave.id], [bob.id, dave.id], [eve.id]]) {
        await refused(
          s.url,
          SendFullMessage,
          { input: { conversationId, body: "hey", mentionedUserIds: mentioned } },
          as(alice),
          "BAD_USER_INPUT",
          "input.mentionedUserIds",
        );
      }
      expect(await history(s.url, as(alice), conversationId)).toEqual([]);
      expect((await conversationAs(s.url, as(bob), conversationId)).mentionCount).toBe(0);
    });
  });
});
