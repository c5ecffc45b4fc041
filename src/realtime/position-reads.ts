import { Prisma, type PrismaClient } from "../generated/prisma/client.ts";
import { type DbSnapshot, parseSnapshot, type StreamCursor, type StreamKind, snapshotText } from "./positions.ts";

/** Where a stream's rows and its per-conversation counter live. */
export interface StreamStore {
  kind: StreamKind;
  table: "Message" | "ConversationEvent";
  counter: "lastSeq" | "lastEventSeq";
}

/** A snapshot and, as that snapshot sees them, the counters of some conversations. */
export interface Counters {
  snapshot: DbSnapshot;
  /** Database time of the snapshot, seconds since the epoch. */
  at: number;
  seqs: Map<string, number>;
}

/**
 * One statement, so one snapshot for all of it: `pg_current_snapshot()` is the snapshot the
 * statement reads with, and each counter is bumped in the transaction that stores its row,
 * so a counter seen here is exactly the last row of its conversation the snapshot sees.
 */
export async function readCounters(
  prisma: PrismaClient,
  store: StreamStore,
  tenantId: string,
  conversationIds: string[],
): Promise<Counters> {
  const counter = Prisma.raw(`c."${store.counter}"`);
  const rows = await prisma.$queryRaw<{ snapshot: string; at: number; id: string | null; seq: number | null }[]>`
    WITH taken AS (SELECT pg_current_snapshot()::text AS snapshot, extract(epoch FROM now())::float8 AS at)
    SELECT taken.snapshot, taken.at, c."id", ${counter} AS seq
      FROM taken
      LEFT JOIN "Conversation" c ON c."tenantId" = ${tenantId}::uuid AND c."id" = ANY(${conversationIds}::uuid[])`;
  const first = rows[0];
  if (!first) throw new Error("no snapshot read");
  const seqs = new Map<string, number>();
  for (const row of rows) if (row.id !== null && row.seq !== null) seqs.set(row.id, row.seq);
  return { snapshot: parseSnapshot(first.snapshot), at: Math.floor(first.at), seqs };
}

/** Where a resumed stream starts in one conversation. */
export interface ResumePoint {
  from: number;
  /** Whether `from` is not what the cursor's snapshot says (an exception of the new position). */
  exception: boolean;
}

/**
 * Where a stream resumed from `cursor` starts in each conversation it follows now: after the
 * cursor's exception for it, or else after its last row the cursor's snapshot sees (the
 * rows it does not see are what the stream had not delivered). A conversation the user
 * joined after the snapshot starts where they joined, as a live stream would.
 *
 * Each lookup walks the (conversationId, seq) index back from the newest row and stops at
 * the first one it wants, so it reads about as many rows as are replayed afterwards; no
 * other index is needed.
 */
export async function readResumePoints(
  prisma: PrismaClient,
  store: StreamStore,
  tenantId: string,
  userId: string | null,
  conversationIds: string[],
  cursor: StreamCursor,
): Promise<Map<string, ResumePoint>> {
  const table = Prisma.raw(`"${store.table}"`);
  const snapshot = snapshotText(cursor.snapshot);
  const excepted = [...cursor.entries.keys()];
  const visible = Prisma.sql`
    CASE WHEN c."id" = ANY(${excepted}::uuid[]) THEN NULL ELSE (
      SELECT i."seq" FROM ${table} i
       WHERE i."conversationId" = c."id"
         AND (i."txId" IS NULL OR pg_visible_in_snapshot(i."txId", ${snapshot}::pg_snapshot))
       ORDER BY i."seq" DESC LIMIT 1) END`;
  // joinedAt is written by the app's clock and the snapshot's time by the database's: a
  // minute of slack decides which memberships may be younger than the snapshot. Only those
  // are looked up, so the walk back to the join stays within what is replayed anyway.
  const rows = userId
    ? await prisma.$queryRaw<{ id: string; visible: number | null; beforeJoin: number | null }[]>`
        SELECT c."id", ${visible} AS visible,
               CASE WHEN m."joinedAt" > to_timestamp(${cursor.at}::float8) - interval '1 minute' THEN COALESCE((
                 SELECT i."seq" FROM ${table} i
                  WHERE i."conversationId" = c."id" AND i."createdAt" < m."joinedAt"
                  ORDER BY i."seq" DESC LIMIT 1), 0) END AS "beforeJoin"
          FROM "Conversation" c
          JOIN "Member" m ON m."conversationId" = c."id" AND m."userId" = ${userId}::uuid
         WHERE c."tenantId" = ${tenantId}::uuid AND c."id" = ANY(${conversationIds}::uuid[])`
    : await prisma.$queryRaw<{ id: string; visible: number | null; beforeJoin: number | null }[]>`
        SELECT c."id", ${visible} AS visible, NULL::int4 AS "beforeJoin"
          FROM "Conversation" c
         WHERE c."tenantId" = ${tenantId}::uuid AND c."id" = ANY(${conversationIds}::uuid[])`;
  const points = new Map<string, ResumePoint>();
  for (const row of rows) {
    const entry = cursor.entries.get(row.id);
    if (entry !== undefined) {
      points.set(row.id, { from: entry, exception: true });
      continue;
    }
    const seen = row.visible ?? 0;
    const joined = row.beforeJoin ?? 0;
    points.set(row.id, joined > seen ? { from: joined, exception: true } : { from: seen, exception: false });
  }
  return points;
}
