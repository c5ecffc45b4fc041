import { z } from "zod";
import { type Context, hasPermission } from "../context.ts";
import { badInput, forbidden, notFound } from "../errors.ts";
import { type Message, Prisma, type PrismaClient } from "../generated/prisma/client.ts";
import { type ReadPayload, type TypingPayload, topics } from "../realtime/topics.ts";
import { actingUserId, requireUserPrincipal, tenantOf } from "./access.ts";
import { audit } from "./audit.ts";
import { openDirect, requireConversation } from "./conversations.ts";
import { connectionOf, decodeMessageCursor, messageCursor } from "./cursors.ts";
import { pageSize, parseId, validate } from "./validation.ts";

export type { Message };

const sendMessageInput = (maxLength: number) =>
  z.object({
    conversationId: z.string().nullish(),
    recipientId: z.string().nullish(),
    senderId: z.string().nullish(),
    body: z.string().max(maxLength, `must be at most ${maxLength} characters`),
    clientMessageId: z.string().trim().min(1).max(128, "must be at most 128 characters").nullish(),
    replyToId: z.string().nullish(),
  });

/** Message rows cross pub/sub as JSON; dates come back as strings. */
export function reviveMessage(raw: Record<string, unknown>): Message {
  const date = (value: unknown) => (value ? new Date(value as string) : null);
  return {
    ...(raw as unknown as Message),
    createdAt: new Date(raw.createdAt as string),
    editedAt: date(raw.editedAt),
    deletedAt: date(raw.deletedAt),
  };
}

async function publishMessage(ctx: Context, message: Message): Promise<void> {
  try {
    await ctx.deps.pubsub.publish(topics.messages(message.tenantId, message.conversationId), message);
  } catch (error) {
    // Stored is what counts: subscribers fill the gap from storage on the next event or resync.
    ctx.deps.log.warn({ err: error, requestId: ctx.requestId }, "message publish failed");
  }
}

/**
 * Stores a message with the next sequence number of its conversation in one
 * transaction, then publishes it. A repeated clientMessageId of the same sender in the
 * same conversation returns the original and publishes nothing.
 */
export async function sendMessage(ctx: Context, rawInput: unknown): Promise<Message> {
  const input = validate(sendMessageInput(ctx.deps.config.maxMessageLength), rawInput, "input");
  const tenantId = tenantOf(ctx);
  const principalUserId = actingUserId(ctx);
  let senderId = principalUserId;
  if (input.senderId) {
    const requested = parseId("input.senderId", input.senderId);
    if (principalUserId && requested !== principalUserId) {
      throw forbidden("Users can only send messages as themselves");
    }
    senderId = requested;
  }
  if (!input.body.trim()) throw badInput("input.body", "input.body must not be empty");
  if (!!input.conversationId === !!input.recipientId) {
    throw badInput("input", "Give exactly one of input.conversationId and input.recipientId");
  }

  let conversationId: string;
  if (input.recipientId) {
    if (!senderId) throw badInput("input.senderId", "Sending to a recipient needs a sender");
    if (!principalUserId) await requireActiveUser(ctx, senderId);
    conversationId = (await openDirect(ctx, senderId, input.recipientId, "input.recipientId")).id;
  } else {
    const access = await requireConversation(ctx, input.conversationId as string, "input.conversationId");
    conversationId = access.conversation.id;
    if (senderId && !principalUserId) {
      await requireActiveUser(ctx, senderId);
      const member = await ctx.prisma.member.findUnique({
        where: { conversationId_userId: { conversationId, userId: senderId } },
      });
      if (!member) throw forbidden("The sender is not a member of this conversation");
    }
  }

  let replyToId: string | null = null;
  if (input.replyToId) {
    replyToId = parseId("input.replyToId", input.replyToId);
    const parent = await ctx.prisma.message.findFirst({
      where: { id: replyToId, tenantId, conversationId },
      select: { id: true },
    });
    if (!parent) throw notFound("Message");
  }

  const clientMessageId = input.clientMessageId ?? null;
  if (clientMessageId) {
    const original = await findByClientId(ctx.prisma, conversationId, senderId, clientMessageId);
    if (original) return original;
  }

  let message: Message;
  try {
    message = await ctx.prisma.$transaction(async (tx) => {
      // The row lock on the conversation serializes senders, so seq order is commit order.
      const [bumped] = await tx.$queryRaw<{ lastSeq: number }[]>`
        UPDATE "Conversation"
           SET "lastSeq" = "lastSeq" + 1, "lastActivityAt" = now(), "updatedAt" = now()
         WHERE "id" = ${conversationId}::uuid AND "tenantId" = ${tenantId}::uuid
        RETURNING "lastSeq"`;
      if (!bumped) throw notFound("Conversation");
      const created = await tx.message.create({
        data: {
          tenantId,
          conversationId,
          seq: bumped.lastSeq,
          senderId,
          body: input.body,
          type: senderId ? "TEXT" : "SYSTEM",
          clientMessageId,
          replyToId,
        },
      });
      if (senderId) {
        // The sender has read everything up to their own message.
        await tx.member.updateMany({
          where: { conversationId, userId: senderId, lastReadSeq: { lt: created.seq } },
          data: { lastReadSeq: created.seq, lastReadAt: created.createdAt },
        });
      }
      return created;
    });
  } catch (error) {
    if (clientMessageId && error instanceof Prisma.PrismaClientKnownRequestError && error.code === "P2002") {
      const original = await findByClientId(ctx.prisma, conversationId, senderId, clientMessageId);
      if (original) return original;
    }
    throw error;
  }
  await publishMessage(ctx, message);
  return message;
}

