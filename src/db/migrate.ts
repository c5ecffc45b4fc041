// Applies prisma/migrations/*/migration.sql at server start, without the Prisma CLI's
// native schema engine. The bookkeeping table is the one `prisma migrate deploy`
// maintains, row for row, so either tool can take over from the other.

import { createHash, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { SqlConnection, SqlDatabase } from "./sql.ts";

/**
 * The project's prisma/migrations, found upward from this module: it runs from src/db as
 * source and from dist/ as the built server.
 */
function findMigrationsDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (let dir = here; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "prisma", "migrations");
    if (existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) return path.resolve(here, "../../prisma/migrations");
  }
}

export const defaultMigrationsDir = findMigrationsDir();

export const MIGRATIONS_TABLE = "_prisma_migrations";

/**
 * The key Prisma's schema engine passes to pg_advisory_lock on PostgreSQL. Using the
 * same key keeps this runner and a concurrent `prisma migrate deploy` from interleaving:
 * session and transaction-level advisory locks on one key exclude each other.
 */
export const MIGRATION_LOCK_KEY = 72707369;

// Same definition as the schema engine's, column for column.
const CREATE_TABLE_SQL = `CREATE TABLE IF NOT EXISTS "${MIGRATIONS_TABLE}" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`;

export interface MigrationFile {
  /** Directory name, e.g. `20250101120000_init`; also the `migration_name` recorded. */
  name: string;
  script: string;
  checksum: string;
}

interface MigrationRow {
  migration_name: string;
  checksum: string;
  finished_at: Date | string | null;
  rolled_back_at: Date | string | null;
  started_at: Date | string;
  logs: string | null;
}

export interface ApplyMigrationsOptions {
  migrationsDir?: string;
  log?: (msg: string) => void;
}

/** sha256 of the script, lower-case hex: what Prisma stores in `_prisma_migrations.checksum`. */
export function migrationChecksum(script: string): string {
  return createHash("sha256").update(script, "utf8").digest("hex");
}

/**
 * Mirrors the engine's comparison: a checkout that converted line endings still
 * matches, and so do checksums written unpadded by old engine versions.
 */
export function scriptMatchesChecksum(script: string, checksum: string): boolean {
  const candidates = [script, script.replaceAll("\r\n", "\n"), script.replaceAll("\n", "\r\n")];
  return candidates.some((candidate) => {
    const digest = createHash("sha256").update(candidate, "utf8").digest();
    const rendered =
      checksum.length !== 0 && checksum.length !== 64
        ? Array.from(digest, (byte) => byte.toString(16)).join("")
        : digest.toString("hex");
    return rendered === checksum;
  });
}

