import { defineConfig } from "vitest/config";

export default defineConfig({
  // graphql ships CJS and ESM builds; libraries load one and Vite the other, and graphql
  // refuses types from "another realm". Pin every import to the one Node itself loads.
  resolve: { alias: [{ find: /^graphql$/, replacement: "graphql/index.js" }] },
  test: {
    include: ["test/**/*.test.ts"],
    // Tests that start server processes run the built server, as `npm start` does.
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    pool: "forks",
    // Two cores here; each test file starts real servers and databases.
    maxWorkers: 2,
  },
});
