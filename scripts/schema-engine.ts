// Prisma's schema engine compiled to wasm, driven through a PGlite driver adapter.
// The native engine binary the Prisma CLI wants cannot be downloaded everywhere this
// project is developed, so migration SQL is computed with this build instead.

import { readdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { messages, PGlite } from "@electric-sql/pglite";
import {
  bindMigrationAwareSqlAdapterFactory,
  DriverAdapterError,
  type SqlDriverAdapter,
  type SqlMigrationAwareDriverAdapterFactory,
} from "@prisma/driver-adapter-utils";
import type {
  DiffParams,
  MigrationDirectory,
  MigrationList,
  SchemaEngine,
} from "@prisma/schema-engine-wasm/schema_engine_bg";
import * as glue from "@prisma/schema-engine-wasm/schema_engine_bg";
import { PrismaPGlite } from "pglite-prisma-adapter";
import { applyMigrations, defaultMigrationsDir } from "../src/db/migrate.ts";
import { pgliteSql } from "../src/db/sql.ts";

export type { SchemaEngine };

export const defaultSchemaPath = fileURLToPath(new URL("../prisma/schema.prisma", import.meta.url));

// The engine reports Rust panics through this global; without it a panic surfaces as
// an opaque "unreachable" trap with the reason lost.
interface PanicRegistry {
  set_message(message: string): void;
}
declare global {
  var PRISMA_WASM_PANIC_REGISTRY: PanicRegistry | undefined;
}

// The project's lib settings carry no WebAssembly typings (no DOM lib, @types/node 20),
// so the little used here is declared locally.
interface WasmRuntime {
  instantiate(
    bytes: Uint8Array,
    imports: Record<string, Record<string, unknown>>,
  ): Promise<{ instance: { exports: Record<string, unknown> } }>;
}
const wasmRuntime = (globalThis as unknown as { WebAssembly: WasmRuntime }).WebAssembly;

let lastPanicMessage: string | undefined;
let engineModule: Promise<typeof glue> | undefined;

/** Instantiates the wasm module once per process; later calls reuse it. */
export function loadSchemaEngineModule(): Promise<typeof glue> {
  engineModule ??= (async () => {
    globalThis.PRISMA_WASM_PANIC_REGISTRY ??= {
      set_message(message: string) {
        lastPanicMessage = message;
      },
    };
    // The package's own entry point imports the .wasm file as an ES module, which Node
    // cannot do without a flag, so the bytes are instantiated by hand against the glue.
    const require = createRequire(import.meta.url);
    const gluePath = require.resolve("@prisma/schema-engine-wasm/schema_engine_bg");
    const bytes = await readFile(path.join(path.dirname(gluePath), "schema_engine_bg.wasm"));
    const { instance } = await wasmRuntime.instantiate(bytes, {
      "./schema_engine_bg.js": glue as unknown as Record<string, unknown>,
    });
    glue.__wbg_set_wasm(instance.exports);
    (instance.exports.__wbindgen_start as () => void)();
    return glue;
  })();
  return engineModule;
}

function toDriverAdapterError(error: unknown): unknown {
  if (error instanceof messages.DatabaseError) {
    return new DriverAdapterError({
      kind: "postgres",
      code: error.code ?? "N/A",
      severity: error.severity ?? "N/A",
      message: error.message,
      detail: error.detail,
      column: error.column,
      hint: error.hint,
    });
  }
  return error;
}

/**
 * pglite-prisma-adapter 0.7.2 fires executeScript without awaiting it, so a failing
 * script is reported as a success. Sending the whole script as one awaited simple
 * query fixes that and keeps `$$` bodies intact.
 */
function wholeScriptAdapter(pglite: PGlite, onDispose?: () => Promise<void>): SqlDriverAdapter {
  // The adapter package is typed against an older driver-adapter-utils; the
  // interface it implements is the same.
  const inner = new PrismaPGlite(pglite) as unknown as SqlMigrationAwareDriverAdapterFactory;
  let adapter: Promise<SqlDriverAdapter> | undefined;
  const get = () => {
    adapter ??= inner.connect();
    return adapter;
  };
  return {
    provider: "postgres",
    adapterName: "pglite-whole-script",
    queryRaw: async (query) => (await get()).queryRaw(query),
    executeRaw: async (query) => (await get()).executeRaw(query),
    startTransaction: async (isolationLevel) => (await get()).startTransaction(isolationLevel),
    getConnectionInfo: () => ({ supportsRelationJoins: true }),
    async executeScript(script) {
      try {
        await pglite.exec(script);
      } catch (error) {
        throw toDriverAdapterError(error);
      }
    },
    async dispose() {
      await onDispose?.();
    },
  };
}

/** A migration-aware adapter factory on a PGlite; shadow databases are fresh in-memory PGlites. */
export function pgliteAdapterFactory(pglite: PGlite): SqlMigrationAwareDriverAdapterFactory {
  return {
    provider: "postgres",
    adapterName: "pglite-whole-script",
    connect: async () => wholeScriptAdapter(pglite),
    connectToShadowDb: async () => {
      const shadow = new PGlite();
      await shadow.waitReady;
      return wholeScriptAdapter(shadow, () => shadow.close());
    },
  };
}

export interface SchemaFile {
  path: string;
  content: string;
}

export async function readSchemaFile(schemaPath = defaultSchemaPath): Promise<SchemaFile> {
  return { path: schemaPath, content: await readFile(schemaPath, "utf8") };
}

/** Opens an engine on the given PGlite. Call `free()` on it when done. */
export async function openSchemaEngine(
  pglite: PGlite,
  options: { schema?: SchemaFile; log?: (line: string) => void } = {},
): Promise<SchemaEngine> {
  const { SchemaEngine } = await loadSchemaEngineModule();
  const log = options.log ?? (() => {});
  const factory = bindMigrationAwareSqlAdapterFactory(pgliteAdapterFactory(pglite));
  try {
    return await SchemaEngine.new(
      { datamodels: options.schema ? [[options.schema.path, options.schema.content]] : undefined },
      log,
      factory,
    );
  } catch (error) {
    throw engineError(error);
  }
}

/** Turns what the engine rejects with (sometimes a bare object) into an Error with the panic reason if any. */
export function engineError(error: unknown): Error {
  const panic = lastPanicMessage;
  lastPanicMessage = undefined;
  const base =
    error instanceof Error
      ? error.message
      : typeof error === "object" && error !== null && "message" in error
        ? String((error as { message: unknown }).message)
        : String(error);
  return new Error(panic ? `${base}\n${panic}` : base, { cause: error });
}

/** The migrations folder in the shape the engine takes (as the Prisma CLI builds it). */
export async function readMigrationList(migrationsDir = defaultMigrationsDir): Promise<MigrationList> {
  const lockPath = "migration_lock.toml";
  const lockContent = await readFile(path.join(migrationsDir, lockPath), "utf8").catch(() => null);
  const entries = await readdir(migrationsDir, { withFileTypes: true }).catch(() => []);
  const directories: MigrationDirectory[] = [];
  for (const entry of entries.filter((e) => e.isDirectory()).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const file = path.join(migrationsDir, entry.name, "migration.sql");
    const content = await readFile(file, "utf8").then(
      (value) => ({ tag: "ok" as const, value }),
      (error: Error) => ({ tag: "error" as const, value: error.message }),
    );
    directories.push({ path: entry.name, migrationFile: { path: "migration.sql", content } });
  }
  return {
    baseDir: migrationsDir,
    lockfile: { path: lockPath, content: lockContent },
    shadowDbInitScript: "",
    migrationDirectories: directories,
  };
}

export interface SchemaDiff {
  /** The SQL that brings a database holding the committed migrations to the schema. */
  script: string;
  /** True when the schema has nothing the migrations do not already create. */
  empty: boolean;
}

/**
 * Replays the committed migrations (with the same runner the server uses) into a
 * throwaway in-memory PGlite, then asks the engine for the SQL from that database to
 * the Prisma schema.
 */
export async function diffMigrationsToSchema(
  options: { migrationsDir?: string; schemaPath?: string } = {},
): Promise<SchemaDiff> {
  const schema = await readSchemaFile(options.schemaPath);
  const pglite = new PGlite();
  let engine: SchemaEngine | undefined;
  try {
    await pglite.waitReady;
    await applyMigrations(pgliteSql(pglite), { migrationsDir: options.migrationsDir ?? defaultMigrationsDir });
    engine = await openSchemaEngine(pglite, { schema });
    const params: DiffParams = {
      from: { tag: "schemaDatasource", files: [schema], configDir: path.dirname(schema.path) },
      to: { tag: "schemaDatamodel", files: [schema] },
      script: true,
      exitCode: true,
      filters: { externalTables: [], externalEnums: [] },
    };
    const result = await engine.diff(params).catch((error: unknown) => {
      throw engineError(error);
    });
    // With exitCode requested the engine answers 2 when the migration is not empty.
    return { script: result.stdout ?? "", empty: result.exitCode === 0 };
  } finally {
    engine?.free();
    await pglite.close();
  }
}
