import { buildServer } from "../scripts/build.ts";

/** Builds dist/main.js once per test run: server processes started by tests run it, as `npm start` does. */
export default async function setup(): Promise<void> {
  await buildServer();
}
