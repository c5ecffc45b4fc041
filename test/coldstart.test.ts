import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { print } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { backends, createTestDatabase, TEST_JWT_SECRET, type TestDatabase } from "./helpers/backends.ts";
import { ok } from "./helpers/client.ts";
import { createTenant, type TestUser } from "./helpers/fixtures.ts";
import { freePort, killAll, type Running, runServer, waitFor } from "./helpers/process.ts";
import { CreateGroup } from "./operations/conversations.ts";
import { MessageAdded } from "./operations/events.ts";
import { SendMessage } from "./operations/messages.ts";

const READY = /chat API ready: GraphQL and GraphiQL at (http:\/\/[^\s,]+)/;

interface Frame {
  type: string;
  id?: string;
  payload?: { data?: { messageAdded?: { body: string | null } }; errors?: unknown };
}

/**
 * A graphql-ws socket spoken by hand, so the test knows when its subscribe frame has been
 * written to the network (the send callback), which the graphql-ws client does not say.
 */
async function rawSocket(wsUrl: string, token: string) {
  const socket = new WebSocket(wsUrl, "graphql-transport-ws");
  const frames: Frame[] = [];
  const waiters: (() => void)[] = [];
  socket.on("message", (data) => {
    frames.push(JSON.parse(String(data)) as Frame);
    for (const wake of waiters.splice(0)) wake();
  });
  const until = async (found: () => boolean, what: string, timeoutMs = 10_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!found()) {
      if (Date.now() > deadline) throw new Error(`${what} not seen; frames: ${JSON.stringify(frames)}`);
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  };
  await new Promise((resolve, reject) => socket.once("open", resolve).once("error", reject));
  socket.send(JSON.stringify({ type: "connection_init", payload: { authorization: `Bearer ${token}` } }));
  await until(() => frames.some((frame) => frame.type === "connection_ack"), "connection_ack");
  return {
    /** Sends a subscribe frame; resolves once it has been written to the socket. */
    subscribe: (id: string, query: string, variables: Record<string, unknown>) =>
      new Promise<void>((resolve, reject) =>
        socket.send(JSON.stringify({ id, type: "subscribe", payload: { query, variables } }), (error) =>
          error ? reject(error) : resolve(),
        ),
      ),
    /** Waits for a message with this body on the operation. */
    receive: (id: string, body: string) =>
      until(
        () => frames.some((frame) => frame.id === id && frame.payload?.data?.messageAdded?.body === body),
        `message "${body}"`,
      ),
    frames,
    close: () => socket.close(),
  };
}

/**
 * A TCP proxy in front of Redis that holds back, once, a connection's traffic from the
 * moment it subscribes to a given channel until `release()`: a subscription whose setup
 * is slow, made slow for real.
 */
