/**
 * Write rate limits: per user (a budget and a cap on writes in progress at once) and per
 * tenant, on every write the API limits; the API key has no per-user limits; RATE_LIMITS
 * off lifts them all; budgets are shared through Redis between instances and kept in
 * process when Redis is gone.
 */
import type { ResultOf } from "@graphql-typed-document-node/core";
import type { GraphQLFormattedError } from "graphql";
import { print } from "graphql";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig, type RateLimitConfig } from "../src/env.ts";
import {
  backends,
  createTestDatabase,
  startServer,
  type TestDatabase,
  type TestServer,
  testConfig,
} from "./helpers/backends.ts";
import { type Auth, type GqlResult, ok, request, sleep, subscribe, whenLive, wsClient } from "./helpers/client.ts";
import { createTenant, type TestTenant, type TestUser } from "./helpers/fixtures.ts";
import { PrivateRedis } from "./helpers/redis-server.ts";
import { UploadAttachment } from "./operations/attachments.ts";
import {
  AddMembers,
  CreateGroup,
  DeleteGroup,
  RemoveMember,
  SetMemberRole,
  UpdateGroup,
} from "./operations/conversations.ts";
import { MessageAdded } from "./operations/events.ts";
import { AddReaction, EditMessage, Messages, RemoveReaction, SendMessage, SetTyping } from "./operations/messages.ts";

type Outcome = { data?: unknown; errors?: readonly GraphQLFormattedError[] };

/**
 * Sends requests together. On PostgreSQL the "Message" table is locked meanwhile and
 * released once the answers stop coming (the refused ones) while others wait on the lock:
 * every write that got past the limits is in progress at once, however fast a send is, so
 * the cap on writes in progress is what decides. On PGlite they simply run (embedded mode
 * holds a user's burst together by itself).
 */
async function withMessagesLocked<T>(databaseUrl: string | undefined, requests: (() => Promise<T>)[]): Promise<T[]> {
  if (!databaseUrl) return Promise.all(requests.map((send) => send()));
  const lock = new pg.Client({ connectionString: databaseUrl });
  await lock.connect();
  try {
    await lock.query("BEGIN");
    await lock.query('LOCK TABLE "Message" IN ACCESS EXCLUSIVE MODE');
    let answered = 0;
    const pending = requests.map((send) => send().finally(() => answered++));
    const deadline = Date.now() + 20_000;
    let seen = -1;
    while (Date.now() < deadline) {
      await sleep(300);
      const { rows } = await lock.query<{ waiting: number }>(
        `SELECT count(*)::int AS waiting FROM pg_locks WHERE NOT granted AND relation = '"Message"'::regclass`,
      );
      if ((rows[0]?.waiting ?? 0) > 0 && answered === seen) break;
      seen = answered;
    }
    await lock.query("COMMIT");
    return await Promise.all(pending);
  } finally {
    await lock.end();
  }
}

const codeOf = (result: Outcome) => result.errors?.[0]?.extensions?.code;
const isLimited = (result: Outcome) => codeOf(result) === "RATE_LIMITED";

/** A refusal names when to try again: a whole number of seconds, at least one. */
function expectRetryHint(result: Outcome): void {
  const retryAfterSeconds = result.errors?.[0]?.extensions?.retryAfterSeconds;
  expect(Number.isInteger(retryAfterSeconds), JSON.stringify(result)).toBe(true);
  expect(retryAfterSeconds).toBeGreaterThanOrEqual(1);
}

/** Small budgets, so that a test reaches them in a few requests. */
function limits(overrides: { user?: Partial<RateLimitConfig["user"]>; tenant?: Partial<RateLimitConfig["tenant"]> }) {
  const defaults = testConfig().rateLimits;
  return {
    rateLimits: {
      enabled: true,
      user: { ...defaults.user, ...overrides.user },
      tenant: { ...defaults.tenant, ...overrides.tenant },
    },
  };
}

/** A user budget of 1 per second plus a reserve of 3: at most 4 + 1 per further second. */
const tightUser = limits({ user: { perSecond: 1, burst: 3, concurrency: 2 } });
/** A tenant budget of 1 per second plus a reserve of 5. */
const tightTenant = limits({ tenant: { perSecond: 1, burst: 5 } });
/** Attempts enough to pass a tight budget even on a slow machine (it allows 4 + 1 per second). */
const ATTEMPTS = 12;

