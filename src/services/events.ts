import { randomUUID } from "node:crypto";
import type { Context } from "../context.ts";
import { badInput } from "../errors.ts";
import type { ConversationEvent, Message, Prisma, PrismaClient } from "../generated/prisma/client.ts";
import type { SequencedSource } from "../realtime/feeds.ts";
import { decodeStreamCursor, isStreamCursor } from "../realtime/positions.ts";
import { topics, toWire, type WireConversationEvent, type WireMessage } from "../realtime/topics.ts";
import { decodeCursor, encodeCursor } from "./cursors.ts";
import { reviveMessage } from "./message-snapshot.ts";
import type { ReactionGroup } from "./messages.ts";
import { viaPrisma, type WebhookEvent, type WebhookItem, type WebhookOutbox } from "./webhook-outbox.ts";

export type { ConversationEvent };

/** A member's role in a conversation, as events record it. */
export type EventMemberRole = "OWNER" | "ADMIN" | "MEMBER";

/** What each kind of event records, keyed by its type. Messages are snapshots as of the event. */
export interface EventDataByType {
  MESSAGE_ADDED: { message: Message };
  MESSAGE_EDITED: { message: Message };
  MESSAGE_DELETED: { message: Message };
  MESSAGE_PINNED: { message: Message };
  MESSAGE_UNPINNED: { message: Message };
  REACTION_CHANGED: { message: Message; emoji: string; userId: string; added: boolean; reactions: ReactionGroup[] };
  MEMBER_ADDED: { userId: string; role: EventMemberRole };
  MEMBER_REMOVED: { userId: string };
  MEMBER_ROLE_CHANGED: { userId: string; role: EventMemberRole };
  CONVERSATION_UPDATED: { name: string | null; description: string | null };
  CONVERSATION_DELETED: Record<string, never>;
}

export type ConversationEventType = keyof EventDataByType;

/** Event types whose data carries a message snapshot. */
export type MessageEventType = {
  [K in ConversationEventType]: EventDataByType[K] extends { message: Message } ? K : never;
}[ConversationEventType];

/** An event as written and read: its type decides the shape of its data. */
export type NewEvent = {
  [K in ConversationEventType]: {
    type: K;
    /** Who caused it: a user id, or null for the API key. */
    actorId: string | null;
    data: EventDataByType[K];
  };
}[ConversationEventType];

/** An event of the given type; `data` typed by it. */
export type EventOf<K extends ConversationEventType> = Extract<NewEvent, { type: K }>;

export const newEvent = <K extends ConversationEventType>(
  type: K,
  actorId: string | null,
  data: EventDataByType[K],
): EventOf<K> => ({ type, actorId, data }) as EventOf<K>;

/**
 * The one place event data crosses to and from its stored form: the `data` column is jsonb
 * holding `{ actorId, ...data }` (dates as ISO strings), `type` is the discriminant.
 */
export const eventCodec = {
  encode(event: Pick<NewEvent, "actorId" | "data">): Prisma.JsonObject {
    return JSON.parse(JSON.stringify({ actorId: event.actorId, ...event.data })) as Prisma.JsonObject;
  },
  decode(row: Pick<ConversationEvent, "type" | "data">): NewEvent {
    const { actorId, ...data } = (row.data ?? {}) as Record<string, unknown>;
    if (data.message && typeof data.message === "object") {
      data.message = reviveMessage(data.message as WireMessage);
    }
    return { type: row.type, actorId: typeof actorId === "string" ? actorId : null, data } as NewEvent;
  },
};

/** The decoded event of a row, narrowed to the given types (the GraphQL union routes each type to its object). */
export function eventOf<K extends ConversationEventType>(row: ConversationEvent, ...types: K[]): EventOf<K> {
  const event = eventCodec.decode(row);
  if (!(types as string[]).includes(event.type)) throw new Error(`event ${row.id} is ${row.type}, not ${types}`);
  return event as EventOf<K>;
}

type Tx = Pick<PrismaClient, "$queryRaw" | "$queryRawUnsafe" | "conversationEvent">;

/** The conversation events webhooks are told about, by the webhook event they are. */
const WEBHOOK_EVENT_OF: Partial<Record<ConversationEventType, WebhookEvent>> = {
  MESSAGE_ADDED: "MESSAGE_ADDED",
  MESSAGE_EDITED: "MESSAGE_EDITED",
  MESSAGE_DELETED: "MESSAGE_DELETED",
  REACTION_CHANGED: "REACTION_CHANGED",
  MEMBER_ADDED: "MEMBER_ADDED",
  MEMBER_REMOVED: "MEMBER_REMOVED",
};

/**
 * What a webhook delivery of a stored event carries: the event's own data as stored
 * (`actorId`, the message snapshot, ...) with its conversation; null for events webhooks do not name.
 */