async function holdingProxy(redisUrl: string, channel: string) {
  const target = new URL(redisUrl);
  const sockets = new Set<Socket>();
  let held: { upstream: Socket; chunks: Buffer[] } | null = null;
  let released = false;
  let resolveHeld: () => void = () => {};
  const seen = new Promise<void>((resolve) => {
    resolveHeld = resolve;
  });
  const server: Server = createServer((client) => {
    const upstream = connect(Number(target.port || 6379), target.hostname);
    sockets.add(client).add(upstream);
    upstream.pipe(client);
    client.on("data", (chunk: Buffer) => {
      if (held?.upstream === upstream) {
        held.chunks.push(chunk);
        return;
      }
      const text = chunk.toString("latin1");
      if (!held && !released && text.includes(channel) && /subscribe/i.test(text)) {
        held = { upstream, chunks: [chunk] };
        resolveHeld();
        return;
      }
      upstream.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", end).on("error", end);
    upstream.on("close", end).on("error", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `redis://127.0.0.1:${port}`,
    /** Resolves once a connection subscribed to the channel (and is held). */
    seen,
    release() {
      released = true;
      const current = held;
      held = null;
      for (const chunk of current?.chunks ?? []) current?.upstream.write(chunk);
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Polls /ready from the moment the process starts until it answers 200; every answer seen, in order. */
async function readyAnswers(running: Running, origin: string) {
  const answers: { status: number; body: Record<string, unknown> }[] = [];
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (running.child.exitCode !== null) throw new Error(`server exited:\n${running.output()}`);
    try {
      const response = await fetch(`${origin}/ready`);
      answers.push({ status: response.status, body: (await response.json()) as Record<string, unknown> });
      if (response.status === 200) return answers;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`never ready:\n${running.output()}`);
}

describe("a freshly started embedded instance", () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it("/ready is 200 with warm: true only after the warm-up, which is logged before the start", {
    timeout: 120_000,
  }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "chat-coldstart-"));
    dirs.push(dataDir);
    const port = await freePort();
    const server = runServer({ DATA_DIR: dataDir, HOST: "127.0.0.1", PORT: String(port) });
    try {
      const answers = await readyAnswers(server, `http://127.0.0.1:${port}`);
      expect(answers.at(-1)).toEqual({ status: 200, body: { warm: true, database: true, pubsub: true } });
      for (const answer of answers.slice(0, -1)) expect(answer).toMatchObject({ status: 503, body: { warm: false } });
      await waitFor(server, READY);
      const output = server.output();
      expect(output.indexOf('"msg":"warmed up"')).toBeGreaterThan(-1);
      expect(output.indexOf("chat API ready")).toBeGreaterThan(output.indexOf('"msg":"warmed up"'));
      expect(output).toMatch(/"failed":\[\]/);
    } finally {
      server.child.kill("SIGTERM");
      await server.exited;
    }
  });
});

// A fresh instance needs a database and pub/sub shared with another one: PostgreSQL + Redis.
if (backends().includes("postgres+redis")) {
  describe("a freshly started instance on PostgreSQL + Redis", () => {
    let database: TestDatabase;
    const servers: Running[] = [];

    beforeAll(async () => {
      database = await createTestDatabase("postgres+redis");
    });
    afterAll(async () => {
      await killAll(servers);
      await database?.drop();
    });

    const start = async (redisUrl = process.env.TEST_REDIS_URL as string) => {
      const port = await freePort();
      const server = runServer({
        DATABASE_URL: database.url as string,
        REDIS_URL: redisUrl,
        JWT_SECRET: TEST_JWT_SECRET,
        HOST: "127.0.0.1",
        PORT: String(port),
        WEB_CONCURRENCY: "1",
      });
      servers.push(server);
      return { server, origin: `http://127.0.0.1:${port}` };
    };

    /** A started instance A, its URL, and a group of Alice and Bob in a new tenant there. */
    const instanceWithGroup = async (name: string) => {
      const a = await start();
      const [, url] = (await waitFor(a.server, READY)) as [string, string];
      const tenant = await createTenant(url);
      const [alice, bob] = tenant.users as [TestUser, TestUser];
      const { createGroup } = await ok(
        url,
        CreateGroup,
        { input: { name, memberIds: [bob.id] } },
        { token: alice.token },
      );
      return { a, url, alice, bob, conversationId: createGroup.id };
    };

    it("/ready is 503 with warm: false until the warm-up is done, then 200; the start is logged after it", {
      timeout: 120_000,
    }, async () => {
      const { server, origin } = await start();
      const answers = await readyAnswers(server, origin);
      const last = answers.at(-1);
      expect(last).toEqual({ status: 200, body: { warm: true, database: true, pubsub: true } });
      // The warm-up is short: an answer before it ends is likely but not certain.
      for (const answer of answers.slice(0, -1)) {
        expect(answer.status).toBe(503);
        expect(answer.body.warm).toBe(false);
      }
      await waitFor(server, READY);
      const output = server.output();
      const warmed = output.indexOf('"msg":"warmed up"');
      expect(warmed).toBeGreaterThan(-1);
      expect(output.indexOf("chat API ready")).toBeGreaterThan(warmed);
      expect(output).not.toContain("warm-up step failed");
      expect(output).toMatch(/"failed":\[\]/);
      server.child.kill("SIGTERM");
      expect(await server.exited).toBe(0);
    });

    it("the first subscription on a fresh instance receives a message sent right after its subscribe frame, sent here or on another instance", {
      timeout: 180_000,
    }, async () => {
      const { a, url, alice, bob, conversationId } = await instanceWithGroup("Cold");
      const sendOn = (on: string, body: string) =>
        ok(on, SendMessage, { input: { conversationId, body } }, { token: alice.token });
      await sendOn(url, "before");

      for (const where of ["another instance", "the same instance"]) {
        const b = await start();
        await readyAnswers(b.server, b.origin);
        const socket = await rawSocket(`${b.origin.replace("http", "ws")}/graphql`, bob.token);
        await socket.subscribe("1", print(MessageAdded), { conversationId });
        const body = `sent right after subscribing, on ${where}`;
        await sendOn(where === "another instance" ? url : `${b.origin}/graphql`, body);
        await socket.receive("1", body);
        // Only what came after the subscription: not the message sent before it.
        const bodies = socket.frames
          .filter((frame) => frame.id === "1")
          .map((f) => f.payload?.data?.messageAdded?.body);
        expect(bodies).toEqual([body]);
        socket.close();
        b.server.child.kill("SIGTERM");
        expect(await b.server.exited).toBe(0);
      }
      a.server.child.kill("SIGTERM");
      expect(await a.server.exited).toBe(0);
    });

    it("a subscription without a cursor delivers a message stored while it was being set up (after its subscribe frame was read)", {
      timeout: 180_000,
    }, async () => {
      const { a, url, alice, bob, conversationId } = await instanceWithGroup("Slow");
      await ok(url, SendMessage, { input: { conversationId, body: "before" } }, { token: alice.token });
      // Instance B reaches Redis through the proxy, which holds back its subscription to the
      // conversation: the message below is stored after the subscribe frame and before B's
      // subscription to the conversation is live (and before B reads where it starts).
      const proxy = await holdingProxy(process.env.TEST_REDIS_URL as string, `conversation:${conversationId}:messages`);
      try {
        const b = await start(proxy.url);
        await readyAnswers(b.server, b.origin);
        const socket = await rawSocket(`${b.origin.replace("http", "ws")}/graphql`, bob.token);
        await socket.subscribe("1", print(MessageAdded), { conversationId });
        await proxy.seen;
        await ok(url, SendMessage, { input: { conversationId, body: "during setup" } }, { token: alice.token });
        proxy.release();
        await socket.receive("1", "during setup");
        await ok(url, SendMessage, { input: { conversationId, body: "after" } }, { token: alice.token });
        await socket.receive("1", "after");
        const bodies = socket.frames
          .filter((frame) => frame.id === "1")
          .map((f) => f.payload?.data?.messageAdded?.body);
        expect(bodies).toEqual(["during setup", "after"]);
        socket.close();
        b.server.child.kill("SIGTERM");
        expect(await b.server.exited).toBe(0);
      } finally {
        await proxy.close();
      }
      a.server.child.kill("SIGTERM");
      expect(await a.server.exited).toBe(0);
    });
  });
}
