import { streamCursorField } from "../graphql/stream-cursor.ts";
import { itemOf, STREAM_CURSOR_MAX_AGE_SECONDS } from "../realtime/positions.ts";
import {
  type ConversationEvent,
  type ConversationEventType,
  eventCodec,
  eventCursor,
  eventOf,
  eventSeqFromCursor,
  eventSource,
  type MessageEventType,
} from "../services/events.ts";
import type { Message } from "../services/messages.ts";
import { subscribeSequenced } from "../services/subscriptions.ts";
import { builder } from "./builder.ts";
import { MemberRole } from "./conversation.ts";
import { MessageRef, ReactionGroupRef } from "./message.ts";

type EventFieldBuilder = PothosSchemaTypes.ObjectFieldBuilder<
  typeof builder extends PothosSchemaTypes.SchemaBuilder<infer Types> ? Types : never,
  ConversationEvent
>;

const MESSAGE_EVENTS: MessageEventType[] = [
  "MESSAGE_ADDED",
  "MESSAGE_EDITED",
  "MESSAGE_DELETED",
  "MESSAGE_PINNED",
  "MESSAGE_UNPINNED",
  "REACTION_CHANGED",
];
const snapshot = (event: ConversationEvent): Message => eventOf(event, ...MESSAGE_EVENTS).data.message;
const member = (event: ConversationEvent) =>
  eventOf(event, "REACTION_CHANGED", "MEMBER_ADDED", "MEMBER_REMOVED", "MEMBER_ROLE_CHANGED").data;
const reaction = (event: ConversationEvent) => eventOf(event, "REACTION_CHANGED").data;
const roleOf = (event: ConversationEvent) => eventOf(event, "MEMBER_ADDED", "MEMBER_ROLE_CHANGED").data.role;
const groupChange = (event: ConversationEvent) => eventOf(event, "CONVERSATION_UPDATED").data;

