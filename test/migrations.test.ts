import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { diffMigrationsToSchema, migrationFolderName } from "../scripts/migrate.ts";
import { engineError, loadSchemaEngineModule, openSchemaEngine, readMigrationList } from "../scripts/schema-engine.ts";
import {
  applyMigrations,
  defaultMigrationsDir,
  type MigrationFile,
  migrationChecksum,
  readMigrationFiles,
} from "../src/db/migrate.ts";
import { pgliteSql, pgPoolSql, type SqlDatabase } from "../src/db/sql.ts";

const SLOW = 60_000;

// Sorts after any real migration, so it is always the last one applied.
const BAD = "99999999999990_bad";
const BAD_SQL = `CREATE TABLE "mig_test_ok" ("id" INTEGER PRIMARY KEY);
SELECT * FROM "mig_test_no_such_table";
`;
// Semicolons inside the `$$` body: a runner that splits scripts on ";" breaks this.
const FN = "99999999999991_function";
const FN_SQL = `CREATE FUNCTION mig_test_twice(x integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE y integer;
BEGIN
  y := x * 2;
  RETURN y;
END;
$$;
`;

let realMigrations: MigrationFile[] = [];
const tempDirs: string[] = [];

/** A migrations folder holding the committed migrations plus `extra` (name -> SQL). */
async function migrationsDirWith(extra: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "migrations-test-"));
  tempDirs.push(dir);
  await writeFile(path.join(dir, "migration_lock.toml"), 'provider = "postgresql"\n', "utf8");
  const all = [...realMigrations.map((m) => [m.name, m.script] as const), ...Object.entries(extra)];
  for (const [name, script] of all) {
    await mkdir(path.join(dir, name));
    await writeFile(path.join(dir, name, "migration.sql"), script, "utf8");
  }
  return dir;
}

async function relationExists(db: SqlDatabase, name: string): Promise<boolean> {
  const [row] = await db.query<{ present: boolean }>("SELECT to_regclass($1) IS NOT NULL AS present", [name]);
  return row?.present === true;
}

async function recordedNames(db: SqlDatabase): Promise<string[]> {
  const rows = await db.query<{ migration_name: string }>(
    "SELECT migration_name FROM _prisma_migrations ORDER BY migration_name",
  );
  return rows.map((row) => row.migration_name);
}

beforeAll(async () => {
  realMigrations = await readMigrationFiles(defaultMigrationsDir);
});

