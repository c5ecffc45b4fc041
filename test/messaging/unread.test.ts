import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { ok } from "../helpers/client.ts";
import type { TestUser } from "../helpers/fixtures.ts";
import { ConversationSummaries, MarkRead } from "../operations/conversations.ts";
import { DeleteMessage, EditMessage } from "../operations/messages.ts";
import { as, conversationAs, send, useMessagingServers } from "./helpers.ts";

/** unreadCount and lastMessage under edits and deletes. */
describe.each(backends())("messaging on %s", (backend) => {
  const s = useMessagingServers(backend);
  const { setup } = s;

  describe("unreadCount and lastMessage", () => {
    it("stay correct under edits and deletes", async () => {
      const { alice, bob, conversationId } = await setup();
      const view = async (user: TestUser) => {
        const conversation = await conversationAs(s.url, as(user), conversationId);
        const list = await ok(s.url, ConversationSummaries, { first: 50 }, as(user));
        const listed = list.conversations.edges.find((e) => e.node.id === conversationId)?.node;
        expect(listed?.unreadCount).toBe(conversation.unreadCount);
        expect(listed?.lastMessage ?? null).toEqual(
          conversation.lastMessage ? { id: conversation.lastMessage.id, body: conversation.lastMessage.body } : null,
        );
        return { unread: conversation.unreadCount, last: conversation.lastMessage };
      };
      const m1 = await send(s.url, as(alice), conversationId, "m1");
      const m2 = await send(s.url, as(alice), conversationId, "m2");
      const m3 = await send(s.url, as(alice), conversationId, "m3");
      expect(await view(bob)).toMatchObject({ unread: 3, last: { id: m3.id, body: "m3" } });
      expect(await view(alice)).toMatchObject({ unread: 0, last: { id: m3.id } });

      await ok(s.url, DeleteMessage, { id: m3.id }, as(alice));
      expect(await view(bob)).toMatchObject({ unread: 2, last: { id: m2.id, body: "m2" } });
      expect((await view(alice)).last?.id).toBe(m2.id);

      await ok(s.url, EditMessage, { id: m2.id, body: "m2, edited" }, as(alice));
      const edited = await view(bob);
      expect(edited).toMatchObject({ unread: 2, last: { id: m2.id, body: "m2, edited" } });
      expect(edited.last?.editedAt).toBeTruthy();

      await ok(s.url, DeleteMessage, { id: m1.id }, as(alice));
      expect(await view(bob)).toMatchObject({ unread: 1, last: { id: m2.id } });

      await ok(s.url, MarkRead, { conversationId, upToMessageId: m2.id }, as(bob));
      expect(await view(bob)).toMatchObject({ unread: 0, last: { id: m2.id } });

      const m4 = await send(s.url, as(alice), conversationId, "m4");
      expect(await view(bob)).toMatchObject({ unread: 1, last: { id: m4.id } });
      await ok(s.url, DeleteMessage, { id: m4.id }, as(alice));
      expect(await view(bob)).toMatchObject({ unread: 0, last: { id: m2.id, body: "m2, edited" } });

      await ok(s.url, DeleteMessage, { id: m2.id }, as(alice));
      expect(await view(bob)).toEqual({ unread: 0, last: null });
      // Bob's own messages never count as unread for him.
      await send(s.url, as(bob), conversationId, "mine");
      expect((await view(bob)).unread).toBe(0);
      expect((await view(alice)).unread).toBe(1);
    });
  });
});