export function webhookItemOf(event: Pick<ConversationEvent, "conversationId" | "type" | "data">): WebhookItem | null {
  const name = WEBHOOK_EVENT_OF[event.type as ConversationEventType];
  if (!name) return null;
  return { event: name, data: { conversationId: event.conversationId, ...(event.data as Record<string, unknown>) } };
}

/**
 * Builds event rows numbered from `firstSeq` and stores them with the caller's
 * transaction, so an event commits exactly when the change it describes does; so do the
 * webhook deliveries of the events the tenant's webhooks want (`outbox`).
 */
export async function insertEvents(
  tx: Tx,
  outbox: WebhookOutbox,
  tenantId: string,
  conversationId: string,
  firstSeq: number,
  events: NewEvent[],
): Promise<ConversationEvent[]> {
  const createdAt = new Date();
  const rows = events.map((event, index) => ({
    id: randomUUID(),
    tenantId,
    conversationId,
    seq: firstSeq + index,
    type: event.type,
    data: eventCodec.encode(event),
    createdAt,
  }));
  await tx.conversationEvent.createMany({ data: rows });
  const items = rows.map(webhookItemOf).filter((item): item is WebhookItem => item !== null);
  if (items.length > 0) await outbox.record(viaPrisma(tx), tenantId, items);
  return rows;
}

/** Takes the next event numbers of a conversation (row-locked until commit) and stores the events. */
export async function appendEvents(
  tx: Tx,
  outbox: WebhookOutbox,
  tenantId: string,
  conversationId: string,
  events: NewEvent[],
): Promise<ConversationEvent[]> {
  if (events.length === 0) return [];
  const [bumped] = await tx.$queryRaw<{ lastEventSeq: number }[]>`
    UPDATE "Conversation" SET "lastEventSeq" = "lastEventSeq" + ${events.length}, "updatedAt" = now()
     WHERE "id" = ${conversationId}::uuid AND "tenantId" = ${tenantId}::uuid
    RETURNING "lastEventSeq"`;
  if (!bumped) throw new Error(`conversation ${conversationId} vanished while recording events`);
  return insertEvents(tx, outbox, tenantId, conversationId, bumped.lastEventSeq - events.length + 1, events);
}

/** Announces committed events; subscribers fill any gap from storage, so a failed publish loses nothing. */
export async function publishEvents(ctx: Context, events: ConversationEvent[]): Promise<void> {
  for (const event of events) {
    await ctx.deps.pubsub.publish(topics.events(event.tenantId, event.conversationId), toWire(event)).catch((error) => {
      ctx.deps.log.warn({ err: error, requestId: ctx.requestId }, "event publish failed");
    });
  }
}

export const eventCursor = (event: Pick<ConversationEvent, "conversationId" | "seq">) =>
  encodeCursor("e1", [event.conversationId, event.seq]);

/** The seq of an event cursor, or of the event a stream cursor of conversationEvents was handed out with. */
export function eventSeqFromCursor(field: string, cursor: string, conversationId: string): number {
  let event: { conversationId: string; seq: number };
  if (isStreamCursor(cursor)) {
    event = decodeStreamCursor(field, cursor, "events").item;
  } else {
    const [id, seq] = decodeCursor(field, cursor, "e1", ["uuid", "seq"]);
    event = { conversationId: id, seq };
  }
  if (event.conversationId !== conversationId) throw badInput(field, `${field} belongs to another conversation`);
  return event.seq;
}

/** Conversation events: `conversationEvents`. */
export const eventSource: SequencedSource<ConversationEvent, WireConversationEvent> = {
  store: { kind: "events", table: "ConversationEvent", counter: "lastEventSeq" },
  topic: topics.events,
  revive: (event) => ({ ...event, createdAt: new Date(event.createdAt) }),
  conversationOf: (event) => event.conversationId,
  seqOf: (event) => event.seq,
  currentSeq: (conversation) => conversation.lastEventSeq,
  joinedSeq: (event) => event.eventSeq ?? 0,
  fetchAfter: (ctx, tenantId, conversationId, afterSeq, limit) =>
    ctx.prisma.conversationEvent.findMany({
      where: { tenantId, conversationId, seq: { gt: afterSeq } },
      orderBy: { seq: "asc" },
      take: limit,
    }),
  async seqBefore(ctx, conversationId, joinedAt) {
    const before = await ctx.prisma.conversationEvent.findFirst({
      where: { conversationId, createdAt: { lt: joinedAt } },
      orderBy: { seq: "desc" },
      select: { seq: true },
    });
    return before?.seq ?? 0;
  },
  // The conversation's rows are gone with it: the deletion itself is announced, not stored.
  deleted: (conversationId) => ({
    id: randomUUID(),
    tenantId: "",
    conversationId,
    seq: Number.MAX_SAFE_INTEGER,
    type: "CONVERSATION_DELETED",
    data: eventCodec.encode(newEvent("CONVERSATION_DELETED", null, {})),
    createdAt: new Date(),
  }),
};
