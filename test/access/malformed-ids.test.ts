import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { type GqlResult, request, wsClient } from "../helpers/client.ts";
import { RevokeSession } from "../operations/accounts.ts";
import {
  AddMembers,
  Conversation,
  CreateGroup,
  DeleteGroup,
  HideConversation,
  MarkRead,
  OpenDirect,
  RemoveMember,
  SetMemberRole,
  UpdateGroup,
} from "../operations/conversations.ts";
import {
  AddReaction,
  DeleteMessage,
  EditMessage,
  Messages,
  PinMessage,
  RemoveReaction,
  SearchMessages,
  SendMessage,
  SetTyping,
  UnpinMessage,
} from "../operations/messages.ts";
import { AssignRole, DeleteRole, Role, UnassignRole, UpdateRole } from "../operations/roles.ts";
import { UpdateTenantWithDefaultRole } from "../operations/tenants.ts";
import { DeleteUser, IssueUserToken, RevokeUserTokens, UpdateUser, User } from "../operations/users.ts";
import {
  expectRefused,
  firstError,
  headersOf,
  MALFORMED_IDS,
  named,
  subscriptionCases,
  uploadAttachment,
  useAccessWorld,
  type World,
} from "./world.ts";

/** A malformed id is BAD_USER_INPUT naming the argument, whatever the operation. */
/** Each call passes `bad` in exactly one id argument, named by `field`; everything else is valid. */
const malformedIdCases: {
  name: string;
  field: string;
  call: (w: World, bad: string) => Promise<GqlResult<unknown>>;
}[] = [
  {
    name: "user(id)",
    field: "id",
    call: (w, bad) => request(w.url, User, { id: bad }, { apiKey: w.home.apiKey }),
  },
  {
    name: "updateUser(id)",
    field: "id",
    call: (w, bad) => request(w.url, UpdateUser, { id: bad, input: { name: "x" } }, { apiKey: w.home.apiKey }),
  },
  {
    name: "deleteUser(id)",
    field: "id",
    call: (w, bad) => request(w.url, DeleteUser, { id: bad }, { apiKey: w.home.apiKey }),
  },
  {
    name: "issueUserToken(userId)",
    field: "userId",
    call: (w, bad) => request(w.url, IssueUserToken, { userId: bad }, { apiKey: w.home.apiKey }),
  },
  {
    name: "conversation(id)",
    field: "id",
    call: (w, bad) => request(w.url, Conversation, { id: bad }, { token: w.home.owner.token }),
  },
  {
    name: "messages(conversationId)",
    field: "conversationId",
    call: (w, bad) => request(w.url, Messages, { last: 50, conversationId: bad }, { token: w.home.owner.token }),
  },
  {
    name: "createGroup(input.memberIds)",
    field: "input.memberIds",
    call: (w, bad) =>
      request(
        w.url,
        CreateGroup,
        { input: { name: "G", memberIds: [w.home.member.id, bad] } },
        { token: w.home.owner.token },
      ),
  },
  {
    name: "updateGroup(id)",
    field: "id",
    call: (w, bad) => request(w.url, UpdateGroup, { id: bad, input: { name: "x" } }, { token: w.home.owner.token }),
  },
  {
    name: "deleteGroup(id)",
    field: "id",
    call: (w, bad) => request(w.url, DeleteGroup, { id: bad }, { token: w.home.owner.token }),
  },
  {
    name: "addMembers(conversationId)",
    field: "conversationId",
    call: (w, bad) =>
      request(w.url, AddMembers, { conversationId: bad, userIds: [w.home.outsider.id] }, { apiKey: w.home.apiKey }),
  },
  {
    name: "addMembers(userIds)",
    field: "userIds",
    call: (w, bad) =>
      request(w.url, AddMembers, { conversationId: w.home.group, userIds: [bad] }, { apiKey: w.home.apiKey }),
  },
  {
    name: "removeMember(conversationId)",
    field: "conversationId",
    call: (w, bad) =>
      request(w.url, RemoveMember, { conversationId: bad, userId: w.home.member.id }, { apiKey: w.home.apiKey }),
  },
  {
    name: "removeMember(userId)",
    field: "userId",
    call: (w, bad) =>
      request(w.url, RemoveMember, { conversationId: w.home.group, userId: bad }, { apiKey: w.home.apiKey }),
  },
  {
    name: "openDirectConversation(userId)",
    field: "userId",
    call: (w, bad) => request(w.url, OpenDirect, { userId: bad }, { token: w.home.owner.token }),
  },
  {
    name: "hideConversation(id)",
    field: "id",
    call: (w, bad) => request(w.url, HideConversation, { id: bad }, { token: w.home.owner.token }),
  },
  {
    name: "sendMessage(input.conversationId)",
    field: "input.conversationId",
    call: (w, bad) =>
      request(w.url, SendMessage, { input: { conversationId: bad, body: "x" } }, { token: w.home.owner.token }),
  },
  {
    name: "sendMessage(input.recipientId)",
    field: "input.recipientId",
    call: (w, bad) =>
      request(w.url, SendMessage, { input: { recipientId: bad, body: "x" } }, { token: w.home.owner.token }),
  },
  {
    name: "sendMessage(input.replyToId)",
    field: "input.replyToId",
    call: (w, bad) =>
      request(
        w.url,
        SendMessage,
        { input: { conversationId: w.home.group, replyToId: bad, body: "x" } },
        { token: w.home.owner.token },
      ),
  },
  {
    name: "sendMessage(input.senderId)",
    field: "input.senderId",
    call: (w, bad) =>
      request(
        w.url,
        SendMessage,
        { input: { conversationId: w.home.group, senderId: bad, body: "x" } },
        { apiKey: w.home.apiKey },
      ),
  },
  {
    name: "markRead(conversationId)",
    field: "conversationId",
    call: (w, bad) =>
      request(w.url, MarkRead, { conversationId: bad, upToMessageId: w.home.message }, { token: w.home.member.token }),
  },
  {
    name: "markRead(upToMessageId)",
    field: "upToMessageId",
    call: (w, bad) =>
      request(w.url, MarkRead, { conversationId: w.home.group, upToMessageId: bad }, { token: w.home.member.token }),
  },
  {
    name: "setTyping(conversationId)",
    field: "conversationId",
    call: (w, bad) =>
      request(w.url, SetTyping, { conversationId: bad, isTyping: true }, { token: w.home.member.token }),
  },
  {
    name: "role(id)",
    field: "id",
    call: (w, bad) => request(w.url, Role, { id: bad }, { apiKey: w.home.apiKey }),
  },
  {
    name: "updateRole(id)",
    field: "id",
    call: (w, bad) => request(w.url, UpdateRole, { id: bad, input: { name: "x" } }, { apiKey: w.home.apiKey }),
  },
  {
    name: "deleteRole(id)",
    field: "id",
    call: (w, bad) => request(w.url, DeleteRole, { id: bad }, { apiKey: w.home.apiKey }),
  },
  {
    name: "assignRole(userId)",
    field: "userId",
    call: (w, bad) => request(w.url, AssignRole, { userId: bad, roleId: w.home.role }, { apiKey: w.home.apiKey }),
  },
  {
    name: "assignRole(roleId)",
    field: "roleId",
    call: (w, bad) =>
      request(w.url, AssignRole, { userId: w.home.outsider.id, roleId: bad }, { apiKey: w.home.apiKey }),
  },
  {
    name: "unassignRole(userId)",
    field: "userId",
    call: (w, bad) => request(w.url, UnassignRole, { userId: bad, roleId: w.home.role }, { apiKey: w.home.apiKey }),
  },
  {
    name: "unassignRole(roleId)",
    field: "roleId",
    call: (w, bad) =>
      request(w.url, UnassignRole, { userId: w.home.member.id, roleId: bad }, { apiKey: w.home.apiKey }),
  },
  {
    name: "revokeUserTokens(userId)",
    field: "userId",
    call: (w, bad) => request(w.url, RevokeUserTokens, { userId: bad }, { apiKey: w.home.apiKey }),
  },
  {
    name: "editMessage(id)",
    field: "id",
    call: (w, bad) => request(w.url, EditMessage, { id: bad, body: "x" }, { token: w.home.owner.token }),
  },
  {
    name: "deleteMessage(id)",
    field: "id",
    call: (w, bad) => request(w.url, DeleteMessage, { id: bad }, { token: w.home.owner.token }),
  },
  {
    name: "setMemberRole(conversationId)",
    field: "conversationId",
    call: (w, bad) =>
      request(
        w.url,
        SetMemberRole,
        { conversationId: bad, userId: w.home.member.id, role: "ADMIN" },
        { apiKey: w.home.apiKey },
      ),
  },
  {
    name: "setMemberRole(userId)",
    field: "userId",
    call: (w, bad) =>
      request(
        w.url,
        SetMemberRole,
        { conversationId: w.home.group, userId: bad, role: "ADMIN" },
        { apiKey: w.home.apiKey },
      ),
  },
  {
    name: "updateTenant(input.defaultRoleId)",
    field: "input.defaultRoleId",
    call: (w, bad) =>
      request(w.url, UpdateTenantWithDefaultRole, { input: { defaultRoleId: bad } }, { apiKey: w.home.apiKey }),
  },
  {
    name: "pinMessage(id)",
    field: "id",
    call: (w, bad) => request(w.url, PinMessage, { id: bad }, { token: w.home.owner.token }),
  },
  {
    name: "unpinMessage(id)",
    field: "id",
    call: (w, bad) => request(w.url, UnpinMessage, { id: bad }, { token: w.home.owner.token }),
  },
  {
    name: "addReaction(messageId)",
    field: "messageId",
    call: (w, bad) => request(w.url, AddReaction, { messageId: bad, emoji: "👍" }, { token: w.home.owner.token }),
  },
  {
    name: "removeReaction(messageId)",
    field: "messageId",
    call: (w, bad) => request(w.url, RemoveReaction, { messageId: bad, emoji: "👍" }, { token: w.home.owner.token }),
  },
  {
    name: "searchMessages(conversationId)",
    field: "conversationId",
    call: (w, bad) =>
      request(
        w.url,
        SearchMessages,
        { first: 100, query: w.home.word, conversationId: bad },
        { token: w.home.owner.token },
      ),
  },
  {
    name: "searchMessages(conversationId) with the API key",
    field: "conversationId",
    call: (w, bad) =>
      request(
        w.url,
        SearchMessages,
        { first: 100, query: w.home.word, conversationId: bad },
        { apiKey: w.home.apiKey },
      ),
  },
  {
    name: "uploadAttachment(conversationId)",
    field: "conversationId",
    call: (w, bad) => uploadAttachment(w.url, bad, headersOf({ token: w.home.owner.token })),
  },
  {
    name: "sendMessage(input.attachmentIds)",
    field: "input.attachmentIds",
    call: (w, bad) =>
      request(
        w.url,
        SendMessage,
        { input: { conversationId: w.home.group, body: "x", attachmentIds: [bad] } },
        { token: w.home.owner.token },
      ),
  },
  {
    name: "sendMessage(input.mentionedUserIds)",
    field: "input.mentionedUserIds",
    call: (w, bad) =>
      request(
        w.url,
        SendMessage,
        { input: { conversationId: w.home.group, body: "x", mentionedUserIds: [w.home.member.id, bad] } },
        { token: w.home.owner.token },
      ),
  },
  {
    name: "revokeSession(id)",
    field: "id",
    call: (w, bad) => request(w.url, RevokeSession, { id: bad }, { token: w.home.signedUp.token }),
  },
];

describe.each(backends())("access rules on %s", (backend) => {
  const w = useAccessWorld(backend);

  describe("malformed ids are BAD_USER_INPUT naming the argument", () => {
    const withBadIds = <C extends { name: string }>(cases: C[]) =>
      cases.flatMap((c) => MALFORMED_IDS.map((bad) => ({ ...c, bad, name: `${c.name} = ${JSON.stringify(bad)}` })));

    it.each(named(withBadIds(malformedIdCases)))("%s", async (_, c) => {
      const result = await c.call(w, c.bad);
      const error = firstError(result);
      expect(error.extensions?.code, JSON.stringify(result)).toBe("BAD_USER_INPUT");
      expect(error.extensions?.field, JSON.stringify(result)).toBe(c.field);
    });

    it.each(named(withBadIds(subscriptionCases)))("%s", async (_, c) => {
      const client = wsClient(w.wsUrl, { token: w.home.member.token });
      try {
        const error = await expectRefused(c.open(client, c.bad), "BAD_USER_INPUT");
        expect(error.extensions?.field, JSON.stringify(error)).toBe("conversationId");
      } finally {
        await client.dispose();
      }
    });
  });
});
