import DataLoader from "dataloader";
import type { Principal } from "./auth/principal.ts";
import type { PrismaClient } from "./db/client.ts";
import type { Attachment, Conversation, Member, Message, Role, User } from "./generated/prisma/client.ts";
import { type ReactionGroup, reactionGroups } from "./services/messages.ts";

/** The first `take` of a conversation's members, or of its pinned messages. */
export interface ListKey {
  conversationId: string;
  take: number;
}

/** Per-request batching of the reads that list fields repeat per row. */
export interface Loaders {
  /** Users by id (senders, members, reactors, mentioned users). */
  user: DataLoader<string, User | null>;
  /** Messages by id (replied-to messages). */
  message: DataLoader<string, Message | null>;
  /** Conversations by id (the conversation of a message). */
  conversation: DataLoader<string, Conversation | null>;
  /** The newest message that is not deleted, per conversation. */
  lastMessage: DataLoader<string, Message | null>;
  /** Members per conversation, in the order they joined. */
  members: DataLoader<ListKey, Member[]>;
  /** Pinned messages that are not deleted per conversation, most recently pinned first. */
  pinnedMessages: DataLoader<ListKey, Message[]>;
  /** Roles per user, by name. */
  userRoles: DataLoader<string, Role[]>;
  /** The viewer's membership in a conversation (null when not a member). */
  membership: DataLoader<string, Member | null>;
  /** Members per conversation. */
  memberCount: DataLoader<string, number>;
  /** Unread message count of the viewer per conversation. */
  unreadCount: DataLoader<string, number>;
  /** Messages mentioning the viewer after their read horizon, per conversation. */
  unreadMentions: DataLoader<string, number>;
  /** Reactions per message, grouped by emoji. */
  reactions: DataLoader<string, ReactionGroup[]>;
  /** Users mentioned per message. */
  mentions: DataLoader<string, string[]>;
  /** Replies per message (deleted ones excluded). */
  replyCount: DataLoader<string, number>;
  /** Attachments per message. */
  attachments: DataLoader<string, Attachment[]>;
}

/** What the loaders of one context are built from. */
interface LoaderEnv {
  prisma: PrismaClient;
  principal: Principal | null;
  cache: boolean;
  userId: string | null;
  tenantId: string;
}

