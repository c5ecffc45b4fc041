import * as presence from "../services/presence.ts";
import { builder } from "./builder.ts";
import { UserRef } from "./user.ts";

builder.prismaObjectFields("User", (t) => ({
  online: t.boolean({
    description: "Whether the user has at least one open authenticated WebSocket, on any server instance.",
    resolve: (user, _args, ctx) => presence.isOnline(ctx, user.tenantId, user.id),
  }),
  lastSeenAt: t.field({
    type: "DateTime",
    nullable: true,
    description:
      "When the user's last open WebSocket closed (on every instance); null if they never connected. Kept while they are online again.",
    resolve: (user, _args, ctx) => presence.lastSeenAt(ctx, user),
  }),
}));

builder.prismaObjectFields("Conversation", (t) => ({
  onlineCount: t.int({
    description: "How many members are online now (see User.online), the viewer included when connected.",
    resolve: (conversation, _args, ctx) => presence.onlineCount(ctx, conversation.id),
  }),
  connectionCount: t.int({
    description:
      "How many WebSocket connections, on every instance, hold a live subscription that follows this conversation: messageAdded, conversationEvents, typing or readReceipt naming it, or messageAdded or conversationEvents without conversationId of a member (or of the API key).",
    resolve: (conversation, _args, ctx) => presence.connectionCount(ctx, conversation.id),
  }),
}));

const PresenceEventRef = builder.objectRef<presence.PresenceEvent>("PresenceEvent").implement({
  description:
    "A user came online (their first WebSocket opened, on any instance) or went offline (their last one closed).",
  authScopes: { permission: "chats:read" },
  fields: (t) => ({
    user: t.field({
      type: UserRef,
      description: "The user whose presence changed.",
      resolve: async (event, _args, ctx) => {
        const user = await ctx.loaders.user.load(event.userId);
        if (!user) throw new Error("presence change of an unknown user");
        return user;
      },
    }),
    online: t.exposeBoolean("online", { description: "True when the user came online, false when they went offline." }),
    lastSeenAt: t.field({
      type: "DateTime",
      nullable: true,
      description: "When the user went offline; null when they came online.",
      resolve: (event) => (event.lastSeenAt ? new Date(event.lastSeenAt) : null),
    }),
    conversationId: t.id({
      nullable: true,
      description: "The conversation the subscription follows; null when subscribed without conversationId.",
      resolve: (event) => event.conversationId,
    }),
  }),
});

builder.subscriptionField("presenceChanged", (t) =>
  t.field({
    type: PresenceEventRef,
    description:
      "Users coming online or going offline, one event per change. With conversationId: its members (access as for conversation(id)). Without: every user who shares a conversation with the viewer (the API key: every user of the tenant). A subscriber that falls behind gets each user's latest change.",
    authScopes: { permission: "chats:read" },
    args: { conversationId: t.arg.id({ description: "Only the members of this conversation." }) },
    subscribe: (_root, args, ctx) => presence.presenceFeed(ctx, args.conversationId ?? null),
    resolve: (event) => event,
  }),
);