async function requireActiveUser(ctx: Context, userId: string): Promise<void> {
  const user = await ctx.prisma.user.findFirst({
    where: { id: userId, tenantId: tenantOf(ctx), deletedAt: null, active: true },
    select: { id: true },
  });
  if (!user) throw notFound("User");
}

function findByClientId(
  prisma: PrismaClient,
  conversationId: string,
  senderId: string | null,
  clientMessageId: string,
) {
  return prisma.message.findFirst({ where: { conversationId, senderId, clientMessageId } });
}

/** Stored messages of a conversation after a sequence number, oldest first (replay and gap filling). */
export function messagesAfter(
  prisma: PrismaClient,
  tenantId: string,
  conversationId: string,
  afterSeq: number,
  limit: number,
): Promise<Message[]> {
  return prisma.message.findMany({
    where: { tenantId, conversationId, seq: { gt: afterSeq } },
    orderBy: { seq: "asc" },
    take: limit,
  });
}

export function cursorOfMessage(message: Pick<Message, "conversationId" | "seq">): string {
  return messageCursor(message.conversationId, message.seq);
}

export function seqFromCursor(field: string, cursor: string, conversationId: string): number {
  const decoded = decodeMessageCursor(field, cursor);
  if (decoded.conversationId !== conversationId) {
    throw badInput(field, `${field} belongs to another conversation`);
  }
  return decoded.seq;
}

export async function listMessages(
  ctx: Context,
  args: {
    conversationId: string;
    first?: number | null;
    after?: string | null;
    last?: number | null;
    before?: string | null;
  },
) {
  const { conversation } = await requireConversation(ctx, args.conversationId, "conversationId");
  return messagePage(ctx, conversation.id, args);
}

/** One query per page whatever its size: keyset on (conversationId, seq). */
export async function messagePage(
  ctx: Context,
  conversationId: string,
  args: { first?: number | null; after?: string | null; last?: number | null; before?: string | null },
) {
  const tenantId = tenantOf(ctx);
  const hasFirst = args.first !== null && args.first !== undefined;
  const hasLast = args.last !== null && args.last !== undefined;
  if (hasFirst && hasLast) throw badInput("last", "Give either first or last, not both");
  const afterSeq = args.after ? seqFromCursor("after", args.after, conversationId) : null;
  const beforeSeq = args.before ? seqFromCursor("before", args.before, conversationId) : null;
  const forward = hasFirst || (!hasLast && afterSeq !== null && beforeSeq === null);
  const size = forward ? pageSize("first", args.first, 50) : pageSize("last", args.last, 50);
  const seq: Prisma.IntFilter = {};
  if (afterSeq !== null) seq.gt = afterSeq;
  if (beforeSeq !== null) seq.lt = beforeSeq;
  const rows = await ctx.prisma.message.findMany({
    where: { tenantId, conversationId, ...(afterSeq !== null || beforeSeq !== null ? { seq } : {}) },
    orderBy: { seq: forward ? "asc" : "desc" },
    take: size + 1,
  });
  const more = rows.length > size;
  const page = rows.slice(0, size);
  if (!forward) page.reverse();
  return connectionOf(page, cursorOfMessage, {
    hasNextPage: forward ? more : beforeSeq !== null,
    hasPreviousPage: forward ? (afterSeq ?? 0) > 0 : more,
  });
}

