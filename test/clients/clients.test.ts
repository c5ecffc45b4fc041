/**
 * The client kit (client/) with a real Apollo Client and a real urql client against the
 * running server: queries, mutations, live messageAdded, resume by cursor across a server
 * restart, and access tokens renewed through refreshSession without the app noticing.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ConversationEventsDocument,
  CreateGroupDocument,
  MessageAddedDocument,
  MessagesDocument,
  SendMessageDocument,
  SignOutEverywhereDocument,
  SignUpDocument,
  UpdateTenantDocument,
  ViewerDocument,
} from "@chat-api/client";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type App, buildApp } from "../../src/app.ts";
import type { Config } from "../../src/env.ts";
import { createLogger } from "../../src/logger.ts";
import { type BackendName, backends, createTestDatabase, type TestDatabase, testConfig } from "../helpers/backends.ts";
import { sleep } from "../helpers/client.ts";
import { createTenant, type TestTenant } from "../helpers/fixtures.ts";
import { createKit, type Kit, type KitName, kitNames, type Stream } from "./kits.ts";

/** A server that can be stopped and started again on the same port and database. */
interface RestartableServer {
  url: string;
  restart(whileDown?: () => Promise<void>): Promise<void>;
  stop(): Promise<void>;
}

async function restartableServer(database: TestDatabase, overrides: Partial<Config>): Promise<RestartableServer> {
  const config = testConfig({
    databaseUrl: database.url,
    redisUrl: database.backend === "postgres+redis" ? process.env.TEST_REDIS_URL : undefined,
    ...overrides,
  });
  const log = createLogger(config.logLevel);
  let app: App = await buildApp(config, { db: database.db, log });
  const { port, url } = await app.start(0, "127.0.0.1");
  return {
    url,
    async restart(whileDown) {
      await app.stop();
      await whileDown?.();
      app = await buildApp(config, { db: database.db, log });
      await app.start(port, "127.0.0.1");
    },
    stop: () => app.stop(),
  };
}

/** A request from an address of its own, so per-address limits of other tests do not apply. */
function fromFreshAddress(): typeof fetch {
  const ip = `10.${randomBytes(3).join(".")}`;
  return (input, init) => {
    const headers = new Headers(init?.headers);
    headers.set("x-forwarded-for", ip);
    return fetch(input, { ...init, headers });
  };
}

