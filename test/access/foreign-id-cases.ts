import { type Auth, type GqlResult, request } from "../helpers/client.ts";
import { RevokeSession } from "../operations/accounts.ts";
import {
  AddMembers,
  Conversation,
  DeleteGroup,
  HideConversation,
  MarkRead,
  OpenDirect,
  RemoveMember,
  SetMemberRole,
  UpdateGroup,
} from "../operations/conversations.ts";
import { UpdateExternalGroup } from "../operations/external-jwt.ts";
import {
  AddReaction,
  DeleteMessage,
  EditMessage,
  EditMessageData,
  Messages,
  PinMessage,
  RemoveReaction,
  SearchMessages,
  SendMessage,
  SetTyping,
  UnpinMessage,
} from "../operations/messages.ts";
import { AssignRole, DeleteRole, Role, UnassignRole, UpdateRole } from "../operations/roles.ts";
import { BlockUser, ReportMessage, ResolveReport, UnblockUser } from "../operations/safety.ts";
import { UpdateTenantWithDefaultRole } from "../operations/tenants.ts";
import { DeleteUser, IssueUserToken, RevokeUserTokens, UpdateUser, User } from "../operations/users.ts";
import { DeleteWebhook, RotateWebhookSecret, UpdateWebhook, WebhookDeliveries } from "../operations/webhooks.ts";
import {
  type Actor,
  ALL,
  BOTH,
  headersOf,
  KEY,
  PRIVILEGED,
  SESSION_USERS,
  type Side,
  TOKEN,
  USERS,
  uploadAttachment,
  type World,
} from "./world.ts";

export interface ForeignIdCase {
  name: string;
  /** The root field whose data must be null. */
  field: string;
  actors: Actor[];
  /** The id of `home` the intruder passes. */
  foreign: (home: Side) => string;
  call: (w: World, auth: Auth, id: string) => Promise<GqlResult<unknown>>;
  /** What an unknown id gets, and so the foreign one too; NOT_FOUND unless given. */
  code?: "NOT_FOUND" | "BAD_USER_INPUT";
}

