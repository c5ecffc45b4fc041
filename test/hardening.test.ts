import { randomBytes, randomUUID } from "node:crypto";
import { type GraphQLFormattedError, print } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backends, createTestDatabase, startServer, type TestDatabase, type TestServer } from "./helpers/backends.ts";
import { type GqlResult, ok, request, subscribe, wsClient } from "./helpers/client.ts";
import { createTenant, type TestTenant, type TestUser } from "./helpers/fixtures.ts";
import {
  chunkedPost,
  expectClientError,
  expectClose,
  expectFailed,
  expectRefused,
  expectSocketAlive,
  initSocket,
  openSocket,
  operationError,
  type RawSocket,
  rawFetch,
  rawPost,
} from "./helpers/hostile.ts";
import { Conversations, CreateGroup } from "./operations/conversations.ts";
import { MessageAdded } from "./operations/events.ts";
import { Messages, SendMessage } from "./operations/messages.ts";
import { CreateTenant } from "./operations/tenants.ts";
import { CreateUser, UpdateUser, Users, Viewer } from "./operations/users.ts";

const suffix = () => randomBytes(4).toString("hex");

function deepQuery(conversationId: string, cycles: number): string {
  // conversation > messages > edges > node, repeated; depth = 4 * cycles + 2.
  let open = "";
  let close = "";
  for (let i = 0; i < cycles; i++) {
    open += `${i === 0 ? `conversation(id: "${conversationId}")` : "conversation"} { messages { edges { node { `;
    close += " } } } }";
  }
  return `query Deep { ${open}conversation { id }${close} }`;
}

function deepSubscription(conversationId: string, cycles: number): string {
  let open = "";
  let close = "";
  for (let i = 0; i < cycles; i++) {
    open += "conversation { messages { edges { node { ";
    close += " } } } }";
  }
  return `subscription DeepSub { messageAdded(conversationId: "${conversationId}") { ${open}id${close} } }`;
}

const aliasFlood = (n: number) =>
  `query Aliases { ${Array.from({ length: n }, (_, i) => `a${i}: viewer { isService }`).join(" ")} }`;

