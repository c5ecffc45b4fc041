import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { type ExecutionResult, type GraphQLFormattedError, print } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MessageAddedSubscription, ReadReceiptSubscription, TypingSubscription } from "./generated/graphql.ts";
import { backends, createTestDatabase, startServer, type TestDatabase, type TestServer } from "./helpers/backends.ts";
import {
  type Auth,
  drain,
  expectClosed4403,
  expectOpen,
  fails,
  ok,
  request,
  type Subscription,
  sleep,
  subscribe,
  type WsClient,
  whenLive,
  wsClient,
} from "./helpers/client.ts";
import { createTenant, type TestUser } from "./helpers/fixtures.ts";
import { CreateGroup, MarkRead, RemoveMember } from "./operations/conversations.ts";
import { MessageAdded, MessageAddedWithEmail, ReadReceipt, Typing } from "./operations/events.ts";
import { SendMessage, SetTyping } from "./operations/messages.ts";
import { AssignRole, CreateRole, DeleteRole, Roles, UnassignRole, UpdateRole } from "./operations/roles.ts";
import { RotateApiKey } from "./operations/tenants.ts";
import { DeleteUser, IssueUserToken, RevokeUserTokens, UpdateUser, Viewer } from "./operations/users.ts";

// ---------------------------------------------------------------------------------------------
// Fixtures and helpers
// ---------------------------------------------------------------------------------------------

/** Member permissions without chats:read (and without anything else that reads conversations). */
const NO_CHATS_READ = ["users:read", "groups:read"];
/** What the member system role grants. */
const MEMBER_PERMISSIONS = [
  "users:read",
  "groups:create",
  "groups:read",
  "chats:create",
  "chats:read",
  "chats:update",
  "chats:delete",
];

/** A subscription over plain HTTP, as Yoga serves it with server-sent events. */
interface SseStream<T> {
  /** Waits for the next event (fails after timeoutMs). */
  next(timeoutMs?: number): Promise<ExecutionResult<T>>;
  /** Everything received and not yet taken. */
  buffered: ExecutionResult<T>[];
  /** Resolves when the server ends the stream: a `complete` event or the response ending. */
  ended: Promise<"complete" | "closed">;
  close(): void;
}