/** Each loader, built from its context's environment on first use. */
const FACTORIES: { [K in keyof Loaders]: (env: LoaderEnv) => Loaders[K] } = {
  user: ({ prisma, cache }) =>
    new DataLoader(async (ids) => byId(ids, await prisma.user.findMany({ where: { id: { in: unique(ids) } } })), {
      cache,
    }),
  message: ({ prisma, cache }) =>
    new DataLoader(async (ids) => byId(ids, await prisma.message.findMany({ where: { id: { in: unique(ids) } } })), {
      cache,
    }),
  conversation: ({ prisma, cache }) =>
    new DataLoader(
      async (ids) => byId(ids, await prisma.conversation.findMany({ where: { id: { in: unique(ids) } } })),
      { cache },
    ),
  lastMessage: ({ prisma, principal, tenantId }) =>
    new DataLoader(
      async (conversationIds) => {
        if (!principal) return conversationIds.map(() => null);
        // One index probe per conversation on (conversationId, seq), newest first.
        const newest = await prisma.$queryRaw<{ id: string }[]>`
        SELECT last."id"
        FROM unnest(${unique(conversationIds)}::uuid[]) AS c("id")
        CROSS JOIN LATERAL (
          SELECT msg."id" FROM "Message" msg
          WHERE msg."conversationId" = c."id"
            AND msg."tenantId" = ${tenantId}::uuid
            AND msg."deletedAt" IS NULL
          ORDER BY msg."seq" DESC
          LIMIT 1
        ) AS last`;
        if (newest.length === 0) return conversationIds.map(() => null);
        const rows = await prisma.message.findMany({ where: { id: { in: newest.map((row) => row.id) } } });
        const byConversation = new Map(rows.map((row) => [row.conversationId, row]));
        return conversationIds.map((id) => byConversation.get(id) ?? null);
      },
      { cache: false },
    ),
  members: ({ prisma, principal, tenantId }) =>
    new DataLoader(
      async (keys) => {
        const take = Math.max(...keys.map((key) => key.take));
        if (!principal || take <= 0) return keys.map(() => []);
        const rows = await prisma.$queryRaw<Member[]>`
        SELECT "conversationId", "userId", "tenantId", "role"::text AS "role", "joinedAt", "lastReadSeq", "lastReadAt"
        FROM (
          SELECT m.*, row_number() OVER (PARTITION BY m."conversationId" ORDER BY m."joinedAt", m."userId") AS position
          FROM "Member" m
          WHERE m."tenantId" = ${tenantId}::uuid
            AND m."conversationId" = ANY(${unique(keys.map((key) => key.conversationId))}::uuid[])
        ) ranked
        WHERE position <= ${take}
        ORDER BY "conversationId", position`;
        return firstOfEach(keys, rows);
      },
      { cache: false },
    ),
  pinnedMessages: ({ prisma, principal, tenantId }) =>
    new DataLoader(
      async (keys) => {
        const take = Math.max(...keys.map((key) => key.take));
        if (!principal || take <= 0) return keys.map(() => []);
        const ranked = await prisma.$queryRaw<{ id: string }[]>`
        SELECT "id"
        FROM (
          SELECT msg."id",
                 row_number() OVER (PARTITION BY msg."conversationId" ORDER BY msg."pinnedAt" DESC, msg."seq" DESC) AS position
          FROM "Message" msg
          WHERE msg."tenantId" = ${tenantId}::uuid
            AND msg."conversationId" = ANY(${unique(keys.map((key) => key.conversationId))}::uuid[])
            AND msg."pinned"
            AND msg."deletedAt" IS NULL
        ) pinned
        WHERE position <= ${take}`;
        if (ranked.length === 0) return keys.map(() => []);
        const rows = await prisma.message.findMany({
          where: { id: { in: ranked.map((row) => row.id) } },
          orderBy: [{ pinnedAt: "desc" }, { seq: "desc" }],
        });
        return firstOfEach(keys, rows);
      },
      { cache: false },
    ),
  userRoles: ({ prisma }) =>
    new DataLoader(
      async (userIds) => {
        const rows = await prisma.userRole.findMany({
          where: { userId: { in: unique(userIds) } },
          include: { role: true },
          orderBy: { role: { name: "asc" } },
        });
        const byUser = grouped(rows, (row) => row.userId);
        return userIds.map((id) => (byUser.get(id) ?? []).map((row) => row.role));
      },
      { cache: false },
    ),
  membership: ({ prisma, cache, userId, tenantId }) =>
    new DataLoader(
      async (conversationIds) => {
        if (!userId) return conversationIds.map(() => null);
        const rows = await prisma.member.findMany({
          where: { tenantId, userId, conversationId: { in: [...conversationIds] } },
        });
        const byId = new Map(rows.map((row) => [row.conversationId, row]));
        return conversationIds.map((id) => byId.get(id) ?? null);
      },
      { cache },
    ),
  memberCount: ({ prisma, cache }) =>
    new DataLoader(
      async (conversationIds) => {
        const rows = await prisma.member.groupBy({
          by: ["conversationId"],
          where: { conversationId: { in: [...conversationIds] } },
          _count: { _all: true },
        });
        const byId = new Map(rows.map((row) => [row.conversationId, row._count._all]));
        return conversationIds.map((id) => byId.get(id) ?? 0);
      },
      { cache },
    ),
  unreadCount: ({ prisma, cache, userId, tenantId }) =>
    new DataLoader(
      async (conversationIds) => {
        if (!userId) return conversationIds.map(() => 0);
        const rows = await prisma.$queryRaw<{ conversationId: string; unread: bigint | number }[]>`
        SELECT m."conversationId", COUNT(msg.id) AS unread
        FROM "Member" m
        JOIN "Message" msg
          ON msg."conversationId" = m."conversationId"
         AND msg.seq > m."lastReadSeq"
         AND msg."deletedAt" IS NULL
         AND msg."senderId" IS DISTINCT FROM m."userId"
        WHERE m."tenantId" = ${tenantId}::uuid
          AND m."userId" = ${userId}::uuid
          AND m."conversationId" = ANY(${[...conversationIds]}::uuid[])
        GROUP BY m."conversationId"`;
        const byId = new Map(rows.map((row) => [row.conversationId, Number(row.unread)]));
        return conversationIds.map((id) => byId.get(id) ?? 0);
      },
      { cache },
    ),
  unreadMentions: ({ prisma, cache, userId, tenantId }) =>
    new DataLoader(
      async (conversationIds) => {
        if (!userId) return conversationIds.map(() => 0);
        const rows = await prisma.$queryRaw<{ conversationId: string; mentions: bigint | number }[]>`
        SELECT m."conversationId", COUNT(msg.id) AS mentions
        FROM "Member" m
        JOIN "Message" msg
          ON msg."conversationId" = m."conversationId"
         AND msg.seq > m."lastReadSeq"
         AND msg."deletedAt" IS NULL
        JOIN "Mention" mn ON mn."messageId" = msg.id AND mn."userId" = m."userId"
        WHERE m."tenantId" = ${tenantId}::uuid
          AND m."userId" = ${userId}::uuid
          AND m."conversationId" = ANY(${[...conversationIds]}::uuid[])
        GROUP BY m."conversationId"`;
        const byId = new Map(rows.map((row) => [row.conversationId, Number(row.mentions)]));
        return conversationIds.map((id) => byId.get(id) ?? 0);
      },
      { cache },
    ),
  reactions: ({ prisma, cache }) =>
    new DataLoader(
      async (messageIds) => {
        const groups = await reactionGroups(prisma, messageIds);
        return messageIds.map((id) => groups.get(id) ?? []);
      },
      { cache },
    ),
  mentions: ({ prisma, cache }) =>
    new DataLoader(
      async (messageIds) => {
        const rows = await prisma.mention.findMany({ where: { messageId: { in: [...messageIds] } } });
        return messageIds.map((id) => rows.filter((row) => row.messageId === id).map((row) => row.userId));
      },
      { cache },
    ),
  replyCount: ({ prisma, cache }) =>
    new DataLoader(
      async (messageIds) => {
        const rows = await prisma.message.groupBy({
          by: ["replyToId"],
          where: { replyToId: { in: [...messageIds] }, deletedAt: null },
          _count: { _all: true },
        });
        const byId = new Map(rows.map((row) => [row.replyToId, row._count._all]));
        return messageIds.map((id) => byId.get(id) ?? 0);
      },
      { cache },
    ),
  attachments: ({ prisma, cache }) =>
    new DataLoader(
      async (messageIds) => {
        const rows = await prisma.attachment.findMany({
          where: { messageId: { in: [...messageIds] } },
          orderBy: [{ createdAt: "asc" }, { id: "asc" }],
        });
        return messageIds.map((id) => rows.filter((row) => row.messageId === id));
      },
      { cache },
    ),
};