function deferred(): { promise: Promise<void>; resolve(): void } {
  let resolve = () => {};
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const ids = (list: readonly { id: string }[]) => list.map((item) => item.id);

describe.each(backends())("client kit on %s", (backend: BackendName) => {
  let database: TestDatabase;
  let server: RestartableServer;
  let dataDir: string;
  const kits: Kit[] = [];

  beforeAll(async () => {
    database = await createTestDatabase(backend);
    dataDir = await mkdtemp(join(tmpdir(), "chat-clients-"));
    server = await restartableServer(database, { dataDir, trustProxy: 1 });
  });
  afterAll(async () => {
    await Promise.allSettled(kits.map((kit) => kit.dispose()));
    await server?.stop();
    await database?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  function kit(name: KitName, options: Partial<Parameters<typeof createKit>[1]> = {}): Kit {
    const created = createKit(name, { url: server.url, fetch: fromFreshAddress(), ...options });
    kits.push(created);
    return created;
  }

  async function groupOf(owner: Kit, memberIds: string[]): Promise<string> {
    const { createGroup } = await owner.mutate(CreateGroupDocument, { input: { name: "kit", memberIds } });
    return createGroup.id;
  }

  /** Sends until `streams` each received one message: then they are live. Returns nothing pending. */
  async function live(sender: Kit, conversationId: string, streams: Stream<unknown>[]): Promise<void> {
    for (const s of streams) {
      for (let attempt = 0; ; attempt++) {
        await sender.mutate(SendMessageDocument, { input: { conversationId, body: `poke ${attempt}` } });
        await sleep(200);
        if (s.pending().length) break;
        if (attempt > 30) expect.fail("the subscription never became live");
      }
    }
    await sleep(300);
    for (const s of streams) s.take(s.pending().length);
  }

  async function send(sender: Kit, conversationId: string, bodies: string[]): Promise<string[]> {
    const sent: string[] = [];
    for (const body of bodies) {
      sent.push((await sender.mutate(SendMessageDocument, { input: { conversationId, body } })).sendMessage.id);
    }
    return sent;
  }

  describe.each(kitNames)("%s", (name) => {
    function users(tenant: TestTenant): [Kit, Kit] {
      const [alice, bob] = tenant.users;
      if (!alice || !bob) throw new Error("the tenant needs two users");
      return [
        kit(name, { credentials: { accessToken: alice.token } }),
        kit(name, { credentials: { accessToken: bob.token } }),
      ];
    }

    test("queries and mutations with typed documents", async () => {
      const tenant = await createTenant(server.url);
      const [alice, bob] = users(tenant);
      const { viewer } = await alice.query(ViewerDocument, {});
      expect(viewer.user?.name).toBe("Alice");
      expect(viewer.tenant.id).toBe(tenant.id);
      const conversationId = await groupOf(alice, [tenant.users[1]?.id ?? ""]);
      const sent = await send(alice, conversationId, ["one", "two"]);
      const { messages } = await bob.query(MessagesDocument, { conversationId, last: 10 });
      expect(messages.edges.map((edge) => edge.node.id)).toEqual(sent);
      expect(messages.edges.map((edge) => [edge.node.body, edge.node.sender?.name])).toEqual([
        ["one", "Alice"],
        ["two", "Alice"],
      ]);
    });

    test("a live messageAdded", async () => {
      const tenant = await createTenant(server.url);
      const [alice, bob] = users(tenant);
      const conversationId = await groupOf(alice, [tenant.users[1]?.id ?? ""]);
      const added = bob.subscribe(MessageAddedDocument, { conversationId });
      await live(alice, conversationId, [added]);
      const sent = await send(alice, conversationId, ["hello", "world"]);
      const got = (await added.take(2)).map((data) => data.messageAdded);
      expect(ids(got)).toEqual(sent);
      expect(got.map((message) => message.body)).toEqual(["hello", "world"]);
      expect(got.every((message) => message.cursor.length > 0)).toBe(true);
      added.unsubscribe();
    });

    test("resumes every stream by cursor after the server restarts: nothing lost, nothing twice", async () => {
      const tenant = await createTenant(server.url);
      const [alice] = users(tenant);
      // Bob's client waits at the gate before reconnecting, so messages are sent while it is away.
      const gate = deferred();
      const bobUser = tenant.users[1];
      if (!bobUser) throw new Error("no Bob");
      const bob = kit(name, {
        credentials: { accessToken: bobUser.token },
        retryWait: async () => {
          await gate.promise;
          await sleep(100);
        },
      });
      const conversationId = await groupOf(alice, [bobUser.id]);
      const one = bob.subscribe(MessageAddedDocument, { conversationId });
      const all = bob.subscribe(MessageAddedDocument, {});
      const events = bob.subscribe(ConversationEventsDocument, { conversationId });
      const streams = [one, all, events];
      await live(alice, conversationId, streams);

      const before = await send(alice, conversationId, ["b1", "b2"]);
      let missed: string[] = [];
      await server.restart();
      // Up again, but Bob's client is still waiting: these are sent while it is away.
      missed = await send(alice, conversationId, ["m1", "m2", "m3"]);
      gate.resolve();
      const after = await send(alice, conversationId, ["a1", "a2"]);
      const expected = [...before, ...missed, ...after];

      const fromOne = (await one.take(expected.length)).map((data) => data.messageAdded.id);
      const fromAll = (await all.take(expected.length)).map((data) => data.messageAdded.id);
      const fromEvents = (await events.take(expected.length)).map((data) => {
        const event = data.conversationEvents;
        return event.__typename === "MessageAddedEvent" ? event.message.id : event.__typename;
      });
      expect(fromOne).toEqual(expected);
      expect(fromAll).toEqual(expected);
      expect(fromEvents).toEqual(expected);
      // Nothing more: no message replayed twice.
      const probe = await send(alice, conversationId, ["probe"]);
      for (const s of [one, all]) {
        expect((await s.take(1)).map((data) => (data as { messageAdded: { id: string } }).messageAdded.id)).toEqual(
          probe,
        );
      }
      for (const s of streams) {
        await sleep(200);
        expect(s.pending().length, "items after the probe").toBeLessThanOrEqual(1);
        expect(s.errors).toEqual([]);
      }
    });

    /** A tenant open to self sign-up whose access tokens live `ttlSeconds`, and a user signed up there. */
    async function signedUpUser(ttlSeconds: number | null, options: Partial<Parameters<typeof createKit>[1]>) {
      const tenant = await createTenant(server.url, []);
      const service = kit(name, { credentials: { apiKey: tenant.apiKey } });
      await service.mutate(UpdateTenantDocument, {
        input: { auth: { selfSignUp: true, signInMethods: ["PASSWORD"] } },
      });
      // Shorter than the API allows (60 s), so a test sees several expiries.
      if (ttlSeconds !== null) await setAccessTokenTtl(database, tenant.id, ttlSeconds);
      const user = kit(name, options);
      const email = `kit-${randomBytes(4).toString("hex")}@example.com`;
      const { signUp } = await user.mutate(SignUpDocument, {
        input: { tenantId: tenant.id, email, password: `correct horse ${randomBytes(4).toString("hex")}`, name: "Kit" },
      });
      user.session.signedIn(signUp);
      return { user, signUp };
    }

    test("an expired access token is renewed through refreshSession without the app noticing", async () => {
      let renewals = 0;
      const { user, signUp } = await signedUpUser(2, { refreshMarginMs: 0, onRefresh: () => renewals++ });
      expect(new Date(signUp.accessTokenExpiresAt).getTime() - Date.now()).toBeLessThan(3_000);

      const conversationId = await groupOf(user, []);
      const added = user.subscribe(MessageAddedDocument, { conversationId });
      await live(user, conversationId, [added]);

      // Seven seconds of sending, every half second: the token expires three times meanwhile,
      // over HTTP (UNAUTHENTICATED, renewed, sent again) and on the socket (closed with 4403,
      // renewed, reconnected, resumed from the last cursor).
      const sent: string[] = [];
      const until = Date.now() + 7_000;
      while (Date.now() < until) {
        sent.push(...(await send(user, conversationId, [`at ${Date.now()}`])));
        const { viewer } = await user.query(ViewerDocument, {});
        expect(viewer.user?.name).toBe("Kit");
        await sleep(500);
      }
      const got = (await added.take(sent.length)).map((data) => data.messageAdded.id);
      expect(got).toEqual(sent);
      await sleep(300);
      expect(added.pending()).toEqual([]);
      expect(added.errors).toEqual([]);
      expect(renewals).toBeGreaterThanOrEqual(3);
    });

    test("a session that cannot be renewed is reported once, not retried forever", async () => {
      const ended: Error[] = [];
      const { user } = await signedUpUser(null, { onSessionEnded: (error) => ended.push(error) });
      const { viewer } = await user.query(ViewerDocument, {});
      expect(viewer.user?.name).toBe("Kit");
      // Ends the session: its access token and refresh token stop working.
      expect((await user.mutate(SignOutEverywhereDocument, {})).signOutEverywhere).toBe(true);
      const error = await user.query(ViewerDocument, {}).then(
        () => expect.fail("the query succeeded without a session"),
        (caught: unknown) => caught,
      );
      expect(JSON.stringify(error)).toContain("UNAUTHENTICATED");
      expect(ended.map((e) => e.name)).toEqual(["SessionEndedError"]);
      const added = user.subscribe(MessageAddedDocument, {});
      await expect.poll(() => added.errors.length, { timeout: 10_000 }).toBe(1);
      expect(ended).toHaveLength(1);
    });
  });
});

async function setAccessTokenTtl(database: TestDatabase, tenantId: string, seconds: number): Promise<void> {
  if (database.db) {
    await database.db.prisma.tenant.update({ where: { id: tenantId }, data: { accessTokenTtlSeconds: seconds } });
    return;
  }
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  try {
    await client.query(`UPDATE "Tenant" SET "accessTokenTtlSeconds" = $1 WHERE id = $2`, [seconds, tenantId]);
  } finally {
    await client.end();
  }
}
