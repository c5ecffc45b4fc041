import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { type GqlResult, ok, request, subscribe, whenLive, wsClient } from "../helpers/client.ts";
import { createTenant, type TestUser } from "../helpers/fixtures.ts";
import { Conversation, CreateGroup, HideConversation, MarkRead } from "../operations/conversations.ts";
import { MessageAdded } from "../operations/events.ts";
import {
  AddReaction,
  Messages,
  PinMessage,
  RemoveReaction,
  SearchMessages,
  SendMessage,
  SetTyping,
  UnpinMessage,
} from "../operations/messages.ts";
import {
  aMessageOf,
  bodiesOf,
  expectRefused,
  fieldOf,
  firstError,
  headersOf,
  inBothKinds,
  named,
  subscriptionCases,
  uploadAttachment,
  useAccessWorld,
  type World,
} from "./world.ts";

/** A user of the same tenant who is not a member of a conversation is FORBIDDEN to act on it. */
/** Operations on a conversation of the same tenant, made by a user who is not a member. */
const nonMemberCases: {
  name: string;
  field: string;
  call: (w: World, conversationId: string) => Promise<GqlResult<unknown>>;
}[] = [
  {
    name: "conversation(id)",
    field: "conversation",
    call: (w, id) => request(w.url, Conversation, { id }, { token: w.home.outsider.token }),
  },
  {
    name: "messages(conversationId)",
    field: "messages",
    call: (w, id) => request(w.url, Messages, { last: 50, conversationId: id }, { token: w.home.outsider.token }),
  },
  {
    name: "sendMessage(input.conversationId)",
    field: "sendMessage",
    call: (w, id) =>
      request(
        w.url,
        SendMessage,
        { input: { conversationId: id, body: "let me in" } },
        { token: w.home.outsider.token },
      ),
  },
  {
    name: "markRead(conversationId)",
    field: "markRead",
    call: async (w, id) => {
      const page = await ok(w.url, Messages, { last: 50, conversationId: id }, { apiKey: w.home.apiKey });
      const upToMessageId = page.messages.edges[0]?.node.id as string;
      return request(w.url, MarkRead, { conversationId: id, upToMessageId }, { token: w.home.outsider.token });
    },
  },
  {
    name: "hideConversation(id)",
    field: "hideConversation",
    call: (w, id) => request(w.url, HideConversation, { id }, { token: w.home.outsider.token }),
  },
  {
    name: "setTyping(conversationId)",
    field: "setTyping",
    call: (w, id) =>
      request(w.url, SetTyping, { conversationId: id, isTyping: true }, { token: w.home.outsider.token }),
  },
  {
    name: "searchMessages(conversationId)",
    field: "searchMessages",
    call: (w, id) =>
      request(
        w.url,
        SearchMessages,
        { first: 100, query: w.shared, conversationId: id },
        { token: w.home.outsider.token },
      ),
  },
  {
    name: "uploadAttachment(conversationId)",
    field: "uploadAttachment",
    call: (w, id) => uploadAttachment(w.url, id, headersOf({ token: w.home.outsider.token })),
  },
  {
    name: "pinMessage(id) of a message in it",
    field: "pinMessage",
    call: async (w, id) =>
      request(w.url, PinMessage, { id: await aMessageOf(w, id) }, { token: w.home.outsider.token }),
  },
  {
    name: "unpinMessage(id) of a message in it",
    field: "unpinMessage",
    call: async (w, id) =>
      request(w.url, UnpinMessage, { id: await aMessageOf(w, id) }, { token: w.home.outsider.token }),
  },
  {
    name: "addReaction(messageId) of a message in it",
    field: "addReaction",
    call: async (w, id) =>
      request(
        w.url,
        AddReaction,
        { messageId: await aMessageOf(w, id), emoji: "👀" },
        { token: w.home.outsider.token },
      ),
  },
  {
    name: "removeReaction(messageId) of a message in it",
    field: "removeReaction",
    call: async (w, id) =>
      request(
        w.url,
        RemoveReaction,
        { messageId: await aMessageOf(w, id), emoji: "👍" },
        { token: w.home.outsider.token },
      ),
  },
];

describe.each(backends())("access rules on %s", (backend) => {
  const w = useAccessWorld(backend);

  describe("a user of the same tenant who is not a member is FORBIDDEN", () => {
    it.each(named(inBothKinds(nonMemberCases)))("%s", async (_, c) => {
      const conversationId = c.kind === "group" ? w.home.group : w.home.direct;
      const result = await c.call(w, conversationId);
      expect(firstError(result).extensions?.code, JSON.stringify(result)).toBe("FORBIDDEN");
      expect(fieldOf(result, c.field)).toBeNull();
    });

    it.each(named(inBothKinds(subscriptionCases)))("%s", async (_, c) => {
      const conversation = c.kind === "group" ? w.home.group : w.home.direct;
      const client = wsClient(w.wsUrl, { token: w.home.outsider.token });
      try {
        await expectRefused(c.open(client, conversation), "FORBIDDEN");
      } finally {
        await client.dispose();
      }
    });

    it("messageAdded without an id carries only the viewer's conversations", async () => {
      const tenant = await createTenant(w.url, ["Ann", "Ben", "Cid"]);
      const [ann, ben, cid] = tenant.users as [TestUser, TestUser, TestUser];
      const group = (
        await ok(w.url, CreateGroup, { input: { name: "A+B", memberIds: [ben.id] } }, { token: ann.token })
      ).createGroup.id;
      const cidsOwn = (await ok(w.url, CreateGroup, { input: { name: "Cid alone" } }, { token: cid.token })).createGroup
        .id;
      const benClient = wsClient(w.wsUrl, { token: ben.token });
      const cidClient = wsClient(w.wsUrl, { token: cid.token });
      try {
        const benFeed = subscribe(benClient, MessageAdded, {});
        const cidFeed = subscribe(cidClient, MessageAdded, {});
        const pokeCid = () =>
          ok(w.url, SendMessage, { input: { conversationId: cidsOwn, body: "fence" } }, { token: cid.token });
        await whenLive(cidFeed, pokeCid);
        await whenLive(benFeed, () =>
          ok(w.url, SendMessage, { input: { conversationId: group, body: "probe" } }, { token: ann.token }),
        );
        for (const body of ["one", "two", "three"]) {
          await ok(w.url, SendMessage, { input: { conversationId: group, body } }, { token: ann.token });
        }
        expect(bodiesOf(await benFeed.take(3))).toEqual(["one", "two", "three"]);
        await pokeCid();
        const next = await cidFeed.next();
        expect(next.data?.messageAdded.conversation.id).toBe(cidsOwn);
        await cidFeed.expectSilence(200);
      } finally {
        await benClient.dispose();
        await cidClient.dispose();
      }
    });
  });
});
