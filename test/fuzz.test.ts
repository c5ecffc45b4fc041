/**
 * Generated hostile traffic, bounded in count and time: mutated documents, hostile
 * variables, malformed requests and garbage WebSocket frames from a seeded generator.
 * Whatever arrives, the server answers with client error codes, never an internal error,
 * never a 5xx, never a 4500 close, and logs nothing at error level.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  backends,
  capturingLogger,
  createTestDatabase,
  startServer,
  type TestDatabase,
  type TestServer,
} from "./helpers/backends.ts";
import { ok } from "./helpers/client.ts";
import { createTenant, type TestTenant, type TestUser } from "./helpers/fixtures.ts";
import { expectNoLeak, expectSocketAlive, initSocket, openSocket } from "./helpers/hostile.ts";
import { CreateGroup } from "./operations/conversations.ts";
import { SendMessage } from "./operations/messages.ts";

const SEED = Number(process.env.FUZZ_SEED ?? 20261130);
const HTTP_CASES = 300;
const WS_CASES = 150;

/** mulberry32: small, fast and repeatable for a seed. */
function generator(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (max: number) => Math.floor(next() * max);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)] as T;
  return { next, int, pick };
}
type Random = ReturnType<typeof generator>;

const NASTY_STRINGS = [
  "",
  "\u0000",
  "a\u0000b",
  "\\u0000",
  "\ud800",
  "\udfff\ud800",
  "👨‍👩‍👧".repeat(50),
  "x".repeat(20_000),
  "' OR 1=1 --",
  '"; DROP TABLE "Message"; --',
  "%00%ff",
  "<script>alert(1)</script>",
  "../../etc/passwd",
  "00000000-0000-0000-0000-000000000000",
  "not-a-uuid",
  "ZZZZ",
  "WyJtMSIsIngiLDFd", // base64url of a cursor with a bad id
  "WyJtMSIsIjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMCIsMWUzMDBd",
  "\u202e\u200b\ufeff",
];
const NASTY_NUMBERS = [0, -1, 1e300, -1e300, 2 ** 31, 2 ** 53 + 1, 0.5, Number.MAX_SAFE_INTEGER];

function nastyValue(random: Random, depth = 0): unknown {
  switch (random.int(depth > 3 ? 4 : 7)) {
    case 0:
      return random.pick(NASTY_STRINGS);
    case 1:
      return random.pick(NASTY_NUMBERS);
    case 2:
      return random.pick([true, false, null]);
    case 3:
      return String.fromCharCode(...Array.from({ length: random.int(20) }, () => random.int(0x10000)));
    case 4:
      return Array.from({ length: random.int(4) }, () => nastyValue(random, depth + 1));
    case 5: {
      const value: Record<string, unknown> = {};
      for (let i = random.int(4); i > 0; i--) value[random.pick(FIELDS)] = nastyValue(random, depth + 1);
      return value;
    }
    default: {
      let nested: unknown = 1;
      for (let i = 200 + random.int(3000); i > 0; i--) nested = [nested];
      return nested;
    }
  }
}

const FIELDS = ["conversationId", "body", "input", "first", "last", "after", "before", "id", "userId", "name", "emoji"];

/** Documents that exercise the schema with variables the generator fills. */
const DOCUMENTS = [
  "query ($id: ID!) { conversation(id: $id) { id name members { role } } }",
  "query ($conversationId: ID!, $first: Int, $after: String, $last: Int, $before: String) { messages(conversationId: $conversationId, first: $first, after: $after, last: $last, before: $before) { edges { cursor node { id body } } } }",
  "query ($first: Int, $after: String, $search: String) { users(first: $first, after: $after, search: $search) { edges { node { id } } } }",
  "query ($query: String!, $first: Int, $after: String) { searchMessages(query: $query, first: $first, after: $after) { edges { node { id } } } }",
  "mutation ($input: SendMessageInput!) { sendMessage(input: $input) { id } }",
  "mutation ($id: ID!, $body: String!) { editMessage(id: $id, body: $body) { id } }",
  "mutation ($messageId: ID!, $emoji: String!) { addReaction(messageId: $messageId, emoji: $emoji) { id } }",
  "mutation ($input: CreateGroupInput!) { createGroup(input: $input) { id } }",
  "mutation ($input: CreateTenantInput!) { createTenant(input: $input) { apiKey } }",
  "query ($first: Int, $after: String) { auditLog(first: $first, after: $after) { edges { node { id } } } }",
  "query ($first: Int, $after: String) { conversations(first: $first, after: $after) { edges { node { id } } } }",
  "{ viewer { permissions user { id } } }",
];