/** Fields every conversation event has. */
function common(t: EventFieldBuilder) {
  return {
    cursor: t.string({
      description:
        "Opaque position of this event; pass it as conversationEvents(after:) to resume. From conversationEvents without conversationId it is the position of that whole stream: pass it without conversationId to resume the stream with nothing missed and nothing twice.",
      extensions: streamCursorField,
      resolve: (event) => eventCursor(event),
    }),
    seq: t.exposeInt("seq", { description: "Sequence number, strictly increasing inside the conversation." }),
    conversationId: t.exposeID("conversationId", { description: "The conversation it happened in." }),
    actor: t.prismaField({
      type: "User",
      nullable: true,
      description: "Who caused it (null for the API key).",
      resolve: (query, event, _args, ctx) => {
        const { actorId } = eventCodec.decode(event);
        return typeof actorId === "string" ? ctx.prisma.user.findFirst({ ...query, where: { id: actorId } }) : null;
      },
    }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When it happened." }),
  };
}

function messageEvent(name: string, description: string) {
  return builder.objectRef<ConversationEvent>(name).implement({
    description,
    authScopes: { permission: "chats:read" },
    fields: (t) => ({
      ...common(t),
      message: t.field({
        type: MessageRef,
        description: "The message as of this event.",
        resolve: (event) => snapshot(event),
      }),
    }),
  });
}

function memberUser(t: EventFieldBuilder) {
  return t.prismaField({
    type: "User",
    nullable: true,
    description: "The member concerned (null if since deleted).",
    resolve: (query, event, _args, ctx) => ctx.prisma.user.findFirst({ ...query, where: { id: member(event).userId } }),
  });
}

function memberRole(t: EventFieldBuilder, description: string) {
  return t.field({
    type: MemberRole,
    description,
    resolve: (event) => roleOf(event),
  });
}

const MessageAddedEvent = messageEvent("MessageAddedEvent", "A message was sent.");
const MessageEditedEvent = messageEvent("MessageEditedEvent", "A message's text was edited.");
const MessageDeletedEvent = messageEvent("MessageDeletedEvent", "A message was deleted; it is now a tombstone.");
const MessagePinnedEvent = messageEvent("MessagePinnedEvent", "A message was pinned.");
const MessageUnpinnedEvent = messageEvent("MessageUnpinnedEvent", "A message was unpinned.");

const ReactionChangedEvent = builder.objectRef<ConversationEvent>("ReactionChangedEvent").implement({
  description: "Someone added or removed a reaction; `reactions` is the message's full set after the change.",
  authScopes: { permission: "chats:read" },
  fields: (t) => ({
    ...common(t),
    message: t.field({ type: MessageRef, description: "The message.", resolve: (event) => snapshot(event) }),
    emoji: t.string({ description: "The emoji concerned.", resolve: (event) => reaction(event).emoji }),
    added: t.boolean({
      description: "True when added, false when removed.",
      resolve: (event) => reaction(event).added,
    }),
    user: memberUser(t),
    reactions: t.field({
      type: [ReactionGroupRef],
      description: "All reactions of the message after this change.",
      resolve: (event) => reaction(event).reactions ?? [],
    }),
  }),
});

const MemberAddedEvent = builder.objectRef<ConversationEvent>("MemberAddedEvent").implement({
  description: "A user joined the conversation; a new conversation starts with one per first member.",
  authScopes: { permission: "chats:read" },
  fields: (t) => ({
    ...common(t),
    user: memberUser(t),
    role: memberRole(t, "Their role in the conversation."),
  }),
});

const MemberRemovedEvent = builder.objectRef<ConversationEvent>("MemberRemovedEvent").implement({
  description: "A user left or was removed.",
  authScopes: { permission: "chats:read" },
  fields: (t) => ({ ...common(t), user: memberUser(t) }),
});

const MemberRoleChangedEvent = builder.objectRef<ConversationEvent>("MemberRoleChangedEvent").implement({
  description: "A member's role changed.",
  authScopes: { permission: "chats:read" },
  fields: (t) => ({
    ...common(t),
    user: memberUser(t),
    role: memberRole(t, "The new role."),
  }),
});

const ConversationUpdatedEvent = builder.objectRef<ConversationEvent>("ConversationUpdatedEvent").implement({
  description: "The group was renamed or re-described.",
  authScopes: { permission: "chats:read" },
  fields: (t) => ({
    ...common(t),
    name: t.string({
      nullable: true,
      description: "The new name.",
      resolve: (event) => groupChange(event).name,
    }),
    description: t.string({
      nullable: true,
      description: "The new description.",
      resolve: (event) => groupChange(event).description,
    }),
  }),
});

const ConversationDeletedEvent = builder.objectRef<ConversationEvent>("ConversationDeletedEvent").implement({
  description: "The conversation was deleted; no more events follow for it. Not replayed: its history is gone.",
  authScopes: { permission: "chats:read" },
  fields: (t) => ({
    conversationId: t.exposeID("conversationId", { description: "The deleted conversation." }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When it was deleted." }),
  }),
});

const TYPES: Record<ConversationEventType, string> = {
  MESSAGE_ADDED: "MessageAddedEvent",
  MESSAGE_EDITED: "MessageEditedEvent",
  MESSAGE_DELETED: "MessageDeletedEvent",
  MESSAGE_PINNED: "MessagePinnedEvent",
  MESSAGE_UNPINNED: "MessageUnpinnedEvent",
  REACTION_CHANGED: "ReactionChangedEvent",
  MEMBER_ADDED: "MemberAddedEvent",
  MEMBER_REMOVED: "MemberRemovedEvent",
  MEMBER_ROLE_CHANGED: "MemberRoleChangedEvent",
  CONVERSATION_UPDATED: "ConversationUpdatedEvent",
  CONVERSATION_DELETED: "ConversationDeletedEvent",
};

const ConversationEventUnion = builder.unionType("ConversationEvent", {
  description: "Something that happened in a conversation. Applying these in order keeps a local copy in sync.",
  types: [
    MessageAddedEvent,
    MessageEditedEvent,
    MessageDeletedEvent,
    MessagePinnedEvent,
    MessageUnpinnedEvent,
    ReactionChangedEvent,
    MemberAddedEvent,
    MemberRemovedEvent,
    MemberRoleChangedEvent,
    ConversationUpdatedEvent,
    ConversationDeletedEvent,
  ],
  resolveType: (event) => TYPES[event.type as ConversationEventType],
});

builder.subscriptionField("conversationEvents", (t) =>
  t.field({
    type: ConversationEventUnion,
    description:
      "Everything that happens in a conversation (or, without an id, in all of the viewer's conversations): messages added, edited, deleted, pinned, unpinned, reactions, members and group changes. With `after` (an event cursor) it first replays every stored event after it, then continues live, with no gap and no duplicate.",
    authScopes: { permission: "chats:read" },
    args: {
      conversationId: t.arg.id({ description: "Only this conversation." }),
      after: t.arg.string({
        description: `Where to resume. With conversationId: an event cursor of that conversation. Without: the cursor of the last event received from conversationEvents without conversationId; the stream resumes in the conversations the viewer is a member of now (one joined since starts where they joined; deletions that happened meanwhile are not replayed). Malformed cursors are BAD_USER_INPUT; one older than ${STREAM_CURSOR_MAX_AGE_SECONDS / 86_400} days is CURSOR_EXPIRED: reload the conversations, then subscribe without after.`,
      }),
    },
    subscribe: (_root, args, ctx) => subscribeSequenced(ctx, args, eventSource, eventSeqFromCursor),
    resolve: (event) => itemOf(event),
  }),
);
