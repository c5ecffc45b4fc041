import { type GraphQLNamedType, type GraphQLObjectType, getNamedType, isObjectType, isUnionType } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isViewerDependent } from "../src/graphql/audience.ts";
import { schema } from "../src/schema/index.ts";
import { backends, createTestDatabase, startServer, type TestDatabase, type TestServer } from "./helpers/backends.ts";
import { drain, ok, sleep, subscribe, whenLive, wsClient } from "./helpers/client.ts";
import { createTenant, type TestUser } from "./helpers/fixtures.ts";
import { initSocket, type WsMessage } from "./helpers/hostile.ts";
import { CreateGroup } from "./operations/conversations.ts";
import { MessageAddedSenderName, MessageAddedViewerView } from "./operations/events.ts";
import { SendMessage } from "./operations/messages.ts";
import { AssignRole, CreateRole, UnassignRole } from "./operations/roles.ts";

/** Object types a subscription can reach, through fields, unions and interfaces. */
function reachableFromSubscriptions(): GraphQLObjectType[] {
  const seen = new Set<string>();
  const found: GraphQLObjectType[] = [];
  const queue: GraphQLNamedType[] = [schema.getSubscriptionType() as GraphQLObjectType];
  while (queue.length) {
    const type = queue.shift() as GraphQLNamedType;
    if (seen.has(type.name)) continue;
    seen.add(type.name);
    if (isUnionType(type)) queue.push(...type.getTypes());
    if (!isObjectType(type)) continue;
    found.push(type);
    for (const field of Object.values(type.getFields())) queue.push(getNamedType(field.type));
  }
  return found;
}

/** Source text of a Pothos option (an auth scope or resolver function), or "" when it is not a function. */
const sourceOf = (option: unknown) => (typeof option === "function" ? String(option) : "");
const READS_VIEWER = /\bself\b|principal|signedInUserId|unreadCount|unreadMentions|sessionId/;

describe("viewer-dependent fields", () => {
  it("every field a subscription reaches that reads the viewer is marked, so live results are never shared across viewers", () => {
    const unmarked: string[] = [];
    for (const type of reachableFromSubscriptions()) {
      const typeOptions = (type.extensions?.pothosOptions ?? {}) as { authScopes?: unknown };
      const typeReadsViewer = READS_VIEWER.test(sourceOf(typeOptions.authScopes));
      // User's own scope names `self` only as an alternative to chats:read, which every
      // subscription root already requires: it changes nothing for a subscriber.
      if (typeReadsViewer && type.name !== "User" && type.extensions?.viewerDependent !== true)
        unmarked.push(type.name);
      if (type === schema.getSubscriptionType()) continue;
      for (const field of Object.values(type.getFields())) {
        const options = (field.extensions?.pothosOptions ?? {}) as { authScopes?: unknown; resolve?: unknown };
        const reads = READS_VIEWER.test(sourceOf(options.authScopes)) || READS_VIEWER.test(sourceOf(options.resolve));
        if (reads && !isViewerDependent(field) && type.extensions?.viewerDependent !== true) {
          unmarked.push(`${type.name}.${field.name}`);
        }
      }
    }
    expect(unmarked).toEqual([]);
    // The walk does find the known ones.
    const marked = reachableFromSubscriptions().flatMap((type) =>
      Object.values(type.getFields())
        .filter((field) => isViewerDependent(field))
        .map((field) => `${type.name}.${field.name}`),
    );
    expect(marked).toEqual(
      expect.arrayContaining([
        "Message.mentionsViewer",
        "ReactionGroup.reactedByViewer",
        "User.email",
        "Conversation.unreadCount",
        "Message.senderBlockedByViewer",
      ]),
    );
  });
});

