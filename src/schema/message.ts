import type { Context } from "../context.ts";
import { DEFAULT_MAX_MESSAGE_LENGTH } from "../env.ts";
import { notFound } from "../errors.ts";
import type { User } from "../generated/prisma/client.ts";
import { viewerDependent } from "../graphql/audience.ts";
import { streamCursorField } from "../graphql/stream-cursor.ts";
import { readFeed, typingFeed } from "../realtime/feeds.ts";
import { itemOf, STREAM_CURSOR_MAX_AGE_SECONDS } from "../realtime/positions.ts";
import type { ReadPayload, TypingPayload } from "../realtime/topics.ts";
import { viewerBlockList } from "../services/blocks.ts";
import type { ReactionGroup } from "../services/messages.ts";
import * as messages from "../services/messages.ts";
import { requireSubscribable, subscribeSequenced } from "../services/subscriptions.ts";
import { rule } from "../services/validation.ts";
import { AttachmentRef } from "./attachment.ts";
import { builder } from "./builder.ts";

export const MessageType = builder.enumType("MessageType", {
  description: "What kind of message this is.",
  values: {
    TEXT: { description: "Text written by a user." },
    FILE: { description: "A message carrying attachments (a CUSTOM message with attachments stays CUSTOM)." },
    SYSTEM: { description: "Sent by the tenant's backend, without a user as sender." },
    CUSTOM: {
      description:
        "A structured message: `customType` names its kind, `data` holds a JSON object, `body` is optional fallback text.",
    },
  } as const,
});

/** A user read through the request's loader, so a list of rows reads its users at once. */
function userById(ctx: Context, id: string | null): Promise<User | null> | null {
  return id ? ctx.loaders.user.load(id) : null;
}

/** Users in the order of `ids`, leaving out any that no longer exist. */
async function usersByIds(ctx: Context, ids: readonly string[]): Promise<User[]> {
  const users = await Promise.all(ids.map((id) => ctx.loaders.user.load(id)));
  return users.filter((user) => user !== null);
}

export const ReactionGroupRef = builder.objectRef<ReactionGroup>("ReactionGroup").implement({
  description: "Everyone who reacted to a message with one emoji.",
  authScopes: { permission: "chats:read" },
  fields: (t) => ({
    emoji: t.exposeString("emoji", { description: "The emoji." }),
    count: t.exposeInt("count", { description: "How many users reacted with it." }),
    reactedByViewer: t.boolean({
      description: "Whether the viewer is one of them.",
      extensions: viewerDependent,
      resolve: (group, _args, ctx) => ctx.principal?.kind === "user" && group.userIds.includes(ctx.principal.userId),
    }),
    users: t.prismaField({
      type: ["User"],
      description: "Who reacted, in the order they did.",
      resolve: (_query, group, _args, ctx) => usersByIds(ctx, group.userIds),
    }),
  }),
});

