import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { restartDelayMs } from "../src/cluster.ts";
import { loadConfig } from "../src/env.ts";
import { topics } from "../src/realtime/topics.ts";
import { backends, createTestDatabase, TEST_JWT_SECRET, type TestDatabase } from "./helpers/backends.ts";
import { ok, subscribe, whenLive, wsClient } from "./helpers/client.ts";
import { createTenant, type TestUser } from "./helpers/fixtures.ts";
import { childPids, freePort, killAll, processExists, type Running, runServer, waitFor } from "./helpers/process.ts";
import { CreateGroup } from "./operations/conversations.ts";
import { MessageAdded } from "./operations/events.ts";
import { SendMessage } from "./operations/messages.ts";

const READY = /chat API ready: GraphQL and GraphiQL at (http:\/\/[^\s,]+)/;

/** The server's JSON log lines so far. */
function logLines(running: Running): Record<string, unknown>[] {
  return running
    .output()
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Pids of the workers the primary reported ready, in order. */
const readyWorkers = (running: Running) =>
  logLines(running)
    .filter((line) => line.msg === "worker ready")
    .map((line) => line.worker as number);

/** Polls `probe` until it returns something (fails after timeoutMs, with the server's output). */
async function eventually<T>(running: Running, what: string, probe: () => T | undefined, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = probe();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what} not seen; output:\n${running.output()}`);
}

describe("server processes", () => {
  const dirs: string[] = [];
  const dataDir = () => {
    const dir = mkdtempSync(join(tmpdir(), "chat-cluster-"));
    dirs.push(dir);
    return dir;
  };
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it("WEB_CONCURRENCY defaults to one process per core on PostgreSQL + Redis, one otherwise", () => {
    const postgres = { DATABASE_URL: "postgres://db/chat", JWT_SECRET: TEST_JWT_SECRET };
    expect(loadConfig({}).webConcurrency).toBe(1);
    expect(loadConfig(postgres).webConcurrency).toBe(1);
    expect(loadConfig({ ...postgres, REDIS_URL: "redis://redis" }).webConcurrency).toBe(availableParallelism());
    expect(loadConfig({ ...postgres, REDIS_URL: "redis://redis", WEB_CONCURRENCY: "3" }).webConcurrency).toBe(3);
    expect(loadConfig({ WEB_CONCURRENCY: "1" }).webConcurrency).toBe(1);
    expect(() => loadConfig({ WEB_CONCURRENCY: "0" })).toThrow(/WEB_CONCURRENCY/);
    expect(() => loadConfig({ WEB_CONCURRENCY: "two" })).toThrow(/WEB_CONCURRENCY/);
  });

  it("a worker dying again and again is restarted after a doubling delay, at most 30 s", () => {
    expect([0, 1, 2, 3, 5, 6, 20].map(restartDelayMs)).toEqual([0, 1000, 2000, 4000, 16_000, 30_000, 30_000]);
  });

  it("embedded mode refuses WEB_CONCURRENCY above 1 at startup", async () => {
    const running = runServer({ WEB_CONCURRENCY: "2", DATA_DIR: dataDir(), PORT: "0", HOST: "127.0.0.1" });
    expect(await running.exited).toBe(2);
    expect(running.output()).toContain(
      "WEB_CONCURRENCY: more than one process needs DATABASE_URL and REDIS_URL: the embedded database (PGlite) can only be opened by one process",
    );
  });

  it("PostgreSQL without Redis refuses WEB_CONCURRENCY above 1 at startup", async () => {
    const running = runServer({
      WEB_CONCURRENCY: "2",
      DATABASE_URL: "postgres://127.0.0.1:1/none",
      JWT_SECRET: TEST_JWT_SECRET,
      PORT: "0",
      HOST: "127.0.0.1",
    });
    expect(await running.exited).toBe(2);
    expect(running.output()).toContain("WEB_CONCURRENCY: more than one process needs REDIS_URL");
  });

  it("embedded mode is one process", { timeout: 120_000 }, async () => {
    const running = runServer({ DATA_DIR: dataDir(), PORT: "0", HOST: "127.0.0.1" });
    await waitFor(running, READY);
    expect(childPids(running.child.pid as number)).toEqual([]);
    running.child.kill("SIGTERM");
    expect(await running.exited).toBe(0);
  });
});

// Declared only where PostgreSQL and Redis are configured: workers need both.
if (backends().includes("postgres+redis")) {
  describe("several server processes on PostgreSQL + Redis", () => {
    const redisUrl = process.env.TEST_REDIS_URL as string;
    let database: TestDatabase;
    let redis: Redis;
    const servers: Running[] = [];

    beforeAll(async () => {
      database = await createTestDatabase("postgres+redis");
      redis = new Redis(redisUrl, { disableClientInfo: true });
    });
    afterAll(async () => {
      // A test that failed half-way leaves no process behind.
      await killAll(servers);
      redis?.disconnect();
      await database?.drop();
    });

    /** The server as `npm start` runs it on the test database and Redis, on a port of its own. */
    const start = async (env: Record<string, string>) => {
      const server = runServer({
        DATABASE_URL: database.url as string,
        REDIS_URL: redisUrl,
        JWT_SECRET: TEST_JWT_SECRET,
        HOST: "127.0.0.1",
        PORT: String(await freePort()),
        ...env,
      });
      servers.push(server);
      return server;
    };

    /** Redis connections subscribed to a conversation's messages: one per process with a subscriber there. */
    const processesFollowing = async (tenantId: string, conversationId: string) => {
      const [, count] = (await redis.pubsub("NUMSUB", topics.messages(tenantId, conversationId))) as [string, number];
      return count;
    };

    it("WEB_CONCURRENCY=2: two workers on one port deliver every message to every socket, a killed worker is replaced, SIGTERM stops them all", {
      timeout: 240_000,
    }, async () => {
      const server = await start({ WEB_CONCURRENCY: "2" });
      const [, url] = (await waitFor(server, READY)) as [string, string];
      const wsUrl = url.replace("http", "ws");
      const primary = server.child.pid as number;
      const workers = childPids(primary);
      expect(workers).toHaveLength(2);
      expect([...readyWorkers(server)].sort()).toEqual([...workers].sort());
      // The primary migrated before forking, so no worker had anything left to apply.
      const applied = logLines(server).filter((line) => String(line.msg).startsWith("Applying migration"));
      expect(applied.length).toBeGreaterThan(0);
      expect(applied.every((line) => line.pid === primary)).toBe(true);

      const tenant = await createTenant(url);
      const [alice, bob, carol] = tenant.users as [TestUser, TestUser, TestUser];
      const { createGroup } = await ok(
        url,
        CreateGroup,
        { input: { name: "Everyone", memberIds: [bob.id, carol.id] } },
        { token: alice.token },
      );
      const conversationId = createGroup.id;
      const send = (body: string) => ok(url, SendMessage, { input: { conversationId, body } }, { token: alice.token });

      const follow = (viewer: TestUser) => {
        const client = wsClient(wsUrl, { token: viewer.token }, { keepOpen: true });
        const socket = { client, sub: subscribe(client, MessageAdded, { conversationId }), closed: false };
        void client.closed.then(() => {
          socket.closed = true;
        });
        return socket;
      };
      const sockets: ReturnType<typeof follow>[] = [];
      const open = (viewers: TestUser[]) => {
        const opened = viewers.map(follow);
        sockets.push(...opened);
        return opened;
      };
      /** The next `count` messages a socket receives, warm-up pokes left out. */
      const receive = async ({ sub }: ReturnType<typeof follow>, count: number) => {
        const messages: { body: string | null; seq: number }[] = [];
        while (messages.length < count) {
          const event = await sub.next();
          expect(event.errors, JSON.stringify(event)).toBeUndefined();
          const message = event.data?.messageAdded;
          if (message && message.body !== "warm-up") messages.push(message);
        }
        return messages;
      };

      // Connections are handed to the workers in turn: six sockets land on both.
      const first = open([alice, bob, carol, alice, bob, carol]);
      for (const { sub } of first) await whenLive(sub, () => send("warm-up"));
      // Each worker subscribes to the conversation in Redis for its own sockets.
      expect(await processesFollowing(tenant.id, conversationId)).toBe(2);

      const bodies = Array.from({ length: 10 }, (_, i) => `message ${i + 1}`);
      for (const body of bodies) await send(body);
      for (const socket of first) {
        const messages = await receive(socket, bodies.length);
        expect(messages.map((message) => message.body)).toEqual(bodies);
        const seqs = messages.map((message) => message.seq);
        expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      }

      // A worker killed outright: its sockets drop, the primary starts another in its place.
      const [victim, survivor] = workers as [number, number];
      process.kill(victim, "SIGKILL");
      await Promise.race(first.map(({ client }) => client.closed));
      const replacement = await eventually(server, "a replacement worker", () =>
        readyWorkers(server).find((pid) => !workers.includes(pid)),
      );
      expect(logLines(server)).toContainEqual(
        expect.objectContaining({ msg: "worker died; restarting it", worker: victim, signal: "SIGKILL" }),
      );
      expect(childPids(primary).sort()).toEqual([survivor, replacement].sort());
      const dropped = first.filter((socket) => socket.closed);
      const kept = first.filter((socket) => !socket.closed);
      expect(dropped.length).toBeGreaterThan(0);
      expect(kept.length).toBeGreaterThan(0);

      // The server still serves: over HTTP, on the survivor's sockets, and on new ones.
      expect((await fetch(new URL("/ready", url))).status).toBe(200);
      expect((await fetch(new URL("/health", url))).status).toBe(200);
      const second = open([alice, bob, carol, alice]);
      for (const { sub } of second) await whenLive(sub, () => send("warm-up"));
      expect(await processesFollowing(tenant.id, conversationId)).toBe(2);
      const later = ["after the restart 1", "after the restart 2"];
      for (const body of later) await send(body);
      for (const socket of [...kept, ...second]) {
        expect((await receive(socket, later.length)).map((message) => message.body)).toEqual(later);
      }

      // SIGTERM to the primary: each worker shuts down gracefully, then the primary exits.
      const live = childPids(primary);
      server.child.kill("SIGTERM");
      expect(await server.exited).toBe(0);
      for (const { client } of [...kept, ...second]) expect((await client.closed).code).toBe(1012);
      for (const pid of live) expect(processExists(pid)).toBe(false);
      expect(logLines(server)).toContainEqual(expect.objectContaining({ msg: "all workers exited", exitCode: 0 }));
      for (const { client } of sockets) await client.dispose();
    });

    it("WEB_CONCURRENCY=1 is a single process, as before", { timeout: 120_000 }, async () => {
      const server = await start({ WEB_CONCURRENCY: "1" });
      const [, url] = (await waitFor(server, READY)) as [string, string];
      expect(childPids(server.child.pid as number)).toEqual([]);
      expect((await fetch(new URL("/ready", url))).status).toBe(200);
      server.child.kill("SIGTERM");
      expect(await server.exited).toBe(0);
    });

    it("a worker that cannot start stops the server instead of restarting forever", { timeout: 120_000 }, async () => {
      const server = await start({ WEB_CONCURRENCY: "2", JWT_SECRET: "" });
      expect(await server.exited).toBe(1);
      expect(server.output()).toContain("JWT_SECRET is required when DATABASE_URL is set");
      expect(logLines(server)).toContainEqual(expect.objectContaining({ msg: "a worker failed to start; stopping" }));
      expect(logLines(server).filter((line) => line.msg === "worker died; restarting it")).toEqual([]);
    });
  });
}
