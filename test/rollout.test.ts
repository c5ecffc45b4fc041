/**
 * Graceful rollouts: SIGTERM to one of two instances under live traffic. It stops accepting
 * connections, its /ready answers 503, its sockets close with 1012 ("service restart"), its
 * operations in flight finish, and clients that reconnect to the other instance and resume by
 * cursor miss no acknowledged message and receive none twice, on a single-conversation stream
 * and on the stream of all of the viewer's conversations.
 */
import type { ResultOf } from "@graphql-typed-document-node/core";
import { print } from "graphql";
import { afterAll, describe, expect, it } from "vitest";
import { createTestDatabase, TEST_JWT_SECRET, type TestDatabase } from "./helpers/backends.ts";
import { ok, sleep, wsClient } from "./helpers/client.ts";
import { createTenant, type TestUser } from "./helpers/fixtures.ts";
import { freePort, killAll, type Running, runServer, waitFor } from "./helpers/process.ts";
import { CreateGroup } from "./operations/conversations.ts";
import { MessageAdded } from "./operations/events.ts";
import { SendMessage } from "./operations/messages.ts";

type Added = ResultOf<typeof MessageAdded>["messageAdded"];

/**
 * A subscriber that starts on `first` and, when that socket closes, resumes on `second`
 * from the cursor of the last message it received.
 */
function resumingSubscriber(first: string, second: string, user: TestUser, conversationId?: string) {
  const received: Added[] = [];
  const closes: number[] = [];
  const run = (url: string, after?: string) => {
    const client = wsClient(url, { token: user.token }, { keepOpen: true });
    const ended = new Promise<void>((resolve) => {
      client.subscribe(
        { query: print(MessageAdded), variables: { conversationId, after } },
        {
          next: (value) => received.push((value.data as { messageAdded: Added }).messageAdded),
          error: () => resolve(),
          complete: () => resolve(),
        },
      );
    });
    return { client, ended };
  };
  const done = (async () => {
    const one = run(first);
    await one.ended;
    closes.push((await one.client.closed).code);
    await one.client.dispose();
    return run(second, received.at(-1)?.cursor);
  })();
  return { received, closes, done };
}

describe.runIf(process.env.TEST_DATABASE_URL)("a rollout: one of two instances stops under live traffic", () => {
  const servers: Running[] = [];
  let database: TestDatabase | undefined;
  afterAll(async () => {
    await killAll(servers);
    await database?.drop();
  });

  it("nothing acknowledged is lost and nothing is delivered twice", { timeout: 180_000 }, async () => {
    database = await createTestDatabase("postgres+redis");
    const urls: string[] = [];
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      const server = runServer({
        DATABASE_URL: database.url as string,
        REDIS_URL: process.env.TEST_REDIS_URL as string,
        JWT_SECRET: TEST_JWT_SECRET,
        PORT: String(port),
        HOST: "127.0.0.1",
        WEB_CONCURRENCY: "1",
        LOG_LEVEL: "info",
        RATE_LIMITS: "off",
        SHUTDOWN_DRAIN_SECONDS: "5",
      });
      servers.push(server);
      await waitFor(server, /chat API ready/);
      urls.push(`http://127.0.0.1:${port}/graphql`);
    }
    const [stays, stops] = urls as [string, string];
    const ws = (url: string) => url.replace("http", "ws");
    const tenant = await createTenant(stays, ["Alice", "Bob"]);
    const [alice, bob] = tenant.users as [TestUser, TestUser];
    const conversationId = (
      await ok(stays, CreateGroup, { input: { name: "Rollout", memberIds: [bob.id] } }, { token: alice.token })
    ).createGroup.id;

    // Bob follows the conversation, and all of his conversations, on the instance that will stop.
    const subscribers = [
      resumingSubscriber(ws(stops), ws(stays), bob, conversationId),
      resumingSubscriber(ws(stops), ws(stays), bob),
    ];
    // Alice sends through both instances, two at a time, until told to stop.
    const acknowledged: { id: string; seq: number }[] = [];
    let sending = true;
    let attempt = 0;
    const sender = async () => {
      while (sending) {
        const url = attempt++ % 2 === 0 ? stays : stops;
        try {
          const { sendMessage } = await ok(
            url,
            SendMessage,
            { input: { conversationId, body: `m${attempt}` } },
            { token: alice.token },
          );
          acknowledged.push({ id: sendMessage.id, seq: sendMessage.seq });
        } catch {
          // Refused or cut by the stopping instance: not acknowledged, so not expected.
        }
        await sleep(10);
      }
    };
    const senders = [sender(), sender()];
    // Both streams live (each received something), then traffic goes on for a while.
    const deadline = Date.now() + 20_000;
    while (subscribers.some((s) => s.received.length === 0) && Date.now() < deadline) await sleep(50);
    expect(subscribers.every((s) => s.received.length > 0)).toBe(true);
    await sleep(500);

    const stopping = servers[1] as Running;
    stopping.child.kill("SIGTERM");
    // While it drains it is not ready, and it exits cleanly.
    const ready = await fetch(stops.replace("/graphql", "/ready")).catch(() => null);
    if (ready) expect(ready.status).toBe(503);
    expect(await stopping.exited).toBe(0);
    await sleep(1000);
    sending = false;
    await Promise.all(senders);
    expect(acknowledged.length).toBeGreaterThan(20);

    for (const subscriber of subscribers) {
      const resumed = await subscriber.done;
      const from = subscriber.received[0]?.seq ?? 0;
      const expected = acknowledged.filter((m) => m.seq > from).map((m) => m.id);
      const until = Date.now() + 15_000;
      const have = () => new Set(subscriber.received.map((m) => m.id));
      while (expected.some((id) => !have().has(id)) && Date.now() < until) await sleep(100);
      expect(subscriber.closes).toEqual([1012]);
      expect(expected.filter((id) => !have().has(id))).toEqual([]);
      const ids = subscriber.received.map((m) => m.id);
      expect(new Set(ids).size).toBe(ids.length);
      const seqs = subscriber.received.map((m) => m.seq);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      await resumed.client.dispose();
    }
    const log = stopping.output();
    expect(log).toContain('"msg":"shutting down"');
  });
});
