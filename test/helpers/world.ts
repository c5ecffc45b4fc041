/**
 * The world a test runs in, as vitest fixtures: the server of the enclosing backend, a fresh
 * tenant with users and tokens, and graphql-ws clients that are closed after the test.
 *
 *   describe.each(backends())("realtime on %s", (backend) => {
 *     const world = useServer(backend, { typingTimeoutMs: 700 });
 *     test("delivers live messages", async ({ server, tenant, sockets }) => { ... });
 *   });
 *
 * `useServer` starts one server (and database) for its describe block, so every backend of
 * `backends()` gets its own; the returned handle serves hooks and helpers outside the tests.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, test as base, beforeAll } from "vitest";
import type { Config } from "../../src/env.ts";
import type { Logger } from "../../src/logger.ts";
import { type BackendName, createTestDatabase, startServer, type TestDatabase, type TestServer } from "./backends.ts";
import { type Auth, type WsClient, wsClient } from "./client.ts";
import { createTenant, type TestTenant } from "./fixtures.ts";

export interface Sockets {
  /** A graphql-ws client on the test's server (see wsClient), disposed when the test ends, however it ends. */
  open(auth?: Auth, options?: { keepOpen?: boolean }): WsClient;
}

/** The server of a describe block; read its fields inside hooks and tests, not while collecting. */
export interface ServerHandle {
  readonly server: TestServer;
  readonly url: string;
  readonly wsUrl: string;
  readonly database: TestDatabase;
  /** With `dataDir: true`: the server's data directory (uploads in its attachments/, the mail outbox). */
  readonly dataDir: string;
}

export const test = base
  .extend("server", (): TestServer => {
    throw new Error("no server here: call useServer(backend) in the enclosing describe");
  })
  /** The names of the users of `tenant`; a describe block can override them (test.override). */
  .extend("userNames", ["Alice", "Bob", "Carol"])
  /** A fresh tenant whose users (Alice, Bob and Carol unless overridden) each have a user token. */
  .extend("tenant", async ({ server, userNames }): Promise<TestTenant> => createTenant(server.url, userNames))
  .extend("sockets", async ({ server }, { onCleanup }): Promise<Sockets> => {
    const opened: WsClient[] = [];
    onCleanup(async () => {
      await Promise.allSettled(opened.map((client) => client.dispose()));
    });
    return {
      open(auth = {}, options = {}) {
        const client = wsClient(server.wsUrl, auth, options);
        opened.push(client);
        return client;
      },
    };
  });

/**
 * Starts a server on a database of `backend` for the enclosing describe block, and stops both
 * after it. `dataDir: true` gives the server a data directory of its own, removed afterwards.
 */
export function useServer(
  backend: BackendName,
  overrides: Partial<Config> = {},
  options: { log?: Logger; dataDir?: boolean } = {},
): ServerHandle {
  let database: TestDatabase | undefined;
  let server: TestServer | undefined;
  let dataDir: string | undefined;
  beforeAll(async () => {
    database = await createTestDatabase(backend);
    if (options.dataDir) {
      dataDir = await mkdtemp(join(tmpdir(), "chat-test-"));
      overrides = { dataDir, attachmentsDir: join(dataDir, "attachments"), ...overrides };
    }
    server = await startServer(database, overrides, { log: options.log });
  });
  afterAll(async () => {
    await server?.stop();
    await database?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });
  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error("the server of this describe block has not started yet");
    return value;
  };
  const handle: ServerHandle = {
    get server() {
      return started(server);
    },
    get url() {
      return started(server).url;
    },
    get wsUrl() {
      return started(server).wsUrl;
    },
    get database() {
      return started(database);
    },
    get dataDir() {
      return started(dataDir);
    },
  };
  test.override("server", () => handle.server);
  return handle;
}
