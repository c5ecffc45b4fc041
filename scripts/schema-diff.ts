/**
 * Checks schema.graphql against schema.released.graphql (the last released contract) as
 * clients will feel it, with @graphql-inspector/core:
 *   npm run schema:diff              prints every change; fails on a breaking change that
 *                                    CHANGELOG.md's "Unreleased" section does not declare
 *   npm run schema:release -- 1.2.0  makes schema.graphql the released contract and turns
 *                                    "## Unreleased" into "## 1.2.0 - <date>"
 * A breaking change is declared by naming its path (as printed, e.g. `Query.users`) in a
 * line of the "### Breaking" list under "## Unreleased".
 */
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { type Change, CriticalityLevel, diff } from "@graphql-inspector/core";
import { buildSchema } from "graphql";

const file = (name: string) => fileURLToPath(new URL(`../${name}`, import.meta.url));

export interface SchemaCheck {
  breaking: Change[];
  dangerous: Change[];
  safe: Change[];
  /** Breaking changes the changelog does not declare. */
  undeclared: Change[];
}

/** The "### Breaking" list of the changelog's "## Unreleased" section, as written. */
export function declaredBreaking(changelog: string): string {
  const unreleased = changelog.split(/^## /m).find((section) => /^Unreleased\b/i.test(section)) ?? "";
  return unreleased.split(/^### /m).find((part) => /^Breaking\b/i.test(part)) ?? "";
}

export async function checkSchema(released: string, current: string, changelog: string): Promise<SchemaCheck> {
  const changes = await diff(buildSchema(released), buildSchema(current));
  const of = (level: CriticalityLevel) => changes.filter((change) => change.criticality.level === level);
  const breaking = of(CriticalityLevel.Breaking);
  const declared = declaredBreaking(changelog);
  return {
    breaking,
    dangerous: of(CriticalityLevel.Dangerous),
    safe: of(CriticalityLevel.NonBreaking),
    undeclared: breaking.filter((change) => !change.path || !declared.includes(`\`${change.path}\``)),
  };
}

function release(version: string): void {
  if (!/^\d+\.\d+\.\d+(?:-[\w.]+)?$/.test(version)) throw new Error(`not a version: ${version}`);
  writeFileSync(file("schema.released.graphql"), readFileSync(file("schema.graphql"), "utf8"));
  const changelog = readFileSync(file("CHANGELOG.md"), "utf8");
  const date = new Date().toISOString().slice(0, 10);
  if (!/^## Unreleased$/m.test(changelog)) throw new Error('CHANGELOG.md has no "## Unreleased" section');
  writeFileSync(
    file("CHANGELOG.md"),
    changelog.replace(/^## Unreleased$/m, `## Unreleased\n\n## ${version} - ${date}`),
  );
  console.log(`schema.released.graphql is now the contract of ${version}; CHANGELOG.md has its heading`);
}

async function main(): Promise<void> {
  const releaseAt = process.argv.indexOf("--release");
  if (releaseAt >= 0) {
    release(process.argv[releaseAt + 1] ?? "");
    return;
  }
  const result = await checkSchema(
    readFileSync(file("schema.released.graphql"), "utf8"),
    readFileSync(file("schema.graphql"), "utf8"),
    readFileSync(file("CHANGELOG.md"), "utf8"),
  );
  const print = (title: string, changes: Change[]) => {
    if (!changes.length) return;
    console.log(`${title} (${changes.length}):`);
    for (const change of changes) console.log(`  ${change.path ?? ""}: ${change.message}`);
  };
  print("Breaking", result.breaking);
  print("Dangerous (can change what existing clients see)", result.dangerous);
  print("Safe", result.safe);
  if (result.undeclared.length) {
    console.error(
      `\n${result.undeclared.length} breaking change(s) not declared in CHANGELOG.md: list each path ` +
        '(in backticks) under "## Unreleased" > "### Breaking", or keep the old contract.',
    );
    for (const change of result.undeclared) console.error(`  \`${change.path}\`: ${change.message}`);
    process.exit(1);
  }
  console.log(`schema.graphql against schema.released.graphql: no undeclared breaking change`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
