import type { PGlite } from "@electric-sql/pglite";
import type pg from "pg";

/** A connection that runs plain SQL; used by the migration runner and health checks. */
export interface SqlConnection {
  /**
   * Runs one statement. A `name` makes it a prepared statement on PostgreSQL: parsed and
   * planned once per connection, then sent as its name and parameters (for hot paths).
   */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[], options?: { name?: string }): Promise<T[]>;
  /** Runs a multi-statement script as one simple-protocol query. */
  exec(script: string): Promise<void>;
}

export interface SqlDatabase extends SqlConnection {
  /** Runs fn on one connection inside BEGIN/COMMIT; rolls back and rethrows on error. */
  transaction<T>(fn: (conn: SqlConnection) => Promise<T>): Promise<T>;
}

export function pgliteSql(db: PGlite): SqlDatabase {
  return {
    async query<T>(sql: string, params?: unknown[]) {
      const result = await db.query<T>(sql, params as unknown[] | undefined);
      return result.rows;
    },
    async exec(script: string) {
      await db.exec(script);
    },
    transaction<T>(fn: (conn: SqlConnection) => Promise<T>) {
      return db.transaction((tx) =>
        fn({
          async query<R>(sql: string, params?: unknown[]) {
            const result = await tx.query<R>(sql, params as unknown[] | undefined);
            return result.rows;
          },
          async exec(script: string) {
            await tx.exec(script);
          },
        }),
      );
    },
  };
}

function pgConnection(client: pg.Pool | pg.PoolClient): SqlConnection {
  return {
    async query<T>(sql: string, params?: unknown[], options?: { name?: string }) {
      const result = options?.name
        ? await client.query({ name: options.name, text: sql, values: params })
        : await client.query(sql, params as unknown[] | undefined);
      return result.rows as T[];
    },
    async exec(script: string) {
      // Without parameters, pg sends the whole script as one simple query.
      await client.query(script);
    },
  };
}

export function pgPoolSql(pool: pg.Pool): SqlDatabase {
  return {
    ...pgConnection(pool),
    async transaction<T>(fn: (conn: SqlConnection) => Promise<T>) {
      const client = await pool.connect();
      let broken: Error | undefined;
      try {
        await client.query("BEGIN");
        const result = await fn(pgConnection(client));
        await client.query("COMMIT");
        return result;
      } catch (error) {
        await client.query("ROLLBACK").catch((rollbackError: Error) => {
          // A connection that cannot roll back must not return to the pool.
          broken = rollbackError;
        });
        throw error;
      } finally {
        client.release(broken);
      }
    },
  };
}