const send = (url: string, auth: Auth, conversationId: string, body: string) =>
  request(url, SendMessage, { input: { conversationId, body } }, auth);

async function groupOf(url: string, tenant: TestTenant, members: TestUser[] = tenant.users): Promise<string> {
  const { createGroup } = await ok(
    url,
    CreateGroup,
    { input: { name: "Team", memberIds: members.map((user) => user.id) } },
    { apiKey: tenant.apiKey },
  );
  return createGroup.id;
}

/** Bodies of every message stored in a conversation, read page by page. */
async function storedBodies(url: string, auth: Auth, conversationId: string): Promise<string[]> {
  const bodies: string[] = [];
  let after: string | null = null;
  while (true) {
    const page: ResultOf<typeof Messages> = await ok(url, Messages, { conversationId, first: 100, after }, auth);
    const { messages } = page;
    bodies.push(...messages.edges.map((edge) => edge.node.body ?? ""));
    if (!messages.pageInfo.hasNextPage) return bodies;
    after = messages.pageInfo.endCursor ?? null;
  }
}

/** Sends one after another until the first refusal; fails when none comes within ATTEMPTS. */
async function exhaust(
  url: string,
  auth: Auth,
  conversationId: string,
): Promise<{ refusal: GqlResult<unknown>; body: string }> {
  for (let i = 0; i < ATTEMPTS; i++) {
    const body = `exhaust ${i}`;
    const result = await send(url, auth, conversationId, body);
    if (isLimited(result)) return { refusal: result, body };
    expect(result.errors, JSON.stringify(result)).toBeUndefined();
  }
  return expect.fail(`no RATE_LIMITED within ${ATTEMPTS} sends`);
}

/** A GraphQL multipart upload of a small text file. */
async function upload(url: string, auth: Auth, conversationId: string): Promise<Outcome> {
  const form = new FormData();
  form.append(
    "operations",
    JSON.stringify({ query: print(UploadAttachment), variables: { conversationId, file: null } }),
  );
  form.append("map", JSON.stringify({ 0: ["variables.file"] }));
  form.append("0", new Blob(["hello"], { type: "text/plain" }), "hello.txt");
  const headers: Record<string, string> = {};
  if (auth.token) headers.authorization = `Bearer ${auth.token}`;
  const response = await fetch(url, { method: "POST", headers, body: form });
  return (await response.json()) as Outcome;
}

