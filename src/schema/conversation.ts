import { forbidden, notFound } from "../errors.ts";
import { viewerDependent } from "../graphql/audience.ts";
import * as conversations from "../services/conversations.ts";
import * as messages from "../services/messages.ts";
import { pageSize, rule } from "../services/validation.ts";
import { builder } from "./builder.ts";
import { MessageConnection, MessageRef } from "./message.ts";
import { UserRef } from "./user.ts";

/** Default and largest size of the plain lists of a conversation (members, pinned messages). */
const MAX_LIST = 500;

export const ConversationKind = builder.enumType("ConversationKind", {
  description: "Whether a conversation is between exactly two users or a named group.",
  values: {
    DIRECT: { description: "Exactly two users; opening one is idempotent." },
    GROUP: { description: "A named group with owners, admins and members." },
  } as const,
});

export const MemberRole = builder.enumType("MemberRole", {
  description: "A member's role inside one group.",
  values: {
    OWNER: { description: "May rename, delete and manage members, including admins." },
    ADMIN: { description: "May rename and manage members, except owners." },
    MEMBER: { description: "May read and post." },
  } as const,
});

export const ConversationMemberRef = builder.prismaObject("Member", {
  name: "ConversationMember",
  description: "A user's membership in a conversation.",
  authScopes: { permission: "chats:read" },
  fields: (t) => ({
    user: t.prismaField({
      type: "User",
      description: "The member.",
      resolve: async (_query, member, _args, ctx) => {
        const user = await ctx.loaders.user.load(member.userId);
        if (!user) throw notFound("User");
        return user;
      },
    }),
    role: t.expose("role", { type: MemberRole, description: "Role inside this conversation." }),
    joinedAt: t.expose("joinedAt", { type: "DateTime", description: "When the user joined." }),
    lastReadSeq: t.exposeInt("lastReadSeq", {
      description: "Sequence number of the last message this member has read (0: none).",
    }),
  }),
});

