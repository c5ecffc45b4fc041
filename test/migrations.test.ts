import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { PGlite } from "@electric-sql/pglite";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { diffMigrationsToSchema, migrationFolderName } from "../scripts/migrate.ts";
import {
  defaultSchemaPath,
  engineError,
  loadSchemaEngineModule,
  openSchemaEngine,
  readMigrationList,
} from "../scripts/schema-engine.ts";
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

/**
 * A migrations folder holding the committed migrations plus `extra` (name -> SQL); with
 * `before`, only the committed migrations that sort before that name.
 */
async function migrationsDirWith(extra: Record<string, string>, before?: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "migrations-test-"));
  tempDirs.push(dir);
  await writeFile(path.join(dir, "migration_lock.toml"), 'provider = "postgresql"\n', "utf8");
  const committed = realMigrations.filter((m) => before === undefined || m.name < before);
  const all = [...committed.map((m) => [m.name, m.script] as const), ...Object.entries(extra)];
  for (const [name, script] of all) {
    await mkdir(path.join(dir, name));
    await writeFile(path.join(dir, name, "migration.sql"), script, "utf8");
  }
  return dir;
}

/**
 * Runs `body` on a fresh PGlite database holding every committed migration before the one
 * named `*_<suffix>` (which must exist), then closes it.
 */
