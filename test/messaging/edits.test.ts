import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { ok, sleep } from "../helpers/client.ts";
import {
  AddReaction,
  DeleteMessage,
  EditMessage,
  PinMessage,
  RemoveReaction,
  UnpinMessage,
} from "../operations/messages.ts";
import { AssignRole, Roles } from "../operations/roles.ts";
import {
  as,
  conversationAs,
  ids,
  messageAs,
  normalizeGroups,
  refused,
  send,
  text,
  upload,
  useMessagingServers,
} from "./helpers.ts";

/** Editing, deleting and pinning messages, and reactions. */
describe.each(backends())("messaging on %s", (backend) => {
  const s = useMessagingServers(backend);
  const { setup, foreigner } = s;

  describe("editMessage", () => {
    it("lets the sender edit, sets editedAt and shows the new text in the history", async () => {
      const { alice, bob, conversationId } = await setup();
      const sent = await send(s.url, as(alice), conversationId, "hello");
      expect(sent.editedAt).toBeNull();
      const { editMessage } = await ok(s.url, EditMessage, { id: sent.id, body: "hello, edited" }, as(alice));
      expect(editMessage).toMatchObject({ id: sent.id, seq: sent.seq, body: "hello, edited" });
      expect(editMessage.editedAt).toBeTruthy();
      expect(Date.parse(editMessage.editedAt as string)).toBeGreaterThanOrEqual(Date.parse(sent.createdAt));
      const seen = await messageAs(s.url, as(bob), conversationId, sent.id);
      expect(seen).toMatchObject({ body: "hello, edited", editedAt: editMessage.editedAt, seq: sent.seq });
    });

    it("refuses other members, outsiders, other tenants, empty text and deleted messages", async () => {
      const { alice, bob, dave, conversationId } = await setup();
      const { eve } = await foreigner();
      const sent = await send(s.url, as(alice), conversationId, "original");
      await refused(s.url, EditMessage, { id: sent.id, body: "hijacked" }, as(bob), "FORBIDDEN");
      await refused(s.url, EditMessage, { id: sent.id, body: "hijacked" }, as(dave), "FORBIDDEN");
      await refused(s.url, EditMessage, { id: sent.id, body: "hijacked" }, as(eve), "NOT_FOUND");
      await refused(s.url, EditMessage, { id: sent.id, body: "   " }, as(alice), "BAD_USER_INPUT", "body");
      await refused(s.url, EditMessage, { id: "not-an-id", body: "x" }, as(alice), "BAD_USER_INPUT", "id");
      const seen = await messageAs(s.url, as(alice), conversationId, sent.id);
      expect(seen).toMatchObject({ body: "original", editedAt: null });

      await ok(s.url, DeleteMessage, { id: sent.id }, as(alice));
      await refused(s.url, EditMessage, { id: sent.id, body: "resurrected" }, as(alice), "BAD_USER_INPUT");
      const tombstone = await messageAs(s.url, as(alice), conversationId, sent.id);
      expect(tombstone).toMatchObject({ body: null, editedAt: null });
    });
  });

  describe("deleteMessage", () => {
    it("leaves a tombstone: no body, attachments, reactions or mentions; deletedAt and deletedBy set", async () => {
      const { alice, bob, carol, conversationId } = await setup();
      const file = await upload(s.url, as(alice), conversationId, text("secret file"));
      const sent = await send(s.url, as(alice), conversationId, "soon gone", {
        mentionedUserIds: [bob.id],
        attachmentIds: [file.id],
      });
      await ok(s.url, AddReaction, { messageId: sent.id, emoji: "👍" }, as(bob));
      await ok(s.url, PinMessage, { id: sent.id }, as(carol));
      const before = await messageAs(s.url, as(bob), conversationId, sent.id);
      expect(before).toMatchObject({ pinned: true, mentionsViewer: true, type: "FILE" });
      expect(before.attachments).toHaveLength(1);
      expect(before.reactions).toHaveLength(1);

      const { deleteMessage } = await ok(s.url, DeleteMessage, { id: sent.id }, as(alice));
      expect(deleteMessage).toMatchObject({
        id: sent.id,
        seq: sent.seq,
        body: null,
        attachments: [],
        reactions: [],
        mentions: [],
        mentionsViewer: false,
        pinned: false,
        deletedBy: { id: alice.id },
      });
      expect(deleteMessage.deletedAt).toBeTruthy();
      const seen = await messageAs(s.url, as(bob), conversationId, sent.id);
      expect(seen).toMatchObject({ body: null, attachments: [], reactions: [], deletedBy: { id: alice.id } });
      expect(seen.deletedAt).toBe(deleteMessage.deletedAt);
      expect(ids((await conversationAs(s.url, as(bob), conversationId)).pinnedMessages)).toEqual([]);

      // Deleting again is harmless and changes nothing.
      const again = await ok(s.url, DeleteMessage, { id: sent.id }, as(alice));
      expect(again.deleteMessage.deletedAt).toBe(deleteMessage.deletedAt);
      // A tombstone cannot be reacted to or pinned.
      await refused(s.url, AddReaction, { messageId: sent.id, emoji: "👍" }, as(bob), "BAD_USER_INPUT");
      await refused(s.url, PinMessage, { id: sent.id }, as(bob), "BAD_USER_INPUT");
    });

    it("refuses other members, outsiders and other tenants; moderators and the API key may delete", async () => {
      const { tenant, alice, bob, carol, dave, conversationId } = await setup();
      const { eve } = await foreigner();
      const sent = await send(s.url, as(alice), conversationId, "mine");
      await refused(s.url, DeleteMessage, { id: sent.id }, as(bob), "FORBIDDEN");
      await refused(s.url, DeleteMessage, { id: sent.id }, as(dave), "FORBIDDEN");
      await refused(s.url, DeleteMessage, { id: sent.id }, as(eve), "NOT_FOUND");
      expect((await messageAs(s.url, as(alice), conversationId, sent.id)).body).toBe("mine");

      // Carol becomes a tenant admin (chats:* includes chats:moderate).
      const { roles } = await ok(s.url, Roles, undefined, { apiKey: tenant.apiKey });
      const admin = roles.find((role) => role.name === "admin");
      if (!admin) return expect.fail("no admin role");
      await ok(s.url, AssignRole, { userId: carol.id, roleId: admin.id }, { apiKey: tenant.apiKey });
      const moderated = await ok(s.url, DeleteMessage, { id: sent.id }, as(carol));
      expect(moderated.deleteMessage).toMatchObject({ body: null, deletedBy: { id: carol.id } });

      const bobs = await send(s.url, as(bob), conversationId, "by bob");
      const byKey = await ok(s.url, DeleteMessage, { id: bobs.id }, { apiKey: tenant.apiKey });
      expect(byKey.deleteMessage).toMatchObject({ body: null, deletedBy: null });
      expect(byKey.deleteMessage.deletedAt).toBeTruthy();
    });
  });

  describe("pins", () => {
    it("pinMessage/unpinMessage: pinnedMessages most recently pinned first, idempotent both ways", async () => {
      const { alice, bob, carol, conversationId } = await setup();
      const [m1, m2, m3] = [
        await send(s.url, as(alice), conversationId, "m1"),
        await send(s.url, as(alice), conversationId, "m2"),
        await send(s.url, as(bob), conversationId, "m3"),
      ];
      const pinned1 = await ok(s.url, PinMessage, { id: m1.id }, as(bob));
      expect(pinned1.pinMessage).toMatchObject({ pinned: true, pinnedBy: { id: bob.id } });
      expect(pinned1.pinMessage.pinnedAt).toBeTruthy();
      await sleep(20);
      await ok(s.url, PinMessage, { id: m3.id }, as(carol));
      let conversation = await conversationAs(s.url, as(alice), conversationId);
      expect(ids(conversation.pinnedMessages)).toEqual([m3.id, m1.id]);
      expect(conversation.pinnedMessages[1]).toMatchObject({ pinned: true, pinnedBy: { id: bob.id } });

      // Pinning again changes nothing: not the pin time, not the order, not who pinned it.
      const again = await ok(s.url, PinMessage, { id: m1.id }, as(carol));
      expect(again.pinMessage).toMatchObject({ pinned: true, pinnedBy: { id: bob.id } });
      expect(again.pinMessage.pinnedAt).toBe(pinned1.pinMessage.pinnedAt);
      conversation = await conversationAs(s.url, as(alice), conversationId);
      expect(ids(conversation.pinnedMessages)).toEqual([m3.id, m1.id]);

      const unpinned = await ok(s.url, UnpinMessage, { id: m3.id }, as(alice));
      expect(unpinned.unpinMessage).toMatchObject({ pinned: false, pinnedAt: null, pinnedBy: null });
      const twice = await ok(s.url, UnpinMessage, { id: m3.id }, as(alice));
      expect(twice.unpinMessage.pinned).toBe(false);
      await ok(s.url, UnpinMessage, { id: m2.id }, as(alice));
      conversation = await conversationAs(s.url, as(alice), conversationId);
      expect(ids(conversation.pinnedMessages)).toEqual([m1.id]);
      expect((await messageAs(s.url, as(carol), conversationId, m1.id)).pinned).toBe(true);
    });

    it("refuses outsiders and other tenants", async () => {
      const { alice, dave, conversationId } = await setup();
      const { eve } = await foreigner();
      const sent = await send(s.url, as(alice), conversationId, "pin me");
      await refused(s.url, PinMessage, { id: sent.id }, as(dave), "FORBIDDEN");
      await refused(s.url, PinMessage, { id: sent.id }, as(eve), "NOT_FOUND");
      await ok(s.url, PinMessage, { id: sent.id }, as(alice));
      await refused(s.url, UnpinMessage, { id: sent.id }, as(dave), "FORBIDDEN");
      await refused(s.url, UnpinMessage, { id: sent.id }, as(eve), "NOT_FOUND");
      expect(ids((await conversationAs(s.url, as(alice), conversationId)).pinnedMessages)).toEqual([sent.id]);
    });
  });

  describe("reactions", () => {
    it("one per user per emoji, idempotent, aggregated with count, reactedByViewer and users in order", async () => {
      const { alice, bob, carol, conversationId } = await setup();
      const sent = await send(s.url, as(alice), conversationId, "react to me");
      await ok(s.url, AddReaction, { messageId: sent.id, emoji: "👍" }, as(bob));
      await sleep(5);
      await ok(s.url, AddReaction, { messageId: sent.id, emoji: "👍" }, as(bob));
      await ok(s.url, AddReaction, { messageId: sent.id, emoji: "❤️" }, as(carol));
      await sleep(5);
      const last = await ok(s.url, AddReaction, { messageId: sent.id, emoji: "👍" }, as(carol));
      expect(last.addReaction.reactions).toEqual([
        { emoji: "👍", count: 2, reactedByViewer: true, users: [{ id: bob.id }, { id: carol.id }] },
        { emoji: "❤️", count: 1, reactedByViewer: true, users: [{ id: carol.id }] },
      ]);
      const asBob = await messageAs(s.url, as(bob), conversationId, sent.id);
      expect(asBob.reactions.map((g) => [g.emoji, g.count, g.reactedByViewer])).toEqual([
        ["👍", 2, true],
        ["❤️", 1, false],
      ]);
      const asAlice = await messageAs(s.url, as(alice), conversationId, sent.id);
      expect(asAlice.reactions.map((g) => g.reactedByViewer)).toEqual([false, false]);

      const removed = await ok(s.url, RemoveReaction, { messageId: sent.id, emoji: "👍" }, as(bob));
      expect(normalizeGroups(removed.removeReaction.reactions)).toEqual(
        normalizeGroups([
          { emoji: "👍", count: 1, users: [{ id: carol.id }] },
          { emoji: "❤️", count: 1, users: [{ id: carol.id }] },
        ]),
      );
      expect(removed.removeReaction.reactions.map((g) => g.reactedByViewer)).toEqual([false, false]);
      // Taking back what is not there is harmless.
      const twice = await ok(s.url, RemoveReaction, { messageId: sent.id, emoji: "👍" }, as(bob));
      expect(twice.removeReaction.reactions.map((g) => g.count)).toEqual([1, 1]);
      await ok(s.url, RemoveReaction, { messageId: sent.id, emoji: "❤️" }, as(carol));
      const final = await messageAs(s.url, as(alice), conversationId, sent.id);
      expect(final.reactions).toEqual([{ emoji: "👍", count: 1, reactedByViewer: false, users: [{ id: carol.id }] }]);
    });

    it("accepts skin tones, flags, keycaps and ZWJ sequences as single emoji", async () => {
      const { alice, bob, conversationId } = await setup();
      const sent = await send(s.url, as(alice), conversationId, "so many");
      const accepted = ["👍🏽", "👋🏿", "🇫🇷", "🇯🇵", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "#️⃣", "🧑🏽‍🚀"];
      for (const emoji of accepted) await ok(s.url, AddReaction, { messageId: sent.id, emoji }, as(bob));
      const seen = await messageAs(s.url, as(alice), conversationId, sent.id);
      expect(seen.reactions.map((g) => g.emoji).sort()).toEqual([...accepted].sort());
      for (const group of seen.reactions) expect(group).toMatchObject({ count: 1, users: [{ id: bob.id }] });
    });

    it("refuses anything but one emoji (BAD_USER_INPUT on emoji), outsiders and other tenants", async () => {
      const { alice, dave, conversationId } = await setup();
      const { eve } = await foreigner();
      const sent = await send(s.url, as(alice), conversationId, "careful");
      for (const emoji of ["a", "👍👍", "", " ", ":+1:", "👍a", "ab", "<b>", "❤️👍", "🇫🇷🇯🇵"]) {
        await refused(s.url, AddReaction, { messageId: sent.id, emoji }, as(alice), "BAD_USER_INPUT", "emoji");
        await refused(s.url, RemoveReaction, { messageId: sent.id, emoji }, as(alice), "BAD_USER_INPUT", "emoji");
      }
      await refused(s.url, AddReaction, { messageId: sent.id, emoji: "👍" }, as(dave), "FORBIDDEN");
      await refused(s.url, AddReaction, { messageId: sent.id, emoji: "👍" }, as(eve), "NOT_FOUND");
      expect((await messageAs(s.url, as(alice), conversationId, sent.id)).reactions).toEqual([]);
    });
  });
});