describe.each(backends())("write rate limits (%s)", (backend) => {
  let database: TestDatabase;
  /** Default limits, as loadConfig gives them. */
  let server: TestServer;
  /** RATE_LIMITS=off. */
  let unlimited: TestServer;
  /** Tight per-user limits. */
  let tight: TestServer;
  /** A second instance with the same tight limits, on the same database and Redis (postgres+redis only). */
  let tightTwin: TestServer | null = null;
  /** Tight per-tenant limits. */
  let tightTenantServer: TestServer;

  beforeAll(async () => {
    database = await createTestDatabase(backend);
    server = await startServer(database);
    unlimited = await startServer(database, { rateLimits: { ...testConfig().rateLimits, enabled: false } });
    tight = await startServer(database, tightUser);
    tightTenantServer = await startServer(database, tightTenant);
    if (backend === "postgres+redis") tightTwin = await startServer(database, tightUser);
  });
  afterAll(async () => {
    for (const s of [server, unlimited, tight, tightTwin, tightTenantServer]) await s?.stop();
    await database?.drop();
  });

  it("defaults: a burst of 150 concurrent sends by one user is refused in part, and nothing refused is stored or published", {
    timeout: 90_000,
  }, async () => {
    expect(testConfig().rateLimits.enabled).toBe(true);
    const tenant = await createTenant(server.url, ["Alice", "Bob"]);
    const [alice, bob] = tenant.users as [TestUser, TestUser];
    const conversationId = await groupOf(server.url, tenant);
    const watcher = wsClient(server.wsUrl, { token: bob.token });
    const sub = subscribe(watcher, MessageAdded, { conversationId });
    await whenLive(sub, () => send(server.url, { token: alice.token }, conversationId, "warmup"));

    const results = await withMessagesLocked(
      database.url,
      Array.from(
        { length: 150 },
        (_, i) => () => send(server.url, { token: alice.token }, conversationId, `burst ${i}`),
      ),
    );
    const sent = results.filter((result) => !result.errors);
    const refused = results.filter((result) => result.errors);
    expect(sent.length).toBeGreaterThan(0);
    expect(refused.length).toBeGreaterThan(0);
    for (const result of refused) {
      expect(codeOf(result), JSON.stringify(result)).toBe("RATE_LIMITED");
      expectRetryHint(result);
      expect(result.data?.sendMessage ?? null).toBeNull();
    }
    const sentBodies = sent.map((result) => result.data?.sendMessage.body as string);
    const stored = await storedBodies(server.url, { token: bob.token }, conversationId);
    expect(stored.filter((body) => body.startsWith("burst")).sort()).toEqual([...sentBodies].sort());
    const published = await sub.take(sent.length);
    expect(published.map((event) => event.data?.messageAdded.body).sort()).toEqual([...sentBodies].sort());
    await sub.expectSilence(300);
    await watcher.dispose();
  });

  it("defaults: one user sending 300 messages one after another is never limited", async () => {
    const tenant = await createTenant(server.url, ["Alice"]);
    const [alice] = tenant.users as [TestUser];
    const conversationId = await groupOf(server.url, tenant);
    for (let i = 0; i < 300; i++) {
      const result = await send(server.url, { token: alice.token }, conversationId, `seq ${i}`);
      if (result.errors) expect.fail(`send ${i} was refused: ${JSON.stringify(result)}`);
    }
    expect(await storedBodies(server.url, { token: alice.token }, conversationId)).toHaveLength(300);
  }, 90_000);

  it("RATE_LIMITS=off lets a burst of 150 concurrent sends by one user through", async () => {
    const tenant = await createTenant(unlimited.url, ["Alice"]);
    const [alice] = tenant.users as [TestUser];
    const conversationId = await groupOf(unlimited.url, tenant);
    const results = await Promise.all(
      Array.from({ length: 150 }, (_, i) => send(unlimited.url, { token: alice.token }, conversationId, `free ${i}`)),
    );
    expect(results.filter((result) => result.errors)).toEqual([]);
    expect(await storedBodies(unlimited.url, { token: alice.token }, conversationId)).toHaveLength(150);
  });

  it("a user over their budget is refused with a retry hint, and another user of the tenant is not", async () => {
    const tenant = await createTenant(tight.url, ["Alice", "Bob"]);
    const [alice, bob] = tenant.users as [TestUser, TestUser];
    const conversationId = await groupOf(tight.url, tenant);
    const { refusal, body } = await exhaust(tight.url, { token: alice.token }, conversationId);
    expectRetryHint(refusal);
    for (let i = 0; i < 3; i++) {
      await ok(tight.url, SendMessage, { input: { conversationId, body: `bob ${i}` } }, { token: bob.token });
    }
    const bodies = await storedBodies(tight.url, { token: bob.token }, conversationId);
    expect(bodies).not.toContain(body);
    expect(bodies.filter((stored) => stored.startsWith("bob"))).toHaveLength(3);
  });

  it("the API key is not limited per user, even sending as a user who is over their budget", async () => {
    const tenant = await createTenant(tight.url, ["Alice"]);
    const [alice] = tenant.users as [TestUser];
    const conversationId = await groupOf(tight.url, tenant);
    await exhaust(tight.url, { token: alice.token }, conversationId);
    // More at once than the user's concurrency cap, and more than the user's budget.
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        request(
          tight.url,
          SendMessage,
          { input: { conversationId, senderId: alice.id, body: `key ${i}` } },
          { apiKey: tenant.apiKey },
        ),
      ),
    );
    expect(results.filter((result) => result.errors)).toEqual([]);
    for (let i = 0; i < ATTEMPTS; i++) {
      const result = await send(tight.url, { apiKey: tenant.apiKey }, conversationId, `system ${i}`);
      expect(result.errors, JSON.stringify(result)).toBeUndefined();
    }
  });

  it("a tenant over its budget is refused for all its users and its API key; other tenants are not", async () => {
    const tenant = await createTenant(tightTenantServer.url, ["Alice", "Bob"]);
    const [alice, bob] = tenant.users as [TestUser, TestUser];
    const conversationId = await groupOf(tightTenantServer.url, tenant);
    const { refusal } = await exhaust(tightTenantServer.url, { token: alice.token }, conversationId);
    expect(refusal.errors?.[0]?.message).toMatch(/tenant/);
    expectRetryHint(refusal);
    // The tenant earns one write a second: of three quick attempts, at least two are refused.
    for (const auth of [{ token: bob.token }, { apiKey: tenant.apiKey }]) {
      const attempts = [];
      for (let i = 0; i < 3; i++) attempts.push(await send(tightTenantServer.url, auth, conversationId, `late ${i}`));
      expect(attempts.filter(isLimited).length, JSON.stringify(attempts)).toBeGreaterThanOrEqual(2);
    }

    const other = await createTenant(tightTenantServer.url, ["Carol"]);
    const [carol] = other.users as [TestUser];
    const otherConversation = await groupOf(tightTenantServer.url, other);
    for (let i = 0; i < 3; i++) {
      await ok(
        tightTenantServer.url,
        SendMessage,
        { input: { conversationId: otherConversation, body: `carol ${i}` } },
        { token: carol.token },
      );
    }
  });

  // Each limited write, tried ATTEMPTS times in a row by a fresh user on tight limits: the
  // first goes through to the mutation itself (success or its own error), later ones are refused.
  const writes: [string, (url: string, auth: Auth, ids: Ids) => Promise<Outcome>][] = [
    ["sendMessage", (url, auth, ids) => send(url, auth, ids.conversationId, "hi")],
    ["editMessage", (url, auth, ids) => request(url, EditMessage, { id: ids.messageId, body: "edited" }, auth)],
    ["addReaction", (url, auth, ids) => request(url, AddReaction, { messageId: ids.messageId, emoji: "👍" }, auth)],
    [
      "removeReaction",
      (url, auth, ids) => request(url, RemoveReaction, { messageId: ids.messageId, emoji: "👍" }, auth),
    ],
    [
      "setTyping",
      (url, auth, ids) => request(url, SetTyping, { conversationId: ids.conversationId, isTyping: true }, auth),
    ],
    ["uploadAttachment", (url, auth, ids) => upload(url, auth, ids.conversationId)],
    ["createGroup", (url, auth) => request(url, CreateGroup, { input: { name: "Mine" } }, auth)],
    [
      "updateGroup",
      (url, auth, ids) => request(url, UpdateGroup, { id: ids.conversationId, input: { name: "Renamed" } }, auth),
    ],
    ["deleteGroup", (url, auth, ids) => request(url, DeleteGroup, { id: ids.conversationId }, auth)],
    [
      "addMembers",
      (url, auth, ids) =>
        request(url, AddMembers, { conversationId: ids.conversationId, userIds: [ids.otherId] }, auth),
    ],
    [
      "removeMember",
      (url, auth, ids) => request(url, RemoveMember, { conversationId: ids.conversationId, userId: ids.otherId }, auth),
    ],
    [
      "setMemberRole",
      (url, auth, ids) =>
        request(url, SetMemberRole, { conversationId: ids.conversationId, userId: ids.otherId, role: "ADMIN" }, auth),
    ],
  ];
  it.each(writes)("%s is limited per user", async (_name, write) => {
    const tenant = await createTenant(tight.url, ["Alice", "Bob"]);
    const [alice, bob] = tenant.users as [TestUser, TestUser];
    const key = { apiKey: tenant.apiKey };
    const conversationId = await groupOf(tight.url, tenant);
    // Alice owns the group and wrote a message in it, all set up by the API key.
    await ok(tight.url, SetMemberRole, { conversationId, userId: alice.id, role: "OWNER" }, key);
    const { sendMessage } = await ok(
      tight.url,
      SendMessage,
      { input: { conversationId, senderId: alice.id, body: "mine" } },
      key,
    );
    const ids: Ids = { conversationId, messageId: sendMessage.id, otherId: bob.id };
    const outcomes: Outcome[] = [];
    for (let i = 0; i < ATTEMPTS; i++) outcomes.push(await write(tight.url, { token: alice.token }, ids));
    expect(isLimited(outcomes[0] as Outcome), JSON.stringify(outcomes[0])).toBe(false);
    const refused = outcomes.filter(isLimited);
    expect(refused.length, JSON.stringify(outcomes)).toBeGreaterThan(0);
    for (const result of refused) expectRetryHint(result);
  });

  // Two instances share one Redis: PGlite (single process) has no second instance.
  const withTwoInstances = backend === "postgres+redis" ? it : null;
  withTwoInstances?.("two instances on one Redis share a user's budget", async () => {
    const twin = tightTwin as TestServer;
    const tenant = await createTenant(tight.url, ["Alice"]);
    const [alice] = tenant.users as [TestUser];
    const conversationId = await groupOf(tight.url, tenant);
    // Four fit in the budget (1 a second plus a reserve of 3), all spent on the first instance...
    for (let i = 0; i < 4; i++) {
      const result = await send(tight.url, { token: alice.token }, conversationId, `a ${i}`);
      expect(result.errors, JSON.stringify(result)).toBeUndefined();
    }
    // ...so the second one, which alone would allow four more, refuses.
    const onTwin = [];
    for (let i = 0; i < 4; i++) onTwin.push(await send(twin.url, { token: alice.token }, conversationId, `b ${i}`));
    expect(onTwin.filter(isLimited).length, JSON.stringify(onTwin)).toBeGreaterThanOrEqual(2);
  });
});

