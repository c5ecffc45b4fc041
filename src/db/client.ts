import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { PrismaPg } from "@prisma/adapter-pg";
import type {
  IsolationLevel,
  SqlDriverAdapter,
  SqlDriverAdapterFactory,
  SqlQuery,
  Transaction,
} from "@prisma/driver-adapter-utils";
import pg from "pg";
import { PrismaPGlite } from "pglite-prisma-adapter";
import { type Prisma, PrismaClient } from "../generated/prisma/client.ts";
import { applyMigrations } from "./migrate.ts";
import { pgliteSql, pgPoolSql, type SqlConnection, type SqlDatabase } from "./sql.ts";

/**
 * A burst of writes queues for a pooled connection instead of failing: Prisma's defaults
 * (2 s to start a transaction, 5 s to finish it) turned a busy second into internal errors.
 */
const TRANSACTION_OPTIONS = { maxWait: 10_000, timeout: 15_000 };

export type { PrismaClient };

/** The client a `$transaction(async (tx) => ...)` callback receives. */
export type TransactionClient = Prisma.TransactionClient;

/** What has been sent to the database since it was opened. */
export interface DatabaseStats {
  /**
   * SQL statements sent, by Prisma (raw queries included) and by the plain SQL connection,
   * BEGIN, COMMIT and ROLLBACK counted as one each. Only grows.
   */
  readonly statements: number;
  /** Reports the duration of every statement (in seconds) to `listener` from now on. */
  observeQueries(listener: (seconds: number) => void): void;
}

export interface Database {
  kind: "pglite" | "postgres";
  prisma: PrismaClient;
  sql: SqlDatabase;
  stats: DatabaseStats;
  /** The PostgreSQL pool's connections and waiting requests; absent for PGlite. */
  pool?: () => { total: number; idle: number; waiting: number };
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
    const stats: Counter = { statements: 0 };
    const prisma = new PrismaClient({
      adapter: countedAdapter(new PrismaPg(pool), stats),
      transactionOptions: TRANSACTION_OPTIONS,
    });
    return {
      kind: "postgres",
      prisma,
      sql: countedSql(pgPoolSql(pool), stats),
      stats: readOnly(stats),
      pool: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
      async close() {
        await prisma.$disconnect();
        await pool.end().catch(() => {});
      },
    };
  }
  const dir = options.pgliteDir ?? "memory://";
  if (!dir.startsWith("memory://")) mkdirSync(dir, { recursive: true });
  const pglite = await PGlite.create(dir);
  const stats: Counter = { statements: 0 };
  const prisma = new PrismaClient({
    adapter: countedAdapter(new PrismaPGlite(pglite), stats),
    transactionOptions: TRANSACTION_OPTIONS,
  });
  return {
    kind: "pglite",
    prisma,
    sql: countedSql(pgliteSql(pglite), stats),
    stats: readOnly(stats),
    async close() {
      await prisma.$disconnect();
      await pglite.close();
    },
  };
}

interface Counter {
  statements: number;
  onQuery?: (seconds: number) => void;
}

function readOnly(counter: Counter): DatabaseStats {
  return {
    get statements() {
      return counter.statements;
    },
    observeQueries(listener) {
      counter.onQuery = listener;
    },
  };
}

/** Times a statement for the listener, when there is one. */
function timed<T>(counter: Counter, run: () => Promise<T>): Promise<T> {
  const listener = counter.onQuery;
  if (!listener) return run();
  const started = performance.now();
  const done = () => listener((performance.now() - started) / 1000);
  const result = run();
  result.then(done, done);
  return result;
}

/**
 * Counts what Prisma sends through its driver adapter, the same way for PGlite and
 * PostgreSQL: every query, plus the transaction control the adapter issues on its own
 * (BEGIN on start; COMMIT or ROLLBACK where the driver ends the transaction itself,
 * which Prisma calls a phantom query; otherwise Prisma sends them as queries).
 */
function countedAdapter(factory: SqlDriverAdapterFactory, counter: Counter): SqlDriverAdapterFactory {
  const queryable = <T extends SqlDriverAdapter | Transaction>(inner: T) => ({
    provider: inner.provider,
    adapterName: inner.adapterName,
    queryRaw(query: SqlQuery) {
      counter.statements++;
      return timed(counter, () => inner.queryRaw(query));
    },
    executeRaw(query: SqlQuery) {
      counter.statements++;
      return timed(counter, () => inner.executeRaw(query));
    },
  });
  const transaction = (inner: Transaction): Transaction => {
    const phantom = inner.options.usePhantomQuery;
    const savepoint = (run?: (name: string) => Promise<void>) =>
      run &&
      ((name: string) => {
        counter.statements++;
        return run.call(inner, name);
      });
    return {
      ...queryable(inner),
      options: inner.options,
      commit() {
        if (phantom) counter.statements++;
        return inner.commit();
      },
      rollback() {
        if (phantom) counter.statements++;
        return inner.rollback();
      },
      createSavepoint: savepoint(inner.createSavepoint),
      rollbackToSavepoint: savepoint(inner.rollbackToSavepoint),
      releaseSavepoint: savepoint(inner.releaseSavepoint),
    };
  };
  const adapter = (inner: SqlDriverAdapter): SqlDriverAdapter => ({
    ...queryable(inner),
    executeScript(script: string) {
      counter.statements++;
      return inner.executeScript(script);
    },
    async startTransaction(isolationLevel?: IsolationLevel) {
      counter.statements += isolationLevel ? 2 : 1;
      return transaction(await inner.startTransaction(isolationLevel));
    },
    getConnectionInfo: inner.getConnectionInfo?.bind(inner),
    dispose: () => inner.dispose(),
  });
  return {
    provider: factory.provider,
    adapterName: factory.adapterName,
    connect: async () => adapter(await factory.connect()),
  };
}

/** Counts the statements of the plain SQL connection (migrations, health checks). */
function countedSql(inner: SqlDatabase, counter: Counter): SqlDatabase {
  const connection = (conn: SqlConnection): SqlConnection => ({
    query<T>(sql: string, params?: unknown[]) {
      counter.statements++;
      return timed(counter, () => conn.query<T>(sql, params));
    },
    exec(script: string) {
      counter.statements++;
      return conn.exec(script);
    },
  });
  return {
    ...connection(inner),
    transaction<T>(fn: (conn: SqlConnection) => Promise<T>) {
      // BEGIN, then COMMIT or ROLLBACK.
      counter.statements += 2;
      return inner.transaction((conn) => fn(connection(conn)));
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