export async function readMigrationFiles(migrationsDir: string = defaultMigrationsDir): Promise<MigrationFile[]> {
  let entries: import("node:fs").Dirent[];
  try {
    entries = await readdir(migrationsDir, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  const names = entries
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    // Code-unit order, not locale order: migration names are timestamps.
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const files: MigrationFile[] = [];
  for (const name of names) {
    const file = path.join(migrationsDir, name, "migration.sql");
    let script: string;
    try {
      script = await readFile(file, "utf8");
    } catch (error) {
      throw new Error(`Migration ${name}: cannot read ${file}: ${(error as Error).message}`, { cause: error });
    }
    files.push({ name, script, checksum: migrationChecksum(script) });
  }
  return files;
}

function isApplied(row: MigrationRow): boolean {
  return row.finished_at !== null && row.rolled_back_at === null;
}

function isFailed(row: MigrationRow): boolean {
  return row.finished_at === null && row.rolled_back_at === null;
}

async function tableExists(conn: SqlConnection): Promise<boolean> {
  const [row] = await conn.query<{ present: boolean }>(
    `SELECT to_regclass('"${MIGRATIONS_TABLE}"') IS NOT NULL AS present`,
  );
  return row?.present === true;
}

async function readRows(conn: SqlConnection): Promise<MigrationRow[]> {
  return conn.query<MigrationRow>(
    `SELECT migration_name, checksum, finished_at, rolled_back_at, started_at, logs
       FROM "${MIGRATIONS_TABLE}" ORDER BY started_at, migration_name`,
  );
}

function formatTime(value: Date | string): string {
  return value instanceof Date ? value.toISOString() : String(value);
}

/** Throws when the history cannot be built on: a failed migration, or an applied one edited since. */
function checkHistory(rows: MigrationRow[], files: MigrationFile[], migrationsDir: string): void {
  const failed = rows.filter(isFailed);
  if (failed.length > 0) {
    const details = failed
      .map((row) => {
        const logs = row.logs?.trim() ? `; logs: ${row.logs.trim()}` : "";
        return `${row.migration_name} (started at ${formatTime(row.started_at)})${logs}`;
      })
      .join("\n  ");
    throw new Error(
      `Refusing to migrate: ${MIGRATIONS_TABLE} records ${failed.length === 1 ? "a failed migration" : "failed migrations"}:\n  ${details}\n` +
        "Repair the database by hand, then mark the row rolled back (or applied), e.g. with `prisma migrate resolve`.",
    );
  }
  const byName = new Map(files.map((file) => [file.name, file]));
  for (const row of rows.filter(isApplied)) {
    const file = byName.get(row.migration_name);
    if (file && !scriptMatchesChecksum(file.script, row.checksum)) {
      throw new Error(
        `Refusing to migrate: migration ${row.migration_name} was modified after it was applied ` +
          `(checksum of ${path.join(migrationsDir, row.migration_name, "migration.sql")} is ${file.checksum}, ` +
          `${MIGRATIONS_TABLE} records ${row.checksum}). Restore the applied file and put changes in a new migration.`,
      );
    }
  }
}

function pendingMigrations(rows: MigrationRow[], files: MigrationFile[]): MigrationFile[] {
  const applied = new Set(rows.filter(isApplied).map((row) => row.migration_name));
  return files.filter((file) => !applied.has(file.name));
}

function describeDatabaseError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const extra = error as Error & { code?: unknown; detail?: unknown; hint?: unknown; position?: unknown };
  const parts = [error.message];
  if (typeof extra.code === "string") parts.push(`(SQLSTATE ${extra.code})`);
  if (typeof extra.detail === "string" && extra.detail) parts.push(`Detail: ${extra.detail}`);
  if (typeof extra.hint === "string" && extra.hint) parts.push(`Hint: ${extra.hint}`);
  if (typeof extra.position === "string" && extra.position) parts.push(`at character ${extra.position}`);
  return parts.join(" ");
}

/**
 * Applies every migration not yet recorded as applied, each in one transaction with
 * its `_prisma_migrations` row, so a failure leaves neither partial DDL nor a row.
 * Instances starting together serialize on an advisory lock and re-check the history
 * under it, so each migration runs once.
 */
export async function applyMigrations(
  db: SqlDatabase,
  options: ApplyMigrationsOptions = {},
): Promise<{ applied: string[] }> {
  const migrationsDir = options.migrationsDir ?? defaultMigrationsDir;
  const log = options.log ?? (() => {});
  const files = await readMigrationFiles(migrationsDir);
  if (files.length === 0) log(`No migrations found in ${migrationsDir}`);

  // Unlocked read first: at a normal start nothing is pending and this is all we do.
  const present = await tableExists(db);
  const rows = present ? await readRows(db) : [];
  checkHistory(rows, files, migrationsDir);
  const knownNames = new Set(files.map((file) => file.name));
  for (const row of rows.filter(isApplied)) {
    if (!knownNames.has(row.migration_name)) {
      log(`Migration ${row.migration_name} is applied in the database but not in ${migrationsDir}`);
    }
  }
  const pending = pendingMigrations(rows, files);
  if (present && pending.length === 0) return { applied: [] };

  const applied: string[] = [];
  // An empty migrations folder still gets the table, as `prisma migrate deploy` does.
  const toTry: (MigrationFile | null)[] = pending.length > 0 ? pending : [null];
  for (const migration of toTry) {
    const started = Date.now();
    const ran = await db.transaction(async (tx) => {
      await tx.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`);
      // Another instance may have created the table or applied this migration while we waited.
      if (!(await tableExists(tx))) await tx.exec(CREATE_TABLE_SQL);
      if (!migration) return false;
      const current = await readRows(tx);
      checkHistory(current, files, migrationsDir);
      if (current.some((row) => isApplied(row) && row.migration_name === migration.name)) return false;

      log(`Applying migration ${migration.name}`);
      try {
        // One simple-protocol query: `$$` bodies and semicolons inside strings stay intact.
        await tx.exec(migration.script);
      } catch (error) {
        throw new Error(`Migration ${migration.name} failed: ${describeDatabaseError(error)}`, { cause: error });
      }
      // started_at keeps its default, now(), which is the transaction start.
      await tx.query(
        `INSERT INTO "${MIGRATIONS_TABLE}" (id, checksum, finished_at, migration_name, applied_steps_count)
         VALUES ($1, $2, clock_timestamp(), $3, 1)`,
        [randomUUID(), migration.checksum, migration.name],
      );
      return true;
    });
    if (ran && migration) {
      log(`Applied migration ${migration.name} in ${Date.now() - started} ms`);
      applied.push(migration.name);
    }
  }
  return { applied };
}