export const ConversationRef = builder.prismaObject("Conversation", {
  description: "A direct conversation or a group, with its members and messages.",
  // Root fields check membership; every conversation object also needs chats:read.
  authScopes: { permission: "chats:read" },
  fields: (t) => ({
    id: t.exposeID("id", { description: "Conversation id." }),
    kind: t.expose("kind", { type: ConversationKind, description: "DIRECT or GROUP." }),
    name: t.exposeString("name", { nullable: true, description: "Group name; null for direct conversations." }),
    description: t.exposeString("description", { nullable: true, description: "Group description." }),
    externalId: t.exposeString("externalId", {
      nullable: true,
      description:
        "The group's id in the tenant's identity provider: membership follows its tokens' groups claim. Null for other groups and direct conversations.",
    }),
    members: t.prismaField({
      type: ["Member"],
      description:
        "Members, in the order they joined; the first `first` of them (memberCount says how many there are).",
      args: { first: t.arg.int({ description: `How many members, 0-${MAX_LIST} (default ${MAX_LIST}).` }) },
      resolve: (_query, conversation, args, ctx) =>
        ctx.loaders.members.load({
          conversationId: conversation.id,
          take: pageSize("first", args.first, MAX_LIST, MAX_LIST),
        }),
    }),
    // A loader rather than relationCount: many resolvers return conversations loaded without Pothos's query.
    memberCount: t.int({
      description: "How many members the conversation has.",
      resolve: (conversation, _args, ctx) => ctx.loaders.memberCount.load(conversation.id),
    }),
    unreadCount: t.int({
      description:
        "Messages from others after the viewer's read horizon, not counting deleted ones. Always 0 for the API key.",
      extensions: viewerDependent,
      resolve: (conversation, _args, ctx) => ctx.loaders.unreadCount.load(conversation.id),
    }),
    mentionCount: t.int({
      description: "Messages mentioning the viewer after their read horizon (deleted ones not counted).",
      extensions: viewerDependent,
      resolve: (conversation, _args, ctx) => ctx.loaders.unreadMentions.load(conversation.id),
    }),
    pinnedMessages: t.prismaField({
      type: ["Message"],
      description:
        "Pinned messages, most recently pinned first; the first `first` of them. Empty for a group the viewer manages without being a member.",
      args: { first: t.arg.int({ description: `How many pinned messages, 0-${MAX_LIST} (default ${MAX_LIST}).` }) },
      resolve: async (_query, conversation, args, ctx) => {
        const take = pageSize("first", args.first, MAX_LIST, MAX_LIST);
        if (!(await conversations.readsMessagesOf(ctx, conversation))) return [];
        return ctx.loaders.pinnedMessages.load({ conversationId: conversation.id, take });
      },
    }),
    lastMessage: t.field({
      type: MessageRef,
      nullable: true,
      description:
        "The newest message that is not deleted; null for a group the viewer manages without being a member.",
      resolve: async (conversation, _args, ctx) => {
        if (conversation.lastSeq === 0 || !(await conversations.readsMessagesOf(ctx, conversation))) return null;
        return ctx.loaders.lastMessage.load(conversation.id);
      },
    }),
    messages: t.field({
      type: MessageConnection,
      description:
        "Messages in chronological order. `last: N` returns the newest N; `before` pages back, `after` forward. FORBIDDEN for a group the viewer manages without being a member.",
      args: {
        first: t.arg.int({ description: "Page size going forward, 0-100." }),
        after: t.arg.string({ description: "Message cursor to continue after." }),
        last: t.arg.int({ description: "Page size going backward, 0-100 (default 50)." }),
        before: t.arg.string({ description: "Message cursor to page back from." }),
      },
      resolve: async (conversation, args, ctx) => {
        if (!(await conversations.readsMessagesOf(ctx, conversation))) {
          throw forbidden("Only members read a conversation's messages");
        }
        return messages.messagePage(ctx, conversation.id, args);
      },
    }),
    lastSeq: t.exposeInt("lastSeq", { description: "Sequence number of the newest message (0: none)." }),
    lastActivityAt: t.expose("lastActivityAt", {
      type: "DateTime",
      description: "When the newest message was sent, or when the conversation was created.",
    }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When the conversation was created." }),
    updatedAt: t.expose("updatedAt", { type: "DateTime", description: "When the conversation last changed." }),
  }),
});

export const ConversationConnection = builder.connectionObject(
  {
    type: ConversationRef,
    name: "ConversationConnection",
    description: "A page of conversations, most recent activity first.",
  },
  { description: "A conversation with its cursor." },
);

const group = conversations.createGroupInput.shape;
const CreateGroupInput = builder.inputType("CreateGroupInput", {
  description: "A new group. A user creating it becomes its owner.",
  fields: (t) => ({
    name: t.string({ required: true, description: `Group name, ${rule(group.name)}.` }),
    description: t.string({ description: `What the group is about, ${rule(group.description)}.` }),
    memberIds: t.idList({ description: `Users to add as members, ${rule(group.memberIds)}.` }),
    externalId: t.string({
      description: `The group's id in the tenant's identity provider, ${rule(group.externalId)}, unique in the tenant: users join and leave it as their tokens' groups claim lists it.`,
    }),
  }),
});

const groupChanges = conversations.updateGroupInput.shape;
const UpdateGroupInput = builder.inputType("UpdateGroupInput", {
  description: "Changes to a group; omitted fields stay as they are.",
  fields: (t) => ({
    name: t.string({ description: `Group name, ${rule(groupChanges.name)}.` }),
    description: t.string({
      description: `What the group is about, ${rule(groupChanges.description)}; null clears it.`,
    }),
    externalId: t.string({
      description: `The group's id in the tenant's identity provider, ${rule(groupChanges.externalId)}, unique in the tenant; null unlinks it (members stay).`,
    }),
  }),
});

builder.queryFields((t) => ({
  conversation: t.prismaField({
    type: "Conversation",
    nullable: true,
    description: "A conversation the viewer is a member of (the API key sees every conversation of the tenant).",
    authScopes: { permission: "chats:read" },
    args: { id: t.arg.id({ required: true, description: "Conversation id." }) },
    resolve: async (_query, _root, { id }, ctx) => (await conversations.requireConversation(ctx, id)).conversation,
  }),
  conversations: t.field({
    type: ConversationConnection,
    description:
      "The viewer's conversations, most recent activity first. Direct conversations the viewer hid (hideConversation) are left out until they have new activity.",
    authScopes: { permission: "chats:read" },
    args: {
      first: t.arg.int({ description: "Page size, 0-100 (default 20)." }),
      after: t.arg.string({ description: "Cursor of the last conversation of the previous page." }),
      kind: t.arg({ type: ConversationKind, description: "Only conversations of this kind." }),
    },
    resolve: (_root, args, ctx) => conversations.listConversations(ctx, args),
  }),
  groups: t.field({
    type: ConversationConnection,
    description:
      "Every group of the tenant, most recent activity first, for holders of groups:read (tenant administration). Groups the viewer is not in show their metadata and members, not their messages.",
    authScopes: { permission: "groups:read" },
    args: {
      first: t.arg.int({ description: "Page size, 0-100 (default 20)." }),
      after: t.arg.string({ description: "Cursor of the last group of the previous page." }),
      search: t.arg.string({
        description: "Only groups whose name contains this, case-insensitively (at most 200 characters).",
      }),
    },
    resolve: (_root, args, ctx) => conversations.listGroups(ctx, args),
  }),
}));

builder.mutationFields((t) => ({
  createGroup: t.prismaField({
    type: "Conversation",
    description: "Creates a group; a user creating it becomes its owner.",
    authScopes: { permission: "groups:create" },
    args: { input: t.arg({ type: CreateGroupInput, required: true, description: "The new group." }) },
    resolve: (_query, _root, { input }, ctx) =>
      ctx.deps.writeLimits.run(ctx, () => conversations.createGroup(ctx, input)),
  }),
  updateGroup: t.prismaField({
    type: "Conversation",
    description: "Renames or re-describes a group (owners and admins, or groups:update).",
    authScopes: { authenticated: true },
    args: {
      id: t.arg.id({ required: true, description: "Conversation id." }),
      input: t.arg({ type: UpdateGroupInput, required: true, description: "The changes." }),
    },
    resolve: (_query, _root, { id, input }, ctx) =>
      ctx.deps.writeLimits.run(ctx, () => conversations.updateGroup(ctx, id, input)),
  }),
  deleteGroup: t.id({
    description: "Deletes a group with its messages (owners, or groups:delete). Returns the id.",
    authScopes: { authenticated: true },
    args: { id: t.arg.id({ required: true, description: "Conversation id." }) },
    resolve: (_root, { id }, ctx) => ctx.deps.writeLimits.run(ctx, () => conversations.deleteGroup(ctx, id)),
  }),
  addMembers: t.prismaField({
    type: "Conversation",
    description: "Adds users to a group (owners and admins, or groups:update). Existing members are skipped.",
    authScopes: { authenticated: true },
    args: {
      conversationId: t.arg.id({ required: true, description: "Conversation id." }),
      userIds: t.arg.idList({ required: true, description: `Users to add, up to ${conversations.MAX_ADDED_MEMBERS}.` }),
    },
    resolve: (_query, _root, args, ctx) =>
      ctx.deps.writeLimits.run(ctx, () => conversations.addMembers(ctx, args.conversationId, args.userIds)),
  }),
  removeMember: t.prismaField({
    type: "Conversation",
    description: "Removes a member from a group (owners and admins, or groups:update); anyone may remove themselves.",
    authScopes: { authenticated: true },
    args: {
      conversationId: t.arg.id({ required: true, description: "Conversation id." }),
      userId: t.arg.id({ required: true, description: "The member to remove." }),
    },
    resolve: (_query, _root, args, ctx) =>
      ctx.deps.writeLimits.run(ctx, () => conversations.removeMember(ctx, args.conversationId, args.userId)),
  }),
  setMemberRole: t.prismaField({
    type: "Conversation",
    description:
      "Changes a member's role in a group. Owners set any role; admins move members between MEMBER and ADMIN; groups:update acts as owner. A group keeps at least one owner.",
    authScopes: { authenticated: true },
    args: {
      conversationId: t.arg.id({ required: true, description: "Conversation id." }),
      userId: t.arg.id({ required: true, description: "The member." }),
      role: t.arg({ type: MemberRole, required: true, description: "The new role." }),
    },
    resolve: (_query, _root, args, ctx) =>
      ctx.deps.writeLimits.run(ctx, () =>
        conversations.setMemberRole(ctx, args.conversationId, args.userId, args.role),
      ),
  }),
  openDirectConversation: t.prismaField({
    type: "Conversation",
    description: "Opens (or returns the existing) direct conversation between the viewer and another user.",
    authScopes: { permission: "chats:create" },
    args: { userId: t.arg.id({ required: true, description: "The other user." }) },
    resolve: (_query, _root, { userId }, ctx) => conversations.openDirectConversation(ctx, userId),
  }),
  hideConversation: t.boolean({
    description:
      "Hides a direct conversation from the viewer's `conversations` list until it has new activity (a new message from either member, or the viewer's openDirectConversation). The other member's list, the history and `conversation(id)` are unchanged. A group is BAD_USER_INPUT (leave it with removeMember). Needs a user token and chats:read.",
    authScopes: { $all: { user: true, permission: "chats:read" } },
    args: { id: t.arg.id({ required: true, description: "Id of the direct conversation." }) },
    resolve: (_root, { id }, ctx) => conversations.hideConversation(ctx, id),
  }),
}));

export { UserRef };
