import { randomBytes } from "node:crypto";
import pg from "pg";
import { type App, buildApp } from "../../src/app.ts";
import { type Database, openMigratedDatabase } from "../../src/db/client.ts";
import { type Config, loadConfig } from "../../src/env.ts";
import { createLogger, type Logger } from "../../src/logger.ts";

export type BackendName = "pglite" | "postgres+redis";

/** PGlite always; PostgreSQL + Redis too when TEST_DATABASE_URL and TEST_REDIS_URL are set. */
export function backends(): BackendName[] {
  const list: BackendName[] = ["pglite"];
  if (process.env.TEST_DATABASE_URL) {
    if (!process.env.TEST_REDIS_URL) throw new Error("TEST_DATABASE_URL needs TEST_REDIS_URL as well");
    list.push("postgres+redis");
  }
  return list;
}

export const TEST_JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-signing";

export function testConfig(overrides: Partial<Config> = {}): Config {
  return {
    ...loadConfig({ LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent" }),
    jwtSecret: TEST_JWT_SECRET,
    ...overrides,
  };
}

/** One database per backend per test file: a private PostgreSQL database, or an in-memory PGlite. */
export interface TestDatabase {
  backend: BackendName;
  /** For PostgreSQL: the URL of the private database. */
  url?: string;
  /** For PGlite: the shared in-process database (one server process owns it). */
  db?: Database;
  drop(): Promise<void>;
}

export async function createTestDatabase(backend: BackendName): Promise<TestDatabase> {
  if (backend === "pglite") {
    const db = await openMigratedDatabase({ pgliteDir: "memory://" });
    return { backend, db, drop: () => db.close() };
  }
  const adminUrl = process.env.TEST_DATABASE_URL as string;
  const name = `chat_test_${Date.now()}_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}"`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    backend,
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await client.end();
    },
  };
}

export interface TestServer {
  app: App;
  url: string;
  wsUrl: string;
  stop(): Promise<void>;
}

/** A real server on a random port (or `options.port`, to come back where one stopped), on the given test database. */
export async function startServer(
  database: TestDatabase,
  overrides: Partial<Config> = {},
  options: { log?: Logger; port?: number } = {},
): Promise<TestServer> {
  const config = testConfig({
    databaseUrl: database.url,
    redisUrl: database.backend === "postgres+redis" ? process.env.TEST_REDIS_URL : undefined,
    ...overrides,
  });
  const app = await buildApp(config, {
    db: database.db,
    log: options.log ?? createLogger(config.logLevel),
  });
  const { url, wsUrl } = await app.start(options.port ?? 0, "127.0.0.1");
  return { app, url, wsUrl, stop: () => app.stop() };
}

/** A logger that keeps every line it writes, parsed, for tests that check what the server logs. */
export function capturingLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  // The server's own logger (its redaction included), writing here.
  const log = createLogger("debug", {
    write(line: string) {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    },
  });
  return { log, lines };
}