/** Each call is made with a `home` id and with a random UUID; both must fail the same way. */
export const foreignIdCases: ForeignIdCase[] = [
  {
    name: "updateUser(id)",
    field: "updateUser",
    actors: BOTH,
    foreign: (home) => home.member.id,
    call: (w, auth, id) => request(w.url, UpdateUser, { id, input: { name: "Renamed" } }, auth),
  },
  {
    name: "deleteUser(id)",
    field: "deleteUser",
    actors: KEY,
    foreign: (home) => home.outsider.id,
    call: (w, auth, id) => request(w.url, DeleteUser, { id }, auth),
  },
  {
    name: "issueUserToken(userId)",
    field: "issueUserToken",
    actors: KEY,
    foreign: (home) => home.member.id,
    call: (w, auth, id) => request(w.url, IssueUserToken, { userId: id }, auth),
  },
  {
    name: "conversation(id) of a group",
    field: "conversation",
    actors: BOTH,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, Conversation, { id }, auth),
  },
  {
    name: "conversation(id) of a direct conversation",
    field: "conversation",
    actors: BOTH,
    foreign: (home) => home.direct,
    call: (w, auth, id) => request(w.url, Conversation, { id }, auth),
  },
  {
    name: "messages(conversationId)",
    field: "messages",
    actors: BOTH,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, Messages, { last: 50, conversationId: id }, auth),
  },
  {
    name: "updateGroup(id)",
    field: "updateGroup",
    actors: BOTH,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, UpdateGroup, { id, input: { name: "Taken over" } }, auth),
  },
  {
    // Linking another tenant's group to an identity provider group would let this tenant's
    // tokens join it.
    name: "updateGroup(id) with input.externalId",
    field: "updateGroup",
    actors: BOTH,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, UpdateExternalGroup, { id, input: { externalId: "idp-group" } }, auth),
  },
  {
    name: "deleteGroup(id)",
    field: "deleteGroup",
    actors: BOTH,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, DeleteGroup, { id }, auth),
  },
  {
    name: "addMembers(conversationId)",
    field: "addMembers",
    actors: BOTH,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, AddMembers, { conversationId: id, userIds: [w.intruder.outsider.id] }, auth),
  },
  {
    name: "addMembers(userIds) with a foreign user to the own group",
    field: "addMembers",
    actors: BOTH,
    foreign: (home) => home.outsider.id,
    call: (w, auth, id) => request(w.url, AddMembers, { conversationId: w.intruder.group, userIds: [id] }, auth),
  },
  {
    name: "removeMember(conversationId)",
    field: "removeMember",
    actors: BOTH,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, RemoveMember, { conversationId: id, userId: w.home.member.id }, auth),
  },
  {
    name: "removeMember(userId) with a foreign user from the own group",
    field: "removeMember",
    actors: BOTH,
    foreign: (home) => home.member.id,
    call: (w, auth, id) => request(w.url, RemoveMember, { conversationId: w.intruder.group, userId: id }, auth),
  },
  {
    name: "openDirectConversation(userId)",
    field: "openDirectConversation",
    actors: TOKEN,
    foreign: (home) => home.member.id,
    call: (w, auth, id) => request(w.url, OpenDirect, { userId: id }, auth),
  },
  {
    name: "hideConversation(id) of a direct conversation",
    field: "hideConversation",
    actors: TOKEN,
    foreign: (home) => home.direct,
    call: (w, auth, id) => request(w.url, HideConversation, { id }, auth),
  },
  {
    // NOT_FOUND, not the BAD_USER_INPUT a group of the caller's own tenant gets.
    name: "hideConversation(id) of a group",
    field: "hideConversation",
    actors: TOKEN,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, HideConversation, { id }, auth),
  },
  {
    name: "sendMessage(input.conversationId)",
    field: "sendMessage",
    actors: BOTH,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, SendMessage, { input: { conversationId: id, body: "hello" } }, auth),
  },
  {
    name: "sendMessage(input.conversationId) of a CUSTOM message",
    field: "sendMessage",
    actors: BOTH,
    foreign: (home) => home.group,
    call: (w, auth, id) =>
      request(
        w.url,
        SendMessage,
        { input: { conversationId: id, type: "CUSTOM", customType: "poll", data: { q: "mine?" } } },
        auth,
      ),
  },
  {
    name: "sendMessage(input.recipientId)",
    field: "sendMessage",
    actors: TOKEN,
    foreign: (home) => home.member.id,
    call: (w, auth, id) => request(w.url, SendMessage, { input: { recipientId: id, body: "hello" } }, auth),
  },
  {
    name: "sendMessage(input.recipientId) sending as an own user",
    field: "sendMessage",
    actors: KEY,
    foreign: (home) => home.member.id,
    call: (w, auth, id) =>
      request(w.url, SendMessage, { input: { recipientId: id, senderId: w.intruder.owner.id, body: "hello" } }, auth),
  },
  {
    name: "sendMessage(input.replyToId) in the own group",
    field: "sendMessage",
    actors: BOTH,
    foreign: (home) => home.message,
    call: (w, auth, id) =>
      request(w.url, SendMessage, { input: { conversationId: w.intruder.group, replyToId: id, body: "re" } }, auth),
  },
  {
    name: "sendMessage(input.senderId) in the own group",
    field: "sendMessage",
    actors: KEY,
    foreign: (home) => home.owner.id,
    call: (w, auth, id) =>
      request(w.url, SendMessage, { input: { conversationId: w.intruder.group, senderId: id, body: "hi" } }, auth),
  },
  {
    name: "sendMessage(input.senderId) to an own recipient",
    field: "sendMessage",
    actors: KEY,
    foreign: (home) => home.owner.id,
    call: (w, auth, id) =>
      request(w.url, SendMessage, { input: { recipientId: w.intruder.member.id, senderId: id, body: "hi" } }, auth),
  },
  {
    name: "reportMessage(messageId)",
    field: "reportMessage",
    actors: USERS,
    foreign: (home) => home.message,
    call: (w, auth, id) => request(w.url, ReportMessage, { messageId: id, reason: "spam" }, auth),
  },
  {
    name: "resolveReport(id)",
    field: "resolveReport",
    actors: PRIVILEGED,
    foreign: (home) => home.report,
    call: (w, auth, id) => request(w.url, ResolveReport, { id, action: "DELETE_MESSAGE" }, auth),
  },
  {
    name: "blockUser(userId)",
    field: "blockUser",
    actors: USERS,
    foreign: (home) => home.member.id,
    call: (w, auth, id) => request(w.url, BlockUser, { userId: id }, auth),
  },
  {
    name: "unblockUser(userId)",
    field: "unblockUser",
    actors: USERS,
    foreign: (home) => home.member.id,
    call: (w, auth, id) => request(w.url, UnblockUser, { userId: id }, auth),
  },
  {
    name: "markRead(conversationId)",
    field: "markRead",
    actors: TOKEN,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, MarkRead, { conversationId: id, upToMessageId: w.home.message }, auth),
  },
  {
    name: "markRead(upToMessageId) with a foreign message in the own group",
    field: "markRead",
    actors: TOKEN,
    foreign: (home) => home.message,
    call: (w, auth, id) => request(w.url, MarkRead, { conversationId: w.intruder.group, upToMessageId: id }, auth),
  },
  {
    name: "setTyping(conversationId)",
    field: "setTyping",
    actors: TOKEN,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, SetTyping, { conversationId: id, isTyping: true }, auth),
  },
  {
    name: "updateRole(id) of a custom role",
    field: "updateRole",
    actors: PRIVILEGED,
    foreign: (home) => home.role,
    call: (w, auth, id) =>
      request(w.url, UpdateRole, { id, input: { name: "Taken over", permissions: ["chats:read"] } }, auth),
  },
  {
    name: "updateRole(id) of a system role",
    field: "updateRole",
    actors: PRIVILEGED,
    foreign: (home) => home.ownerRole,
    call: (w, auth, id) => request(w.url, UpdateRole, { id, input: { description: "Taken over" } }, auth),
  },
  {
    name: "deleteRole(id)",
    field: "deleteRole",
    actors: PRIVILEGED,
    foreign: (home) => home.role,
    call: (w, auth, id) => request(w.url, DeleteRole, { id }, auth),
  },
  {
    name: "assignRole(userId) with a foreign user and an own role",
    field: "assignRole",
    actors: PRIVILEGED,
    foreign: (home) => home.outsider.id,
    call: (w, auth, id) => request(w.url, AssignRole, { userId: id, roleId: w.intruder.role }, auth),
  },
  {
    name: "assignRole(roleId) with a foreign custom role to an own user",
    field: "assignRole",
    actors: PRIVILEGED,
    foreign: (home) => home.role,
    call: (w, auth, id) => request(w.url, AssignRole, { userId: w.intruder.outsider.id, roleId: id }, auth),
  },
  {
    name: "assignRole(roleId) with the foreign owner role to an own user",
    field: "assignRole",
    actors: PRIVILEGED,
    foreign: (home) => home.ownerRole,
    call: (w, auth, id) => request(w.url, AssignRole, { userId: w.intruder.outsider.id, roleId: id }, auth),
  },
  {
    name: "unassignRole(userId) with a foreign user and an own role",
    field: "unassignRole",
    actors: PRIVILEGED,
    foreign: (home) => home.member.id,
    call: (w, auth, id) => request(w.url, UnassignRole, { userId: id, roleId: w.intruder.role }, auth),
  },
  {
    name: "unassignRole(roleId) with a foreign role from an own user",
    field: "unassignRole",
    actors: PRIVILEGED,
    foreign: (home) => home.role,
    call: (w, auth, id) => request(w.url, UnassignRole, { userId: w.intruder.member.id, roleId: id }, auth),
  },
  {
    name: "revokeUserTokens(userId)",
    field: "revokeUserTokens",
    actors: ALL,
    foreign: (home) => home.member.id,
    call: (w, auth, id) => request(w.url, RevokeUserTokens, { userId: id }, auth),
  },
  {
    name: "editMessage(id)",
    field: "editMessage",
    actors: ALL,
    foreign: (home) => home.message,
    call: (w, auth, id) => request(w.url, EditMessage, { id, body: "rewritten" }, auth),
  },
  {
    name: "editMessage(id, data) of a CUSTOM message",
    field: "editMessage",
    actors: ALL,
    foreign: (home) => home.custom,
    call: (w, auth, id) => request(w.url, EditMessageData, { id, body: "", data: { question: "rigged" } }, auth),
  },
  {
    name: "deleteMessage(id)",
    field: "deleteMessage",
    actors: ALL,
    foreign: (home) => home.message,
    call: (w, auth, id) => request(w.url, DeleteMessage, { id }, auth),
  },
  {
    name: "setMemberRole(conversationId)",
    field: "setMemberRole",
    actors: ALL,
    foreign: (home) => home.group,
    call: (w, auth, id) =>
      request(w.url, SetMemberRole, { conversationId: id, userId: w.home.member.id, role: "OWNER" }, auth),
  },
  {
    // The tenant owner is not in the group, so only the API key and the group's owner get this far.
    name: "setMemberRole(userId) with a foreign user in the own group",
    field: "setMemberRole",
    actors: BOTH,
    foreign: (home) => home.member.id,
    call: (w, auth, id) =>
      request(w.url, SetMemberRole, { conversationId: w.intruder.group, userId: id, role: "ADMIN" }, auth),
  },
  {
    name: "updateTenant(input.defaultRoleId)",
    field: "updateTenant",
    actors: PRIVILEGED,
    foreign: (home) => home.role,
    call: (w, auth, id) => request(w.url, UpdateTenantWithDefaultRole, { input: { defaultRoleId: id } }, auth),
  },
  {
    name: "pinMessage(id)",
    field: "pinMessage",
    actors: ALL,
    foreign: (home) => home.message,
    call: (w, auth, id) => request(w.url, PinMessage, { id }, auth),
  },
  {
    name: "unpinMessage(id)",
    field: "unpinMessage",
    actors: ALL,
    foreign: (home) => home.pinned,
    call: (w, auth, id) => request(w.url, UnpinMessage, { id }, auth),
  },
  {
    name: "addReaction(messageId)",
    field: "addReaction",
    actors: USERS,
    foreign: (home) => home.message,
    call: (w, auth, id) => request(w.url, AddReaction, { messageId: id, emoji: "👎" }, auth),
  },
  {
    // The home member reacted with 👍: the foreign call must not take it back.
    name: "removeReaction(messageId)",
    field: "removeReaction",
    actors: USERS,
    foreign: (home) => home.message,
    call: (w, auth, id) => request(w.url, RemoveReaction, { messageId: id, emoji: "👍" }, auth),
  },
  {
    name: "searchMessages(conversationId) of a group",
    field: "searchMessages",
    actors: ALL,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, SearchMessages, { first: 100, query: w.home.word, conversationId: id }, auth),
  },
  {
    name: "searchMessages(conversationId) of a direct conversation",
    field: "searchMessages",
    actors: ALL,
    foreign: (home) => home.direct,
    call: (w, auth, id) => request(w.url, SearchMessages, { first: 100, query: w.shared, conversationId: id }, auth),
  },
  {
    name: "uploadAttachment(conversationId)",
    field: "uploadAttachment",
    actors: ALL,
    foreign: (home) => home.group,
    call: (w, auth, id) => uploadAttachment(w.url, id, headersOf(auth)),
  },
  {
    name: "sendMessage(input.attachmentIds) with a foreign upload not sent yet, in the own group",
    field: "sendMessage",
    actors: BOTH,
    foreign: (home) => home.upload,
    call: (w, auth, id) =>
      request(
        w.url,
        SendMessage,
        { input: { conversationId: w.intruder.group, body: "mine now", attachmentIds: [id] } },
        auth,
      ),
  },
  {
    name: "sendMessage(input.attachmentIds) with a foreign attachment already sent, in the own group",
    field: "sendMessage",
    actors: BOTH,
    foreign: (home) => home.attachment,
    call: (w, auth, id) =>
      request(
        w.url,
        SendMessage,
        { input: { conversationId: w.intruder.group, body: "mine now", attachmentIds: [id] } },
        auth,
      ),
  },
  {
    // Mentioning someone who is not a member is BAD_USER_INPUT; a foreign user is just that.
    name: "sendMessage(input.mentionedUserIds) with a foreign user, in the own group",
    field: "sendMessage",
    actors: BOTH,
    code: "BAD_USER_INPUT",
    foreign: (home) => home.member.id,
    call: (w, auth, id) =>
      request(
        w.url,
        SendMessage,
        { input: { conversationId: w.intruder.group, body: "hi @you", mentionedUserIds: [w.intruder.member.id, id] } },
        auth,
      ),
  },
  {
    name: "revokeSession(id)",
    field: "revokeSession",
    actors: SESSION_USERS,
    foreign: (home) => home.signedUp.session,
    call: (w, auth, id) => request(w.url, RevokeSession, { id }, auth),
  },
  {
    name: "updateWebhook(id)",
    field: "updateWebhook",
    actors: PRIVILEGED,
    foreign: (home) => home.webhook,
    call: (w, auth, id) => request(w.url, UpdateWebhook, { id, input: { url: "http://127.0.0.1:9/mine" } }, auth),
  },
  {
    name: "deleteWebhook(id)",
    field: "deleteWebhook",
    actors: PRIVILEGED,
    foreign: (home) => home.webhook,
    call: (w, auth, id) => request(w.url, DeleteWebhook, { id }, auth),
  },
  {
    name: "rotateWebhookSecret(id)",
    field: "rotateWebhookSecret",
    actors: PRIVILEGED,
    foreign: (home) => home.webhook,
    call: (w, auth, id) => request(w.url, RotateWebhookSecret, { id }, auth),
  },
  {
    name: "webhookDeliveries(webhookId)",
    field: "webhookDeliveries",
    actors: PRIVILEGED,
    foreign: (home) => home.webhook,
    call: (w, auth, id) => request(w.url, WebhookDeliveries, { webhookId: id }, auth),
  },
];

/** Lookups that answer null, without an error, for an id that does not exist. */
export const foreignNullCases: ForeignIdCase[] = [
  {
    name: "user(id)",
    field: "user",
    actors: BOTH,
    foreign: (home) => home.member.id,
    call: (w, auth, id) => request(w.url, User, { id }, auth),
  },
  {
    name: "role(id) of a custom role",
    field: "role",
    actors: PRIVILEGED,
    foreign: (home) => home.role,
    call: (w, auth, id) => request(w.url, Role, { id }, auth),
  },
  {
    name: "role(id) of a system role",
    field: "role",
    actors: PRIVILEGED,
    foreign: (home) => home.ownerRole,
    call: (w, auth, id) => request(w.url, Role, { id }, auth),
  },
];
