import { buildServer } from "../scripts/build.ts";
import { buildUi } from "../scripts/build-ui.ts";

/**
 * Builds dist/main.js once per test run (server processes started by tests run it, as `npm start`
 * does) and the UI pages' bundle when its sources changed since the last build.
 */
export default async function setup(): Promise<void> {
  await buildServer();
  await buildUi();
}
