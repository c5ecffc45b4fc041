import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { PrismaPGlite } from "pglite-prisma-adapter";
import { type Prisma, PrismaClient } from "../generated/prisma/client.ts";
import { applyMigrations } from "./migrate.ts";
import { pgliteSql, pgPoolSql, type SqlDatabase } from "./sql.ts";

/**
 * A burst of writes queues for a pooled connection instead of failing: Prisma's defaults
 * (2 s to start a transaction, 5 s to finish it) turned a busy second into internal errors.
 */
const TRANSACTION_OPTIONS = { maxWait: 10_000, timeout: 15_000 };

export type { PrismaClient };

/** The client a `$transaction(async (tx) => ...)` callback receives. */
export type TransactionClient = Prisma.TransactionClient;

export interface Database {
  kind: "pglite" | "postgres";
  prisma: PrismaClient;
  sql: SqlDatabase;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  databaseUrl?: string;
  /** Where the embedded database lives; `memory://` keeps it in memory. */
  pgliteDir?: string;
  poolSize?: number;
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.databaseUrl) {
    const pool = new pg.Pool({
      connectionString: options.databaseUrl,
      max: options.poolSize ?? 10,
    });
    // An idle client losing its connection must not crash the process.
    pool.on("error", () => {});
    const prisma = new PrismaClient({ adapter: new PrismaPg(pool), transactionOptions: TRANSACTION_OPTIONS });
    return {
      kind: "postgres",
      prisma,
      sql: pgPoolSql(pool),
      async close() {
        await prisma.$disconnect();
        await pool.end().catch(() => {});
      },
    };
  }
  const dir = options.pgliteDir ?? "memory://";
  if (!dir.startsWith("memory://")) mkdirSync(dir, { recursive: true });
  const pglite = await PGlite.create(dir);
  const prisma = new PrismaClient({ adapter: new PrismaPGlite(pglite), transactionOptions: TRANSACTION_OPTIONS });
  return {
    kind: "pglite",
    prisma,
    sql: pgliteSql(pglite),
    async close() {
      await prisma.$disconnect();
      await pglite.close();
    },
  };
}

export function embeddedDir(dataDir: string): string {
  return join(dataDir, "pglite");
}

/** Opens the database for the configured mode and brings its schema up to date. */
export async function openMigratedDatabase(options: DatabaseOptions, log?: (msg: string) => void): Promise<Database> {
  const db = await openDatabase(options);
  try {
    await applyMigrations(db.sql, { log });
  } catch (error) {
    await db.close();
    throw error;
  }
  return db;
}
