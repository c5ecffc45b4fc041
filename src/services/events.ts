import { randomUUID } from "node:crypto";
import type { Context } from "../context.ts";
import { badInput } from "../errors.ts";
import type { ConversationEvent, PrismaClient } from "../generated/prisma/client.ts";
import type { SequencedSource } from "../realtime/feeds.ts";
import { topics, toWire, type WireConversationEvent } from "../realtime/topics.ts";
import { decodeCursor, encodeCursor } from "./cursors.ts";

export type { ConversationEvent };

export type ConversationEventType =
  | "MESSAGE_ADDED"
  | "MESSAGE_EDITED"
  | "MESSAGE_DELETED"
  | "REACTION_CHANGED"
  | "MESSAGE_PINNED"
  | "MESSAGE_UNPINNED"
  | "MEMBER_ADDED"
  | "MEMBER_REMOVED"
  | "MEMBER_ROLE_CHANGED"
  | "CONVERSATION_UPDATED"
  | "CONVERSATION_DELETED";

export interface NewEvent {
  type: ConversationEventType;
  /** Who caused it: a user id, or null for the API key. */
  actorId: string | null;
  data: Record<string, unknown>;
}

type Tx = Pick<PrismaClient, "$queryRaw" | "conversationEvent">;

/**
 * Builds event rows numbered from `firstSeq` and stores them with the caller's
 * transaction, so an event commits exactly when the change it describes does.
 */
export async function insertEvents(
  tx: Tx,
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
    data: JSON.stringify({ actorId: event.actorId, ...event.data }),
    createdAt,
  }));
  await tx.conversationEvent.createMany({ data: rows });
  return rows;
}

/** Takes the next event numbers of a conversation (row-locked until commit) and stores the events. */
export async function appendEvents(
  tx: Tx,
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
  return insertEvents(tx, tenantId, conversationId, bumped.lastEventSeq - events.length + 1, events);
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

export function eventSeqFromCursor(field: string, cursor: string, conversationId: string): number {
  const [cursorConversation, seq] = decodeCursor(field, cursor, "e1", ["uuid", "seq"]);
  if (cursorConversation !== conversationId) throw badInput(field, `${field} belongs to another conversation`);
  return seq;
}

export function eventData(event: ConversationEvent): Record<string, unknown> {
  return JSON.parse(event.data) as Record<string, unknown>;
}

/** Conversation events: `conversationEvents`. */
export const eventSource: SequencedSource<ConversationEvent, WireConversationEvent> = {
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
    data: JSON.stringify({ actorId: null }),
    createdAt: new Date(),
  }),
};