describe.each(backends())("grouped live delivery on %s", (backend) => {
  let database: TestDatabase;
  let server: TestServer;

  beforeAll(async () => {
    database = await createTestDatabase(backend);
    server = await startServer(database);
  });
  afterAll(async () => {
    await server?.stop();
    await database?.drop();
  });

  it("subscribers of one document who see different things each get their own view", async () => {
    const tenant = await createTenant(server.url, ["Alice", "Bob", "Carol", "Dave"]);
    const [alice, bob, carol, dave] = tenant.users as [TestUser, TestUser, TestUser, TestUser];
    const { createGroup } = await ok(
      server.url,
      CreateGroup,
      { input: { name: "Shared", memberIds: [bob.id, carol.id, dave.id] } },
      { token: alice.token },
    );
    const conversationId = createGroup.id;
    // Carol may read chats but not other users' details.
    const { createRole } = await ok(
      server.url,
      CreateRole,
      { input: { name: "Reader", permissions: ["chats:read", "chats:create"] } },
      { apiKey: tenant.apiKey },
    );
    const { assignRole } = await ok(
      server.url,
      AssignRole,
      { userId: carol.id, roleId: createRole.id },
      { apiKey: tenant.apiKey },
    );
    const member = assignRole.roles.find((role) => role.name === "member");
    expect(member).toBeDefined();
    await ok(server.url, UnassignRole, { userId: carol.id, roleId: member?.id as string }, { apiKey: tenant.apiKey });

    const sockets = [bob, bob, carol, dave].map((viewer) => wsClient(server.wsUrl, { token: viewer.token }));
    const service = wsClient(server.wsUrl, { apiKey: tenant.apiKey });
    try {
      const views = [...sockets, service].map((client) =>
        subscribe(client, MessageAddedViewerView, { conversationId }),
      );
      const plain = sockets.map((client) => subscribe(client, MessageAddedSenderName, { conversationId }));
      const send = (body: string, mentionedUserIds: string[] = []) =>
        ok(server.url, SendMessage, { input: { conversationId, body, mentionedUserIds } }, { token: alice.token });
      for (const sub of views) await whenLive(sub, () => send("warm-up"));
      for (const sub of plain) await whenLive(sub, () => send("warm-up"));
      for (const sub of views) await drain(sub, 200);
      for (const sub of plain) await drain(sub, 200);

      const { sendMessage } = await send("hello Bob", [bob.id]);
      const [bob1, bob2, carolView, daveView, serviceView] = await Promise.all(views.map((sub) => sub.next()));

      for (const view of [bob1, bob2]) {
        expect(view?.errors).toBeUndefined();
        expect(view?.data?.messageAdded).toMatchObject({ id: sendMessage.id, mentionsViewer: true });
        expect(view?.data?.messageAdded.sender?.email).toMatch(/^alice-/);
      }
      expect(daveView?.errors).toBeUndefined();
      expect(daveView?.data?.messageAdded).toMatchObject({ id: sendMessage.id, mentionsViewer: false });
      expect(daveView?.data?.messageAdded.sender?.email).toMatch(/^alice-/);
      expect(serviceView?.errors).toBeUndefined();
      expect(serviceView?.data?.messageAdded).toMatchObject({ id: sendMessage.id, mentionsViewer: false });
      expect(serviceView?.data?.messageAdded.sender?.email).toMatch(/^alice-/);
      // Carol sees the message, not Alice's address.
      expect(carolView?.data?.messageAdded).toMatchObject({ id: sendMessage.id, mentionsViewer: false });
      expect(carolView?.data?.messageAdded.sender?.email ?? null).toBeNull();
      expect(carolView?.errors?.[0]?.extensions?.code).toBe("FORBIDDEN");

      const plainViews = await Promise.all(plain.map((sub) => sub.next()));
      for (const view of plainViews) {
        expect(view).toEqual({
          data: { messageAdded: { id: sendMessage.id, body: "hello Bob", sender: { id: alice.id, name: "Alice" } } },
        });
      }

      // A role change mid-stream moves Carol to another audience: from the next message on she sees addresses.
      await ok(server.url, AssignRole, { userId: carol.id, roleId: member?.id as string }, { apiKey: tenant.apiKey });
      let carolNext = carolView;
      for (let attempt = 0; attempt < 20 && carolNext?.errors; attempt++) {
        await send(`after the role change ${attempt}`);
        carolNext = await views[2]?.next();
      }
      expect(carolNext?.errors).toBeUndefined();
      expect(carolNext?.data?.messageAdded.sender?.email).toMatch(/^alice-/);
    } finally {
      await Promise.all([...sockets, service].map((client) => client.dispose()));
    }
  }, 120_000);
});

