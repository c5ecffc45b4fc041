import { readFileSync } from "node:fs";
import { buildSchema } from "graphql";
import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { drain, type GqlResult, ok, request, sleep, subscribe, wsClient } from "../helpers/client.ts";
import { RevokeSession, Sessions } from "../operations/accounts.ts";
import {
  AddMembers,
  Conversation,
  Conversations,
  CreateGroup,
  DeleteGroup,
  Groups,
  HideConversation,
  MarkRead,
  OpenDirect,
  RemoveMember,
  UpdateGroup,
} from "../operations/conversations.ts";
import { ConversationEvents, MessageAdded, ReadReceipt, Typing } from "../operations/events.ts";
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
import { PresenceChanged } from "../operations/presence.ts";
import { BlockedUsers, BlockUser, ReportMessage, Reports, ResolveReport, UnblockUser } from "../operations/safety.ts";
import { DeleteTenant, RotateApiKey, Tenant, UpdateTenant } from "../operations/tenants.ts";
import { CreateUser, DeleteUser, IssueUserToken, UpdateUser, User, Users, Viewer } from "../operations/users.ts";
import {
  CreateWebhook,
  DeleteWebhook,
  RotateWebhookSecret,
  UpdateWebhook,
  WebhookDeliveries,
  Webhooks,
} from "../operations/webhooks.ts";
import { anyId, fieldOf, firstError, named, uploadAttachment, useAccessWorld } from "./world.ts";

/** What each kind of principal may call: API keys, user tokens, session tokens, and no credentials at all. */
/**
 * Root fields that need no credentials by design: creating a tenant (guarded by
 * PLATFORM_ADMIN_KEY when set) and the ways an end user obtains credentials.
 */
const PUBLIC_ROOT_FIELDS = new Set([
  "createTenant",
  "signUp",
  "signIn",
  "signInWithEmailCode",
  "refreshSession",
  "requestEmailCode",
  "resetPassword",
]);