/** A document mutated at the character level: deleted, duplicated or inserted pieces. */
function mutateDocument(random: Random, document: string): string {
  let text = document;
  for (let i = random.int(4); i >= 0; i--) {
    const at = random.int(text.length + 1);
    switch (random.int(6)) {
      case 0:
        text = text.slice(0, at) + text.slice(at + 1 + random.int(8));
        break;
      case 1:
        text = text.slice(0, at) + text.slice(at, at + 20).repeat(1 + random.int(50)) + text.slice(at);
        break;
      case 2:
        text =
          text.slice(0, at) +
          random.pick(["{", "}", "[", "(", '"', '"""', "\\u{0}", "\u0000", "#", "...", "@skip"]) +
          text.slice(at);
        break;
      case 3:
        text = text.slice(0, at) + "[".repeat(100 + random.int(3000)) + text.slice(at);
        break;
      case 4:
        text = text.slice(0, at) + random.pick(NASTY_STRINGS) + text.slice(at);
        break;
      default:
        text =
          text.slice(0, at) + ` a${random.int(100)}: viewer { isService } `.repeat(random.int(40)) + text.slice(at);
    }
  }
  return text;
}

function variablesFor(random: Random): Record<string, unknown> {
  const variables: Record<string, unknown> = {};
  for (const field of FIELDS) if (random.next() < 0.5) variables[field] = nastyValue(random);
  return variables;
}

type Problem = { case: string; detail: string };

/** Every error must carry a client code; nothing internal and no leaked text. */
function problemsOf(label: string, status: number, text: string): Problem[] {
  const problems: Problem[] = [];
  if (status >= 500) problems.push({ case: label, detail: `status ${status}: ${text.slice(0, 300)}` });
  let body: { errors?: { extensions?: { code?: string } }[] } | undefined;
  try {
    body = JSON.parse(text);
  } catch {
    if (status !== 404 && status !== 200)
      problems.push({ case: label, detail: `non-JSON ${status}: ${text.slice(0, 200)}` });
    return problems;
  }
  for (const error of body?.errors ?? []) {
    const code = error.extensions?.code;
    if (!code || code === "INTERNAL_SERVER_ERROR") {
      problems.push({ case: label, detail: JSON.stringify(error).slice(0, 300) });
    }
  }
  try {
    expectNoLeak(text);
  } catch (error) {
    problems.push({ case: label, detail: `leak: ${(error as Error).message.slice(0, 300)}` });
  }
  return problems;
}

