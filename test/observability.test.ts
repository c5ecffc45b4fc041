/**
 * What an operator sees: Prometheus metrics at GET /metrics (moving with traffic, behind
 * METRICS_TOKEN, one view across worker processes) and one log line per operation and
 * socket, without secrets or message bodies.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect } from "vitest";
import { backends, capturingLogger, createTestDatabase, TEST_JWT_SECRET } from "./helpers/backends.ts";
import { fails, ok, request, sleep, subscribe, whenLive, wsClient } from "./helpers/client.ts";
import { createTenant } from "./helpers/fixtures.ts";
import { freePort, killAll, type Running, runServer, waitFor } from "./helpers/process.ts";
import { test, useServer } from "./helpers/world.ts";
import { CreateGroup } from "./operations/conversations.ts";
import { MessageAdded } from "./operations/events.ts";
import { SendMessage } from "./operations/messages.ts";
import { Viewer } from "./operations/users.ts";

const METRICS_TOKEN = "metrics-token-for-tests-0123456789";

/** The samples of a Prometheus text page: `name{labels}` -> value. */
function parseMetrics(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

async function scrape(graphqlUrl: string, token: string | null = METRICS_TOKEN): Promise<Map<string, number>> {
  const response = await fetch(graphqlUrl.replace(/\/graphql$/, "/metrics"), {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toContain("text/plain");
  return parseMetrics(await response.text());
}

const value = (samples: Map<string, number>, key: string) => samples.get(key) ?? 0;

describe.each(backends())("operations on %s", (backend) => {
  const captured = capturingLogger();
  useServer(backend, { metricsToken: METRICS_TOKEN }, { log: captured.log });

  test("GET /metrics answers only with METRICS_TOKEN", async ({ server }) => {
    const metricsUrl = server.url.replace(/\/graphql$/, "/metrics");
    expect((await fetch(metricsUrl)).status).toBe(401);
    expect((await fetch(metricsUrl, { headers: { authorization: "Bearer wrong-token-of-some-length" } })).status).toBe(
      401,
    );
    const samples = await scrape(server.url);
    // Node process metrics come along.
    expect(value(samples, "process_cpu_user_seconds_total")).toBeGreaterThan(0);
  });

  test("series move with traffic: operations, errors by code, sockets, subscriptions, deliveries", async ({
    server,
    tenant,
    sockets,
  }) => {
    const [alice, bob] = tenant.users as [(typeof tenant.users)[0], (typeof tenant.users)[0]];
    const before = await scrape(server.url);
    const conversationId = (
      await ok(server.url, CreateGroup, { input: { name: "Ops", memberIds: [bob.id] } }, { token: alice.token })
    ).createGroup.id;
    const client = sockets.open({ token: bob.token });
    const sub = subscribe(client, MessageAdded, { conversationId });
    const send = (body: string) =>
      ok(server.url, SendMessage, { input: { conversationId, body } }, { token: alice.token });
    await whenLive(sub, () => send("poke"));
    for (let i = 0; i < 3; i++) await send(`m${i}`);
    await sub.take(3);
    await fails(server.url, Viewer, undefined, {}, "UNAUTHENTICATED");
    const during = await scrape(server.url);
    const moved = (key: string) => value(during, key) - value(before, key);
    expect(moved('chat_graphql_operations_total{type="mutation",name="SendMessage"}')).toBeGreaterThanOrEqual(4);
    expect(
      moved('chat_graphql_operation_duration_seconds_count{type="mutation",name="SendMessage"}'),
    ).toBeGreaterThanOrEqual(4);
    expect(moved('chat_graphql_operations_total{type="subscription",name="MessageAdded"}')).toBe(1);
    expect(moved('chat_graphql_errors_total{type="query",name="Viewer",code="UNAUTHENTICATED"}')).toBe(1);
    expect(value(during, "chat_ws_sockets")).toBeGreaterThanOrEqual(1);
    expect(value(during, "chat_subscriptions")).toBeGreaterThanOrEqual(1);
    expect(moved("chat_deliveries_total")).toBeGreaterThanOrEqual(4);
    expect(moved("chat_events_published_total")).toBeGreaterThanOrEqual(4);
    expect(moved("chat_message_delivery_seconds_count")).toBeGreaterThanOrEqual(4);
    expect(moved("chat_db_query_duration_seconds_count")).toBeGreaterThan(0);
    if (backend === "postgres+redis")
      expect(value(during, 'chat_db_pool_connections{state="total"}')).toBeGreaterThan(0);

    sub.unsubscribe();
    await client.dispose();
    await sleep(200);
    const after = await scrape(server.url);
    expect(value(after, "chat_subscriptions")).toBeLessThan(value(during, "chat_subscriptions"));
  });

  test("one log line per operation with request id, tenant, principal, name, type, duration, code", async ({
    server,
    tenant,
  }) => {
    const [alice] = tenant.users as [(typeof tenant.users)[0]];
    const response = await fetch(server.url, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${alice.token}`, "x-request-id": "req-42" },
      body: JSON.stringify({ query: "query WhoAmI { viewer { user { id } } }" }),
    });
    expect(response.headers.get("x-request-id")).toBe("req-42");
    await response.json();
    const fresh = await fetch(server.url, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": "not a valid id!" },
      body: JSON.stringify({ query: "query Nope { viewer { user { id } } }" }),
    });
    const freshId = fresh.headers.get("x-request-id");
    expect(freshId).toMatch(/^[0-9a-f-]{36}$/);
    await fresh.json();
    const line = captured.lines.find((l) => l.requestId === "req-42");
    expect(line).toMatchObject({
      msg: "graphql operation",
      tenantId: tenant.id,
      principal: "user",
      operation: "WhoAmI",
      type: "query",
      transport: "http",
    });
    expect(typeof line?.durationMs).toBe("number");
    expect(line).not.toHaveProperty("code");
    expect(captured.lines.find((l) => l.requestId === freshId)).toMatchObject({
      operation: "Nope",
      principal: "anonymous",
      code: "UNAUTHENTICATED",
    });
  });
});

describe("logs and metrics of a server process", () => {
  const servers: Running[] = [];
  const dirs: string[] = [];
  afterAll(async () => {
    await killAll(servers);
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  test("logs carry no token, API key or message body, and redact them from URLs; sockets log open and close", async () => {
    const dir = mkdtempSync(join(tmpdir(), "chat-logs-"));
    dirs.push(dir);
    const port = await freePort();
    const server = runServer({
      DATA_DIR: dir,
      PORT: String(port),
      HOST: "127.0.0.1",
      LOG_LEVEL: "debug",
      JWT_SECRET: TEST_JWT_SECRET,
    });
    servers.push(server);
    await waitFor(server, /chat API ready/);
    const url = `http://127.0.0.1:${port}/graphql`;
    const tenant = await createTenant(url, ["Alice", "Bob"]);
    const [alice, bob] = tenant.users as [(typeof tenant.users)[0], (typeof tenant.users)[0]];
    const conversationId = (
      await ok(url, CreateGroup, { input: { name: "Secret", memberIds: [bob.id] } }, { token: alice.token })
    ).createGroup.id;
    const body = "a body that must never reach the logs 7f3a";
    await ok(url, SendMessage, { input: { conversationId, body } }, { apiKey: tenant.apiKey });
    // Credentials in query parameters (where some clients put them) and in a socket's connection_init.
    await fetch(`${url}?token=${alice.token}&api_key=${tenant.apiKey}`, { method: "GET" });
    await fetch(`http://127.0.0.1:${port}/attachments/nothing?token=${alice.token}`);
    await request(url, "query { viewer { user { id } } }", {}, { token: `${alice.token}x` });
    const client = wsClient(url.replace("http", "ws"), { token: bob.token }, { keepOpen: true });
    const sub = subscribe(client, MessageAdded, { conversationId });
    await whenLive(sub, () => ok(url, SendMessage, { input: { conversationId, body } }, { token: alice.token }));
    await client.dispose();
    await sleep(300);
    const output = server.output();
    for (const secret of [alice.token, bob.token, tenant.apiKey, body]) expect(output).not.toContain(secret);
    const lines = output
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines.some((l) => l.msg === "socket opened")).toBe(true);
    expect(lines.some((l) => l.msg === "socket authenticated" && l.tenantId === tenant.id)).toBe(true);
    expect(lines.some((l) => l.msg === "socket closed" && typeof l.code === "number")).toBe(true);
    expect(
      lines.filter((l) => l.msg === "graphql operation" && l.operation === "SendMessage").length,
    ).toBeGreaterThanOrEqual(2);
  });

  test.runIf(process.env.TEST_DATABASE_URL)(
    "with two worker processes, a scrape of either answers for both",
    async () => {
      const database = await createTestDatabase("postgres+redis");
      try {
        const port = await freePort();
        const server = runServer({
          DATABASE_URL: database.url as string,
          REDIS_URL: process.env.TEST_REDIS_URL as string,
          JWT_SECRET: TEST_JWT_SECRET,
          PORT: String(port),
          HOST: "127.0.0.1",
          WEB_CONCURRENCY: "2",
          LOG_LEVEL: "info",
        });
        servers.push(server);
        await waitFor(server, /chat API ready/);
        const url = `http://127.0.0.1:${port}/graphql`;
        const count = 20;
        // Fresh connections spread over both workers.
        for (let i = 0; i < count; i++) {
          await fetch(url, {
            method: "POST",
            headers: { "content-type": "application/json", connection: "close" },
            body: JSON.stringify({ query: "query Counted { __typename }" }),
          });
        }
        // Each scrape lands on either worker and counts the operations of both.
        for (let i = 0; i < 4; i++) {
          const samples = await scrape(url, null);
          expect(value(samples, 'chat_graphql_operations_total{type="query",name="Counted"}')).toBe(count);
        }
      } finally {
        await database.drop();
      }
    },
    120_000,
  );
});
