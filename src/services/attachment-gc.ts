import { basename } from "node:path";
import type { AppDeps } from "../context.ts";
import type { PrismaClient } from "../generated/prisma/client.ts";

/**
 * Garbage collection of attachment files. Rows go inside the transaction that makes them
 * obsolete (a deleted message, a deleted group); files go only after that transaction
 * committed, so a rolled-back change never loses bytes. A file that cannot be removed then
 * stays behind without a row, and the periodic sweep removes it later. The sweep also
 * removes uploads nobody sent within UPLOAD_ORPHAN_TTL_SECONDS.
 */

export type GcDeps = Pick<AppDeps, "db" | "attachments" | "log" | "config">;

type Tx = Pick<PrismaClient, "$queryRaw">;

const BATCH_SIZE = 500;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Deletes the attachment rows of a message or of a whole conversation and returns their
 * storage keys, for removeAttachmentFiles once the transaction has committed.
 */
export async function discardAttachments(
  tx: Tx,
  scope: { tenantId: string } & ({ messageId: string } | { conversationId: string }),
): Promise<string[]> {
  const rows =
    "messageId" in scope
      ? await tx.$queryRaw<{ storageKey: string }[]>`
          DELETE FROM "Attachment"
           WHERE "tenantId" = ${scope.tenantId}::uuid AND "messageId" = ${scope.messageId}::uuid
          RETURNING "storageKey"`
      : await tx.$queryRaw<{ storageKey: string }[]>`
          DELETE FROM "Attachment"
           WHERE "tenantId" = ${scope.tenantId}::uuid AND "conversationId" = ${scope.conversationId}::uuid
          RETURNING "storageKey"`;
  return rows.map((row) => row.storageKey);
}

/**
 * Removes stored files whose rows are gone. Never throws: a failure is logged and the
 * file, now without a row, is left to the sweep. Returns how many could not be removed.
 */
export async function removeAttachmentFiles(
  deps: Pick<AppDeps, "attachments" | "log">,
  keys: readonly string[],
  requestId?: string,
): Promise<number> {
  let failed = 0;
  for (const key of keys) {
    try {
      await deps.attachments.delete(key);
    } catch (error) {
      failed += 1;
      deps.log.warn({ err: error, storageKey: key, requestId }, "attachment file removal failed; the sweep retries");
    }
  }
  return failed;
}

export interface SweepOptions {
  /** Overrides UPLOAD_ORPHAN_TTL_SECONDS. */
  ttlSeconds?: number;
  /** Stops between batches (the server is shutting down). */
  signal?: AbortSignal;
}

export interface SweepResult {
  /** Unsent uploads older than the TTL whose rows were deleted. */
  unsent: number;
  /** Stored files older than the TTL that had no row. */
  strays: number;
  /** Files that could not be removed (logged; tried again next time). */
  failed: number;
}

/**
 * One garbage-collection pass: deletes unsent uploads older than the TTL (rows, then
 * files), then lists the store and removes files older than the TTL that have no row
 * (a failed removal, a process that died between writing a file and inserting its row).
 * Safe to run on several instances at once: each row is deleted by exactly one of them
 * (SKIP LOCKED, DELETE ... RETURNING) and removing a removed file is not an error.
 */
export async function sweepAttachments(
  deps: GcDeps,
  now: Date = new Date(),
  options: SweepOptions = {},
): Promise<SweepResult> {
  const ttlSeconds = options.ttlSeconds ?? deps.config.uploadOrphanTtlSeconds;
  const cutoff = new Date(now.getTime() - ttlSeconds * 1000);
  const { prisma } = deps.db;
  const result: SweepResult = { unsent: 0, strays: 0, failed: 0 };

  while (!options.signal?.aborted) {
    const rows = await prisma.$queryRaw<{ storageKey: string }[]>`
      DELETE FROM "Attachment"
       WHERE "id" IN (
         SELECT "id" FROM "Attachment"
          WHERE "messageId" IS NULL AND "createdAt" < ${cutoff}::timestamptz
          LIMIT ${BATCH_SIZE}
            FOR UPDATE SKIP LOCKED)
      RETURNING "storageKey"`;
    result.unsent += rows.length;
    result.failed += await removeAttachmentFiles(
      deps,
      rows.map((row) => row.storageKey),
    );
    if (rows.length < BATCH_SIZE) break;
  }

  const removeStrays = async (keys: string[]) => {
    // Keys are `<tenant>/<attachment id>`: look the ids up by primary key.
    const ids = keys.map((key) => basename(key)).filter((name) => UUID.test(name));
    const known = ids.length
      ? await prisma.$queryRaw<{ storageKey: string }[]>`
          SELECT "storageKey" FROM "Attachment" WHERE "id" = ANY(${ids}::uuid[])`
      : [];
    const referenced = new Set(known.map((row) => row.storageKey));
    const strays = keys.filter((key) => !referenced.has(key));
    const failed = await removeAttachmentFiles(deps, strays);
    result.strays += strays.length - failed;
    result.failed += failed;
  };
  let batch: string[] = [];
  for await (const file of deps.attachments.list()) {
    if (options.signal?.aborted) return result;
    // A younger file may belong to an upload whose row is being inserted right now.
    if (file.modifiedAt >= cutoff) continue;
    batch.push(file.key);
    if (batch.length >= BATCH_SIZE) {
      await removeStrays(batch);
      batch = [];
    }
  }
  if (batch.length) await removeStrays(batch);
  return result;
}

/** How often the sweep runs: a quarter of the TTL, between one minute and one hour. */
export function sweepIntervalMs(ttlSeconds: number): number {
  return Math.min(3_600, Math.max(60, ttlSeconds / 4)) * 1000;
}

export interface AttachmentSweeper {
  /** Cancels the next sweep and waits for a running one to reach a stopping point. */
  stop(): Promise<void>;
}

/**
 * Runs sweepAttachments periodically. The next sweep is scheduled only when the previous
 * one finished, so sweeps never overlap; the timer does not keep the process alive.
 */
export function startAttachmentSweeper(
  deps: GcDeps,
  intervalMs = sweepIntervalMs(deps.config.uploadOrphanTtlSeconds),
): AttachmentSweeper {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  const schedule = (delay: number) => {
    if (controller.signal.aborted) return;
    timer = setTimeout(run, delay);
    timer.unref();
  };
  const run = () => {
    running = sweepAttachments(deps, new Date(), { signal: controller.signal })
      .then((result) => {
        if (result.unsent || result.strays || result.failed) deps.log.info(result, "attachments swept");
      })
      .catch((error: unknown) => {
        if (!controller.signal.aborted) deps.log.warn({ err: error }, "attachment sweep failed");
      })
      .finally(() => {
        running = undefined;
        schedule(intervalMs);
      });
  };
  // Instances started together should not all sweep at the same moment.
  schedule(intervalMs * (0.5 + Math.random() / 2));

  return {
    async stop() {
      controller.abort();
      clearTimeout(timer);
      await running;
    },
  };
}
