import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { fails, type GqlResult, ok, request, subscribe, whenLive, wsClient } from "../helpers/client.ts";
import {
  AddMembers,
  Conversation,
  DeleteGroup,
  MarkRead,
  OpenDirect,
  RemoveMember,
  SetMemberRole,
  UpdateGroup,
} from "../operations/conversations.ts";
import { MessageAdded, ReadReceipt, Typing } from "../operations/events.ts";
import { Messages, SendMessage, SetTyping } from "../operations/messages.ts";
import { createTeam, fieldOf, firstError, named, useAccessWorld } from "./world.ts";

/** Who may manage a group: create, rename, delete, add and remove members, change member roles. */
describe.each(backends())("access rules on %s", (backend) => {
  const w = useAccessWorld(backend);

  describe("group management", () => {
    const memberAttempts: {
      name: string;
      field: string;
      call: (url: string, team: Awaited<ReturnType<typeof createTeam>>) => Promise<GqlResult<unknown>>;
    }[] = [
      {
        name: "updateGroup",
        field: "updateGroup",
        call: (url, t) => request(url, UpdateGroup, { id: t.group, input: { name: "Bob's" } }, { token: t.bob.token }),
      },
      {
        name: "deleteGroup",
        field: "deleteGroup",
        call: (url, t) => request(url, DeleteGroup, { id: t.group }, { token: t.bob.token }),
      },
      {
        name: "addMembers",
        field: "addMembers",
        call: (url, t) =>
          request(url, AddMembers, { conversationId: t.group, userIds: [t.dave.id] }, { token: t.bob.token }),
      },
      {
        name: "removeMember of another member",
        field: "removeMember",
        call: (url, t) =>
          request(url, RemoveMember, { conversationId: t.group, userId: t.carol.id }, { token: t.bob.token }),
      },
      {
        name: "removeMember of the owner",
        field: "removeMember",
        call: (url, t) =>
          request(url, RemoveMember, { conversationId: t.group, userId: t.alice.id }, { token: t.bob.token }),
      },
    ];

    it.each(named(memberAttempts))("a plain member cannot %s (FORBIDDEN), and nothing changes", async (_, c) => {
      const team = await createTeam(w.url);
      const result = await c.call(w.url, team);
      expect(firstError(result).extensions?.code, JSON.stringify(result)).toBe("FORBIDDEN");
      expect(fieldOf(result, c.field)).toBeNull();
      const { conversation } = await ok(w.url, Conversation, { id: team.group }, { apiKey: team.apiKey });
      expect(conversation?.name).toBe("Team");
      expect(conversation?.members.map((m) => m.user.id).sort()).toEqual(
        [team.alice.id, team.bob.id, team.carol.id].sort(),
      );
    });

    it("the owner (no admin in the group) can rename, add, remove and delete", async () => {
      const team = await createTeam(w.url);
      const auth = { token: team.alice.token };
      const renamed = await ok(w.url, UpdateGroup, { id: team.group, input: { name: "Renamed" } }, auth);
      expect(renamed.updateGroup.name).toBe("Renamed");
      const added = await ok(w.url, AddMembers, { conversationId: team.group, userIds: [team.dave.id] }, auth);
      expect(added.addMembers.members.map((m) => m.user.id)).toContain(team.dave.id);
      const removed = await ok(w.url, RemoveMember, { conversationId: team.group, userId: team.carol.id }, auth);
      expect(removed.removeMember.members.map((m) => m.user.id)).not.toContain(team.carol.id);
      await fails(w.url, Conversation, { id: team.group }, { token: team.carol.token }, "FORBIDDEN");
      const deleted = await ok(w.url, DeleteGroup, { id: team.group }, auth);
      expect(deleted.deleteGroup).toBe(team.group);
      await fails(w.url, Conversation, { id: team.group }, { apiKey: team.apiKey }, "NOT_FOUND");
    });

    it.each(["bob", "alice"] as const)("anyone can remove themselves (%s)", async (who) => {
      const team = await createTeam(w.url);
      const user = team[who];
      if (who === "alice") {
        // The last owner of a group with members hands ownership on before leaving.
        await fails(
          w.url,
          RemoveMember,
          { conversationId: team.group, userId: user.id },
          { token: user.token },
          "CONFLICT",
        );
        await ok(
          w.url,
          SetMemberRole,
          { conversationId: team.group, userId: team.bob.id, role: "OWNER" },
          { token: user.token },
        );
      }
      const left = await ok(
        w.url,
        RemoveMember,
        { conversationId: team.group, userId: user.id },
        { token: user.token },
      );
      expect(left.removeMember.members.map((m) => m.user.id)).not.toContain(user.id);
      await fails(w.url, Conversation, { id: team.group }, { token: user.token }, "FORBIDDEN");
      await fails(
        w.url,
        SendMessage,
        { input: { conversationId: team.group, body: "still here?" } },
        { token: user.token },
        "FORBIDDEN",
      );
    });

    const directAttempts: {
      name: string;
      field: string;
      call: (url: string, t: Awaited<ReturnType<typeof createTeam>>, direct: string) => Promise<GqlResult<unknown>>;
    }[] = [
      {
        name: "updateGroup by a participant",
        field: "id",
        call: (url, t, id) => request(url, UpdateGroup, { id, input: { name: "Ours" } }, { token: t.alice.token }),
      },
      {
        name: "updateGroup by the API key",
        field: "id",
        call: (url, t, id) => request(url, UpdateGroup, { id, input: { name: "Ours" } }, { apiKey: t.apiKey }),
      },
      {
        name: "deleteGroup by a participant",
        field: "id",
        call: (url, t, id) => request(url, DeleteGroup, { id }, { token: t.alice.token }),
      },
      {
        name: "deleteGroup by the API key",
        field: "id",
        call: (url, t, id) => request(url, DeleteGroup, { id }, { apiKey: t.apiKey }),
      },
      {
        name: "leaving it (removeMember of oneself)",
        field: "conversationId",
        call: (url, t, id) =>
          request(url, RemoveMember, { conversationId: id, userId: t.bob.id }, { token: t.bob.token }),
      },
      {
        name: "removeMember by the API key",
        field: "conversationId",
        call: (url, t, id) =>
          request(url, RemoveMember, { conversationId: id, userId: t.bob.id }, { apiKey: t.apiKey }),
      },
      {
        name: "addMembers by the API key",
        field: "conversationId",
        call: (url, t, id) =>
          request(url, AddMembers, { conversationId: id, userIds: [t.dave.id] }, { apiKey: t.apiKey }),
      },
    ];

    it.each(named(directAttempts))(
      "a direct conversation refuses %s (BAD_USER_INPUT naming the argument)",
      async (_, c) => {
        const team = await createTeam(w.url);
        const direct = (await ok(w.url, OpenDirect, { userId: team.bob.id }, { token: team.alice.token }))
          .openDirectConversation.id;
        const result = await c.call(w.url, team, direct);
        const error = firstError(result);
        expect(error.extensions?.code, JSON.stringify(result)).toBe("BAD_USER_INPUT");
        expect(error.extensions?.field, JSON.stringify(result)).toBe(c.field);
        const { conversation } = await ok(w.url, Conversation, { id: direct }, { apiKey: team.apiKey });
        expect(conversation?.members.map((m) => m.user.id).sort()).toEqual([team.alice.id, team.bob.id].sort());
      },
    );

    it("the API key may do everything in its tenant without being a member", async () => {
      const team = await createTeam(w.url);
      const auth = { apiKey: team.apiKey };
      const { conversation } = await ok(w.url, Conversation, { id: team.group }, auth);
      expect(conversation?.id).toBe(team.group);
      const system = await ok(w.url, SendMessage, { input: { conversationId: team.group, body: "notice" } }, auth);
      expect(system.sendMessage).toMatchObject({ type: "SYSTEM", sender: null });
      const asBob = await ok(
        w.url,
        SendMessage,
        { input: { conversationId: team.group, senderId: team.bob.id, body: "from Bob" } },
        auth,
      );
      expect(asBob.sendMessage).toMatchObject({ type: "TEXT", sender: { id: team.bob.id } });
      const page = await ok(w.url, Messages, { last: 50, conversationId: team.group }, auth);
      expect(page.messages.edges.map((e) => e.node.body)).toEqual(["notice", "from Bob"]);

      const client = wsClient(w.wsUrl, auth);
      try {
        const messages = subscribe(client, MessageAdded, { conversationId: team.group });
        const typing = subscribe(client, Typing, { conversationId: team.group });
        const reads = subscribe(client, ReadReceipt, { conversationId: team.group });
        await whenLive(messages, () =>
          ok(w.url, SendMessage, { input: { conversationId: team.group, body: "probe" } }, auth),
        );
        const typed = await whenLive(typing, () =>
          ok(w.url, SetTyping, { conversationId: team.group, isTyping: true }, { token: team.carol.token }),
        );
        expect(typed.data?.typing).toMatchObject({ isTyping: true, user: { id: team.carol.id } });
        const read = await whenLive(reads, () =>
          ok(
            w.url,
            MarkRead,
            { conversationId: team.group, upToMessageId: asBob.sendMessage.id },
            { token: team.carol.token },
          ),
        );
        expect(read.data?.readReceipt).toMatchObject({ lastReadSeq: 2, user: { id: team.carol.id } });
      } finally {
        await client.dispose();
      }

      const renamed = await ok(w.url, UpdateGroup, { id: team.group, input: { name: "By the key" } }, auth);
      expect(renamed.updateGroup.name).toBe("By the key");
      const added = await ok(w.url, AddMembers, { conversationId: team.group, userIds: [team.dave.id] }, auth);
      expect(added.addMembers.members.map((m) => m.user.id)).toContain(team.dave.id);
      const removed = await ok(w.url, RemoveMember, { conversationId: team.group, userId: team.alice.id }, auth);
      expect(removed.removeMember.members.map((m) => m.user.id)).not.toContain(team.alice.id);
      const deleted = await ok(w.url, DeleteGroup, { id: team.group }, auth);
      expect(deleted.deleteGroup).toBe(team.group);
    });
  });
});