afterAll(async () => {
  await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

describe("migration folder naming", () => {
  it("uses a UTC timestamp and a snake_case name", () => {
    const at = new Date(Date.UTC(2025, 0, 2, 3, 4, 5));
    expect(migrationFolderName("init", at)).toBe("20250102030405_init");
    expect(migrationFolderName("addUserEmail", at)).toBe("20250102030405_add_user_email");
    expect(migrationFolderName("add user-email", at)).toBe("20250102030405_add_user_email");
    expect(() => migrationFolderName("", at)).toThrow(/required/);
    expect(() => migrationFolderName("../evil", at)).toThrow(/Invalid migration name/);
  });
});

/** The runner's contract, run against each kind of database. */
function runnerContract(open: () => Promise<{ db: SqlDatabase; close: () => Promise<void> }>) {
  let db: SqlDatabase;
  let close: () => Promise<void> = async () => {};

  beforeAll(async () => {
    ({ db, close } = await open());
  }, SLOW);
  afterAll(() => close());

  it("applies every committed migration, then has nothing to do", async () => {
    expect(realMigrations.length).toBeGreaterThan(0);
    const first = await applyMigrations(db);
    expect(first.applied).toEqual(realMigrations.map((m) => m.name));
    const rows = await db.query<{ migration_name: string; checksum: string; finished_at: Date | null }>(
      "SELECT migration_name, checksum, finished_at FROM _prisma_migrations ORDER BY migration_name",
    );
    expect(rows.map((r) => [r.migration_name, r.checksum])).toEqual(
      realMigrations.map((m) => [m.name, migrationChecksum(m.script)]),
    );
    expect(rows.every((r) => r.finished_at !== null)).toBe(true);
    expect(await relationExists(db, '"Tenant"')).toBe(true);

    expect((await applyMigrations(db)).applied).toEqual([]);
  });

  it("rolls a failing migration back entirely and records nothing for it", async () => {
    const dir = await migrationsDirWith({ [BAD]: BAD_SQL });
    await expect(applyMigrations(db, { migrationsDir: dir })).rejects.toThrow(
      `Migration ${BAD} failed: relation "mig_test_no_such_table" does not exist`,
    );
    expect(await relationExists(db, '"mig_test_ok"')).toBe(false);
    expect(await recordedNames(db)).toEqual(realMigrations.map((m) => m.name));
    // Still failing on the next start, not silently skipped.
    await expect(applyMigrations(db, { migrationsDir: dir })).rejects.toThrow(BAD);
  });

  it("sends a migration as one script, so $$ bodies survive", async () => {
    const dir = await migrationsDirWith({ [FN]: FN_SQL });
    expect((await applyMigrations(db, { migrationsDir: dir })).applied).toEqual([FN]);
    const [row] = await db.query<{ v: number }>("SELECT mig_test_twice(21) AS v");
    expect(row?.v).toBe(42);
  });

  it("refuses to start when an applied migration was edited, but tolerates CRLF checkouts", async () => {
    const edited = await migrationsDirWith({ [FN]: FN_SQL.replace("x * 2", "x * 3") });
    await expect(applyMigrations(db, { migrationsDir: edited })).rejects.toThrow(
      new RegExp(`migration ${FN} was modified after it was applied`),
    );
    const crlf = await migrationsDirWith({ [FN]: FN_SQL.replaceAll("\n", "\r\n") });
    expect((await applyMigrations(db, { migrationsDir: crlf })).applied).toEqual([]);
  });

  it("refuses to start while a migration is recorded as failed", async () => {
    await db.query("INSERT INTO _prisma_migrations (id, checksum, migration_name, logs) VALUES ($1, $2, $3, $4)", [
      "00000000-0000-4000-8000-000000000000",
      "0".repeat(64),
      "99999999999992_crashed",
      "boom",
    ]);
    try {
      await expect(applyMigrations(db)).rejects.toThrow(/failed migration:\n\s+99999999999992_crashed.*boom/);
    } finally {
      await db.query("DELETE FROM _prisma_migrations WHERE migration_name = $1", ["99999999999992_crashed"]);
    }
    expect((await applyMigrations(db)).applied).toEqual([]);
  });
}

describe("applyMigrations on PGlite", () => {
  runnerContract(async () => {
    const pglite = new PGlite();
    await pglite.waitReady;
    return { db: pgliteSql(pglite), close: () => pglite.close() };
  });

  it(
    "keeps _prisma_migrations interchangeable with the schema engine's applyMigrations",
    async () => {
      // The wasm build of the engine `prisma migrate deploy` runs: it must see our rows as
      // its own, and we must see its rows as ours (same checksums, same table).
      const pglite = new PGlite();
      await pglite.waitReady;
      await loadSchemaEngineModule();
      const engine = await openSchemaEngine(pglite);
      try {
        const dir = await migrationsDirWith({ [FN]: FN_SQL });
        const list = await readMigrationList(dir);
        const filters = { externalTables: [], externalEnums: [] };
        list.migrationDirectories = list.migrationDirectories.filter((d) => d.path !== FN);
        const byEngine = await engine.applyMigrations({ migrationsList: list, filters });
        expect(byEngine.appliedMigrationNames).toEqual(realMigrations.map((m) => m.name));

        const db = pgliteSql(pglite);
        const engineRows = await db.query<{ migration_name: string; checksum: string; applied_steps_count: number }>(
          "SELECT migration_name, checksum, applied_steps_count FROM _prisma_migrations ORDER BY migration_name",
        );
        expect(engineRows).toEqual(
          realMigrations.map((m) => ({ migration_name: m.name, checksum: m.checksum, applied_steps_count: 1 })),
        );
        // Ours accepts the engine's history (checksums verified) and adds to it...
        expect((await applyMigrations(db, { migrationsDir: dir })).applied).toEqual([FN]);
        // ...and the engine accepts ours: nothing left for it to apply.
        const full = await readMigrationList(dir);
        expect((await engine.applyMigrations({ migrationsList: full, filters })).appliedMigrationNames).toEqual([]);
        const [ours] = await db.query<{ applied_steps_count: number; finished_at: Date | null; logs: string | null }>(
          "SELECT applied_steps_count, finished_at, logs FROM _prisma_migrations WHERE migration_name = $1",
          [FN],
        );
        expect(ours).toMatchObject({ applied_steps_count: 1, logs: null });
        expect(ours?.finished_at).toBeInstanceOf(Date);

        // A migration the engine failed on (its row left unfinished) stops our runner.
        const withBad = await migrationsDirWith({ [FN]: FN_SQL, [BAD]: BAD_SQL });
        const failure = await engine
          .applyMigrations({ migrationsList: await readMigrationList(withBad), filters })
          .then(
            () => null,
            (error: unknown) => engineError(error),
          );
        expect(failure?.message).toMatch(/mig_test_no_such_table/);
        await expect(applyMigrations(db, { migrationsDir: withBad })).rejects.toThrow(
          new RegExp(`failed migration:\\n\\s+${BAD}`),
        );
      } finally {
        engine.free();
        await pglite.close();
      }
    },
    SLOW,
  );
});

const testDatabaseUrl = process.env.TEST_DATABASE_URL;

describe.skipIf(!testDatabaseUrl)("applyMigrations on PostgreSQL", () => {
  // A private database per run on the shared server, dropped at the end.
  const prefix = `mig_${randomBytes(6).toString("hex")}`;
  const created: string[] = [];
  const pools: pg.Pool[] = [];
  let admin: pg.Pool;

  async function privateDatabase(suffix: string): Promise<pg.Pool> {
    const name = `${prefix}_${suffix}`;
    await admin.query(`CREATE DATABASE "${name}"`);
    created.push(name);
    const url = new URL(testDatabaseUrl as string);
    url.pathname = `/${name}`;
    const pool = new pg.Pool({ connectionString: url.toString(), max: 3 });
    pool.on("error", () => {});
    pools.push(pool);
    return pool;
  }

  beforeAll(() => {
    admin = new pg.Pool({ connectionString: testDatabaseUrl, max: 1 });
  });
  afterAll(async () => {
    await Promise.all(pools.map((pool) => pool.end()));
    for (const name of created) await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await admin.end();
  }, SLOW);

  runnerContract(async () => ({ db: pgPoolSql(await privateDatabase("contract")), close: async () => {} }));

  it(
    "applies each migration once when several instances start together",
    async () => {
      const first = await privateDatabase("race");
      const url = new URL(testDatabaseUrl as string);
      url.pathname = `/${prefix}_race`;
      const others = Array.from({ length: 4 }, () => {
        const pool = new pg.Pool({ connectionString: url.toString(), max: 2 });
        pool.on("error", () => {});
        pools.push(pool);
        return pool;
      });
      const dir = await migrationsDirWith({ [FN]: FN_SQL });
      const results = await Promise.all(
        [first, ...others].map((pool) => applyMigrations(pgPoolSql(pool), { migrationsDir: dir })),
      );
      const everyApplied = results.flatMap((r) => r.applied).sort();
      const expected = [...realMigrations.map((m) => m.name), FN].sort();
      expect(everyApplied).toEqual(expected);
      expect(await recordedNames(pgPoolSql(first))).toEqual(expected);
    },
    SLOW,
  );
});

describe("committed migrations", () => {
  it(
    "capture every change in prisma/schema.prisma",
    async () => {
      const diff = await diffMigrationsToSchema();
      expect(
        diff.empty,
        `prisma/schema.prisma has changes no migration creates; run \`npm run db:migration -- <name>\`:\n${diff.script}`,
      ).toBe(true);
    },
    SLOW,
  );
});
