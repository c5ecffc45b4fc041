/**
 * Builds the server into one ES module, dist/main.js (dependencies stay in node_modules),
 * which `npm start` runs. Plain `node` on built code keeps the server lean: no TypeScript
 * loader at run time, and functions are not renamed at creation (a loader's keep-names
 * wrapper costs a property on every closure the server creates, per event and per socket).
 */
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));

/** The built entry point. */
export const serverEntry = fileURLToPath(new URL("../dist/main.js", import.meta.url));

export async function buildServer(): Promise<void> {
  await build({
    absWorkingDir: root,
    entryPoints: ["src/main.ts"],
    outfile: "dist/main.js",
    bundle: true,
    packages: "external",
    platform: "node",
    format: "esm",
    target: "node20.19",
    sourcemap: true,
    logLevel: "warning",
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await buildServer();
