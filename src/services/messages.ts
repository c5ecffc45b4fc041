import { z } from "zod";
import { hasPermission } from "../auth/permissions.ts";
import type { Context } from "../context.ts";
import type { TransactionClient } from "../db/client.ts";
import { isUniqueViolation } from "../db/errors.ts";
import type { SqlConnection } from "../db/sql.ts";
import { DEFAULT_MAX_MESSAGE_LENGTH } from "../env.ts";
import { badInput, conflict, forbidden, notFound } from "../errors.ts";
import { type Message, Prisma, type PrismaClient } from "../generated/prisma/client.ts";
import { type FeedItem, type FeedOptions, type SequencedSource, sequencedFeed } from "../realtime/feeds.ts";
import { type ReadPayload, type TypingPayload, topics, toWire, type WireMessage } from "../realtime/topics.ts";
import { actingUserId, requireUserPrincipal, tenantOf } from "./access.ts";
import { discardAttachments, removeAttachmentFiles } from "./attachment-gc.ts";
import { audit } from "./audit.ts";
import { openDirect, requireConversation } from "./conversations.ts";
import {
  connectionOf,
  decodeCursor,
  decodeMessageCursor,
  encodeCursor,
  MAX_CURSOR_OFFSET,
  messageCursor,
} from "./cursors.ts";
import {
  appendEvents,
  type ConversationEvent,
  type EventDataByType,
  eventCodec,
  type MessageEventType,
  newEvent,
  publishEvents,
  webhookItemOf,
} from "./events.ts";
import { reviveMessage } from "./message-snapshot.ts";
import { pageSize, parseId, parseIds, validate, zList, zText } from "./validation.ts";
import { viaSql, type WebhookItem } from "./webhook-outbox.ts";
import { filterMessageText, type WordFilter } from "./word-filter.ts";

export type { Message };

/** Most users one message mentions, and most attachments it carries. */
export const MAX_MENTIONS = 100;
export const MAX_ATTACHMENTS = 10;

/** A message body; its limit is configuration (MAX_MESSAGE_LENGTH), so it is checked per call. */
const zBody = (maxLength: number) =>
  z
    .string()
    .max(maxLength, `must be at most ${maxLength} characters`)
    .describe(`up to MAX_MESSAGE_LENGTH characters (${DEFAULT_MAX_MESSAGE_LENGTH} unless configured)`);

const CLIENT_MESSAGE_ID_MAX = 128;

/** Most bytes a CUSTOM message's data may take as JSON (UTF-8). */
export const MAX_CUSTOM_DATA_BYTES = 16 * 1024;
const CUSTOM_TYPE_MAX = 64;

/** The name a client gives the kind of a CUSTOM message, e.g. `poll` or `app.card:v2`. */
export const zCustomType = z
  .string()
  .regex(
    new RegExp(`^[A-Za-z0-9_.:-]{1,${CUSTOM_TYPE_MAX}}$`),
    `must be 1-${CUSTOM_TYPE_MAX} characters of letters, digits, _ . : or -`,
  )
  .describe(`1-${CUSTOM_TYPE_MAX} characters of letters, digits, \`_\`, \`.\`, \`:\` and \`-\``);

/** Whether every key and string inside a JSON value is text jsonb can store: no NUL, no lone surrogate. */
function storableJson(value: unknown): boolean {
  const stack: unknown[] = [value];
  const storable = (text: string) => !text.includes("\u0000") && text.isWellFormed();
  while (stack.length) {
    const item = stack.pop();
    if (typeof item === "string") {
      if (!storable(item)) return false;
    } else if (Array.isArray(item)) {
      stack.push(...item);
    } else if (item && typeof item === "object") {
      for (const [key, child] of Object.entries(item)) {
        if (!storable(key)) return false;
        stack.push(child);
      }
    }
  }
  return true;
}

/**
 * A CUSTOM message's data: a JSON object (not an array, string, number or null) of at most
 * MAX_CUSTOM_DATA_BYTES serialized, whose keys and strings PostgreSQL's jsonb can store (no
 * NUL, no lone surrogate). Nesting is bounded for every request by the input guards.
 */
export const zCustomData = z
  .unknown()
  .superRefine((value, issues) => {
    if (!value || typeof value !== "object" || Array.isArray(value)) {
      issues.addIssue({ code: "custom", message: "must be a JSON object" });
    } else if (Buffer.byteLength(JSON.stringify(value), "utf8") > MAX_CUSTOM_DATA_BYTES) {
      issues.addIssue({ code: "custom", message: `must be at most ${MAX_CUSTOM_DATA_BYTES} bytes as JSON` });
    } else if (!storableJson(value)) {
      issues.addIssue({ code: "custom", message: "must not contain NUL characters or lone surrogates" });
    }
  })
  .describe(`a JSON object of at most ${MAX_CUSTOM_DATA_BYTES / 1024} KB as JSON (UTF-8)`);