const SLOW_QUERY =
  "subscription($id: ID!, $after: String) { messageAdded(conversationId: $id, after: $after) { seq cursor body } }";

/** All of the viewer's conversations, resumable by the last cursor. */
const ALL_SLOW_QUERY =
  "subscription($after: String) { messageAdded(after: $after) { seq cursor body conversation { id } } }";

describe.each(backends())("a socket that stops reading on %s", (backend) => {
  let database: TestDatabase;
  let server: TestServer;

  beforeAll(async () => {
    database = await createTestDatabase(backend);
    server = await startServer(database, { socketBufferLimitBytes: 64 * 1024, subscriberBufferSize: 100_000 });
  });
  afterAll(async () => {
    await server?.stop();
    await database?.drop();
  });

  it("gets its streams ended with SLOW_CONSUMER after what was buffered, and resumes by cursor with nothing lost", async () => {
    const tenant = await createTenant(server.url, ["Alice", "Bob"]);
    const [alice, bob] = tenant.users as [TestUser, TestUser];
    const { createGroup } = await ok(
      server.url,
      CreateGroup,
      { input: { name: "Slow", memberIds: [bob.id] } },
      { token: alice.token },
    );
    const conversationId = createGroup.id;
    const send = (body: string) =>
      ok(server.url, SendMessage, { input: { conversationId, body } }, { token: alice.token });
    const body = "x".repeat(8000);

    const socket = await initSocket(server.wsUrl, bob.token);
    const streams = Array.from({ length: 40 }, (_, i) => `s${i}`);
    for (const id of streams)
      socket.send({ id, type: "subscribe", payload: { query: SLOW_QUERY, variables: { id: conversationId } } });
    // A stream without a cursor starts at the present: send until every stream has had a message.
    const hasNext = (id: string) => socket.messages.some((m: WsMessage) => m.id === id && m.type === "next");
    let probes = 0;
    for (const deadline = Date.now() + 20_000; !streams.every(hasNext); ) {
      if (Date.now() > deadline) throw new Error("the streams did not go live within 20 s");
      await send(`probe ${++probes}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    // Stop reading: 40 streams x 8 KB per message fill the kernel's buffers, then the socket's own.
    (socket.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();
    const sent = 40;
    for (let i = 0; i < sent; i++) await send(`${i} ${body}`);
    (socket.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.resume();

    const ended = await socket.waitFor((m) => m.id === "s0" && m.type === "error", 60_000);
    expect((ended.payload as { extensions?: { code?: string } }[])[0]?.extensions?.code).toBe("SLOW_CONSUMER");
    expect(socket.isOpen()).toBe(true);
    // Every stream ended, each with an unbroken run of messages before its error.
    for (const id of streams) await socket.waitFor((m) => m.id === id && m.type === "error", 60_000);
    const delivered = (id: string) =>
      socket.messages
        .filter((m: WsMessage) => m.id === id && m.type === "next")
        .map((m) => (m.payload as { data: { messageAdded: { seq: number; cursor: string } } }).data.messageAdded);
    for (const id of streams) {
      const seqs = delivered(id).map((message) => message.seq);
      const from = seqs[0] as number;
      expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => from + i));
    }
    const got = delivered("s0");
    const total = probes + sent;
    expect(got[got.length - 1]?.seq).toBeLessThan(total);

    // Resuming from the last cursor delivers exactly the rest.
    const last = got[got.length - 1] as { seq: number; cursor: string };
    socket.send({
      id: "resume",
      type: "subscribe",
      payload: { query: SLOW_QUERY, variables: { id: conversationId, after: last.cursor } },
    });
    await socket.waitFor(
      (m) =>
        m.id === "resume" &&
        m.type === "next" &&
        (m.payload as { data: { messageAdded: { seq: number } } }).data.messageAdded.seq === total,
      30_000,
    );
    expect(delivered("resume").map((message) => message.seq)).toEqual(
      Array.from({ length: total - last.seq }, (_, i) => last.seq + 1 + i),
    );
    socket.close();
  }, 180_000);

  it("a stream of all conversations ended with SLOW_CONSUMER resumes from its last cursor with nothing lost or repeated", async () => {
    const tenant = await createTenant(server.url, ["Alice", "Bob"]);
    const [alice, bob] = tenant.users as [TestUser, TestUser];
    const conversations: string[] = [];
    for (const name of ["Slow one", "Slow two"]) {
      const { createGroup } = await ok(
        server.url,
        CreateGroup,
        { input: { name, memberIds: [bob.id] } },
        { token: alice.token },
      );
      conversations.push(createGroup.id);
    }
    const [one, two] = conversations as [string, string];
    const newest: Record<string, number> = { [one]: 0, [two]: 0 };
    const send = async (conversationId: string, body: string) => {
      const { sendMessage } = await ok(
        server.url,
        SendMessage,
        { input: { conversationId, body } },
        { token: alice.token },
      );
      newest[conversationId] = sendMessage.seq;
    };
    const body = "x".repeat(8000);
    type Item = { seq: number; cursor: string; conversation: { id: string } };

    const socket = await initSocket(server.wsUrl, bob.token);
    const streams = Array.from({ length: 40 }, (_, i) => `a${i}`);
    for (const id of streams) socket.send({ id, type: "subscribe", payload: { query: ALL_SLOW_QUERY } });
    const live = (id: string) => socket.messages.some((m: WsMessage) => m.id === id && m.type === "next");
    for (let attempt = 0; attempt < 20 && !streams.every(live); attempt++) {
      await send(one, "first");
      await sleep(200);
    }
    expect(streams.every(live)).toBe(true);

    (socket.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();
    const sent = 40;
    for (let i = 0; i < sent; i++) await send(conversations[i % 2] as string, `${i} ${body}`);
    (socket.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.resume();
    for (const id of streams) await socket.waitFor((m) => m.id === id && m.type === "error", 60_000);
    const ended = socket.messages.find((m: WsMessage) => m.id === "a0" && m.type === "error");
    expect((ended?.payload as { extensions?: { code?: string } }[] | undefined)?.[0]?.extensions?.code).toBe(
      "SLOW_CONSUMER",
    );

    const delivered = (id: string): Item[] =>
      socket.messages
        .filter((m: WsMessage) => m.id === id && m.type === "next")
        .map((m) => (m.payload as { data: { messageAdded: Item } }).data.messageAdded);
    const seqsIn = (items: Item[], conversationId: string) =>
      items.filter((item) => item.conversation.id === conversationId).map((item) => item.seq);
    const got = delivered("a0");
    const firstSeen = seqsIn(got, one)[0] as number;
    const missing = (newest[one] as number) - firstSeen + 1 + (newest[two] as number) - got.length;
    expect(missing).toBeGreaterThan(0);

    // Resuming from the last cursor: exactly the rest, each conversation in order.
    const last = got[got.length - 1] as Item;
    socket.send({
      id: "resume",
      type: "subscribe",
      payload: { query: ALL_SLOW_QUERY, variables: { after: last.cursor } },
    });
    await socket.waitFor(
      (m) => m.id === "resume" && m.type === "next" && delivered("resume").length === missing,
      30_000,
    );
    const resumed = delivered("resume");
    const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
    expect([...seqsIn(got, one), ...seqsIn(resumed, one)]).toEqual(range(firstSeen, newest[one] as number));
    expect([...seqsIn(got, two), ...seqsIn(resumed, two)]).toEqual(range(1, newest[two] as number));
    // Live after the replay, and nothing else before it.
    await send(two, "live");
    await socket.waitFor((m) => m.id === "resume" && delivered("resume").length === missing + 1, 30_000);
    expect(delivered("resume")[missing]).toMatchObject({ seq: newest[two], conversation: { id: two } });
    socket.close();
  }, 180_000);
});