/** Every root field but the public ones, called without credentials (some in more than one form). */
const anonymousCases: { field: string; form?: string; call: (url: string) => Promise<GqlResult<unknown>> }[] = [
  { field: "viewer", call: (url) => request(url, Viewer, {}) },
  { field: "tenant", call: (url) => request(url, Tenant, {}) },
  { field: "user", call: (url) => request(url, User, { id: anyId() }) },
  { field: "users", call: (url) => request(url, Users, { first: 100 }) },
  { field: "conversation", call: (url) => request(url, Conversation, { id: anyId() }) },
  { field: "conversations", call: (url) => request(url, Conversations, {}) },
  { field: "groups", call: (url) => request(url, Groups, {}) },
  { field: "messages", call: (url) => request(url, Messages, { last: 50, conversationId: anyId() }) },
  { field: "updateTenant", call: (url) => request(url, UpdateTenant, { input: { name: "Mine now" } }) },
  { field: "rotateApiKey", call: (url) => request(url, RotateApiKey, {}) },
  { field: "deleteTenant", call: (url) => request(url, DeleteTenant, { confirmName: "x", tenantId: anyId() }) },
  { field: "issueUserToken", call: (url) => request(url, IssueUserToken, { userId: anyId() }) },
  { field: "createUser", call: (url) => request(url, CreateUser, { input: { name: "Nobody" } }) },
  { field: "updateUser", call: (url) => request(url, UpdateUser, { id: anyId(), input: { name: "Nobody" } }) },
  { field: "deleteUser", call: (url) => request(url, DeleteUser, { id: anyId() }) },
  { field: "createGroup", call: (url) => request(url, CreateGroup, { input: { name: "Nobody's" } }) },
  { field: "updateGroup", call: (url) => request(url, UpdateGroup, { id: anyId(), input: { name: "x" } }) },
  { field: "deleteGroup", call: (url) => request(url, DeleteGroup, { id: anyId() }) },
  { field: "addMembers", call: (url) => request(url, AddMembers, { conversationId: anyId(), userIds: [anyId()] }) },
  { field: "removeMember", call: (url) => request(url, RemoveMember, { conversationId: anyId(), userId: anyId() }) },
  { field: "openDirectConversation", call: (url) => request(url, OpenDirect, { userId: anyId() }) },
  { field: "hideConversation", call: (url) => request(url, HideConversation, { id: anyId() }) },
  {
    field: "sendMessage",
    call: (url) => request(url, SendMessage, { input: { conversationId: anyId(), body: "hi" } }),
  },
  { field: "markRead", call: (url) => request(url, MarkRead, { conversationId: anyId(), upToMessageId: anyId() }) },
  { field: "setTyping", call: (url) => request(url, SetTyping, { conversationId: anyId(), isTyping: true }) },
  // Over HTTP, Yoga runs subscriptions too (a single result, or server-sent events).
  { field: "messageAdded", call: (url) => request(url, MessageAdded, { conversationId: anyId() }) },
  { field: "typing", call: (url) => request(url, Typing, { conversationId: anyId() }) },
  { field: "readReceipt", call: (url) => request(url, ReadReceipt, { conversationId: anyId() }) },
  { field: "presenceChanged", call: (url) => request(url, PresenceChanged, { conversationId: anyId() }) },
  // Roles, audit and moderation, sent as plain documents.
  { field: "role", call: (url) => request(url, `query { role(id: "${anyId()}") { id } }`) },
  { field: "roles", call: (url) => request(url, "query { roles { id } }") },
  { field: "permissionCatalog", call: (url) => request(url, "query { permissionCatalog }") },
  { field: "auditLog", call: (url) => request(url, "query { auditLog { edges { node { id } } } }") },
  {
    field: "createRole",
    call: (url) => request(url, 'mutation { createRole(input: { name: "x", permissions: [] }) { id } }'),
  },
  {
    field: "updateRole",
    call: (url) => request(url, `mutation { updateRole(id: "${anyId()}", input: { name: "x" }) { id } }`),
  },
  { field: "deleteRole", call: (url) => request(url, `mutation { deleteRole(id: "${anyId()}") }`) },
  {
    field: "assignRole",
    call: (url) => request(url, `mutation { assignRole(userId: "${anyId()}", roleId: "${anyId()}") { id } }`),
  },
  {
    field: "unassignRole",
    call: (url) => request(url, `mutation { unassignRole(userId: "${anyId()}", roleId: "${anyId()}") { id } }`),
  },
  { field: "revokeUserTokens", call: (url) => request(url, `mutation { revokeUserTokens(userId: "${anyId()}") }`) },
  {
    field: "editMessage",
    call: (url) => request(url, `mutation { editMessage(id: "${anyId()}", body: "x") { id } }`),
  },
  { field: "deleteMessage", call: (url) => request(url, `mutation { deleteMessage(id: "${anyId()}") { id } }`) },
  // Message features: threads, reactions, pins, search, the event stream.
  { field: "searchMessages", call: (url) => request(url, SearchMessages, { first: 100, query: "x" }) },
  {
    field: "searchMessages",
    form: "with conversationId",
    call: (url) => request(url, SearchMessages, { first: 100, query: "x", conversationId: anyId() }),
  },
  { field: "addReaction", call: (url) => request(url, AddReaction, { messageId: anyId(), emoji: "👍" }) },
  { field: "removeReaction", call: (url) => request(url, RemoveReaction, { messageId: anyId(), emoji: "👍" }) },
  { field: "pinMessage", call: (url) => request(url, PinMessage, { id: anyId() }) },
  { field: "unpinMessage", call: (url) => request(url, UnpinMessage, { id: anyId() }) },
  // Webhooks: tenant administration.
  { field: "webhooks", call: (url) => request(url, Webhooks, {}) },
  { field: "webhookDeliveries", call: (url) => request(url, WebhookDeliveries, { webhookId: anyId() }) },
  {
    field: "createWebhook",
    call: (url) =>
      request(url, CreateWebhook, { input: { url: "http://127.0.0.1:9/hook", events: ["MESSAGE_ADDED"] } }),
  },
  {
    field: "updateWebhook",
    call: (url) => request(url, UpdateWebhook, { id: anyId(), input: { enabled: false } }),
  },
  { field: "deleteWebhook", call: (url) => request(url, DeleteWebhook, { id: anyId() }) },
  { field: "rotateWebhookSecret", call: (url) => request(url, RotateWebhookSecret, { id: anyId() }) },
  // Safety tools.
  { field: "blockUser", call: (url) => request(url, BlockUser, { userId: anyId() }) },
  { field: "unblockUser", call: (url) => request(url, UnblockUser, { userId: anyId() }) },
  { field: "blockedUsers", call: (url) => request(url, BlockedUsers, {}) },
  { field: "reportMessage", call: (url) => request(url, ReportMessage, { messageId: anyId(), reason: "spam" }) },
  { field: "reports", call: (url) => request(url, Reports, {}) },
  { field: "resolveReport", call: (url) => request(url, ResolveReport, { id: anyId(), action: "DISMISS" }) },
  // End-user accounts: what needs a signed-in user.
  { field: "sessions", call: (url) => request(url, Sessions, {}) },
  { field: "signOut", call: (url) => request(url, "mutation { signOut }") },
  { field: "signOutEverywhere", call: (url) => request(url, "mutation { signOutEverywhere }") },
  { field: "revokeSession", call: (url) => request(url, RevokeSession, { id: anyId() }) },
  { field: "verifyEmail", call: (url) => request(url, 'mutation { verifyEmail(code: "123456") { id } }') },
  {
    field: "requestEmailChange",
    call: (url) => request(url, 'mutation { requestEmailChange(newEmail: "new@example.com") }'),
  },
  {
    field: "changePassword",
    call: (url) =>
      request(
        url,
        'mutation { changePassword(input: { currentPassword: "old password 1", newPassword: "new password 2" }) }',
      ),
  },
  {
    field: "updateProfile",
    call: (url) => request(url, 'mutation { updateProfile(input: { name: "Nobody" }) { id } }'),
  },
  {
    // A multipart request without any credential header is refused before GraphQL (415, see
    // hardening.test.ts); the nearest anonymous upload presents a token that verifies to nobody.
    field: "uploadAttachment",
    call: (url) => uploadAttachment(url, anyId(), { authorization: "Bearer not-a-token" }),
  },
  { field: "conversationEvents", call: (url) => request(url, ConversationEvents, { conversationId: anyId() }) },
  { field: "conversationEvents", form: "without conversationId", call: (url) => request(url, ConversationEvents, {}) },
  {
    field: "setMemberRole",
    call: (url) =>
      request(
        url,
        `mutation { setMemberRole(conversationId: "${anyId()}", userId: "${anyId()}", role: ADMIN) { id } }`,
      ),
  },
];