/** The message types a client may send; FILE is set by attachments, SYSTEM only by the server. */
const SENDABLE_TYPES = ["TEXT", "CUSTOM"] as const;

/** A schema builder remembered per body limit (one in practice: the configured one). */
function perLimit<T>(build: (maxLength: number) => T): (maxLength: number) => T {
  const built = new Map<number, T>();
  return (maxLength) => {
    let schema = built.get(maxLength);
    if (!schema) {
      schema = build(maxLength);
      built.set(maxLength, schema);
    }
    return schema;
  };
}

/** sendMessage's input for a body limit (configuration); built once per limit, as building a schema is costly. */
export const sendMessageInput = perLimit((maxLength: number) =>
  z.object({
    conversationId: z.string().nullish(),
    recipientId: z.string().nullish(),
    senderId: z.string().nullish(),
    type: z.string().nullish(),
    customType: zCustomType.nullish(),
    data: zCustomData.nullish(),
    body: zBody(maxLength).nullish(),
    clientMessageId: z
      .string()
      .trim()
      .min(1)
      .max(CLIENT_MESSAGE_ID_MAX, `must be at most ${CLIENT_MESSAGE_ID_MAX} characters`)
      .describe(`up to ${CLIENT_MESSAGE_ID_MAX} characters`)
      .nullish(),
    replyToId: z.string().nullish(),
    mentionedUserIds: zList(MAX_MENTIONS, "users").nullish(),
    attachmentIds: zList(MAX_ATTACHMENTS, "attachments").nullish(),
  }),
);