export const MessageRef = builder.prismaObject("Message", {
  description: "A message in a conversation.",
  authScopes: { permission: "chats:read" },
  fields: (t) => ({
    id: t.exposeID("id", { description: "Message id." }),
    cursor: t.string({
      description:
        "Opaque position of this message; accepted by `messages(after/before)` and `messageAdded(after)`. On the messages of `messageAdded` without conversationId it is also the position of that whole stream: pass the last one received as `messageAdded(after:)`, without conversationId, to resume the stream with nothing missed and nothing twice.",
      extensions: streamCursorField,
      resolve: (message) => messages.cursorOfMessage(message),
    }),
    seq: t.exposeInt("seq", { description: "Sequence number, strictly increasing inside its conversation." }),
    conversation: t.prismaField({
      type: "Conversation",
      description: "The conversation it belongs to.",
      resolve: async (_query, message, _args, ctx) => {
        const conversation = await ctx.loaders.conversation.load(message.conversationId);
        if (!conversation) throw notFound("Conversation");
        return conversation;
      },
    }),
    sender: t.prismaField({
      type: "User",
      nullable: true,
      description: "Who sent it; null for SYSTEM messages and for CUSTOM messages the API key sent without a sender.",
      resolve: (_query, message, _args, ctx) => userById(ctx, message.senderId),
    }),
    body: t.string({
      nullable: true,
      description: "The text; null once the message is deleted, and for a CUSTOM message sent without fallback text.",
      resolve: (message) => (message.deletedAt ? null : message.body),
    }),
    type: t.expose("type", { type: MessageType, description: "TEXT, FILE, SYSTEM or CUSTOM." }),
    customType: t.exposeString("customType", {
      nullable: true,
      description: "CUSTOM messages: the sender's name for the kind of message (e.g. `poll`); null for other types.",
    }),
    data: t.field({
      type: "JSON",
      nullable: true,
      description:
        "CUSTOM messages: the JSON object sent with it (equal to it, though its keys may come back in another order); null for other types and once the message is deleted.",
      resolve: (message) => (message.deletedAt ? null : message.data),
    }),
    clientMessageId: t.exposeString("clientMessageId", {
      nullable: true,
      description: "The sender's idempotency key, if one was given.",
    }),
    replyTo: t.prismaField({
      type: "Message",
      nullable: true,
      description: "The message this one replies to.",
      resolve: (_query, message, _args, ctx) =>
        message.replyToId ? ctx.loaders.message.load(message.replyToId) : null,
    }),
    pinned: t.exposeBoolean("pinned", { description: "Whether the message is pinned in its conversation." }),
    editedAt: t.expose("editedAt", { type: "DateTime", nullable: true, description: "When it was last edited." }),
    deletedAt: t.expose("deletedAt", { type: "DateTime", nullable: true, description: "When it was deleted." }),
    pinnedAt: t.expose("pinnedAt", { type: "DateTime", nullable: true, description: "When it was pinned." }),
    pinnedBy: t.prismaField({
      type: "User",
      nullable: true,
      description: "Who pinned it (null for the API key).",
      resolve: (_query, message, _args, ctx) => userById(ctx, message.pinnedById),
    }),
    reactions: t.field({
      type: [ReactionGroupRef],
      description: "Reactions grouped by emoji, in the order each emoji was first used.",
      resolve: async (message, _args, ctx) => (message.deletedAt ? [] : ctx.loaders.reactions.load(message.id)),
    }),
    replyCount: t.int({
      description: "How many replies the thread has (deleted ones not counted).",
      resolve: (message, _args, ctx) => ctx.loaders.replyCount.load(message.id),
    }),
    mentions: t.prismaField({
      type: ["User"],
      description: "Users mentioned in the message.",
      resolve: async (_query, message, _args, ctx) =>
        message.deletedAt ? [] : usersByIds(ctx, await ctx.loaders.mentions.load(message.id)),
    }),
    mentionsViewer: t.boolean({
      description: "Whether the message mentions the viewer.",
      extensions: viewerDependent,
      resolve: async (message, _args, ctx) =>
        ctx.principal?.kind === "user" &&
        !message.deletedAt &&
        (await ctx.loaders.mentions.load(message.id)).includes(ctx.principal.userId),
    }),
    attachments: t.field({
      type: [AttachmentRef],
      description: "Files sent with the message; none once it is deleted.",
      resolve: async (message, _args, ctx) => (message.deletedAt ? [] : ctx.loaders.attachments.load(message.id)),
    }),
    deletedBy: t.prismaField({
      type: "User",
      nullable: true,
      description: "Who deleted it: the sender, a moderator, or null when the API key did (or it is not deleted).",
      resolve: (_query, message, _args, ctx) => userById(ctx, message.deletedById),
    }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When it was sent." }),
  }),
});

export const MessageConnection = builder.connectionObject(
  {
    type: MessageRef,
    name: "MessageConnection",
    description: "A page of messages in chronological order.",
  },
  { description: "A message with its cursor." },
);

// Threads page through messages, so this field follows the connection type.
builder.prismaObjectField("Message", "replies", (t) =>
  t.field({
    type: MessageConnection,
    description: "The thread: replies to this message, oldest first.",
    args: {
      first: t.arg.int({ description: "Page size, 0-100 (default 20)." }),
      after: t.arg.string({ description: "Cursor of the last reply of the previous page." }),
    },
    resolve: (message, args, ctx) => messages.repliesPage(ctx, message, args),
  }),
);

// Built with the default body limit only to read the rules: the service applies the configured one.
const send = messages.sendMessageInput(DEFAULT_MAX_MESSAGE_LENGTH).shape;
const SendMessageInput = builder.inputType("SendMessageInput", {
  description: "A message to send: to a conversation, or to a recipient (opening the direct conversation).",
  fields: (t) => ({
    conversationId: t.id({ description: "Target conversation. Give this or recipientId." }),
    recipientId: t.id({ description: "Target user; the direct conversation is opened if needed." }),
    type: t.field({
      type: MessageType,
      description:
        "TEXT (the default) or CUSTOM. FILE follows from attachmentIds and SYSTEM from the API key sending without senderId; giving either here is BAD_USER_INPUT.",
    }),
    body: t.string({
      description: `The text, ${rule(send.body)}. Required for TEXT (it may be blank only with attachments); optional fallback text for CUSTOM, shown by clients that do not know its customType and used by search.`,
    }),
    customType: t.string({
      description: `CUSTOM only (required there, refused otherwise): the kind of message, ${rule(send.customType)}.`,
    }),
    data: t.field({
      type: "JSON",
      description: `CUSTOM only (required there, refused otherwise): ${rule(send.data)}. Arrays, strings, numbers and null are refused.`,
    }),
    clientMessageId: t.string({
      description: `Idempotency key chosen by the client, ${rule(send.clientMessageId)}. Sending again with the same key returns the original message.`,
    }),
    replyToId: t.id({ description: "A message of the same conversation this one replies to." }),
    mentionedUserIds: t.idList({
      description: `Members of the conversation the message mentions, ${rule(send.mentionedUserIds)}.`,
    }),
    attachmentIds: t.idList({
      description: `Attachments uploaded with uploadAttachment to this conversation by the sender, ${rule(send.attachmentIds)}.`,
    }),
    senderId: t.id({
      description:
        "API key only: the user to send as. Without it the API key sends a SYSTEM message (or, with type CUSTOM, a CUSTOM message without sender). Users always send as themselves.",
    }),
  }),
});

const ReadReceiptRef = builder.objectRef<ReadPayload>("ReadReceipt").implement({
  description: "How far a member has read in a conversation.",
  authScopes: { permission: "chats:read" },
  fields: (t) => ({
    conversation: t.prismaField({
      type: "Conversation",
      description: "The conversation.",
      resolve: (query, receipt, _args, ctx) =>
        ctx.prisma.conversation.findUniqueOrThrow({ ...query, where: { id: receipt.conversationId } }),
    }),
    user: t.prismaField({
      type: "User",
      description: "The reader.",
      resolve: (query, receipt, _args, ctx) =>
        ctx.prisma.user.findUniqueOrThrow({ ...query, where: { id: receipt.userId } }),
    }),
    lastReadMessage: t.prismaField({
      type: "Message",
      description: "The newest message the reader has read.",
      resolve: (query, receipt, _args, ctx) =>
        ctx.prisma.message.findUniqueOrThrow({ ...query, where: { id: receipt.lastReadMessageId } }),
    }),
    lastReadSeq: t.exposeInt("lastReadSeq", { description: "Sequence number of that message." }),
    readAt: t.field({ type: "DateTime", description: "When it was read.", resolve: (r) => r.readAt }),
  }),
});

const TypingEventRef = builder.objectRef<TypingPayload>("TypingEvent").implement({
  description: "A user started or stopped typing. Stopped is also sent when a user stops refreshing.",
  authScopes: { permission: "chats:read" },
  fields: (t) => ({
    conversation: t.prismaField({
      type: "Conversation",
      description: "The conversation.",
      resolve: (query, event, _args, ctx) =>
        ctx.prisma.conversation.findUniqueOrThrow({ ...query, where: { id: event.conversationId } }),
    }),
    user: t.prismaField({
      type: "User",
      description: "Who is typing.",
      resolve: (query, event, _args, ctx) =>
        ctx.prisma.user.findUniqueOrThrow({ ...query, where: { id: event.userId } }),
    }),
    isTyping: t.exposeBoolean("isTyping", { description: "True while typing." }),
  }),
});

builder.queryField("messages", (t) =>
  t.field({
    type: MessageConnection,
    description:
      "Messages of a conversation in chronological order. `last: N` returns the newest N; `before` pages back; `first`/`after` page forward.",
    authScopes: { permission: "chats:read" },
    args: {
      conversationId: t.arg.id({ required: true, description: "Conversation id." }),
      first: t.arg.int({ description: "Page size going forward, 0-100." }),
      after: t.arg.string({ description: "Message cursor to continue after." }),
      last: t.arg.int({ description: "Page size going backward, 0-100 (default 50)." }),
      before: t.arg.string({ description: "Message cursor to page back from." }),
    },
    resolve: (_root, args, ctx) => messages.listMessages(ctx, args),
  }),
);

builder.queryField("searchMessages", (t) =>
  t.field({
    type: MessageConnection,
    description:
      'Full-text search over the messages the viewer can read, best match first. Supports words, "quoted phrases", -exclusions and OR. Deleted messages are never found.',
    authScopes: { permission: "chats:read" },
    args: {
      query: t.arg.string({
        required: true,
        description: `What to look for, ${rule(messages.searchInput.shape.query)}.`,
      }),
      conversationId: t.arg.id({ description: "Only this conversation." }),
      first: t.arg.int({ description: "Page size, 0-100 (default 20)." }),
      after: t.arg.string({ description: "Cursor of the last result of the previous page." }),
    },
    resolve: (_root, args, ctx) => messages.searchMessages(ctx, args),
  }),
);

builder.mutationFields((t) => ({
  sendMessage: t.prismaField({
    type: "Message",
    description:
      "Sends a message. It is stored with its sequence number before anyone is notified; a repeated clientMessageId returns the original.",
    authScopes: { permission: "chats:create" },
    args: { input: t.arg({ type: SendMessageInput, required: true, description: "The message and where it goes." }) },
    resolve: (_query, _root, { input }, ctx) => ctx.deps.writeLimits.run(ctx, () => messages.sendMessage(ctx, input)),
  }),
  editMessage: t.prismaField({
    type: "Message",
    description:
      "Replaces the text (and, for a CUSTOM message, optionally the data) of one of the viewer's own messages and sets editedAt.",
    authScopes: { permission: "chats:update" },
    args: {
      id: t.arg.id({ required: true, description: "Message id." }),
      body: t.arg.string({
        required: true,
        description: `The new text, ${rule(send.body)}. Blank only for a CUSTOM message, where it removes the fallback text.`,
      }),
      data: t.arg({
        type: "JSON",
        description: `CUSTOM messages only: new data replacing the old, ${rule(send.data)}. Left out, the data stays; customType never changes.`,
      }),
    },
    resolve: (_query, _root, args, ctx) =>
      ctx.deps.writeLimits.run(ctx, () => messages.editMessage(ctx, args.id, args.body, args.data)),
  }),
  deleteMessage: t.prismaField({
    type: "Message",
    description: "Deletes a message, leaving a tombstone. Own messages need chats:delete; others' need chats:moderate.",
    authScopes: { $any: { permission: "chats:delete", $all: { permission: "chats:moderate" } } },
    args: { id: t.arg.id({ required: true, description: "Message id." }) },
    resolve: (_query, _root, args, ctx) => messages.deleteMessage(ctx, args.id),
  }),
  pinMessage: t.prismaField({
    type: "Message",
    description: "Pins a message in its conversation (any member; repeating changes nothing).",
    authScopes: { permission: "chats:update" },
    args: { id: t.arg.id({ required: true, description: "Message id." }) },
    resolve: (_query, _root, args, ctx) => messages.setPinned(ctx, args.id, true),
  }),
  unpinMessage: t.prismaField({
    type: "Message",
    description: "Unpins a message (any member; repeating changes nothing).",
    authScopes: { permission: "chats:update" },
    args: { id: t.arg.id({ required: true, description: "Message id." }) },
    resolve: (_query, _root, args, ctx) => messages.setPinned(ctx, args.id, false),
  }),
  addReaction: t.prismaField({
    type: "Message",
    description: "Reacts to a message with one emoji. One reaction per user per emoji: adding twice changes nothing.",
    authScopes: { permission: "chats:create" },
    args: {
      messageId: t.arg.id({ required: true, description: "Message id." }),
      emoji: t.arg.string({ required: true, description: "A single emoji, e.g. 👍 or 👍🏽." }),
    },
    resolve: (_query, _root, args, ctx) =>
      ctx.deps.writeLimits.run(ctx, () => messages.setReaction(ctx, args.messageId, args.emoji, true)),
  }),
  removeReaction: t.prismaField({
    type: "Message",
    description: "Takes back the viewer's reaction with this emoji (nothing happens if there is none).",
    authScopes: { permission: "chats:create" },
    args: {
      messageId: t.arg.id({ required: true, description: "Message id." }),
      emoji: t.arg.string({ required: true, description: "The emoji to take back." }),
    },
    resolve: (_query, _root, args, ctx) =>
      ctx.deps.writeLimits.run(ctx, () => messages.setReaction(ctx, args.messageId, args.emoji, false)),
  }),
  markRead: t.field({
    type: ReadReceiptRef,
    description:
      "Moves the viewer's read horizon forward to a message (never backward) and notifies readers. Needs a user token and chats:read.",
    authScopes: { $all: { user: true, permission: "chats:read" } },
    args: {
      conversationId: t.arg.id({ required: true, description: "Conversation id." }),
      upToMessageId: t.arg.id({ required: true, description: "The newest message read." }),
    },
    resolve: (_root, args, ctx) => messages.markRead(ctx, args.conversationId, args.upToMessageId),
  }),
  setTyping: t.boolean({
    description: `Announces that the viewer is typing (refresh every few seconds) or stopped. Ephemeral: nothing is stored. Needs a user token and chats:create.`,
    authScopes: { $all: { user: true, permission: "chats:create" } },
    args: {
      conversationId: t.arg.id({ required: true, description: "Conversation id." }),
      isTyping: t.arg.boolean({ required: true, description: "True while typing." }),
    },
    resolve: (_root, args, ctx) =>
      ctx.deps.writeLimits.run(ctx, () => messages.setTyping(ctx, args.conversationId, args.isTyping)),
  }),
}));

builder.subscriptionFields((t) => ({
  messageAdded: t.prismaField({
    type: "Message",
    description:
      "New messages. With conversationId: that conversation. Without: all of the viewer's conversations, including ones joined later. With `after`, every stored message after that cursor is replayed first, then the stream continues live, with no gap and no duplicate.",
    authScopes: { permission: "chats:read" },
    args: {
      conversationId: t.arg.id({ description: "Only this conversation." }),
      after: t.arg.string({
        description: `Where to resume. With conversationId: a Message.cursor of that conversation. Without: the cursor of the last message received from messageAdded without conversationId; the stream resumes in the conversations the viewer is a member of now (one joined since starts where they joined). Malformed cursors are BAD_USER_INPUT; one older than ${STREAM_CURSOR_MAX_AGE_SECONDS / 86_400} days is CURSOR_EXPIRED: reload the conversations, then subscribe without after.`,
      }),
    },
    subscribe: (_root, args, ctx) => subscribeSequenced(ctx, args, messages.messageSource, messages.seqFromCursor),
    resolve: (_query, message) => itemOf(message),
  }),
  typing: t.field({
    type: TypingEventRef,
    description: "Typing indicators of the other members of a conversation (not of users the viewer blocks).",
    authScopes: { permission: "chats:read" },
    args: { conversationId: t.arg.id({ required: true, description: "Conversation id." }) },
    subscribe: async (_root, args, ctx) =>
      typingFeed(ctx, await requireSubscribable(ctx, args.conversationId), await viewerBlockList(ctx)),
    resolve: (event) => event,
  }),
  readReceipt: t.field({
    type: ReadReceiptRef,
    description: "Read receipts of the members of a conversation.",
    authScopes: { permission: "chats:read" },
    args: { conversationId: t.arg.id({ required: true, description: "Conversation id." }) },
    subscribe: async (_root, args, ctx) => readFeed(ctx, await requireSubscribable(ctx, args.conversationId)),
    resolve: (receipt) => receipt,
  }),
}));