async function sseSubscribe<T, V>(
  url: string,
  document: TypedDocumentNode<T, V>,
  variables: V,
  auth: Auth,
): Promise<SseStream<T>> {
  const controller = new AbortController();
  const headers: Record<string, string> = { "content-type": "application/json", accept: "text/event-stream" };
  if (auth.apiKey) headers["x-api-key"] = auth.apiKey;
  if (auth.token) headers.authorization = `Bearer ${auth.token}`;
  const response = await fetch(url, {
    method: "POST",
    headers,
    body: JSON.stringify({ query: print(document), variables }),
    signal: controller.signal,
  });
  expect(response.headers.get("content-type") ?? "").toContain("text/event-stream");
  const buffered: ExecutionResult<T>[] = [];
  const waiters: (() => void)[] = [];
  let resolveEnded: (how: "complete" | "closed") => void = () => {};
  const ended = new Promise<"complete" | "closed">((resolve) => {
    resolveEnded = resolve;
  });
  const body = response.body;
  if (!body) expect.fail("a server-sent event response without a body");
  (async () => {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let text = "";
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
        let end = text.indexOf("\n\n");
        while (end >= 0) {
          const block = text.slice(0, end);
          text = text.slice(end + 2);
          end = text.indexOf("\n\n");
          const lines = block.split("\n");
          const event = lines
            .find((line) => line.startsWith("event:"))
            ?.slice(6)
            .trim();
          const data = lines
            .filter((line) => line.startsWith("data:"))
            .map((line) => line.slice(5).trim())
            .join("\n");
          if (event === "complete") resolveEnded("complete");
          else if (data) {
            buffered.push(JSON.parse(data) as ExecutionResult<T>);
            for (const wake of waiters.splice(0)) wake();
          }
        }
      }
    } catch {
      // aborted by close()
    }
    resolveEnded("closed");
  })();
  const next = async (timeoutMs = 10_000): Promise<ExecutionResult<T>> => {
    const deadline = Date.now() + timeoutMs;
    while (!buffered.length) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no event within ${timeoutMs} ms`);
      await Promise.race([new Promise<void>((resolve) => waiters.push(resolve)), sleep(left)]);
    }
    return buffered.shift() as ExecutionResult<T>;
  };
  return { next, buffered, ended, close: () => controller.abort() };
}

/** Repeats `poke` until a server-sent event stream shows an event. */
async function sseLive<T>(stream: SseStream<T>, poke: () => Promise<unknown>): Promise<void> {
  for (let attempt = 0; attempt < 20; attempt++) {
    await poke();
    try {
      await stream.next(500);
      await sleep(100);
      stream.buffered.splice(0);
      return;
    } catch {
      // not subscribed yet: poke again
    }
  }
  expect.fail("the server-sent event stream never became live");
}

/** A tenant where Alice owns a group with Bob and Carol, and has sent one message. */
interface Team {
  apiKey: string;
  alice: TestUser;
  bob: TestUser;
  carol: TestUser;
  group: string;
  message: string;
}

async function createTeam(url: string): Promise<Team> {
  const tenant = await createTenant(url, ["Alice", "Bob", "Carol"]);
  const [alice, bob, carol] = tenant.users as [TestUser, TestUser, TestUser];
  const { createGroup } = await ok(
    url,
    CreateGroup,
    { input: { name: "Team", memberIds: [bob.id, carol.id] } },
    { token: alice.token },
  );
  const { sendMessage } = await ok(
    url,
    SendMessage,
    { input: { conversationId: createGroup.id, body: "hello" } },
    { token: alice.token },
  );
  return { apiKey: tenant.apiKey, alice, bob, carol, group: createGroup.id, message: sendMessage.id };
}

async function roleId(url: string, apiKey: string, name: string): Promise<string> {
  const { roles } = await ok(url, Roles, {}, { apiKey });
  const role = roles.find((r) => r.name === name);
  if (!role) expect.fail(`no role named ${name}`);
  return role.id;
}

/** Alice's activity in the group: a message, typing on and off, and a read receipt. */
async function activity(url: string, team: Team, body: string): Promise<void> {
  const auth = { token: team.alice.token };
  await ok(url, SendMessage, { input: { conversationId: team.group, body } }, auth);
  await ok(url, SetTyping, { conversationId: team.group, isTyping: true }, auth);
  await ok(url, SetTyping, { conversationId: team.group, isTyping: false }, auth);
  await ok(url, MarkRead, { conversationId: team.group, upToMessageId: team.message }, auth);
}

/** The four streams a member can hold on a group, all live and drained. */
interface Streams {
  one: Subscription<MessageAddedSubscription>;
  all: Subscription<MessageAddedSubscription>;
  typing: Subscription<TypingSubscription>;
  reads: Subscription<ReadReceiptSubscription>;
}

async function openStreams(url: string, client: WsClient, team: Team): Promise<Streams> {
  const alice = { token: team.alice.token };
  const streams: Streams = {
    one: subscribe(client, MessageAdded, { conversationId: team.group }),
    all: subscribe(client, MessageAdded, {}),
    typing: subscribe(client, Typing, { conversationId: team.group }),
    reads: subscribe(client, ReadReceipt, { conversationId: team.group }),
  };
  const send = () => ok(url, SendMessage, { input: { conversationId: team.group, body: "probe" } }, alice);
  await whenLive(streams.one, send);
  await whenLive(streams.all, send);
  await whenLive(streams.typing, async () => {
    await ok(url, SetTyping, { conversationId: team.group, isTyping: true }, alice);
    await ok(url, SetTyping, { conversationId: team.group, isTyping: false }, alice);
  });
  await whenLive(streams.reads, () =>
    ok(url, MarkRead, { conversationId: team.group, upToMessageId: team.message }, alice),
  );
  await settle(streams);
  return streams;
}

async function settle(streams: Streams): Promise<void> {
  for (const sub of Object.values(streams)) await drain(sub as Subscription<unknown>, 100);
}

const streamList = (streams: Streams) => Object.entries(streams) as [keyof Streams, Subscription<unknown>][];

/** A new socket with these credentials is refused with 4403 and delivers nothing. */
async function expectSocketRefused(wsUrl: string, auth: Auth, conversationId: string): Promise<void> {
  const client = wsClient(wsUrl, auth);
  try {
    const sub = subscribe(client, MessageAdded, { conversationId });
    await expectClosed4403(client, "a socket with revoked credentials");
    const outcome = await Promise.race([sub.done, sleep(5_000).then(() => null)]);
    expect(outcome?.error, "the subscription on a refused socket did not fail").toBeDefined();
    expect(await drain(sub)).toEqual([]);
  } finally {
    await client.dispose();
  }
}

/**
 * Waits until the server ends a subscription with an error and returns its errors.
 * graphql-ws hands an error raised while streaming to the subscription's error sink as a
 * list of GraphQL errors; a close event there would mean the socket went down instead.
 */
async function endedWithErrors<T>(sub: Subscription<T>, what: string): Promise<GraphQLFormattedError[]> {
  const outcome = await Promise.race([sub.done, sleep(5_000).then(() => "open" as const)]);
  if (outcome === "open") expect.fail(`${what} is still open`);
  if (outcome.error === undefined) expect.fail(`${what} completed without an error`);
  if (!Array.isArray(outcome.error)) {
    const { code, reason } = outcome.error as { code?: number; reason?: string };
    expect.fail(`${what} ended with its socket (${code} ${reason}) instead of an error`);
  }
  return outcome.error as GraphQLFormattedError[];
}

/**
 * How a subscription refused at subscribe time ended: errors raised before execution reach
 * the error sink, while a field's subscribe resolver refusing arrives as one `next` with
 * `errors` and no data, then `complete`. Either counts; data or a closed socket do not.
 */
async function refusal<T>(sub: Subscription<T>): Promise<GraphQLFormattedError[]> {
  const outcome = await Promise.race([sub.done, sleep(5_000).then(() => "accepted" as const)]);
  if (outcome === "accepted") expect.fail(`the subscription was accepted: ${JSON.stringify(await drain(sub))}`);
  const errors: GraphQLFormattedError[] = [];
  if (outcome.error !== undefined) {
    if (!Array.isArray(outcome.error)) {
      const { code, reason } = outcome.error as { code?: number; reason?: string };
      expect.fail(`the socket closed instead of refusing the subscription: ${code} ${reason}`);
    }
    errors.push(...(outcome.error as GraphQLFormattedError[]));
  }
  for (const event of await drain(sub)) {
    expect(event.data ?? null, `a refused subscription delivered data: ${JSON.stringify(event)}`).toBeNull();
    errors.push(...((event.errors ?? []) as unknown as GraphQLFormattedError[]));
  }
  if (!errors.length) expect.fail("the subscription ended without an error");
  return errors;
}

async function expectForbiddenEnd<T>(sub: Subscription<T>, what: string): Promise<void> {
  const errors = await endedWithErrors(sub, what);
  expect(errors[0]?.extensions?.code, `${what}: ${JSON.stringify(errors)}`).toBe("FORBIDDEN");
}

/** Waits until the server completes or errors a subscription. */
async function expectEnded<T>(sub: Subscription<T>, what: string): Promise<void> {
  const outcome = await Promise.race([sub.done, sleep(5_000).then(() => "open" as const)]);
  if (outcome === "open") expect.fail(`${what} is still open`);
}

/** Asserts that nothing with data reached these streams since they were last drained. */
async function expectNothingDelivered(streams: Streams): Promise<void> {
  for (const [name, sub] of streamList(streams)) {
    const events = await drain(sub, 100);
    const withData = events.filter((event) => event.data);
    expect(withData, `${name} delivered ${JSON.stringify(withData)}`).toEqual([]);
  }
}

/** Waits for the next message on a stream and returns its body. */
async function nextBody(sub: Subscription<MessageAddedSubscription>): Promise<string | null | undefined> {
  const event = await sub.next();
  return event.data?.messageAdded.body;
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

describe.each(backends())("re-authorization of live subscriptions on %s", (backend) => {
  let database: TestDatabase;
  let server: TestServer;
  /** A second instance on the same database and Redis (only where PostgreSQL is configured). */
  let other: TestServer | null = null;

  beforeAll(async () => {
    database = await createTestDatabase(backend);
    server = await startServer(database);
    // PGlite is single-process: a second instance needs a shared PostgreSQL.
    if (backend === "postgres+redis") other = await startServer(database);
  });
  afterAll(async () => {
    await other?.stop();
    await server?.stop();
    await database?.drop();
  });

  describe("deactivating a user", () => {
    it("closes every one of their sockets with 4403; other users' sockets stay open and keep receiving", async () => {
      const team = await createTeam(server.url);
      const bobMany = wsClient(server.wsUrl, { token: team.bob.token });
      const bobOne = wsClient(server.wsUrl, { token: team.bob.token });
      const carol = wsClient(server.wsUrl, { token: team.carol.token });
      const keyClient = wsClient(server.wsUrl, { apiKey: team.apiKey });
      try {
        const bobStreams = await openStreams(server.url, bobMany, team);
        const bobAll = subscribe(bobOne, MessageAdded, {});
        await whenLive(bobAll, () =>
          ok(server.url, SendMessage, { input: { conversationId: team.group, body: "p" } }, { apiKey: team.apiKey }),
        );
        const carolStreams = await openStreams(server.url, carol, team);
        const keyFeed = subscribe(keyClient, MessageAdded, { conversationId: team.group });
        await whenLive(keyFeed, () =>
          ok(server.url, SendMessage, { input: { conversationId: team.group, body: "k" } }, { apiKey: team.apiKey }),
        );
        await drain(bobAll, 100);
        await settle(carolStreams);
        await settle(bobStreams);

        const { updateUser } = await ok(
          server.url,
          UpdateUser,
          { id: team.bob.id, input: { active: false } },
          { apiKey: team.apiKey },
        );
        expect(updateUser.active).toBe(false);

        await expectClosed4403(bobMany, "Bob's socket with four subscriptions");
        await expectClosed4403(bobOne, "Bob's socket with one subscription");

        await activity(server.url, team, "after deactivation");
        expect(await nextBody(carolStreams.one)).toBe("after deactivation");
        expect(await nextBody(carolStreams.all)).toBe("after deactivation");
        expect((await carolStreams.typing.next()).data).toBeTruthy();
        expect((await carolStreams.reads.next()).data).toBeTruthy();
        expect((await keyFeed.next()).data?.messageAdded.body).toBe("after deactivation");
        await expectOpen(carol, "Carol's socket", 200);
        await expectOpen(keyClient, "the API key's socket", 0);
        for (const [name, sub] of streamList(bobStreams)) {
          const bodies = (await drain(sub)).map((e) => JSON.stringify(e));
          expect(
            bodies.filter((b) => b.includes("after deactivation")),
            name,
          ).toEqual([]);
        }
      } finally {
        for (const client of [bobMany, bobOne, carol, keyClient]) await client.dispose();
      }
    });

    it("refuses the token on HTTP and on new sockets; after reactivation a fresh token works", async () => {
      const team = await createTeam(server.url);
      const key = { apiKey: team.apiKey };
      await ok(server.url, UpdateUser, { id: team.bob.id, input: { active: false } }, key);

      await fails(server.url, Viewer, {}, { token: team.bob.token }, "UNAUTHENTICATED");
      await expectSocketRefused(server.wsUrl, { token: team.bob.token }, team.group);
      // A deactivated user cannot be given new credentials either.
      await fails(server.url, IssueUserToken, { userId: team.bob.id }, key, "FORBIDDEN");

      await ok(server.url, UpdateUser, { id: team.bob.id, input: { active: true } }, key);
      const fresh = (await ok(server.url, IssueUserToken, { userId: team.bob.id }, key)).issueUserToken.token;
      const { viewer } = await ok(server.url, Viewer, {}, { token: fresh });
      expect(viewer.user?.id).toBe(team.bob.id);
      const client = wsClient(server.wsUrl, { token: fresh });
      try {
        const feed = subscribe(client, MessageAdded, { conversationId: team.group });
        await whenLive(feed, () =>
          ok(server.url, SendMessage, { input: { conversationId: team.group, body: "back" } }, key),
        );
        await expectOpen(client, "the reactivated user's socket", 200);
      } finally {
        await client.dispose();
      }
    });
  });

  describe("changes that keep a user's credentials valid", () => {
    it("a profile update, or reactivating an active user, closes nothing", async () => {
      const team = await createTeam(server.url);
      const bob = wsClient(server.wsUrl, { token: team.bob.token });
      try {
        const feed = subscribe(bob, MessageAdded, { conversationId: team.group });
        const send = (body: string) =>
          ok(server.url, SendMessage, { input: { conversationId: team.group, body } }, { token: team.alice.token });
        await whenLive(feed, () => send("probe"));
        await ok(server.url, UpdateUser, { id: team.bob.id, input: { name: "Robert" } }, { token: team.bob.token });
        await ok(server.url, UpdateUser, { id: team.bob.id, input: { active: true } }, { apiKey: team.apiKey });
        await send("still here");
        expect((await feed.next()).data?.messageAdded.body).toBe("still here");
        await expectOpen(bob, "Bob's socket", 300);
        expect((await ok(server.url, Viewer, {}, { token: team.bob.token })).viewer.user?.id).toBe(team.bob.id);
      } finally {
        await bob.dispose();
      }
    });
  });

  describe("deleting a user", () => {
    it("closes their sockets with 4403 and refuses their token; others are unaffected", async () => {
      const team = await createTeam(server.url);
      const bobMany = wsClient(server.wsUrl, { token: team.bob.token });
      const bobOne = wsClient(server.wsUrl, { token: team.bob.token });
      const carol = wsClient(server.wsUrl, { token: team.carol.token });
      try {
        const bobStreams = await openStreams(server.url, bobMany, team);
        // The all-conversations stream outlives the end of the memberships.
        const bobAll = subscribe(bobOne, MessageAdded, {});
        await whenLive(bobAll, () =>
          ok(server.url, SendMessage, { input: { conversationId: team.group, body: "p" } }, { apiKey: team.apiKey }),
        );
        const carolFeed = subscribe(carol, MessageAdded, { conversationId: team.group });
        await whenLive(carolFeed, () =>
          ok(
            server.url,
            SendMessage,
            { input: { conversationId: team.group, body: "p" } },
            { token: team.alice.token },
          ),
        );
        await drain(bobAll, 100);
        await settle(bobStreams);

        const { deleteUser } = await ok(server.url, DeleteUser, { id: team.bob.id }, { apiKey: team.apiKey });
        expect(deleteUser).toBe(team.bob.id);

        await expectClosed4403(bobMany, "the deleted user's socket with four subscriptions");
        await expectClosed4403(bobOne, "the deleted user's socket with one subscription");
        await fails(server.url, Viewer, {}, { token: team.bob.token }, "UNAUTHENTICATED");
        await expectSocketRefused(server.wsUrl, { token: team.bob.token }, team.group);

        await activity(server.url, team, "after deletion");
        expect(await nextBody(carolFeed)).toBe("after deletion");
        await expectOpen(carol, "Carol's socket", 200);
      } finally {
        for (const client of [bobMany, bobOne, carol]) await client.dispose();
      }
    });
  });

  describe("rotating the API key", () => {
    it("closes sockets opened with the old key; the new key's sockets and user sockets stay open", async () => {
      const team = await createTeam(server.url);
      const oldKey = { apiKey: team.apiKey };
      const oldAll = wsClient(server.wsUrl, oldKey);
      const oldOne = wsClient(server.wsUrl, oldKey);
      const bob = wsClient(server.wsUrl, { token: team.bob.token });
      let newClient: WsClient | null = null;
      try {
        const send = (body: string, auth: Auth = { token: team.alice.token }) =>
          ok(server.url, SendMessage, { input: { conversationId: team.group, body } }, auth);
        const oldAllFeed = subscribe(oldAll, MessageAdded, {});
        const oldOneFeeds = [
          subscribe(oldOne, MessageAdded, { conversationId: team.group }),
          subscribe(oldOne, Typing, { conversationId: team.group }),
        ];
        const bobFeed = subscribe(bob, MessageAdded, { conversationId: team.group });
        await whenLive(oldAllFeed, () => send("probe"));
        await whenLive(oldOneFeeds[0] as Subscription<unknown>, () => send("probe"));
        await whenLive(bobFeed, () => send("probe"));

        const { rotateApiKey } = await ok(server.url, RotateApiKey, {}, oldKey);
        const newKey = { apiKey: rotateApiKey.apiKey };
        expect(newKey.apiKey).not.toBe(team.apiKey);

        await expectClosed4403(oldAll, "a socket of the old key");
        await expectClosed4403(oldOne, "a socket of the old key with two subscriptions");
        await fails(server.url, Viewer, {}, oldKey, "UNAUTHENTICATED");
        await expectSocketRefused(server.wsUrl, oldKey, team.group);

        newClient = wsClient(server.wsUrl, newKey);
        const newFeed = subscribe(newClient, MessageAdded, { conversationId: team.group });
        await whenLive(newFeed, () => send("probe", newKey));
        await drain(bobFeed, 100);
        await send("after rotation");
        expect((await newFeed.next()).data?.messageAdded.body).toBe("after rotation");
        expect((await bobFeed.next()).data?.messageAdded.body).toBe("after rotation");
        await expectOpen(newClient, "the new key's socket", 300);
        await expectOpen(bob, "a user's socket", 0);
        const { viewer } = await ok(server.url, Viewer, {}, newKey);
        expect(viewer.isService).toBe(true);
      } finally {
        for (const client of [oldAll, oldOne, bob, newClient]) await client?.dispose();
      }
    });
  });

  describe("revoking a user's tokens", () => {
    it.each(["the API key", "the user themselves"] as const)(
      "by %s: every earlier token stops working and the sockets close with 4403; a later token works",
      async (by) => {
        const team = await createTeam(server.url);
        const key = { apiKey: team.apiKey };
        const second = (await ok(server.url, IssueUserToken, { userId: team.bob.id }, key)).issueUserToken.token;
        const bobFirst = wsClient(server.wsUrl, { token: team.bob.token });
        const bobSecond = wsClient(server.wsUrl, { token: second });
        const carol = wsClient(server.wsUrl, { token: team.carol.token });
        try {
          await openStreams(server.url, bobFirst, team);
          const secondFeed = subscribe(bobSecond, MessageAdded, {});
          const carolFeed = subscribe(carol, MessageAdded, { conversationId: team.group });
          const send = (body: string) =>
            ok(server.url, SendMessage, { input: { conversationId: team.group, body } }, { token: team.alice.token });
          await whenLive(secondFeed, () => send("probe"));
          await whenLive(carolFeed, () => send("probe"));

          const auth = by === "the API key" ? key : { token: team.bob.token };
          const { revokeUserTokens } = await ok(server.url, RevokeUserTokens, { userId: team.bob.id }, auth);
          expect(revokeUserTokens).toBe(true);

          await expectClosed4403(bobFirst, "the socket of the first token");
          await expectClosed4403(bobSecond, "the socket of the second token");
          for (const token of [team.bob.token, second]) {
            await fails(server.url, Viewer, {}, { token }, "UNAUTHENTICATED");
            await expectSocketRefused(server.wsUrl, { token }, team.group);
          }

          // Late probes under load must not stand in for the message that proves delivery.
          await drain(carolFeed, 100);
          await send("after revocation");
          expect(await nextBody(carolFeed)).toBe("after revocation");
          await expectOpen(carol, "another user's socket", 200);

          const fresh = (await ok(server.url, IssueUserToken, { userId: team.bob.id }, key)).issueUserToken.token;
          expect((await ok(server.url, Viewer, {}, { token: fresh })).viewer.user?.id).toBe(team.bob.id);
          const again = wsClient(server.wsUrl, { token: fresh });
          try {
            const feed = subscribe(again, MessageAdded, { conversationId: team.group });
            await whenLive(feed, () => send("probe"));
            await expectOpen(again, "the socket of a token issued afterwards", 200);
          } finally {
            await again.dispose();
          }
        } finally {
          for (const client of [bobFirst, bobSecond, carol]) await client.dispose();
        }
      },
    );

    it("another plain user cannot revoke them (FORBIDDEN), and nothing closes", async () => {
      const team = await createTeam(server.url);
      const bob = wsClient(server.wsUrl, { token: team.bob.token });
      try {
        const feed = subscribe(bob, MessageAdded, { conversationId: team.group });
        const send = (body: string) =>
          ok(server.url, SendMessage, { input: { conversationId: team.group, body } }, { token: team.alice.token });
        await whenLive(feed, () => send("probe"));

        const result = await request(
          server.url,
          RevokeUserTokens,
          { userId: team.bob.id },
          { token: team.carol.token },
        );
        expect(result.errors?.[0]?.extensions?.code, JSON.stringify(result)).toBe("FORBIDDEN");
        expect(result.data?.revokeUserTokens ?? null).toBeNull();

        await send("still here");
        expect((await feed.next()).data?.messageAdded.body).toBe("still here");
        await expectOpen(bob, "Bob's socket", 300);
        expect((await ok(server.url, Viewer, {}, { token: team.bob.token })).viewer.user?.id).toBe(team.bob.id);
        expect((await ok(server.url, Viewer, {}, { token: team.carol.token })).viewer.user?.id).toBe(team.carol.id);
      } finally {
        await bob.dispose();
      }
    });
  });

  describe("a role change takes effect without reconnecting", () => {
    it("losing chats:read (member unassigned) ends every stream with FORBIDDEN; the socket stays open", async () => {
      const team = await createTeam(server.url);
      const key = { apiKey: team.apiKey };
      const member = await roleId(server.url, team.apiKey, "member");
      const bob = wsClient(server.wsUrl, { token: team.bob.token }, { keepOpen: true });
      const carol = wsClient(server.wsUrl, { token: team.carol.token });
      try {
        const streams = await openStreams(server.url, bob, team);
        const carolFeed = subscribe(carol, MessageAdded, { conversationId: team.group });
        await whenLive(carolFeed, () => activity(server.url, team, "probe"));
        await settle(streams);

        // A role without chats:read first: Bob keeps chats:read through member, so nothing ends.
        const { createRole } = await ok(
          server.url,
          CreateRole,
          { input: { name: "Directory", permissions: NO_CHATS_READ } },
          key,
        );
        await ok(server.url, AssignRole, { userId: team.bob.id, roleId: createRole.id }, key);
        await drain(carolFeed, 100);
        await activity(server.url, team, "still allowed");
        expect(await nextBody(streams.one)).toBe("still allowed");
        expect(await nextBody(streams.all)).toBe("still allowed");
        expect((await streams.typing.next()).data).toBeTruthy();
        expect((await streams.reads.next()).data).toBeTruthy();
        expect(await nextBody(carolFeed)).toBe("still allowed");
        await settle(streams);

        await ok(server.url, UnassignRole, { userId: team.bob.id, roleId: member }, key);
        await activity(server.url, team, "after the change");
        // Carol's copy is the fence: anything Bob would get has been published by now.
        expect(await nextBody(carolFeed)).toBe("after the change");

        for (const [name, sub] of streamList(streams)) await expectForbiddenEnd(sub, `Bob's ${name} stream`);
        await expectNothingDelivered(streams);
        await expectOpen(bob, "Bob's socket", 500);

        // While Bob lacks chats:read, a new subscription on the same socket is refused.
        const refused = await refusal(subscribe(bob, MessageAdded, { conversationId: team.group }));
        expect(refused[0]?.extensions?.code, JSON.stringify(refused)).toBe("FORBIDDEN");
        await expectOpen(bob, "Bob's socket", 200);

        // Given back, chats:read works on the same socket at once.
        await ok(server.url, AssignRole, { userId: team.bob.id, roleId: member }, key);
        const renewed: Streams = {
          one: subscribe(bob, MessageAdded, { conversationId: team.group }),
          all: subscribe(bob, MessageAdded, {}),
          typing: subscribe(bob, Typing, { conversationId: team.group }),
          reads: subscribe(bob, ReadReceipt, { conversationId: team.group }),
        };
        await whenLive(renewed.one, () => activity(server.url, team, "renewed"));
        await settle(renewed);
        await activity(server.url, team, "renewed again");
        expect(await nextBody(renewed.one)).toBe("renewed again");
        expect(await nextBody(renewed.all)).toBe("renewed again");
        expect((await renewed.typing.next()).data).toBeTruthy();
        expect((await renewed.reads.next()).data).toBeTruthy();
        await expectOpen(bob, "Bob's socket", 0);
      } finally {
        await bob.dispose();
        await carol.dispose();
      }
    });

    it.each(["updateRole removing chats:read", "deleteRole"] as const)(
      "%s ends the holders' streams with FORBIDDEN, and only theirs",
      async (change) => {
        const team = await createTeam(server.url);
        const key = { apiKey: team.apiKey };
        const member = await roleId(server.url, team.apiKey, "member");
        const { createRole } = await ok(
          server.url,
          CreateRole,
          { input: { name: "Chatter", permissions: MEMBER_PERMISSIONS } },
          key,
        );
        // Bob and Carol read only through the custom role; Alice keeps member.
        for (const user of [team.bob, team.carol]) {
          await ok(server.url, AssignRole, { userId: user.id, roleId: createRole.id }, key);
          await ok(server.url, UnassignRole, { userId: user.id, roleId: member }, key);
        }
        const bob = wsClient(server.wsUrl, { token: team.bob.token }, { keepOpen: true });
        const carol = wsClient(server.wsUrl, { token: team.carol.token }, { keepOpen: true });
        const alice = wsClient(server.wsUrl, { token: team.alice.token });
        try {
          const bobStreams = await openStreams(server.url, bob, team);
          const carolStreams = await openStreams(server.url, carol, team);
          const aliceFeed = subscribe(alice, MessageAdded, { conversationId: team.group });
          await whenLive(aliceFeed, () => activity(server.url, team, "probe"));
          await settle(bobStreams);
          await settle(carolStreams);

          if (change === "deleteRole") {
            expect((await ok(server.url, DeleteRole, { id: createRole.id }, key)).deleteRole).toBe(createRole.id);
          } else {
            const { updateRole } = await ok(
              server.url,
              UpdateRole,
              { id: createRole.id, input: { permissions: NO_CHATS_READ } },
              key,
            );
            expect(updateRole.permissions).not.toContain("chats:read");
          }
          await activity(server.url, team, "after the edit");
          expect((await aliceFeed.next()).data?.messageAdded.body).toBe("after the edit");

          for (const [who, streams] of [
            ["Bob", bobStreams],
            ["Carol", carolStreams],
          ] as const) {
            for (const [name, sub] of streamList(streams)) await expectForbiddenEnd(sub, `${who}'s ${name} stream`);
            await expectNothingDelivered(streams);
          }
          await expectOpen(bob, "Bob's socket", 300);
          await expectOpen(carol, "Carol's socket", 0);
          await expectOpen(alice, "Alice's socket", 0);
          await aliceFeed.expectSilence(100);
        } finally {
          for (const client of [bob, carol, alice]) await client.dispose();
        }
      },
    );
  });

  describe("revocations whose news was lost", () => {
    it("a token revoked in storage alone closes its socket at the next resync; valid sockets stay", async () => {
      const resyncing = await startServer(database, { credentialResyncSeconds: 1 });
      const team = await createTeam(resyncing.url);
      const bob = wsClient(resyncing.wsUrl, { token: team.bob.token }, { keepOpen: true });
      const carol = wsClient(resyncing.wsUrl, { token: team.carol.token }, { keepOpen: true });
      const key = wsClient(resyncing.wsUrl, { apiKey: team.apiKey }, { keepOpen: true });
      try {
        const feed = subscribe(bob, MessageAdded, { conversationId: team.group });
        const carolFeed = subscribe(carol, MessageAdded, { conversationId: team.group });
        const keyFeed = subscribe(key, MessageAdded, {});
        await whenLive(feed, () => activity(resyncing.url, team, "probe"));
        await whenLive(carolFeed, () => activity(resyncing.url, team, "probe"));
        await whenLive(keyFeed, () => activity(resyncing.url, team, "probe"));
        // As if the revocation's publish had been lost: only the database knows.
        const jti = JSON.parse(Buffer.from(team.bob.token.split(".")[1] as string, "base64url").toString()).jti;
        await resyncing.app.deps.db.sql.query(`UPDATE "UserToken" SET "revokedAt" = now() WHERE id = $1`, [jti]);
        await expectClosed4403(bob, "the socket of a token revoked in storage");
        await expectOpen(carol, "Carol's socket", 1500);
        await expectOpen(key, "the API key's socket", 0);
        await drain(carolFeed, 100);
        await activity(resyncing.url, team, "after the resync");
        expect(await nextBody(carolFeed)).toBe("after the resync");
      } finally {
        await bob.dispose();
        await carol.dispose();
        await key.dispose();
        await resyncing.stop();
      }
    });
  });

  describe("field permissions follow role changes event by event", () => {
    it("losing users:read hides other users' emails from the next event of a live stream", async () => {
      const team = await createTeam(server.url);
      const key = { apiKey: team.apiKey };
      const member = await roleId(server.url, team.apiKey, "member");
      const bob = wsClient(server.wsUrl, { token: team.bob.token }, { keepOpen: true });
      try {
        const feed = subscribe(bob, MessageAddedWithEmail, { conversationId: team.group });
        await whenLive(feed, () => activity(server.url, team, "probe"));
        await activity(server.url, team, "with users:read");
        const before = await feed.next();
        expect(before.data?.messageAdded).toMatchObject({ body: "with users:read", sender: { id: team.alice.id } });
        expect(before.data?.messageAdded.sender?.email).toMatch(/@/);

        // Chats without the directory: Bob keeps reading the group but loses users:read.
        const chatsOnly = MEMBER_PERMISSIONS.filter((permission) => permission !== "users:read");
        const { createRole } = await ok(
          server.url,
          CreateRole,
          { input: { name: "Chats only", permissions: chatsOnly } },
          key,
        );
        await ok(server.url, AssignRole, { userId: team.bob.id, roleId: createRole.id }, key);
        await ok(server.url, UnassignRole, { userId: team.bob.id, roleId: member }, key);
        await sleep(200);
        await activity(server.url, team, "without users:read");
        const after = await feed.next();
        expect(after.data?.messageAdded.body).toBe("without users:read");
        expect(after.data?.messageAdded.sender?.email ?? null).toBeNull();
        expect(after.errors?.[0]?.extensions?.code, JSON.stringify(after)).toBe("FORBIDDEN");

        // And back: the next event shows it again.
        await ok(server.url, AssignRole, { userId: team.bob.id, roleId: member }, key);
        await sleep(200);
        await activity(server.url, team, "users:read again");
        const again = await feed.next();
        expect(again.data?.messageAdded.sender?.email).toMatch(/@/);
      } finally {
        await bob.dispose();
      }
    });
  });

  describe("removing a member stops their events from the conversation at once", () => {
    it.each(["the owner", "the API key", "themselves"] as const)("removed by %s", async (remover) => {
      const team = await createTeam(server.url);
      const bob = wsClient(server.wsUrl, { token: team.bob.token }, { keepOpen: true });
      const carol = wsClient(server.wsUrl, { token: team.carol.token });
      try {
        const bobStreams = await openStreams(server.url, bob, team);
        const carolStreams = await openStreams(server.url, carol, team);
        await settle(bobStreams);

        const auth =
          remover === "the owner"
            ? { token: team.alice.token }
            : remover === "the API key"
              ? { apiKey: team.apiKey }
              : { token: team.bob.token };
        await ok(server.url, RemoveMember, { conversationId: team.group, userId: team.bob.id }, auth);
        await activity(server.url, team, "after removal");

        // Carol still gets everything; Bob's streams of the group end and carry none of it.
        expect(await nextBody(carolStreams.one)).toBe("after removal");
        expect((await carolStreams.typing.next()).data?.typing).toMatchObject({ user: { id: team.alice.id } });
        expect((await carolStreams.reads.next()).data?.readReceipt).toMatchObject({ user: { id: team.alice.id } });
        await expectEnded(bobStreams.one, "Bob's messageAdded(conversationId)");
        await expectEnded(bobStreams.typing, "Bob's typing");
        await expectEnded(bobStreams.reads, "Bob's readReceipt");
        await expectNothingDelivered(bobStreams);
        // The socket and the all-conversations stream stay; it no longer carries the group.
        await expectOpen(bob, "Bob's socket", 300);
        const outcome = await Promise.race([bobStreams.all.done, sleep(0).then(() => "open")]);
        expect(outcome).toBe("open");
      } finally {
        await bob.dispose();
        await carol.dispose();
      }
    });
  });

  describe("subscriptions streamed over HTTP (server-sent events) follow the same rules", () => {
    it("a stream opened with an API key ends when the key is rotated away, and carries nothing after", async () => {
      const team = await createTeam(server.url);
      const stream = await sseSubscribe(
        server.url,
        MessageAdded,
        { conversationId: team.group },
        { apiKey: team.apiKey },
      );
      try {
        const send = (body: string) =>
          ok(server.url, SendMessage, { input: { conversationId: team.group, body } }, { token: team.alice.token });
        await sseLive(stream, () => send("probe"));
        await ok(server.url, RotateApiKey, {}, { apiKey: team.apiKey });
        await send("after rotation");
        const ended = await Promise.race([stream.ended, sleep(3_000).then(() => null)]);
        const bodies = stream.buffered.map((event) => event.data?.messageAdded.body);
        expect(bodies, "the old key's stream received a message sent after the rotation").not.toContain(
          "after rotation",
        );
        expect(ended, "the old key's stream is still open after the rotation").not.toBeNull();
      } finally {
        stream.close();
      }
    });

    it.each(["token revocation", "deactivation"] as const)(
      "a user's stream ends on %s and carries nothing after",
      async (action) => {
        const team = await createTeam(server.url);
        const key = { apiKey: team.apiKey };
        const stream = await sseSubscribe(
          server.url,
          MessageAdded,
          { conversationId: team.group },
          { token: team.bob.token },
        );
        try {
          const send = (body: string) =>
            ok(server.url, SendMessage, { input: { conversationId: team.group, body } }, { token: team.alice.token });
          await sseLive(stream, () => send("probe"));
          if (action === "token revocation") await ok(server.url, RevokeUserTokens, { userId: team.bob.id }, key);
          else await ok(server.url, UpdateUser, { id: team.bob.id, input: { active: false } }, key);
          await send("after");
          const ended = await Promise.race([stream.ended, sleep(3_000).then(() => null)]);
          expect(stream.buffered.map((event) => event.data?.messageAdded.body)).not.toContain("after");
          expect(ended, "Bob's stream is still open").not.toBeNull();
        } finally {
          stream.close();
        }
      },
    );

    it("a role change ends a user's stream with FORBIDDEN", async () => {
      const team = await createTeam(server.url);
      const key = { apiKey: team.apiKey };
      const member = await roleId(server.url, team.apiKey, "member");
      const { createRole } = await ok(
        server.url,
        CreateRole,
        { input: { name: "Directory", permissions: NO_CHATS_READ } },
        key,
      );
      await ok(server.url, AssignRole, { userId: team.bob.id, roleId: createRole.id }, key);
      const stream = await sseSubscribe(
        server.url,
        MessageAdded,
        { conversationId: team.group },
        { token: team.bob.token },
      );
      try {
        const send = (body: string) =>
          ok(server.url, SendMessage, { input: { conversationId: team.group, body } }, { token: team.alice.token });
        await sseLive(stream, () => send("probe"));
        await ok(server.url, UnassignRole, { userId: team.bob.id, roleId: member }, key);
        await send("after");
        const ended = await Promise.race([stream.ended, sleep(3_000).then(() => null)]);
        expect(stream.buffered.filter((event) => event.data)).toEqual([]);
        expect(stream.buffered[0]?.errors?.[0]?.extensions?.code, JSON.stringify(stream.buffered)).toBe("FORBIDDEN");
        expect(ended, "Bob's stream is still open").not.toBeNull();
      } finally {
        stream.close();
      }
    });
  });

  // Two instances need a shared database, which PGlite (single process) cannot be.
  const acrossInstances = backend === "postgres+redis" ? describe : null;
  acrossInstances?.("decided on a second instance", () => {
    const second = () => other as TestServer;

    it.each(["deactivation", "deletion", "token revocation"] as const)(
      "%s on the second instance closes a socket held by the first with 4403",
      async (action) => {
        const team = await createTeam(server.url);
        const key = { apiKey: team.apiKey };
        const bob = wsClient(server.wsUrl, { token: team.bob.token });
        const carol = wsClient(server.wsUrl, { token: team.carol.token });
        try {
          await openStreams(server.url, bob, team);
          const carolFeed = subscribe(carol, MessageAdded, { conversationId: team.group });
          await whenLive(carolFeed, () => activity(server.url, team, "probe"));

          if (action === "deactivation") {
            await ok(second().url, UpdateUser, { id: team.bob.id, input: { active: false } }, key);
          } else if (action === "deletion") {
            await ok(second().url, DeleteUser, { id: team.bob.id }, key);
          } else {
            await ok(second().url, RevokeUserTokens, { userId: team.bob.id }, key);
          }

          await expectClosed4403(bob, "Bob's socket on the first instance");
          await fails(server.url, Viewer, {}, { token: team.bob.token }, "UNAUTHENTICATED");
          await expectSocketRefused(server.wsUrl, { token: team.bob.token }, team.group);
          await activity(second().url, team, "after");
          expect(await nextBody(carolFeed)).toBe("after");
          await expectOpen(carol, "Carol's socket on the first instance", 200);
        } finally {
          await bob.dispose();
          await carol.dispose();
        }
      },
    );

    it("rotating the key on the second instance closes the old key's socket on the first", async () => {
      const team = await createTeam(server.url);
      const old = wsClient(server.wsUrl, { apiKey: team.apiKey });
      try {
        const feed = subscribe(old, MessageAdded, {});
        await whenLive(feed, () =>
          ok(
            server.url,
            SendMessage,
            { input: { conversationId: team.group, body: "probe" } },
            { token: team.alice.token },
          ),
        );
        await ok(second().url, RotateApiKey, {}, { apiKey: team.apiKey });
        await expectClosed4403(old, "the old key's socket on the first instance");
      } finally {
        await old.dispose();
      }
    });

    it("a role change on the second instance ends streams on the first with FORBIDDEN", async () => {
      const team = await createTeam(server.url);
      const key = { apiKey: team.apiKey };
      const member = await roleId(server.url, team.apiKey, "member");
      const { createRole } = await ok(
        server.url,
        CreateRole,
        { input: { name: "Directory", permissions: NO_CHATS_READ } },
        key,
      );
      await ok(server.url, AssignRole, { userId: team.bob.id, roleId: createRole.id }, key);
      const bob = wsClient(server.wsUrl, { token: team.bob.token }, { keepOpen: true });
      const carol = wsClient(server.wsUrl, { token: team.carol.token });
      try {
        const streams = await openStreams(server.url, bob, team);
        const carolFeed = subscribe(carol, MessageAdded, { conversationId: team.group });
        await whenLive(carolFeed, () => activity(server.url, team, "probe"));
        await settle(streams);

        await ok(second().url, UnassignRole, { userId: team.bob.id, roleId: member }, key);
        await activity(second().url, team, "after the change");
        expect(await nextBody(carolFeed)).toBe("after the change");
        for (const [name, sub] of streamList(streams)) await expectForbiddenEnd(sub, `Bob's ${name} stream`);
        await expectNothingDelivered(streams);
        await expectOpen(bob, "Bob's socket", 300);
      } finally {
        await bob.dispose();
        await carol.dispose();
      }
    });

    it("removing a member on the second instance ends their typing and readReceipt on the first", async () => {
      const team = await createTeam(server.url);
      const bob = wsClient(server.wsUrl, { token: team.bob.token }, { keepOpen: true });
      try {
        const streams = await openStreams(server.url, bob, team);
        await ok(
          second().url,
          RemoveMember,
          { conversationId: team.group, userId: team.bob.id },
          { apiKey: team.apiKey },
        );
        await activity(second().url, team, "after removal");
        await expectEnded(streams.one, "Bob's messageAdded(conversationId)");
        await expectEnded(streams.typing, "Bob's typing");
        await expectEnded(streams.reads, "Bob's readReceipt");
        await sleep(200);
        await expectNothingDelivered(streams);
        await expectOpen(bob, "Bob's socket", 0);
      } finally {
        await bob.dispose();
      }
    });
  });
});