/**
 * A context's loaders: each is built on first use (a context, one per request or per live
 * subscription, pays only for the loaders it reads) by accessors shared on the prototype,
 * so an unused set costs one small object.
 */
class LazyLoaders implements LoaderEnv {
  constructor(
    readonly prisma: PrismaClient,
    readonly principal: Principal | null,
    readonly cache: boolean,
    readonly userId: string | null,
    readonly tenantId: string,
  ) {}
}

for (const key of Object.keys(FACTORIES) as (keyof Loaders)[]) {
  Object.defineProperty(LazyLoaders.prototype, key, {
    configurable: true,
    enumerable: true,
    get(this: LazyLoaders) {
      const value = FACTORIES[key](this);
      Object.defineProperty(this, key, { value, enumerable: true });
      return value;
    },
  });
}

/**
 * Loaders over a (tenant-scoped) client for one principal. Long-lived contexts pass
 * cache: false, so every event reads current state. Lists that mutations change (members,
 * roles, pinned and last messages) never cache: each is read once per parent anyway, and a
 * document with several mutations must see each one's result.
 */
export function createLoaders(prisma: PrismaClient, principal: Principal | null, cache: boolean): Loaders {
  const userId = principal?.kind === "user" ? principal.userId : null;
  return new LazyLoaders(prisma, principal, cache, userId, principal?.tenantId ?? "") as LazyLoaders & Loaders;
}

/** Without repeats: a loader without a cache hands its batch every load, repeats included. */
function unique(ids: readonly string[]): string[] {
  return [...new Set(ids)];
}

function grouped<T>(rows: readonly T[], keyOf: (row: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const row of rows) {
    const key = keyOf(row);
    const group = groups.get(key);
    if (group) group.push(row);
    else groups.set(key, [row]);
  }
  return groups;
}

/** Per key, the first `take` of its conversation's rows (rows in list order). */
function firstOfEach<T extends { conversationId: string }>(keys: readonly ListKey[], rows: readonly T[]): T[][] {
  const byConversation = grouped(rows, (row) => row.conversationId);
  return keys.map((key) => (byConversation.get(key.conversationId) ?? []).slice(0, key.take));
}

/** Rows in the order of the ids asked for; null where there is none. */
function byId<T extends { id: string }>(ids: readonly string[], rows: T[]): (T | null)[] {
  const found = new Map(rows.map((row) => [row.id, row]));
  return ids.map((id) => found.get(id) ?? null);
}