describe.each(backends())("hardening on %s", (backend) => {
  let database: TestDatabase;
  let server: TestServer;
  /** MAX_BODY_BYTES = 10 000 (HTTP and WebSocket frames). */
  let small: TestServer;
  /** MAX_MESSAGE_LENGTH = 100. */
  let short: TestServer;
  let url: string;
  let tenant: TestTenant;
  let alice: TestUser;
  let bob: TestUser;
  let conversationId: string;
  let otherConversationId: string;
  /** A group Alice is not a member of. */
  let privateConversationId: string;
  /** Cursor of the newest message when the suite started: replay point for live checks. */
  let seedCursor: string;

  beforeAll(async () => {
    database = await createTestDatabase(backend);
    server = await startServer(database);
    small = await startServer(database, { maxBodyBytes: 10_000 });
    short = await startServer(database, { maxMessageLength: 100 });
    url = server.url;
    tenant = await createTenant(url, ["Alice", "Bob", "Carol"]);
    [alice, bob] = tenant.users as [TestUser, TestUser];
    const { createGroup } = await ok(
      url,
      CreateGroup,
      { input: { name: "Hardening", memberIds: [bob.id] } },
      { token: alice.token },
    );
    conversationId = createGroup.id;
    const other = await ok(url, CreateGroup, { input: { name: "Other", memberIds: [] } }, { token: alice.token });
    otherConversationId = other.createGroup.id;
    const hidden = await ok(url, CreateGroup, { input: { name: "Private", memberIds: [] } }, { token: bob.token });
    privateConversationId = hidden.createGroup.id;
    const seed = await ok(url, SendMessage, { input: { conversationId, body: "seed" } }, { token: alice.token });
    seedCursor = seed.sendMessage.cursor;
    await ok(
      url,
      SendMessage,
      { input: { conversationId: otherConversationId, body: "other" } },
      { token: alice.token },
    );
  });

  afterAll(async () => {
    await short?.stop();
    await small?.stop();
    await server?.stop();
    await database?.drop();
  });

  /** The server still answers a normal authenticated query. */
  async function stillServing(target = url): Promise<void> {
    const result = await ok(target, Viewer, {}, { apiKey: tenant.apiKey });
    expect(result.viewer.tenant.id).toBe(tenant.id);
  }

  async function usersNamed(search: string): Promise<string[]> {
    const found = await ok(url, Users, { search }, { apiKey: tenant.apiKey });
    return found.users.edges.map((e) => e.node.name);
  }

  async function messageBodies(id = conversationId): Promise<(string | null | undefined)[]> {
    const page = await ok(url, Messages, { conversationId: id, last: 100 }, { token: alice.token });
    return page.messages.edges.map((e) => e.node.body);
  }

  /** Subscribes on the socket from the seed cursor and proves a newly sent message arrives. */
  async function expectLiveSubscription(socket: RawSocket, id = `live-${suffix()}`, sendUrl = url): Promise<void> {
    socket.send({
      id,
      type: "subscribe",
      payload: { query: print(MessageAdded), variables: { conversationId, after: seedCursor } },
    });
    const body = `live ${suffix()}`;
    // Sent through the socket's own server: with in-memory pub/sub, servers do not share events.
    await ok(sendUrl, SendMessage, { input: { conversationId, body } }, { token: bob.token });
    const event = await socket.waitFor(
      (m) => m.id === id && m.type === "next" && JSON.stringify(m.payload).includes(body),
    );
    expect((event.payload as { errors?: unknown }).errors).toBeUndefined();
    socket.send({ id, type: "complete" });
  }

  describe("HTTP request shape", () => {
    const malformed: [string, string][] = [
      ["truncated JSON", '{"query": "{ viewer { isService } }"'],
      ["JSON with unquoted keys", "{query: viewer}"],
      ["text that is not JSON", "not json at all"],
      ["JSON followed by garbage", '{"query": "{ viewer { isService } }"}garbage'],
      ["an empty body", ""],
      ["an empty array", "[]"],
      ["an array of numbers", "[1, 2, 3]"],
      ["a JSON string", '"a string"'],
      ["a JSON number", "42"],
      ["JSON null", "null"],
      ["JSON true", "true"],
    ];
    it.each(malformed)("refuses %s with a client error code", async (_name, body) => {
      const response = await rawPost(url, body, "application/json", { "x-api-key": tenant.apiKey });
      expectRefused(response);
      await stillServing();
    });

    const badParams: [string, unknown][] = [
      ["a body without query", {}],
      ["variables without query", { variables: {} }],
      ["a null query", { query: null }],
      ["a numeric query", { query: 42 }],
      ["an array query", { query: ["{ viewer { isService } }"] }],
      ["an object query", { query: { kind: "Document" } }],
      ["string variables", { query: "{ viewer { isService } }", variables: "not an object" }],
      ["array variables", { query: "{ viewer { isService } }", variables: [1, 2] }],
      ["numeric variables", { query: "{ viewer { isService } }", variables: 7 }],
      ["a numeric operationName", { query: "{ viewer { isService } }", operationName: 5 }],
      ["an unknown operationName", { query: "query A { viewer { isService } }", operationName: "B" }],
      ["string extensions", { query: "{ viewer { isService } }", extensions: "nope" }],
    ];
    it.each(badParams)("refuses %s with a client error code", async (_name, body) => {
      const response = await rawPost(url, JSON.stringify(body), "application/json", { "x-api-key": tenant.apiKey });
      expectRefused(response);
      await stillServing();
    });

    it("refuses form and text POSTs (CSRF) without executing them", async () => {
      const name = `Csrf ${suffix()}`;
      const mutation = `mutation { createUser(input: { name: "${name}" }) { id } }`;
      const attempts: [string, string][] = [
        ["application/x-www-form-urlencoded", new URLSearchParams({ query: mutation }).toString()],
        ["text/plain", JSON.stringify({ query: mutation })],
        ["text/plain;charset=UTF-8", JSON.stringify({ query: mutation })],
      ];
      for (const [type, body] of attempts) {
        const response = await rawPost(url, body, type, { "x-api-key": tenant.apiKey });
        expectRefused(response);
        expect(response.status).toBe(415);
      }
      // Multipart is the upload channel, open only to requests carrying credentials in a
      // header, which a cross-site form cannot send: without one it is refused.
      const multipart = await rawPost(
        url,
        `--xyz\r\nContent-Disposition: form-data; name="query"\r\n\r\n${mutation}\r\n--xyz--\r\n`,
        "multipart/form-data; boundary=xyz",
        {},
      );
      expectRefused(multipart);
      expect(multipart.status).toBe(415);
      // A POST with no Content-Type at all is refused as well.
      const untyped = await rawFetch(url, {
        method: "POST",
        headers: { "x-api-key": tenant.apiKey },
        body: new Blob([JSON.stringify({ query: mutation })]),
      });
      expectRefused(untyped);
      expect(await usersNamed(name)).toEqual([]);
      await stillServing();
    });

    it("never executes a mutation sent with GET, and refuses it with a code", async () => {
      const name = `Get ${suffix()}`;
      const mutation = `mutation { createUser(input: { name: "${name}" }) { id } }`;
      const response = await rawFetch(`${url}?query=${encodeURIComponent(mutation)}`, {
        headers: { "x-api-key": tenant.apiKey, accept: "application/graphql-response+json" },
      });
      // Also with a plain JSON accept header and a named operation.
      const named = `mutation Sneaky { createUser(input: { name: "${name}" }) { id } }`;
      const second = await rawFetch(`${url}?query=${encodeURIComponent(named)}&operationName=Sneaky`, {
        headers: { "x-api-key": tenant.apiKey, accept: "application/json" },
      });
      // Nothing was created, whatever the responses say.
      expect(await usersNamed(name)).toEqual([]);
      expect(response.status).toBe(405);
      expectRefused(response);
      expectRefused(second);
      await stillServing();
    });

    it("answers a query sent with GET", async () => {
      const query = await rawFetch(`${url}?query=${encodeURIComponent("{ viewer { isService } }")}`, {
        headers: { "x-api-key": tenant.apiKey },
      });
      expect(query.status).toBe(200);
      expect(query.json?.data).toEqual({ viewer: { isService: true } });
    });
  });

  describe("oversized bodies", () => {
    const padded = (name: string, size: number) =>
      JSON.stringify({
        query: `mutation Big { createUser(input: { name: "${name}" }) { id } }`,
        extensions: { pad: "x".repeat(size) },
      });

    it("answers 413 PAYLOAD_TOO_LARGE to a body over MAX_BODY_BYTES with a Content-Length", async () => {
      const name = `Big ${suffix()}`;
      // Just under the limit still works.
      const fitsName = `Fits ${suffix()}`;
      const fits = await rawPost(small.url, padded(fitsName, 9_000), "application/json", {
        "x-api-key": tenant.apiKey,
      });
      expect(fits.status).toBe(200);
      expect(fits.json?.errors).toBeUndefined();
      expect(await usersNamed(fitsName)).toEqual([fitsName]);

      for (const size of [10_500, 200_000, 3_000_000]) {
        const response = await rawPost(small.url, padded(name, size), "application/json", {
          "x-api-key": tenant.apiKey,
        });
        expectRefused(response, "PAYLOAD_TOO_LARGE", 413);
      }
      expect(await usersNamed(name)).toEqual([]);
      await stillServing(small.url);
      await stillServing();
    });

    it("answers 413 PAYLOAD_TOO_LARGE to a chunked body over MAX_BODY_BYTES", async () => {
      const name = `Chunked ${suffix()}`;
      const prefix = JSON.stringify({
        query: `mutation Big { createUser(input: { name: "${name}" }) { id } }`,
      }).replace(/}$/, ',"extensions":{"pad":"');
      for (const padding of [12_000, 500_000]) {
        const response = await chunkedPost(small.url, prefix, padding, '"}}');
        expect(response.status).toBe(413);
        const json = JSON.parse(response.text) as { errors?: GraphQLFormattedError[] };
        expectClientError(json.errors?.[0], "PAYLOAD_TOO_LARGE");
      }
      // A small chunked body is accepted.
      const fine = await chunkedPost(
        small.url,
        JSON.stringify({ query: "{ __typename }" }).replace(/}$/, ',"extensions":{"p":"'),
        100,
        '"}}',
      );
      expect(fine.status).toBe(200);
      expect(JSON.parse(fine.text)).toEqual({ data: { __typename: "Query" } });
      expect(await usersNamed(name)).toEqual([]);
      await stillServing(small.url);
      await stillServing();
    });
  });

  describe("GraphQL documents", () => {
    it("syntax errors are GRAPHQL_PARSE_FAILED", async () => {
      const documents = [
        "{ viewer { isService ",
        "query {",
        "}}}",
        "query Q($a: ) { viewer { isService } }",
        'mutation { createUser(input: { name: "unterminated }) { id } }',
        "{ viewer { isService } } trailing garbage",
        "\u0000\u0001",
        "   ",
      ];
      for (const document of documents) {
        const result = await request(url, document, undefined, { apiKey: tenant.apiKey });
        expectFailed(result, "GRAPHQL_PARSE_FAILED");
      }
      await stillServing();
    });

    it("unknown fields are GRAPHQL_VALIDATION_FAILED without suggestions", async () => {
      const documents = [
        "{ viewer { isServic } }",
        "{ viewr { isService } }",
        "{ users(frist: 1) { edges { cursor } } }",
        "{ viewer }",
        'mutation { createUsr(input: { name: "x" }) { id } }',
        'mutation { createUser(input: { nam: "x" }) { id } }',
        "query Q($x: Strng) { users(search: $x) { edges { cursor } } }",
        "{ viewer { ...Missing } }",
      ];
      for (const document of documents) {
        const result = await request(url, document, undefined, { apiKey: tenant.apiKey });
        const error = expectFailed(result, "GRAPHQL_VALIDATION_FAILED");
        for (const each of result.errors ?? []) expect(each.message).not.toContain("Did you mean");
        expect(error.message).not.toContain("Did you mean");
      }
      await stillServing();
    });

    it("variable type errors are BAD_USER_INPUT", async () => {
      const cases: [string, Record<string, unknown>][] = [
        [print(Users), { first: "ten" }],
        [print(Users), { first: 1.5 }],
        [print(Users), { first: 2 ** 40 }],
        [print(Users), { search: { nested: true } }],
        [print(Messages), {}],
        [print(Messages), { conversationId: null }],
        [print(CreateUser), { input: { name: 5 } }],
        [print(CreateUser), { input: "not an object" }],
        [print(CreateUser), {}],
      ];
      for (const [document, variables] of cases) {
        const result = await request(url, document, variables, { apiKey: tenant.apiKey });
        const error = expectFailed(result, "BAD_USER_INPUT");
        expect(error.message).not.toContain("Did you mean");
      }
      await stillServing();
    });

    it("unknown input fields in variables are BAD_USER_INPUT without suggestions", async () => {
      const cases: [string, Record<string, unknown>][] = [
        [print(CreateUser), { input: { name: "Ok", emial: "x@example.com" } }],
        [print(SendMessage), { input: { conversationId, body: "x", bdy: "y" } }],
      ];
      for (const [document, variables] of cases) {
        const result = await request(url, document, variables, { apiKey: tenant.apiKey });
        const error = expectFailed(result, "BAD_USER_INPUT");
        expect(error.message).not.toContain("Did you mean");
      }
      expect(await usersNamed("Ok")).toEqual([]);
      await stillServing();
    });

    it("rejects deep queries, alias floods, huge token counts and many directives", async () => {
      const documents = [
        deepQuery(conversationId, 12),
        aliasFlood(1000),
        aliasFlood(25),
        `query Tokens { viewer { ${"isService ".repeat(5000)}} }`,
        `query Tokens2 { ${"__typename ".repeat(20_000)}}`,
        `query Directives { viewer { isService ${"@include(if: true) ".repeat(50)}} }`,
        `query Directives2 { viewer { ${"isService @include(if: true) ".repeat(40)}} }`,
        // Depth hidden in a chain of fragments.
        `query Fragments { conversation(id: "${conversationId}") { messages { edges { node { ...F0 } } } } } ${Array.from(
          { length: 12 },
          (_, i) =>
            `fragment F${i} on Message { conversation { messages { edges { node { ${i < 11 ? `...F${i + 1}` : "id"} } } } } }`,
        ).join(" ")}`,
      ];
      for (const document of documents) {
        const result = await request(url, document, undefined, { apiKey: tenant.apiKey });
        expectFailed(result);
        expect(result.data ?? null).toBeNull();
        await stillServing();
      }
      // A long string argument stays within the token limits and is refused by validation.
      const search = await request(url, Users, { search: "s".repeat(500_000) }, { apiKey: tenant.apiKey });
      expectFailed(search, "BAD_USER_INPUT", "search");
      await stillServing();
    });
  });

  describe("input validation", () => {
    it("over-long, empty and malformed names and emails are BAD_USER_INPUT with the field", async () => {
      const apiKey = tenant.apiKey;
      const tooLong = "n".repeat(201);
      expectFailed(await request(url, CreateTenant, { input: { name: tooLong } }), "BAD_USER_INPUT", "input.name");
      expectFailed(await request(url, CreateTenant, { input: { name: "  " } }), "BAD_USER_INPUT", "input.name");
      await ok(url, CreateTenant, { input: { name: "t".repeat(200) } });

      for (const name of [tooLong, "", "   ", "\n\t"]) {
        const result = await request(url, CreateUser, { input: { name } }, { apiKey });
        expectFailed(result, "BAD_USER_INPUT", "input.name");
      }
      const exact = `${suffix()}${"e".repeat(192)}`;
      const created = await ok(url, CreateUser, { input: { name: exact } }, { apiKey });
      expect(created.createUser.name).toBe(exact);

      const badEmails = [
        "plainaddress",
        "a@",
        "@example.com",
        "a b@example.com",
        "a@b@example.com",
        "a@example..com",
        `${"a".repeat(250)}@example.com`,
        "<script>@example.com",
        "",
      ];
      for (const email of badEmails) {
        const result = await request(url, CreateUser, { input: { name: "Mail", email } }, { apiKey });
        expectFailed(result, "BAD_USER_INPUT", "input.email");
      }
      const update = await request(url, UpdateUser, { id: alice.id, input: { email: "nope" } }, { token: alice.token });
      expectFailed(update, "BAD_USER_INPUT", "input.email");
      const group = await request(
        url,
        CreateGroup,
        { input: { name: tooLong, memberIds: [bob.id] } },
        { token: alice.token },
      );
      expectFailed(group, "BAD_USER_INPUT", "input.name");
      // Nothing was lost or changed by the refused updates.
      const after = await ok(url, Users, { search: alice.name }, { apiKey });
      expect(after.users.edges.map((e) => e.node.id)).toContain(alice.id);
      expect(await usersNamed("Mail")).toEqual([]);
      await stillServing();
    });

    it("message bodies: over MAX_MESSAGE_LENGTH, empty or blank are BAD_USER_INPUT; nothing is stored", async () => {
      const before = await messageBodies();
      const auth = { token: alice.token };
      const tooLong = await request(short.url, SendMessage, { input: { conversationId, body: "b".repeat(101) } }, auth);
      expectFailed(tooLong, "BAD_USER_INPUT", "input.body");
      const huge = await request(short.url, SendMessage, { input: { conversationId, body: "b".repeat(50_000) } }, auth);
      expectFailed(huge, "BAD_USER_INPUT", "input.body");
      for (const body of ["", " ", "   \n\t  ", "\u00a0\u2003"]) {
        const result = await request(short.url, SendMessage, { input: { conversationId, body } }, auth);
        expectFailed(result, "BAD_USER_INPUT", "input.body");
      }
      const longClientId = await request(
        short.url,
        SendMessage,
        { input: { conversationId, body: "ok", clientMessageId: "c".repeat(129) } },
        auth,
      );
      expectFailed(longClientId, "BAD_USER_INPUT", "input.clientMessageId");
      const badId = await request(short.url, SendMessage, { input: { conversationId: "not-a-uuid", body: "x" } }, auth);
      expectFailed(badId, "BAD_USER_INPUT", "input.conversationId");
      expect(await messageBodies()).toEqual(before);

      const exact = "b".repeat(100);
      const sent = await ok(short.url, SendMessage, { input: { conversationId, body: exact } }, auth);
      expect(sent.sendMessage.body).toBe(exact);
      expect(await messageBodies()).toEqual([...before, exact]);
      await stillServing(short.url);
      await stillServing();
    });

    it("page sizes out of range are BAD_USER_INPUT naming first/last", async () => {
      const auth = { token: alice.token };
      for (const first of [-1, 100_000, 101]) {
        expectFailed(await request(url, Messages, { conversationId, first }, auth), "BAD_USER_INPUT", "first");
        expectFailed(await request(url, Users, { first }, auth), "BAD_USER_INPUT", "first");
        expectFailed(await request(url, Conversations, { first }, auth), "BAD_USER_INPUT", "first");
      }
      expectFailed(await request(url, Messages, { conversationId, last: -1 }, auth), "BAD_USER_INPUT", "last");
      expectFailed(await request(url, Messages, { conversationId, last: 100_000 }, auth), "BAD_USER_INPUT", "last");
      // Boundaries are accepted.
      await ok(url, Messages, { conversationId, first: 0 }, auth);
      await ok(url, Messages, { conversationId, first: 100 }, auth);
      await stillServing();
    });

    it("invalid cursors are BAD_USER_INPUT naming after/before", async () => {
      const auth = { token: alice.token };
      const users = await ok(url, Users, { first: 1 }, { apiKey: tenant.apiKey });
      const userCursor = users.users.pageInfo.endCursor as string;
      const conversations = await ok(url, Conversations, { first: 1 }, auth);
      const conversationCursor = conversations.conversations.pageInfo.endCursor as string;
      const other = await ok(url, Messages, { conversationId: otherConversationId, last: 1 }, auth);
      const otherMessageCursor = other.messages.pageInfo.endCursor as string;
      const own = await ok(url, Messages, { conversationId, last: 1 }, auth);
      const messageCursor = own.messages.pageInfo.endCursor as string;

      const garbage = [
        randomBytes(24).toString("base64"),
        randomBytes(24).toString("base64url"),
        Buffer.from(JSON.stringify(["m1", conversationId, -5])).toString("base64url"),
        Buffer.from(JSON.stringify(["m1", conversationId, "1; DROP TABLE"])).toString("base64url"),
        Buffer.from(JSON.stringify({ a: 1 })).toString("base64url"),
        "!!!not-base64!!!",
        "A".repeat(10_000),
        "\u0000",
      ];
      for (const cursor of [...garbage, userCursor, conversationCursor, otherMessageCursor]) {
        expectFailed(await request(url, Messages, { conversationId, after: cursor }, auth), "BAD_USER_INPUT", "after");
        expectFailed(
          await request(url, Messages, { conversationId, last: 2, before: cursor }, auth),
          "BAD_USER_INPUT",
          "before",
        );
      }
      for (const cursor of [...garbage, messageCursor, conversationCursor]) {
        expectFailed(await request(url, Users, { after: cursor }, auth), "BAD_USER_INPUT", "after");
      }
      for (const cursor of [...garbage, messageCursor, userCursor]) {
        expectFailed(await request(url, Conversations, { after: cursor }, auth), "BAD_USER_INPUT", "after");
      }
      expectFailed(
        await request(url, Messages, { conversationId: "not-an-id" }, auth),
        "BAD_USER_INPUT",
        "conversationId",
      );
      await stillServing();
    });

    it("unicode names and bodies round-trip: emoji, RTL, zero-width, combining marks", async () => {
      const apiKey = tenant.apiKey;
      const names = [
        "👩🏽‍💻 Zoë 🇫🇷",
        "مرحبا بالعالم",
        "שלום\u200f abc \u202eevil",
        "zero\u200bwidth\u200d\ufeffjoin\u2060ed",
        "Ä̴̛̗ combining",
        "𝕳𝖊𝖑𝖑𝖔 𠜎",
      ];
      for (const name of names) {
        const result = await ok(url, CreateUser, { input: { name } }, { apiKey });
        expect(result.createUser.name).toBe(name);
        const sent = await ok(url, SendMessage, { input: { conversationId, body: name } }, { token: alice.token });
        expect(sent.sendMessage.body).toBe(name);
      }
      const stored = await messageBodies();
      for (const name of names) expect(stored).toContain(name);
      await stillServing();
    });

    type NulCase = [
      string,
      string,
      () => Promise<{ result: GqlResult<unknown>; returned?: string | null; undo?: () => Promise<unknown> }>,
    ];
    const nulCases: NulCase[] = [
      [
        "a user name",
        "input.name",
        async () => {
          const result = await request(
            url,
            CreateUser,
            { input: { name: `Nul\u0000Name ${suffix()}` } },
            {
              apiKey: tenant.apiKey,
            },
          );
          return { result, returned: result.data?.createUser.name };
        },
      ],
      [
        "an email",
        "input.email",
        async () => {
          const input = { name: "Nul mail", email: `a${suffix()}\u0000@example.com` };
          const result = await request(url, CreateUser, { input }, { apiKey: tenant.apiKey });
          return { result, returned: result.data?.createUser.email };
        },
      ],
      [
        "a tenant name",
        "input.name",
        async () => {
          const result = await request(url, CreateTenant, { input: { name: "Tenant\u0000" } });
          return { result, returned: result.data?.createTenant.tenant.name };
        },
      ],
      [
        "a profile update",
        "input.name",
        async () => {
          const result = await request(
            url,
            UpdateUser,
            { id: alice.id, input: { name: "A\u0000lice" } },
            { token: alice.token },
          );
          return {
            result,
            returned: result.data?.updateUser.name,
            undo: () => ok(url, UpdateUser, { id: alice.id, input: { name: alice.name } }, { token: alice.token }),
          };
        },
      ],
      [
        "a message body",
        "input.body",
        async () => {
          const input = { conversationId, body: "x\u0000y" };
          const result = await request(url, SendMessage, { input }, { token: alice.token });
          return { result, returned: result.data?.sendMessage.body };
        },
      ],
      [
        "a clientMessageId",
        "input.clientMessageId",
        async () => {
          const input = { conversationId, body: "keyed", clientMessageId: `k${suffix()}\u0000` };
          const result = await request(url, SendMessage, { input }, { token: alice.token });
          return { result, returned: result.data?.sendMessage.clientMessageId };
        },
      ],
      [
        "a user search",
        "search",
        async () => {
          const result = await request(url, Users, { search: "a\u0000" }, { apiKey: tenant.apiKey });
          return { result, returned: result.data ? "" : undefined };
        },
      ],
      [
        "a group name",
        "input.name",
        async () => {
          const input = { name: "G\u0000", memberIds: [bob.id] };
          const result = await request(url, CreateGroup, { input }, { token: alice.token });
          return { result, returned: result.data?.createGroup.name };
        },
      ],
      [
        "a group description",
        "input.description",
        async () => {
          const input = { name: "Described", description: "d\u0000", memberIds: [bob.id] };
          const result = await request(url, CreateGroup, { input }, { token: alice.token });
          return { result, returned: result.data ? "" : undefined };
        },
      ],
    ];
    it.each(nulCases)(
      "NUL in %s is stripped or refused with BAD_USER_INPUT, never a server error",
      async (_label, field, run) => {
        const before = await messageBodies();
        const { result, returned, undo } = await run();
        if (result.errors?.length) {
          expectFailed(result, "BAD_USER_INPUT", field);
          expect(await messageBodies()).toEqual(before);
        } else {
          expect(typeof returned).toBe("string");
          expect(returned).not.toContain("\u0000");
          await undo?.();
        }
        await stillServing();
      },
    );

    it("a body of only NUL characters is BAD_USER_INPUT and stores nothing", async () => {
      const before = await messageBodies();
      const result = await request(
        url,
        SendMessage,
        { input: { conversationId, body: "\u0000\u0000" } },
        { token: alice.token },
      );
      expectFailed(result, "BAD_USER_INPUT", "input.body");
      expect(await messageBodies()).toEqual(before);
      await stillServing();
    });

    it("a lone surrogate never becomes a server error", async () => {
      const input = { conversationId, body: "x\ud800y" };
      const result = await request(url, SendMessage, { input }, { token: alice.token });
      if (result.errors?.length) expectFailed(result, "BAD_USER_INPUT", "input.body");
      else expect(result.data?.sendMessage.body).toBe("x\ufffdy");
      await stillServing();
    });
  });

  describe("WebSocket abuse", () => {
    it("garbage and binary frames before connection_init close with 4400", async () => {
      for (const frame of ["not json", "{", "[]", '{"type": 5}', '{"type":"bogus"}', "null"]) {
        const socket = await openSocket(server.wsUrl);
        socket.sendRaw(frame);
        await expectClose(socket, 4400);
      }
      const binary = await openSocket(server.wsUrl);
      binary.sendRaw(randomBytes(64));
      await expectClose(binary, 4400);
      // Garbage after a successful handshake closes with 4400 too.
      const acked = await initSocket(server.wsUrl, alice.token);
      acked.sendRaw("garbage");
      await expectClose(acked, 4400);
      const badSubscribe = await initSocket(server.wsUrl, alice.token);
      badSubscribe.send({ id: "x", type: "subscribe", payload: { query: 42 } });
      await expectClose(badSubscribe, 4400);
      await stillServing();
    });

    it("refuses bad, missing and absent credentials with 4403, early subscribe with 4401", async () => {
      const bad = await openSocket(server.wsUrl);
      bad.send({ type: "connection_init", payload: { authorization: "Bearer not.a.jwt" } });
      await expectClose(bad, 4403);

      const badKey = await openSocket(server.wsUrl);
      badKey.send({ type: "connection_init", payload: { apiKey: "ck_definitely-not-a-valid-key-000000" } });
      await expectClose(badKey, 4403);

      const none = await openSocket(server.wsUrl);
      none.send({ type: "connection_init" });
      await expectClose(none, 4403);

      const empty = await openSocket(server.wsUrl);
      empty.send({ type: "connection_init", payload: {} });
      await expectClose(empty, 4403);

      const early = await openSocket(server.wsUrl);
      early.send({ id: "1", type: "subscribe", payload: { query: print(MessageAdded), variables: {} } });
      await expectClose(early, 4401);

      const twice = await initSocket(server.wsUrl, alice.token);
      twice.send({ type: "connection_init", payload: { authorization: `Bearer ${alice.token}` } });
      await expectClose(twice, 4429);

      // Without the graphql-transport-ws subprotocol the server refuses the connection.
      const noProtocol = await openSocket(server.wsUrl, null);
      await expectClose(noProtocol, 4406);
      await stillServing();
    });

    it("duplicate subscription ids close with 4409", async () => {
      const socket = await initSocket(server.wsUrl, alice.token);
      const subscribeMessage = {
        id: "dup",
        type: "subscribe",
        payload: { query: print(MessageAdded), variables: { conversationId } },
      };
      socket.send(subscribeMessage);
      socket.send(subscribeMessage);
      await expectClose(socket, 4409);
      await stillServing();
    });

    it("a frame over MAX_BODY_BYTES closes that socket only; the server stays up", async () => {
      const bystander = await initSocket(small.wsUrl, alice.token);
      const socket = await initSocket(small.wsUrl, alice.token);
      socket.send({
        id: "huge",
        type: "subscribe",
        payload: { query: print(MessageAdded), variables: { conversationId, after: "x".repeat(20_000) } },
      });
      const closed = await Promise.race([
        socket.closed,
        new Promise<null>((resolve) => setTimeout(() => resolve(null), 10_000)),
      ]);
      expect(closed, "socket with an oversized frame was not closed").not.toBeNull();
      expect(closed?.code).toBe(1009);
      // A huge frame before connection_init as well.
      const early = await openSocket(small.wsUrl);
      early.sendRaw("y".repeat(50_000));
      const earlyClosed = await Promise.race([
        early.closed,
        new Promise<null>((resolve) => setTimeout(() => resolve(null), 10_000)),
      ]);
      expect(earlyClosed?.code).toBe(1009);
      await expectSocketAlive(bystander);
      await expectLiveSubscription(bystander, undefined, small.url);
      bystander.close();
      await stillServing(small.url);
      await stillServing();
    });

    it("an invalid operation gets an error for its id; the socket and other subscriptions keep working", async () => {
      const socket = await initSocket(server.wsUrl, alice.token);
      const cases: [string, Record<string, unknown>, string][] = [
        ["subscription {", {}, "GRAPHQL_PARSE_FAILED"],
        ["subscription { nope }", {}, "GRAPHQL_VALIDATION_FAILED"],
        ["subscription { messageAdded { bodyy } }", {}, "GRAPHQL_VALIDATION_FAILED"],
        [print(MessageAdded), { conversationId, after: 5 }, "BAD_USER_INPUT"],
        [print(MessageAdded), { conversationId: "not-an-id" }, "BAD_USER_INPUT"],
        [print(MessageAdded), { conversationId, after: "garbage" }, "BAD_USER_INPUT"],
        [print(MessageAdded), { after: seedCursor }, "BAD_USER_INPUT"],
        [print(MessageAdded), { conversationId: randomUUID() }, "NOT_FOUND"],
        [print(MessageAdded), { conversationId: privateConversationId }, "FORBIDDEN"],
      ];
      let n = 0;
      for (const [query, variables, code] of cases) {
        const id = `bad-${n++}`;
        socket.send({ id, type: "subscribe", payload: { query, variables } });
        const errors = await operationError(socket, id);
        const error = expectClientError(errors[0], code);
        expect(error.message).not.toContain("Did you mean");
        await expectSocketAlive(socket);
      }
      // The id of a failed operation may be used again.
      await expectLiveSubscription(socket, "bad-0");
      await expectLiveSubscription(socket);
      expect(socket.isOpen()).toBe(true);
      socket.close();
      await stillServing();
    });

    it("a live subscription survives a failing one on the same socket", async () => {
      const socket = await initSocket(server.wsUrl, alice.token);
      socket.send({
        id: "keep",
        type: "subscribe",
        payload: { query: print(MessageAdded), variables: { conversationId, after: seedCursor } },
      });
      socket.send({ id: "broken", type: "subscribe", payload: { query: "subscription { nope }" } });
      await operationError(socket, "broken");
      const body = `survivor ${suffix()}`;
      await ok(url, SendMessage, { input: { conversationId, body } }, { token: bob.token });
      await socket.waitFor((m) => m.id === "keep" && m.type === "next" && JSON.stringify(m.payload).includes(body));
      socket.close();
    });

    const limits: [string, (id: string) => string][] = [
      ["a too-deep query", (id) => deepSubscription(id, 12)],
      [
        "an alias flood",
        (id) =>
          `subscription Flood { messageAdded(conversationId: "${id}") { ${Array.from(
            { length: 30 },
            (_, i) => `a${i}: id`,
          ).join(" ")} } }`,
      ],
      [
        "too many directives",
        (id) => `subscription Dirs { messageAdded(conversationId: "${id}") { id ${"@include(if: true) ".repeat(50)}} }`,
      ],
      [
        "too many tokens",
        (id) => `subscription Tokens { messageAdded(conversationId: "${id}") { ${"id ".repeat(5000)}} }`,
      ],
    ];
    it.each(limits)("%s over WebSocket yields an error for that operation, not close 4500", async (_name, build) => {
      const socket = await initSocket(server.wsUrl, alice.token);
      socket.send({
        id: "keep",
        type: "subscribe",
        payload: { query: print(MessageAdded), variables: { conversationId, after: seedCursor } },
      });
      socket.send({ id: "limit", type: "subscribe", payload: { query: build(conversationId) } });
      const errors = await operationError(socket, "limit");
      expectClientError(errors[0]);
      await expectSocketAlive(socket);
      // The other subscription on the socket still delivers.
      const body = `after limit ${suffix()}`;
      await ok(url, SendMessage, { input: { conversationId, body } }, { token: bob.token });
      await socket.waitFor((m) => m.id === "keep" && m.type === "next" && JSON.stringify(m.payload).includes(body));
      socket.close();
      await stillServing();
    });

    it("after all the abuse, HTTP and a fresh WebSocket connection still work", async () => {
      await stillServing();
      await stillServing(small.url);
      await stillServing(short.url);
      const client = wsClient(server.wsUrl, { token: alice.token });
      try {
        const sub = subscribe(client, MessageAdded, { conversationId, after: seedCursor });
        const body = `fresh ${suffix()}`;
        await ok(url, SendMessage, { input: { conversationId, body } }, { token: bob.token });
        let found = false;
        for (let i = 0; i < 200 && !found; i++) {
          const event = await sub.next();
          expect(event.errors).toBeUndefined();
          found = event.data?.messageAdded.body === body;
        }
        expect(found).toBe(true);
        sub.unsubscribe();
      } finally {
        await client.dispose();
      }
      const raw = await initSocket(server.wsUrl, bob.token);
      await expectLiveSubscription(raw);
      raw.close();
    });
  });

  describe("health", () => {
    it("/health is 200 and /ready reports warmth, the database and pub/sub", async () => {
      const origin = new URL(url).origin;
      const health = await fetch(`${origin}/health`);
      expect(health.status).toBe(200);
      await health.body?.cancel();
      const ready = await fetch(`${origin}/ready`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ warm: true, database: true, pubsub: true });
      await stillServing();
    });
  });
});