async function beforeMigration(suffix: string, body: (db: SqlDatabase) => Promise<void>): Promise<void> {
  const migration = realMigrations.find((m) => m.name.endsWith(`_${suffix}`))?.name;
  expect(migration).toBeDefined();
  const pglite = new PGlite();
  try {
    await pglite.waitReady;
    const db = pgliteSql(pglite);
    await applyMigrations(db, { migrationsDir: await migrationsDirWith({}, migration) });
    await body(db);
  } finally {
    await pglite.close();
  }
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

  // Written by hand: Prisma's schema declares partial indexes only behind a preview feature.
  const SENDERLESS_INDEX = "Message_conversationId_clientMessageId_senderless_key";

  async function indexDefinition(db: SqlDatabase, name: string): Promise<string | undefined> {
    const [row] = await db.query<{ indexdef: string }>("SELECT indexdef FROM pg_indexes WHERE indexname = $1", [name]);
    return row?.indexdef;
  }

  it(
    "a migration generated for a later schema change keeps the hand-written partial unique index",
    async () => {
      const schemaDir = await mkdtemp(path.join(tmpdir(), "schema-test-"));
      tempDirs.push(schemaDir);
      const schema = await readFile(defaultSchemaPath, "utf8");
      const marker = "  clientMessageId String?\n";
      expect(schema).toContain(marker);
      const changed = path.join(schemaDir, "schema.prisma");
      await writeFile(changed, schema.replace(marker, `${marker}  note            String?\n`), "utf8");

      const diff = await diffMigrationsToSchema({ schemaPath: changed });
      expect(diff.empty).toBe(false);
      expect(diff.script).toMatch(/ADD COLUMN\s+"note" TEXT/);
      expect(diff.script).not.toContain(SENDERLESS_INDEX);
      expect(diff.script).not.toMatch(/DROP INDEX/);

      // Applied after the committed ones, the generated migration leaves the index as it was.
      const pglite = new PGlite();
      try {
        await pglite.waitReady;
        const db = pgliteSql(pglite);
        await applyMigrations(db, { migrationsDir: await migrationsDirWith({ "99999999999993_note": diff.script }) });
        const definition = await indexDefinition(db, SENDERLESS_INDEX);
        expect(definition).toMatch(/^CREATE UNIQUE INDEX .* \("conversationId", "clientMessageId"\) WHERE/);
        expect(definition).toMatch(/"senderId" IS NULL/);
        expect(definition).toMatch(/"clientMessageId" IS NOT NULL/);
      } finally {
        await pglite.close();
      }
    },
    SLOW,
  );

  it(
    "blank the text of messages deleted before, and keep one sender-less message per clientMessageId key",
    async () => {
      await beforeMigration("deleted_messages_keep_no_text", async (db) => {
        const tenant = "00000000-0000-4000-8000-000000000001";
        const conversation = "00000000-0000-4000-8000-000000000002";
        const [gone, kept, dupA, dupB] = [3, 4, 5, 6].map((n) => `00000000-0000-4000-8000-00000000000${n}`);
        await db.query(`INSERT INTO "Tenant" ("id", "name", "updatedAt") VALUES ($1, 'T', now())`, [tenant]);
        await db.query(
          `INSERT INTO "Conversation" ("id", "tenantId", "kind", "updatedAt") VALUES ($1, $2, 'GROUP', now())`,
          [conversation, tenant],
        );
        const message = (id: string, seq: number, body: string, deleted: boolean, clientMessageId: string | null) =>
          db.query(
            `INSERT INTO "Message" ("id", "tenantId", "conversationId", "seq", "body", "type", "deletedAt", "clientMessageId")
             VALUES ($1, $2, $3, $4, $5, 'SYSTEM', $6, $7)`,
            [id, tenant, conversation, seq, body, deleted ? new Date() : null, clientMessageId],
          );
        await message(gone as string, 1, "old secret words", true, null);
        await message(kept as string, 2, "still here", false, null);
        await message(dupA as string, 3, "first notice", false, "notice-1");
        await message(dupB as string, 4, "second notice", false, "notice-1");
        const event = (seq: number, type: string, id: string, body: string) =>
          db.query(
            `INSERT INTO "ConversationEvent" ("id", "tenantId", "conversationId", "seq", "type", "data")
             VALUES (gen_random_uuid(), $1, $2, $3, $4, $5)`,
            [
              tenant,
              conversation,
              seq,
              type,
              JSON.stringify({ actorId: null, message: { id, body, deletedAt: null } }),
            ],
          );
        await event(1, "MESSAGE_ADDED", gone as string, "old secret words");
        await event(2, "MESSAGE_ADDED", kept as string, "still here");

        await applyMigrations(db);

        const rows = await db.query<{ id: string; body: string | null; hit: boolean; clientMessageId: string | null }>(
          `SELECT "id", "body", "clientMessageId", coalesce("searchVector" @@ to_tsquery('simple', 'secret'), false) AS hit
             FROM "Message" ORDER BY "seq"`,
        );
        expect(rows).toEqual([
          { id: gone, body: null, clientMessageId: null, hit: false },
          { id: kept, body: "still here", clientMessageId: null, hit: false },
          { id: dupA, body: "first notice", clientMessageId: "notice-1", hit: false },
          { id: dupB, body: "second notice", clientMessageId: null, hit: false },
        ]);
        const events = await db.query<{ data: string }>(
          `SELECT "data"::text AS "data" FROM "ConversationEvent" ORDER BY "seq"`,
        );
        const [erased, untouched] = events.map((e) => JSON.parse(e.data) as { message: Record<string, unknown> });
        expect(erased?.message).toMatchObject({ id: gone, body: null });
        expect(erased?.message.deletedAt).toEqual(expect.any(String));
        expect(JSON.stringify(events)).not.toContain("secret");
        expect(untouched?.message).toEqual({ id: kept, body: "still here", deletedAt: null });
        // From now on the database itself refuses a second sender-less message with that key.
        await expect(message("00000000-0000-4000-8000-000000000007", 5, "third", false, "notice-1")).rejects.toThrow(
          /unique/i,
        );
      });
    },
    SLOW,
  );

  it(
    "takes groups:read from tenants' default member roles only, leaving edited member roles and other roles as they were",
    async () => {
      await beforeMigration("member_without_groups_read", async (db) => {
        const oldMember = [
          "users:read",
          "groups:create",
          "groups:read",
          "chats:create",
          "chats:read",
          "chats:update",
          "chats:delete",
        ];
        const tenants = ["00000000-0000-4000-8000-0000000000a1", "00000000-0000-4000-8000-0000000000a2"];
        for (const tenant of tenants) {
          await db.query(`INSERT INTO "Tenant" ("id", "name", "updatedAt") VALUES ($1, 'T', now())`, [tenant]);
        }
        const role = (tenant: string, name: string, systemKey: string | null, permissions: string[]) =>
          db.query(
            `INSERT INTO "Role" ("id", "tenantId", "name", "permissions", "systemKey", "updatedAt")
             VALUES (gen_random_uuid(), $1, $2, $3, $4, now())`,
            [tenant, name, permissions, systemKey],
          );
        await role(tenants[0] as string, "member", "member", oldMember);
        await role(tenants[0] as string, "admin", "admin", ["tenant:read", "users:*", "groups:*", "chats:*", "rbac:*"]);
        await role(tenants[0] as string, "auditors", null, ["groups:read"]);
        // A tenant that edited its member role (here: added moderation) keeps what it chose.
        await role(tenants[1] as string, "member", "member", [...oldMember, "chats:moderate"]);

        await applyMigrations(db);

        const rows = await db.query<{ tenantId: string; name: string; permissions: string[] }>(
          `SELECT "tenantId", "name", "permissions" FROM "Role" ORDER BY "tenantId", "name"`,
        );
        expect(rows).toEqual([
          {
            tenantId: tenants[0],
            name: "admin",
            permissions: ["tenant:read", "users:*", "groups:*", "chats:*", "rbac:*"],
          },
          { tenantId: tenants[0], name: "auditors", permissions: ["groups:read"] },
          { tenantId: tenants[0], name: "member", permissions: oldMember.filter((p) => p !== "groups:read") },
          { tenantId: tenants[1], name: "member", permissions: [...oldMember, "chats:moderate"] },
        ]);
      });
    },
    SLOW,
  );

  it(
    "converts stored event data to jsonb in place: an event written before reads back identically",
    async () => {
      await beforeMigration("event_data_jsonb", async (db) => {
        const tenant = "00000000-0000-4000-8000-000000000011";
        const conversation = "00000000-0000-4000-8000-000000000012";
        await db.query(`INSERT INTO "Tenant" ("id", "name", "updatedAt") VALUES ($1, 'T', now())`, [tenant]);
        await db.query(
          `INSERT INTO "Conversation" ("id", "tenantId", "kind", "updatedAt") VALUES ($1, $2, 'GROUP', now())`,
          [conversation, tenant],
        );
        // As the text column held them: JSON.stringify of { actorId, ...data }.
        const before = [
          {
            type: "MESSAGE_ADDED",
            data: {
              actorId: "00000000-0000-4000-8000-000000000013",
              message: {
                id: "00000000-0000-4000-8000-000000000014",
                body: 'héllo "quoted" ✓ 🎉',
                createdAt: "2026-11-30T06:00:00.123Z",
                deletedAt: null,
                seq: 1,
                pinned: false,
              },
            },
          },
          {
            type: "REACTION_CHANGED",
            data: {
              actorId: null,
              message: { id: "00000000-0000-4000-8000-000000000014", body: "x" },
              emoji: "👍🏽",
              added: true,
              reactions: [{ emoji: "👍🏽", count: 1, userIds: ["00000000-0000-4000-8000-000000000013"] }],
            },
          },
          { type: "CONVERSATION_UPDATED", data: { actorId: null, name: "Team", description: null } },
        ];
        for (const [index, event] of before.entries()) {
          await db.query(
            `INSERT INTO "ConversationEvent" ("id", "tenantId", "conversationId", "seq", "type", "data", "createdAt")
             VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, '2026-11-30T06:00:00Z')`,
            [tenant, conversation, index + 1, event.type, JSON.stringify(event.data)],
          );
        }

        await applyMigrations(db);

        const [column] = await db.query<{ data_type: string }>(
          `SELECT data_type FROM information_schema.columns WHERE table_name = 'ConversationEvent' AND column_name = 'data'`,
        );
        expect(column?.data_type).toBe("jsonb");
        const after = await db.query<{ type: string; data: unknown }>(
          `SELECT "type", "data" FROM "ConversationEvent" ORDER BY "seq"`,
        );
        expect(after).toEqual(before);
        // Now queryable by path, as erasing a deleted message's text does.
        const [hits] = await db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM "ConversationEvent" WHERE "data"->'message'->>'id' = $1`,
          ["00000000-0000-4000-8000-000000000014"],
        );
        expect(hits?.n).toBe(2);
      });
    },
    SLOW,
  );
});