describe.each(backends())("access rules on %s", (backend) => {
  const w = useAccessWorld(backend);

  describe("principals", () => {
    it.each(
      named([
        {
          name: "issueUserToken for another user",
          field: "issueUserToken",
          call: () => request(w.url, IssueUserToken, { userId: w.home.member.id }, { token: w.home.owner.token }),
        },
        {
          name: "issueUserToken for oneself",
          field: "issueUserToken",
          call: () => request(w.url, IssueUserToken, { userId: w.home.owner.id }, { token: w.home.owner.token }),
        },
        {
          name: "rotateApiKey",
          field: "rotateApiKey",
          call: () => request(w.url, RotateApiKey, {}, { token: w.home.owner.token }),
        },
        {
          name: "deleteTenant",
          field: "deleteTenant",
          call: () => request(w.url, DeleteTenant, { confirmName: "x" }, { token: w.home.owner.token }),
        },
      ]),
    )("a user token cannot call %s (FORBIDDEN)", async (_, { call, field }) => {
      const result = await call();
      expect(firstError(result).extensions?.code, JSON.stringify(result)).toBe("FORBIDDEN");
      expect(fieldOf(result, field)).toBeNull();
      // The tenant's key still works.
      await ok(w.url, Viewer, {}, { apiKey: w.home.apiKey });
    });

    it.each(
      named([
        {
          name: "markRead",
          field: "markRead",
          call: () =>
            request(
              w.url,
              MarkRead,
              { conversationId: w.home.group, upToMessageId: w.home.message },
              { apiKey: w.home.apiKey },
            ),
        },
        {
          name: "setTyping",
          field: "setTyping",
          call: () =>
            request(w.url, SetTyping, { conversationId: w.home.group, isTyping: true }, { apiKey: w.home.apiKey }),
        },
        {
          name: "openDirectConversation",
          field: "openDirectConversation",
          call: () => request(w.url, OpenDirect, { userId: w.home.member.id }, { apiKey: w.home.apiKey }),
        },
        {
          name: "hideConversation",
          field: "hideConversation",
          call: () => request(w.url, HideConversation, { id: w.home.direct }, { apiKey: w.home.apiKey }),
        },
        {
          name: "blockUser",
          field: "blockUser",
          call: () => request(w.url, BlockUser, { userId: w.home.member.id }, { apiKey: w.home.apiKey }),
        },
        {
          name: "unblockUser",
          field: "unblockUser",
          call: () => request(w.url, UnblockUser, { userId: w.home.member.id }, { apiKey: w.home.apiKey }),
        },
        {
          name: "blockedUsers",
          field: "blockedUsers",
          call: () => request(w.url, BlockedUsers, {}, { apiKey: w.home.apiKey }),
        },
        {
          name: "reportMessage",
          field: "reportMessage",
          call: () =>
            request(w.url, ReportMessage, { messageId: w.home.message, reason: "spam" }, { apiKey: w.home.apiKey }),
        },
      ]),
    )("the API key cannot call %s (FORBIDDEN)", async (_, { call, field }) => {
      const result = await call();
      expect(firstError(result).extensions?.code, JSON.stringify(result)).toBe("FORBIDDEN");
      expect(fieldOf(result, field)).toBeNull();
    });

    it("the anonymous table covers every root field but the reviewed public ones", () => {
      const schema = buildSchema(readFileSync(new URL("../../schema.graphql", import.meta.url), "utf8"));
      const roots = [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()];
      const all = roots.flatMap((type) => Object.keys(type?.getFields() ?? {}));
      const covered = [...new Set(anonymousCases.map((c) => c.field))];
      expect(covered.sort()).toEqual(all.filter((f) => !PUBLIC_ROOT_FIELDS.has(f)).sort());
    });

    it.each(anonymousCases.map((c) => [c.form ? `${c.field} ${c.form}` : c.field, c] as const))(
      "anonymous %s: UNAUTHENTICATED",
      async (_, { call, field }) => {
        const result = await call(w.url);
        expect(firstError(result).extensions?.code, JSON.stringify(result)).toBe("UNAUTHENTICATED");
        expect(fieldOf(result, field)).toBeNull();
      },
    );

    it("an anonymous WebSocket is closed with 4403 and delivers nothing", async () => {
      const client = wsClient(w.wsUrl);
      try {
        const sub = subscribe(client, MessageAdded, { conversationId: w.home.group });
        const closed = await Promise.race([client.closed, sleep(5_000).then(() => null)]);
        expect(closed?.code).toBe(4403);
        const outcome = await sub.done;
        expect(outcome.error).toBeDefined();
        expect(await drain(sub)).toEqual([]);
      } finally {
        await client.dispose();
      }
    });
  });
});
