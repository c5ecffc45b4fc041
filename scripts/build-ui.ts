/**
 * Builds the embeddable UI (ui/ -> ui/dist/) with Vite, unless the build is current: a hash
 * of everything the build reads (the UI's sources and their generated operations, its config,
 * the client kit's sources, the schema, codegen's config, this script and the lockfile) is kept
 * in ui/dist/.build-hash and compared first. Run `npm run codegen` first after a schema change
 * (postinstall does): the build takes ui/src/generated as it finds it.
 *
 *   npm run build:ui            build when stale
 *   npm run build:ui -- --force build anyway
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { copyFile, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const dist = join(root, "ui", "dist");
const stamp = join(dist, ".build-hash");
const inputs = [
  "ui/src",
  "ui/index.html",
  "ui/vite.config.ts",
  "ui/tsconfig.json",
  "ui/package.json",
  "client/src",
  "schema.graphql",
  "codegen.ts",
  "scripts/build-ui.ts",
  "package-lock.json",
];

/** Every file at `path` (a file, or a folder walked recursively), absolute; none when missing. */
async function files(path: string): Promise<string[]> {
  const full = join(root, path);
  if (!existsSync(full)) return [];
  if (!(await stat(full)).isDirectory()) return [full];
  const entries = await readdir(full, { recursive: true, withFileTypes: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name));
}

async function fingerprint(): Promise<string> {
  const hash = createHash("sha256");
  const all = (await Promise.all(inputs.map(files))).flat().sort();
  for (const file of all) {
    hash.update(relative(root, file));
    hash.update("\0");
    hash.update(await readFile(file));
    hash.update("\0");
  }
  return hash.digest("hex");
}

/** Builds ui/dist unless it is current (or `force`); says which on stdout. */
export async function buildUi({ force = false } = {}): Promise<void> {
  const wanted = await fingerprint();
  const built = await readFile(stamp, "utf8").catch(() => "");
  const complete = ["index.html", "persisted-documents.json"].every((file) => existsSync(join(dist, file)));
  if (!force && built === wanted && complete) {
    console.log("ui: build is current");
    return;
  }
  const started = Date.now();
  const { build } = await import("vite");
  await build({ configFile: join(root, "ui", "vite.config.ts") });
  // The pages' operations by hash, trusted by the server when TRUSTED_DOCUMENTS is on.
  await copyFile(
    join(root, "ui", "src", "generated", "persisted-documents.json"),
    join(dist, "persisted-documents.json"),
  );
  await writeFile(stamp, wanted);
  console.log(`ui: built ui/dist in ${Date.now() - started} ms`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await buildUi({ force: process.argv.includes("--force") });
}