export async function lastMessageOf(ctx: Context, conversationId: string, lastSeq: number) {
  if (lastSeq === 0) return null;
  return ctx.prisma.message.findFirst({
    where: { tenantId: tenantOf(ctx), conversationId, deletedAt: null },
    orderBy: { seq: "desc" },
  });
}

export async function markRead(ctx: Context, conversationId: string, upToMessageId: string) {
  const userId = requireUserPrincipal(ctx, "markRead");
  const { conversation } = await requireConversation(ctx, conversationId, "conversationId");
  const messageId = parseId("upToMessageId", upToMessageId);
  const message = await ctx.prisma.message.findFirst({
    where: { id: messageId, tenantId: conversation.tenantId, conversationId: conversation.id },
  });
  if (!message) throw notFound("Message");
  const readAt = new Date();
  // The read horizon only moves forward; an older receipt leaves it where it is.
  await ctx.prisma.member.updateMany({
    where: { conversationId: conversation.id, userId, lastReadSeq: { lt: message.seq } },
    data: { lastReadSeq: message.seq, lastReadAt: readAt },
  });
  const member = await ctx.prisma.member.findUniqueOrThrow({
    where: { conversationId_userId: { conversationId: conversation.id, userId } },
  });
  const horizon =
    member.lastReadSeq === message.seq
      ? message
      : await ctx.prisma.message.findFirstOrThrow({
          where: { conversationId: conversation.id, seq: member.lastReadSeq },
        });
  const payload: ReadPayload = {
    conversationId: conversation.id,
    userId,
    lastReadSeq: member.lastReadSeq,
    lastReadMessageId: horizon.id,
    readAt: (member.lastReadAt ?? readAt).toISOString(),
  };
  ctx.loaders.unreadCount.clear(conversation.id);
  await ctx.deps.pubsub.publish(topics.reads(conversation.tenantId, conversation.id), payload).catch((error) => {
    ctx.deps.log.warn({ err: error, requestId: ctx.requestId }, "read receipt publish failed");
  });
  return payload;
}

export async function setTyping(ctx: Context, conversationId: string, isTyping: boolean): Promise<boolean> {
  const userId = requireUserPrincipal(ctx, "setTyping");
  const { conversation } = await requireConversation(ctx, conversationId, "conversationId");
  const payload: TypingPayload = { conversationId: conversation.id, userId, isTyping };
  await ctx.deps.pubsub.publish(topics.typing(conversation.tenantId, conversation.id), payload);
  return true;
}

const editMessageInput = (maxLength: number) =>
  z.object({ body: z.string().max(maxLength, `must be at most ${maxLength} characters`) });

async function requireMessage(ctx: Context, id: string) {
  const message = await ctx.prisma.message.findFirst({ where: { id: parseId("id", id), tenantId: tenantOf(ctx) } });
  if (!message) throw notFound("Message");
  // Reading (and so acting on) a message needs access to its conversation.
  await requireConversation(ctx, message.conversationId, "id");
  return message;
}

/** Senders edit their own messages (chats:update); the API key may edit any. */
export async function editMessage(ctx: Context, id: string, body: string): Promise<Message> {
  const { body: text } = validate(editMessageInput(ctx.deps.config.maxMessageLength), { body }, "");
  if (!text.trim()) throw badInput("body", "body must not be empty");
  const message = await requireMessage(ctx, id);
  const userId = actingUserId(ctx);
  if (userId && message.senderId !== userId) throw forbidden("Only the sender may edit a message");
  if (message.deletedAt) throw badInput("id", "A deleted message cannot be edited");
  return ctx.prisma.message.update({ where: { id: message.id }, data: { body: text, editedAt: new Date() } });
}

/**
 * Deletes a message, leaving a tombstone (no body, who deleted it and when). Own
 * messages need chats:delete; others' need chats:moderate. Deleting twice is harmless.
 */
export async function deleteMessage(ctx: Context, id: string): Promise<Message> {
  const message = await requireMessage(ctx, id);
  const userId = actingUserId(ctx);
  const own = userId !== null && message.senderId === userId;
  if (!(await hasPermission(ctx, own ? "chats:delete" : "chats:moderate"))) {
    throw forbidden(own ? "Deleting messages needs chats:delete" : "Deleting others' messages needs chats:moderate");
  }
  if (message.deletedAt) return message;
  return ctx.prisma.$transaction(async (tx) => {
    const deleted = await tx.message.update({
      where: { id: message.id },
      data: { deletedAt: new Date(), deletedById: userId },
    });
    if (!own) {
      await audit(ctx, "message.moderated", { type: "Message", id: message.id }, { senderId: message.senderId }, tx);
    }
    return deleted;
  });
}