describe.each(backends())("generated hostile traffic on %s", (backend) => {
  let database: TestDatabase;
  let server: TestServer;
  let logged: ReturnType<typeof capturingLogger>;
  let tenant: TestTenant;
  let alice: TestUser;
  let conversationId: string;

  beforeAll(async () => {
    database = await createTestDatabase(backend);
    logged = capturingLogger();
    server = await startServer(database, { maxBodyBytes: 200_000 }, { log: logged.log });
    tenant = await createTenant(server.url, ["Alice", "Bob"]);
    [alice] = tenant.users as [TestUser];
    const group = await ok(server.url, CreateGroup, { input: { name: "Fuzz", memberIds: [] } }, { token: alice.token });
    conversationId = group.createGroup.id;
    await ok(server.url, SendMessage, { input: { conversationId, body: "seed" } }, { token: alice.token });
  });

  afterAll(async () => {
    await server?.stop();
    await database?.drop();
  });

  it(`HTTP: ${HTTP_CASES} generated requests (seed ${SEED}) get client errors or data, never internal errors`, async () => {
    const random = generator(SEED);
    const problems: Problem[] = [];
    const credentials: Record<string, string>[] = [
      {},
      { authorization: `Bearer ${alice.token}` },
      { "x-api-key": tenant.apiKey },
      { authorization: "Bearer garbage" },
    ];
    for (let i = 0; i < HTTP_CASES; i++) {
      const document = random.next() < 0.5 ? mutateDocument(random, random.pick(DOCUMENTS)) : random.pick(DOCUMENTS);
      const variables = variablesFor(random);
      if (random.next() < 0.3) variables.conversationId = conversationId;
      const headers: Record<string, string> = { ...random.pick(credentials) };
      const shape = random.int(5);
      let init: RequestInit;
      let target = server.url;
      if (shape === 0) {
        const url = new URL(server.url);
        url.searchParams.set("query", document);
        url.searchParams.set("variables", random.next() < 0.5 ? JSON.stringify(variables) : random.pick(NASTY_STRINGS));
        if (random.next() < 0.3) url.searchParams.set("extensions", random.pick(["{", "[]", "null", '{"a":1}']));
        target = url.toString();
        init = { method: "GET", headers: { ...headers, accept: "application/json" } };
      } else if (shape === 1) {
        const form = new FormData();
        form.append(
          "operations",
          random.next() < 0.7 ? JSON.stringify({ query: document, variables }) : random.pick(NASTY_STRINGS),
        );
        form.append("map", random.pick(['{"0":["variables.file"]}', '{"0":5}', '"x"', "[]", "{", '{"0":["a.b.c.d"]}']));
        form.append("0", new Blob([new Uint8Array(random.int(2000))]), random.pick(NASTY_STRINGS) || "f");
        init = { method: "POST", headers, body: form };
      } else if (shape === 2) {
        const raw = JSON.stringify({ query: document, variables });
        const cut = random.int(raw.length);
        init = {
          method: "POST",
          headers: { ...headers, "content-type": "application/json" },
          body:
            random.next() < 0.5 ? raw.slice(0, cut) : raw.slice(0, cut) + random.pick(NASTY_STRINGS) + raw.slice(cut),
        };
      } else {
        init = {
          method: "POST",
          headers: { ...headers, "content-type": "application/json" },
          body: JSON.stringify({ query: document, variables, operationName: random.next() < 0.1 ? "Nope" : undefined }),
        };
      }
      const response = await fetch(target, init);
      problems.push(...problemsOf(`#${i} shape ${shape}`, response.status, await response.text()));
    }
    expect(problems).toEqual([]);
    const errors = logged.lines.filter((line) => Number(line.level) >= 50);
    expect(errors, JSON.stringify(errors.slice(0, 3))).toEqual([]);
  }, 120_000);

  it(`WebSocket: ${WS_CASES} generated frames (seed ${SEED}) never close a socket with 4500`, async () => {
    const random = generator(SEED + 1);
    const problems: Problem[] = [];
    let socket = await initSocket(server.wsUrl, alice.token);
    const sockets = [socket];
    for (let i = 0; i < WS_CASES; i++) {
      if (!socket.isOpen()) {
        const closed = await socket.closed;
        if (closed.code === 4500 || closed.code === 1011)
          problems.push({ case: `#${i}`, detail: JSON.stringify(closed) });
        socket = random.next() < 0.2 ? await openSocket(server.wsUrl) : await initSocket(server.wsUrl, alice.token);
        sockets.push(socket);
      }
      const kind = random.int(6);
      const id = `f${i}`;
      if (kind === 0) {
        socket.sendRaw(random.pick(NASTY_STRINGS) || "{}");
      } else if (kind === 1) {
        socket.send({
          id,
          type: random.pick(["next", "error", "complete", "connection_ack", "pong", "bogus"]),
          payload: nastyValue(random),
        });
      } else if (kind === 2) {
        const document = mutateDocument(random, random.pick(DOCUMENTS).replace(/^(query|mutation)/, "subscription"));
        socket.send({ id, type: "subscribe", payload: { query: document, variables: variablesFor(random) } });
      } else if (kind === 3) {
        const variables = variablesFor(random);
        variables.conversationId = random.next() < 0.5 ? conversationId : variables.conversationId;
        socket.send({
          id,
          type: "subscribe",
          payload: {
            query:
              "subscription ($conversationId: ID, $after: String) { messageAdded(conversationId: $conversationId, after: $after) { id body } }",
            variables: { ...variables, after: random.pick(NASTY_STRINGS) },
          },
        });
      } else if (kind === 4) {
        socket.sendRaw(
          `{"id":"${id}","type":"subscribe","payload":{"query":"{ viewer { isService } }","variables":{"a":${"[".repeat(5000)}${"]".repeat(5000)}}}}`,
        );
      } else {
        socket.send({
          id,
          type: "subscribe",
          payload: { query: random.pick(DOCUMENTS), variables: variablesFor(random) },
        });
      }
      if (i % 10 === 9) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    if (socket.isOpen()) await expectSocketAlive(socket);
    for (const message of sockets.flatMap((each) => each.messages)) {
      if (message.type !== "error" && message.type !== "next") continue;
      const text = JSON.stringify({
        errors: message.type === "error" ? message.payload : (message.payload as { errors?: unknown }).errors,
      });
      problems.push(...problemsOf(`ws ${message.id}`, 200, text));
    }
    socket.close();
    expect(problems).toEqual([]);
    const errors = logged.lines.filter((line) => Number(line.level) >= 50);
    expect(errors, JSON.stringify(errors.slice(0, 3))).toEqual([]);
    // Still serving.
    await ok(server.url, SendMessage, { input: { conversationId, body: "after the storm" } }, { token: alice.token });
  }, 120_000);
});