async function publishMessage(ctx: Context, message: Message): Promise<void> {
  try {
    await ctx.deps.pubsub.publish(topics.messages(message.tenantId, message.conversationId), toWire(message));
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
  const content = filterContent(await ctx.deps.safety.wordFilter(tenantId), messageContent(input));
  const principalUserId = actingUserId(ctx);
  let senderId = principalUserId;
  if (input.senderId) {
    const requested = parseId("input.senderId", input.senderId);
    if (principalUserId && requested !== principalUserId) {
      throw forbidden("Users can only send messages as themselves");
    }
    senderId = requested;
  }
  if (!!input.conversationId === !!input.recipientId) {
    throw badInput("input", "Give exactly one of input.conversationId and input.recipientId");
  }

  let conversationId: string;
  if (input.recipientId) {
    if (!senderId) throw badInput("input.senderId", "Sending to a recipient needs a sender");
    if (!principalUserId) await requireActiveUser(ctx, senderId);
    conversationId = (await openDirect(ctx, senderId, input.recipientId, "input.recipientId")).id;
  } else if (principalUserId) {
    conversationId = parseId("input.conversationId", input.conversationId as string);
  } else {
    const access = await requireConversation(ctx, input.conversationId as string, "input.conversationId");
    conversationId = access.conversation.id;
    if (senderId) {
      await requireActiveUser(ctx, senderId);
      const member = await ctx.prisma.member.findUnique({
        where: { conversationId_userId: { conversationId, userId: senderId } },
      });
      if (!member) throw forbidden("The sender is not a member of this conversation");
    }
  }

  const clientMessageId = input.clientMessageId ?? null;
  const replyToId = input.replyToId ? parseId("input.replyToId", input.replyToId) : null;
  const extras = !!(replyToId || input.mentionedUserIds?.length || input.attachmentIds?.length);
  // A user's plain send checks membership inside the statement that stores it; anything that
  // reads more of the conversation first (reply, mentions, attachments) checks access first.
  if (extras) {
    if (principalUserId) await requireConversation(ctx, conversationId, "input.conversationId");
    // A repeated send returns the original before its attachments (now claimed) are checked again.
    if (clientMessageId) {
      const original = await findByClientId(ctx.prisma, conversationId, senderId, clientMessageId);
      if (original) return original;
    }
  }
  if (replyToId) {
    const parent = await ctx.prisma.message.findFirst({
      where: { id: replyToId, tenantId, conversationId },
      select: { id: true },
    });
    if (!parent) throw notFound("Message");
  }
  const mentioned = await resolveMentions(ctx, conversationId, input.mentionedUserIds ?? []);
  const attachments = await claimableAttachments(ctx, conversationId, senderId, input.attachmentIds ?? []);
  if (!content.custom && !content.body?.trim() && attachments.length === 0) {
    throw badInput("input.body", "input.body must not be empty");
  }

  const row: NewMessageRow = {
    tenantId,
    conversationId,
    senderId,
    body: content.body,
    type: content.custom ? "CUSTOM" : attachments.length ? "FILE" : senderId ? "TEXT" : "SYSTEM",
    customType: content.customType,
    data: content.data,
    clientMessageId,
    replyToId,
    mentioned,
    actorId: principalUserId,
    // A user sends only where they are a member; the API key's sender was checked above.
    memberOnly: !!principalUserId,
  };
  let stored: StoredMessage | null;
  // Only when a webhook of the tenant wants new messages (known in memory) does a send take a
  // transaction, to record the deliveries with the message.
  const { webhooks } = ctx.deps;
  const hooked = await webhooks.wants(viaSql(ctx.deps.db.sql), tenantId, "MESSAGE_ADDED");
  try {
    stored =
      attachments.length || hooked
        ? await ctx.deps.db.sql.transaction(async (conn) => {
            const result = await storeMessage(conn, row);
            if (hooked && result && !result.repeated) {
              await webhooks.record(viaSql(conn), tenantId, [webhookItemOf(result.event) as WebhookItem]);
            }
            if (attachments.length && result && !result.repeated) {
              const claimed = await conn.query(
                `UPDATE "Attachment" SET "messageId" = $1::uuid
                WHERE "tenantId" = $2::uuid AND "id" = ANY($3::uuid[]) AND "messageId" IS NULL RETURNING "id"`,
                [result.message.id, tenantId, attachments],
              );
              if (claimed.length !== attachments.length) {
                throw conflict("An attachment was sent with another message", "input.attachmentIds");
              }
            }
            return result;
          })
        : await storeMessage(ctx.deps.db.sql, row);
  } catch (error) {
    if (clientMessageId && isUniqueViolation(error)) {
      const original = await findByClientId(ctx.prisma, conversationId, senderId, clientMessageId);
      if (original) return original;
    }
    throw error;
  }
  if (!stored) {
    // Nothing stored: find out why (missing conversation, not a member, or blocked in a direct
    // conversation, which is refused without saying so) for the right error.
    await requireConversation(ctx, conversationId, "input.conversationId");
    throw forbidden("You cannot send messages to this conversation");
  }
  if (stored.repeated) return stored.message;
  // Both together: on Redis they leave in one write (auto-pipelining).
  await Promise.all([publishMessage(ctx, stored.message), publishEvents(ctx, [stored.event])]);
  return stored.message;
}

/** What a message says, by its type: text, or a CUSTOM message's kind, data and optional fallback text. */
interface MessageContent {
  custom: boolean;
  body: string | null;
  customType: string | null;
  data: Record<string, unknown> | null;
}

/**
 * The rules of sendMessage's type: TEXT (the default) needs a body and takes no customType or
 * data; CUSTOM needs customType and data, its body is optional fallback text (blank is none).
 * FILE follows from attachments and SYSTEM from the API key sending without a sender, so
 * neither is accepted as input.
 */
function messageContent(input: z.infer<ReturnType<typeof sendMessageInput>>): MessageContent {
  const type = input.type ?? "TEXT";
  if (!(SENDABLE_TYPES as readonly string[]).includes(type)) {
    throw badInput("input.type", `input.type must be TEXT or CUSTOM: ${type} messages are set by the server`);
  }
  if (type === "CUSTOM") {
    if (!input.customType) throw badInput("input.customType", "input.customType is required for CUSTOM messages");
    if (!input.data) throw badInput("input.data", "input.data is required for CUSTOM messages");
    return {
      custom: true,
      body: input.body?.trim() ? input.body : null,
      customType: input.customType,
      data: input.data as Record<string, unknown>,
    };
  }
  if (input.customType != null) throw badInput("input.customType", "input.customType is only for CUSTOM messages");
  if (input.data != null) throw badInput("input.data", "input.data is only for CUSTOM messages");
  if (input.body == null) throw badInput("input.body", "input.body is required for TEXT messages");
  return { custom: false, body: input.body, customType: null, data: null };
}

/** The tenant's word filter applied to a message's text (its body, a CUSTOM message's data too). */
function filterContent(filter: WordFilter | null, content: MessageContent): MessageContent {
  if (!filter) return content;
  const filtered = filterMessageText(filter, { body: "input.body", data: "input.data" }, content.body, content.data);
  return { ...content, ...filtered };
}

/** What storeMessage needs to store a message. */
interface NewMessageRow {
  tenantId: string;
  conversationId: string;
  senderId: string | null;
  body: string | null;
  type: "TEXT" | "FILE" | "SYSTEM" | "CUSTOM";
  customType: string | null;
  data: Record<string, unknown> | null;
  clientMessageId: string | null;
  replyToId: string | null;
  mentioned: string[];
  /** Who caused it (recorded in the event): the user, or null for the API key. */
  actorId: string | null;
  /** Store only if the sender is a member of the conversation. */
  memberOnly: boolean;
}

type StoredMessage =
  | { repeated: false; message: Message; event: ConversationEvent }
  /** The sender's earlier message with the same clientMessageId: nothing was stored. */
  | { repeated: true; message: Message };

/** The columns of a Message row, in the order of the model (searchVector is internal). */
const MESSAGE_COLUMNS = `"id", "tenantId", "conversationId", "seq", "senderId", "body", "type"::text AS "type",
  "clientMessageId", "replyToId", "pinned", "createdAt", "editedAt", "deletedAt", "deletedById", "pinnedAt", "pinnedById",
  "customType", "data"`;

/**
 * Stores a message in one statement (so one round trip, atomic without a transaction of its
 * own): checks that the sender is a member, returns the sender's earlier message with the same
 * clientMessageId instead if there is one, else takes the conversation's next seq and event
 * seq (the row lock on the conversation serializes senders, so seq order is commit order)
 * unless the conversation is direct and its other member blocks the sender,
 * inserts the message, its mentions and its MESSAGE_ADDED event, and moves the sender's read
 * horizon to it. Null when nothing was stored because the conversation is gone or the sender
 * is not a member (or is blocked).
 */
async function storeMessage(conn: SqlConnection, row: NewMessageRow): Promise<StoredMessage | null> {
  const params = [
    row.tenantId,
    row.conversationId,
    row.senderId,
    row.body,
    row.type,
    row.clientMessageId,
    row.replyToId,
    row.mentioned,
    row.actorId,
    row.memberOnly,
    row.customType,
    // Sent as text and cast, so both drivers store the object itself, not a JSON string of it.
    row.data === null ? null : JSON.stringify(row.data),
  ];
  const rows = await conn.query<
    Message & { eventId: string | null; eventSeq: number | null; eventData: unknown; repeated: boolean }
  >(
    `WITH allowed AS (
       SELECT 1 WHERE NOT $10::boolean
       UNION ALL
       SELECT 1 FROM "Member" WHERE "tenantId" = $1::uuid AND "conversationId" = $2::uuid AND "userId" = $3::uuid
     ),
     earlier AS (
       SELECT ${MESSAGE_COLUMNS} FROM "Message"
        WHERE $6::text IS NOT NULL AND "tenantId" = $1::uuid AND "conversationId" = $2::uuid
          AND "senderId" IS NOT DISTINCT FROM $3::uuid AND "clientMessageId" = $6::text
          AND EXISTS (SELECT 1 FROM allowed)
     ),
     blocked AS (
       SELECT 1 FROM "Block" b
         JOIN "Member" other ON other."conversationId" = $2::uuid AND other."userId" = b."blockerId"
         JOIN "Conversation" c ON c."id" = $2::uuid AND c."kind" = 'DIRECT'
        WHERE b."tenantId" = $1::uuid AND b."blockedId" = $3::uuid
     ),
     bumped AS (
       UPDATE "Conversation"
          SET "lastSeq" = "lastSeq" + 1, "lastEventSeq" = "lastEventSeq" + 1,
              "lastActivityAt" = now(), "updatedAt" = now()
        WHERE "id" = $2::uuid AND "tenantId" = $1::uuid
          AND EXISTS (SELECT 1 FROM allowed) AND NOT EXISTS (SELECT 1 FROM earlier)
          AND NOT EXISTS (SELECT 1 FROM blocked)
       RETURNING "lastSeq", "lastEventSeq"
     ),
     added AS (
       INSERT INTO "Message" ("id", "tenantId", "conversationId", "seq", "senderId", "body", "type",
                              "clientMessageId", "replyToId", "customType", "data")
       SELECT gen_random_uuid(), $1::uuid, $2::uuid, "lastSeq", $3::uuid, $4::text, $5::"MessageType",
              $6::text, $7::uuid, $11::text, $12::text::jsonb
         FROM bumped
       RETURNING ${MESSAGE_COLUMNS}
     ),
     mentioned AS (
       INSERT INTO "Mention" ("tenantId", "messageId", "userId")
       SELECT $1::uuid, added."id", mentioned FROM added, unnest($8::uuid[]) AS mentioned
     ),
     read AS (
       UPDATE "Member" SET "lastReadSeq" = added."seq", "lastReadAt" = added."createdAt"
         FROM added
        WHERE "Member"."conversationId" = $2::uuid AND "Member"."userId" = $3::uuid
          AND "Member"."lastReadSeq" < added."seq"
     ),
     event AS (
       INSERT INTO "ConversationEvent" ("id", "tenantId", "conversationId", "seq", "type", "data", "createdAt")
       SELECT gen_random_uuid(), $1::uuid, $2::uuid, bumped."lastEventSeq", 'MESSAGE_ADDED',
              jsonb_build_object('actorId', $9::uuid, 'message', to_jsonb(added)), added."createdAt"
         FROM added, bumped
       RETURNING "id", "seq", "data"
     )
     SELECT added.*, event."id" AS "eventId", event."seq" AS "eventSeq", event."data" AS "eventData",
            false AS "repeated"
       FROM added, event
     UNION ALL
     SELECT earlier.*, NULL, NULL, NULL, true FROM earlier`,
    params,
    { name: "store-message" },
  );
  const found = rows[0];
  if (!found) return null;
  const { eventId, eventSeq, eventData, repeated, ...message } = found;
  if (repeated) return { repeated: true, message };
  return {
    repeated: false,
    message,
    event: {
      id: eventId as string,
      tenantId: row.tenantId,
      conversationId: row.conversationId,
      seq: eventSeq as number,
      type: "MESSAGE_ADDED",
      data: eventData as ConversationEvent["data"],
      createdAt: message.createdAt,
    },
  };
}

/** Mentioned users must be members of the conversation; anything else is refused. */
async function resolveMentions(ctx: Context, conversationId: string, ids: readonly string[]): Promise<string[]> {
  const userIds = parseIds("input.mentionedUserIds", ids, MAX_MENTIONS);
  if (userIds.length === 0) return [];
  const members = await ctx.prisma.member.findMany({
    where: { conversationId, userId: { in: userIds } },
    select: { userId: true },
  });
  if (members.length !== userIds.length) {
    throw badInput("input.mentionedUserIds", "Only members of the conversation can be mentioned");
  }
  return userIds;
}

/** Attachments go with the message their uploader sends, in the conversation they were uploaded to. */
async function claimableAttachments(
  ctx: Context,
  conversationId: string,
  senderId: string | null,
  ids: readonly string[],
): Promise<string[]> {
  const attachmentIds = parseIds("input.attachmentIds", ids, MAX_ATTACHMENTS);
  if (attachmentIds.length === 0) return [];
  const rows = await ctx.prisma.attachment.findMany({
    where: { tenantId: tenantOf(ctx), id: { in: attachmentIds }, conversationId },
  });
  if (rows.length !== attachmentIds.length) throw notFound("Attachment");
  for (const row of rows) {
    if (row.messageId) throw conflict("An attachment was sent with another message", "input.attachmentIds");
    if (actingUserId(ctx) && row.uploaderId !== senderId) throw forbidden("Only the uploader may send an attachment");
  }
  return attachmentIds;
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
function messagesAfter(
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

/** Read receipts follow the tenant role: moving the read horizon needs chats:read. */
export async function markRead(ctx: Context, conversationId: string, upToMessageId: string) {
  const userId = requireUserPrincipal(ctx, "markRead");
  if (!(await hasPermission(ctx, "chats:read"))) throw forbidden("Marking messages read needs chats:read");
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

/** Typing announces a message on its way, so it needs what sending does: chats:create. */
export async function setTyping(ctx: Context, conversationId: string, isTyping: boolean): Promise<boolean> {
  const userId = requireUserPrincipal(ctx, "setTyping");
  if (!(await hasPermission(ctx, "chats:create"))) throw forbidden("Typing indicators need chats:create");
  const { conversation } = await requireConversation(ctx, conversationId, "conversationId");
  const payload: TypingPayload = { conversationId: conversation.id, userId, isTyping };
  await ctx.deps.pubsub.publish(topics.typing(conversation.tenantId, conversation.id), payload);
  return true;
}

const editMessageInput = perLimit((maxLength: number) =>
  z.object({ body: zBody(maxLength), data: zCustomData.nullish() }),
);

async function requireMessage(ctx: Context, id: string, field = "id") {
  const message = await ctx.prisma.message.findFirst({ where: { id: parseId(field, id), tenantId: tenantOf(ctx) } });
  if (!message) throw notFound("Message");
  // Reading (and so acting on) a message needs access to its conversation.
  await requireConversation(ctx, message.conversationId, field);
  return message;
}

/**
 * Locks a message until the transaction ends and reads it as it is now. Every change to a
 * message (edit, delete, pin, reaction) takes this lock first, so changes to one message
 * apply one at a time, each deciding on and recording the row the previous one committed:
 * an event's snapshot is never older than the event before it.
 *
 * The conversation row is locked before the message row: the order sendMessage (a reply
 * checks its parent) and deleteGroup (which deletes the messages) take them in, so these
 * never wait on each other in a cycle. Both locks are FOR NO KEY UPDATE, the lock an
 * UPDATE of those rows takes anyway: it serializes changes without blocking the key-share
 * locks of foreign-key checks from rows that point at them (replies, reactions, events).
 */
async function lockMessage(tx: TransactionClient, message: Pick<Message, "id" | "conversationId">): Promise<Message> {
  await tx.$queryRaw`SELECT 1 FROM "Conversation" WHERE "id" = ${message.conversationId}::uuid FOR NO KEY UPDATE`;
  const [locked] = await tx.$queryRaw<{ id: string }[]>`
    SELECT "id" FROM "Message" WHERE "id" = ${message.id}::uuid FOR NO KEY UPDATE`;
  if (!locked) throw notFound("Message");
  return tx.message.findUniqueOrThrow({ where: { id: message.id } });
}

/** The message as events record it: a deleted message's snapshot never carries text or data. */
function snapshotOf(message: Message): Message {
  return message.deletedAt ? { ...message, body: null, data: null } : message;
}

/**
 * Applies a change to a message and records its event in one transaction, then announces
 * it. `change` gets the locked, current row and returns the row after the change, or null
 * when there was nothing to change (a repeat); `extra` adds to the event's data.
 */
async function changeMessage<K extends MessageEventType>(
  ctx: Context,
  message: Message,
  type: K,
  change: (tx: TransactionClient, current: Message) => Promise<Message | null>,
  extra?: (tx: TransactionClient, changed: Message) => Promise<Omit<EventDataByType[K], "message">>,
): Promise<Message> {
  const [updated, events] = await ctx.prisma.$transaction(async (tx) => {
    const current = await lockMessage(tx, message);
    const next = await change(tx, current);
    if (!next) return [current, [] as ConversationEvent[]] as const;
    const recorded = await appendEvents(tx, ctx.deps.webhooks, message.tenantId, message.conversationId, [
      newEvent(type, actingUserId(ctx), {
        message: snapshotOf(next),
        ...(extra ? await extra(tx, next) : {}),
      } as EventDataByType[K]),
    ]);
    return [next, recorded] as const;
  });
  await publishEvents(ctx, events);
  return updated;
}

/** A deleted message's text must not survive in the event history either. */
async function eraseFromHistory(tx: TransactionClient, message: Message, deletedAt: Date): Promise<void> {
  // Every event whose snapshot is this message: `data->'message'->>'id'`, inside its conversation.
  const rows = await tx.conversationEvent.findMany({
    where: { conversationId: message.conversationId, data: { path: ["message", "id"], equals: message.id } },
  });
  for (const row of rows) {
    const event = eventCodec.decode(row);
    if (!("message" in event.data)) continue;
    const erased = {
      ...event,
      data: { ...event.data, message: { ...event.data.message, body: null, data: null, deletedAt } },
    };
    await tx.conversationEvent.update({ where: { id: row.id }, data: { data: eventCodec.encode(erased) } });
  }
  // Nor in what webhooks were (or are still to be) sent.
  await tx.$executeRaw`
    UPDATE "WebhookDelivery"
       SET "payload" = jsonb_set("payload", '{message}', ("payload"->'message')
             || jsonb_build_object('body', NULL, 'data', NULL, 'deletedAt', ${deletedAt.toISOString()}::text))
     WHERE "messageId" = ${message.id}::uuid AND "tenantId" = ${message.tenantId}::uuid`;
}

/**
 * Senders edit their own messages (chats:update); the API key may edit any. The body is
 * replaced; for a CUSTOM message a blank body removes the fallback text and `data`, when
 * given, replaces its data (customType never changes). Other messages take no data.
 */
export async function editMessage(ctx: Context, id: string, body: string, data?: unknown): Promise<Message> {
  const validated = validate(editMessageInput(ctx.deps.config.maxMessageLength), { body, data }, "");
  const filter = await ctx.deps.safety.wordFilter(tenantOf(ctx));
  const input = {
    ...validated,
    ...filterMessageText(filter, { body: "body", data: "data" }, validated.body, validated.data),
  };
  const message = await requireMessage(ctx, id);
  const userId = actingUserId(ctx);
  if (userId && message.senderId !== userId) throw forbidden("Only the sender may edit a message");
  const custom = message.type === "CUSTOM";
  if (!custom && input.data != null) throw badInput("data", "data can only be edited on CUSTOM messages");
  if (!custom && !input.body.trim()) throw badInput("body", "body must not be empty");
  return changeMessage(ctx, message, "MESSAGE_EDITED", async (tx, current) => {
    if (current.deletedAt) throw badInput("id", "A deleted message cannot be edited");
    return tx.message.update({
      where: { id: current.id },
      data: {
        body: custom && !input.body.trim() ? null : input.body,
        ...(custom && input.data != null ? { data: input.data as Prisma.InputJsonObject } : {}),
        editedAt: new Date(),
      },
    });
  });
}

/**
 * Deletes a message, leaving a tombstone: no body (in the row, the search index and every
 * event that copied it), who deleted it and when. Own messages need chats:delete; others'
 * need chats:moderate. Deleting twice is harmless.
 */
export async function deleteMessage(ctx: Context, id: string): Promise<Message> {
  return deleteLoadedMessage(ctx, await requireMessage(ctx, id));
}

/** deleteMessage of a message already read (and, where the caller needs it, checked for access). */
export async function deleteLoadedMessage(ctx: Context, message: Message): Promise<Message> {
  const userId = actingUserId(ctx);
  const own = userId !== null && message.senderId === userId;
  if (!(await hasPermission(ctx, own ? "chats:delete" : "chats:moderate"))) {
    throw forbidden(own ? "Deleting messages needs chats:delete" : "Deleting others' messages needs chats:moderate");
  }
  if (message.deletedAt) return message;
  let discarded: string[] = [];
  const deleted = await changeMessage(ctx, message, "MESSAGE_DELETED", async (tx, current) => {
    if (current.deletedAt) return null;
    const deletedAt = new Date();
    // The search trigger recomputes the search vector from the (now empty) body.
    const deleted = await tx.message.update({
      where: { id: current.id },
      data: {
        body: null,
        data: Prisma.DbNull,
        deletedAt,
        deletedById: userId,
        pinned: false,
        pinnedAt: null,
        pinnedById: null,
      },
    });
    // A tombstone carries nothing: its text, attachments and reactions go, history included.
    await tx.reaction.deleteMany({ where: { messageId: current.id } });
    discarded = await discardAttachments(tx, { tenantId: current.tenantId, messageId: current.id });
    await eraseFromHistory(tx, current, deletedAt);
    if (!own) {
      await audit(ctx, "message.moderated", { type: "Message", id: current.id }, { senderId: current.senderId }, tx);
    }
    return deleted;
  });
  // Only now that the deletion is committed: a rolled-back one must keep its files.
  await removeAttachmentFiles(ctx.deps, discarded, ctx.requestId);
  return deleted;
}

/** Any member may pin or unpin a message of their conversation; repeating it changes nothing. */
export async function setPinned(ctx: Context, id: string, pinned: boolean): Promise<Message> {
  const message = await requireMessage(ctx, id);
  if (message.deletedAt) throw badInput("id", "A deleted message cannot be pinned");
  if (message.pinned === pinned) return message;
  return changeMessage(ctx, message, pinned ? "MESSAGE_PINNED" : "MESSAGE_UNPINNED", async (tx, current) => {
    if (current.deletedAt) throw badInput("id", "A deleted message cannot be pinned");
    if (current.pinned === pinned) return null;
    return tx.message.update({
      where: { id: current.id },
      data: pinned
        ? { pinned: true, pinnedAt: new Date(), pinnedById: actingUserId(ctx) }
        : { pinned: false, pinnedAt: null, pinnedById: null },
    });
  });
}

// One emoji: a single RGI emoji, including skin tones, flags and ZWJ sequences.
const EMOJI = /^\p{RGI_Emoji}$/v;

export interface ReactionGroup {
  emoji: string;
  count: number;
  userIds: string[];
}

/** Reactions of messages grouped by emoji, oldest emoji first. */
export async function reactionGroups(
  prisma: Pick<PrismaClient, "reaction">,
  messageIds: readonly string[],
): Promise<Map<string, ReactionGroup[]>> {
  const rows = await prisma.reaction.findMany({
    where: { messageId: { in: [...messageIds] } },
    orderBy: [{ createdAt: "asc" }, { userId: "asc" }],
  });
  const byMessage = new Map<string, Map<string, ReactionGroup>>();
  for (const row of rows) {
    const groups = byMessage.get(row.messageId) ?? new Map<string, ReactionGroup>();
    byMessage.set(row.messageId, groups);
    const group = groups.get(row.emoji) ?? { emoji: row.emoji, count: 0, userIds: [] };
    groups.set(row.emoji, group);
    group.count += 1;
    group.userIds.push(row.userId);
  }
  return new Map([...byMessage].map(([id, groups]) => [id, [...groups.values()]]));
}

/** One reaction per user per emoji: adding twice or removing what is not there changes nothing. */
export async function setReaction(ctx: Context, messageId: string, emoji: string, add: boolean): Promise<Message> {
  const userId = requireUserPrincipal(ctx, add ? "addReaction" : "removeReaction");
  const trimmed = emoji.trim();
  if (trimmed.length > 64 || !EMOJI.test(trimmed)) throw badInput("emoji", "emoji must be a single emoji");
  const message = await requireMessage(ctx, messageId, "messageId");
  if (message.deletedAt) throw badInput("messageId", "A deleted message cannot be reacted to");
  const key = { messageId_userId_emoji: { messageId: message.id, userId, emoji: trimmed } };
  const exists = await ctx.prisma.reaction.findUnique({ where: key });
  if (!!exists === add) return message;
  return changeMessage(
    ctx,
    message,
    "REACTION_CHANGED",
    async (tx, current) => {
      // Checked again under the lock: a deletion may have committed since the read above.
      if (current.deletedAt) throw badInput("messageId", "A deleted message cannot be reacted to");
      const { count } = add
        ? await tx.reaction.createMany({
            data: [{ tenantId: message.tenantId, messageId: message.id, userId, emoji: trimmed }],
            skipDuplicates: true,
          })
        : await tx.reaction.deleteMany({ where: { messageId: message.id, userId, emoji: trimmed } });
      ctx.loaders.reactions.clear(message.id);
      return count ? current : null;
    },
    async (tx) => ({
      emoji: trimmed,
      userId,
      added: add,
      reactions: (await reactionGroups(tx, [message.id])).get(message.id) ?? [],
    }),
  );
}

/** A thread: replies to a message, oldest first. */
export async function repliesPage(
  ctx: Context,
  message: Message,
  args: { first?: number | null; after?: string | null },
) {
  const first = pageSize("first", args.first, 20);
  const afterSeq = args.after ? seqFromCursor("after", args.after, message.conversationId) : null;
  const rows = await ctx.prisma.message.findMany({
    where: {
      tenantId: message.tenantId,
      conversationId: message.conversationId,
      replyToId: message.id,
      ...(afterSeq !== null ? { seq: { gt: afterSeq } } : {}),
    },
    orderBy: { seq: "asc" },
    take: first + 1,
  });
  return connectionOf(rows.slice(0, first), cursorOfMessage, {
    hasNextPage: rows.length > first,
    hasPreviousPage: afterSeq !== null,
  });
}

export const searchInput = z.object({ query: zText(200) });

/**
 * Full-text search over the messages the viewer can read, best match first (PostgreSQL
 * `websearch_to_tsquery`: words, "quoted phrases", -exclusions, OR). Deleted messages
 * are never found.
 */
export async function searchMessages(
  ctx: Context,
  args: { query: string; conversationId?: string | null; first?: number | null; after?: string | null },
) {
  const { query } = validate(searchInput, { query: args.query }, "");
  const tenantId = tenantOf(ctx);
  const userId = actingUserId(ctx);
  let offset = 0;
  if (args.after) {
    [offset] = decodeCursor("after", args.after, "s1", ["offset"]);
  }
  // Pages stop at MAX_CURSOR_OFFSET, so every cursor handed out is one decodeCursor accepts.
  const first = Math.min(pageSize("first", args.first, 20), MAX_CURSOR_OFFSET - offset);
  const conversationId = args.conversationId
    ? (await requireConversation(ctx, args.conversationId, "conversationId")).conversation.id
    : null;
  const hits = await ctx.prisma.$queryRaw<{ id: string }[]>`
    SELECT m."id"
      FROM "Message" m, websearch_to_tsquery('simple', ${query}) q
     WHERE m."tenantId" = ${tenantId}::uuid
       AND m."deletedAt" IS NULL
       AND m."searchVector" @@ q
       AND (${conversationId}::uuid IS NULL OR m."conversationId" = ${conversationId}::uuid)
       AND (${userId}::uuid IS NULL OR EXISTS (
             SELECT 1 FROM "Member" mb
              WHERE mb."conversationId" = m."conversationId" AND mb."userId" = ${userId}::uuid))
     ORDER BY ts_rank(m."searchVector", q) DESC, m."createdAt" DESC, m."id" DESC
     LIMIT ${first + 1} OFFSET ${offset}`;
  const ids = hits.slice(0, first).map((hit) => hit.id);
  const rows = await ctx.prisma.message.findMany({ where: { id: { in: ids } } });
  const byId = new Map(rows.map((row) => [row.id, row]));
  const nodes = ids.map((id) => byId.get(id)).filter((row): row is Message => !!row);
  return {
    edges: nodes.map((node, index) => ({ cursor: encodeCursor("s1", [offset + index + 1]), node })),
    pageInfo: {
      hasNextPage: hits.length > first && offset + first < MAX_CURSOR_OFFSET,
      hasPreviousPage: offset > 0,
      startCursor: nodes.length ? encodeCursor("s1", [offset + 1]) : null,
      endCursor: nodes.length ? encodeCursor("s1", [offset + nodes.length]) : null,
    },
  };
}

/** New messages: `messageAdded`. */
export const messageSource: SequencedSource<Message, WireMessage> = {
  store: { kind: "messages", table: "Message", counter: "lastSeq" },
  topic: topics.messages,
  revive: reviveMessage,
  conversationOf: (message) => message.conversationId,
  seqOf: (message) => message.seq,
  currentSeq: (conversation) => conversation.lastSeq,
  joinedSeq: (event) => event.seq,
  fetchAfter: (ctx, tenantId, conversationId, afterSeq, limit) =>
    messagesAfter(ctx.prisma, tenantId, conversationId, afterSeq, limit),
  async seqBefore(ctx, conversationId, joinedAt) {
    const before = await ctx.prisma.message.findFirst({
      where: { conversationId, createdAt: { lt: joinedAt } },
      orderBy: { seq: "desc" },
      select: { seq: true },
    });
    return before?.seq ?? 0;
  },
};

export function messageFeed(ctx: Context, options: FeedOptions): AsyncGenerator<FeedItem<Message>> {
  return sequencedFeed(ctx, options, messageSource);
}
