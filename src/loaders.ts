import DataLoader from "dataloader";
import type { Principal } from "./auth/principal.ts";
import type { PrismaClient } from "./db/client.ts";
import type { Attachment, Member } from "./generated/prisma/client.ts";
import { type ReactionGroup, reactionGroups } from "./services/messages.ts";

/** Per-request batching of the reads that list fields repeat per row. */
export interface Loaders {
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

/**
 * Loaders over a (tenant-scoped) client for one principal. Long-lived contexts pass
 * cache: false, so every event reads current state.
 */
export function createLoaders(prisma: PrismaClient, principal: Principal | null, cache: boolean): Loaders {
  const userId = principal?.kind === "user" ? principal.userId : null;
  const tenantId = principal?.tenantId ?? "";
  return lazily<Loaders>({
    membership: () =>
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
    memberCount: () =>
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
    unreadCount: () =>
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
    unreadMentions: () =>
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
    reactions: () =>
      new DataLoader(
        async (messageIds) => {
          const groups = await reactionGroups(prisma, messageIds);
          return messageIds.map((id) => groups.get(id) ?? []);
        },
        { cache },
      ),
    mentions: () =>
      new DataLoader(
        async (messageIds) => {
          const rows = await prisma.mention.findMany({ where: { messageId: { in: [...messageIds] } } });
          return messageIds.map((id) => rows.filter((row) => row.messageId === id).map((row) => row.userId));
        },
        { cache },
      ),
    replyCount: () =>
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
    attachments: () =>
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
  });
}

/**
 * An object whose properties are built on first use: a context (one per request, or per
 * live subscription) pays only for the loaders it reads.
 */
function lazily<T extends object>(factories: { [K in keyof T]: () => T[K] }): T {
  const target = {} as T;
  for (const key of Object.keys(factories) as (keyof T)[]) {
    Object.defineProperty(target, key, {
      configurable: true,
      enumerable: true,
      get() {
        const value = factories[key]();
        Object.defineProperty(target, key, { value, enumerable: true });
        return value;
      },
    });
  }
  return target;
}