interface Ids {
  conversationId: string;
  messageId: string;
  otherId: string;
}

describe("write rate limit settings", () => {
  it("are on by default, read from the environment, and RATE_LIMITS=off turns them off", () => {
    expect(loadConfig({}).rateLimits).toEqual({
      enabled: true,
      user: { perSecond: 20, burst: 1000, concurrency: 50 },
      tenant: { perSecond: 500, burst: 10_000 },
    });
    const custom = loadConfig({
      RATE_LIMITS: "off",
      RATE_LIMIT_USER_PER_SECOND: "5",
      RATE_LIMIT_USER_BURST: "0",
      RATE_LIMIT_USER_CONCURRENCY: "3",
      RATE_LIMIT_TENANT_PER_SECOND: "50",
      RATE_LIMIT_TENANT_BURST: "100",
    });
    expect(custom.rateLimits).toEqual({
      enabled: false,
      user: { perSecond: 5, burst: 0, concurrency: 3 },
      tenant: { perSecond: 50, burst: 100 },
    });
  });

  it("name each bad value", () => {
    let problems: string[] = [];
    try {
      loadConfig({ RATE_LIMITS: "maybe", RATE_LIMIT_USER_CONCURRENCY: "0" });
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      problems = (error as ConfigError).problems;
    }
    expect(problems.map((problem) => problem.split(":")[0])).toEqual(["RATE_LIMITS", "RATE_LIMIT_USER_CONCURRENCY"]);
  });
});

describe("write rate limits while Redis is unreachable", () => {
  let redis: PrivateRedis;
  let database: TestDatabase;
  let server: TestServer;
  const backend = backends().includes("postgres+redis") ? "postgres+redis" : "pglite";

  beforeAll(async () => {
    redis = await PrivateRedis.start();
    database = await createTestDatabase(backend);
    server = await startServer(database, { redisUrl: redis.url, ...tightUser });
  });
  afterAll(async () => {
    await server?.stop();
    await database?.drop();
    await redis?.stop();
  });

  it("keeps serving writes and keeps limiting them, in process", async () => {
    const tenant = await createTenant(server.url, ["Alice"]);
    const [alice] = tenant.users as [TestUser];
    const conversationId = await groupOf(server.url, tenant);
    await redis.stop();
    await sleep(100);
    const outcomes = [];
    for (let i = 0; i < ATTEMPTS; i++) {
      outcomes.push(await send(server.url, { token: alice.token }, conversationId, `offline ${i}`));
    }
    expect(outcomes[0]?.errors, JSON.stringify(outcomes[0])).toBeUndefined();
    for (const result of outcomes) {
      if (result.errors) expect(codeOf(result), JSON.stringify(result)).toBe("RATE_LIMITED");
    }
    expect(outcomes.filter(isLimited).length).toBeGreaterThan(0);
  });
});
