/**
 * Hostile input from outside: uploads with bad credentials, NUL in every spelling, deep
 * nesting, malformed GET and multipart requests, connection and subscription caps, and
 * what clients can make the server log. Each case once broke or burdened the server.
 */
import { request as httpRequest } from "node:http";
import { GraphQLError } from "graphql";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createErrorMasker } from "../src/graphql/errors.ts";
import {
  backends,
  capturingLogger,
  createTestDatabase,
  startServer,
  type TestDatabase,
  type TestServer,
} from "./helpers/backends.ts";
import { ok, request, sleep } from "./helpers/client.ts";
import { createTenant, type TestTenant, type TestUser } from "./helpers/fixtures.ts";
import {
  expectClose,
  expectFailed,
  expectNoLeak,
  expectRefused,
  expectSocketAlive,
  initSocket,
  openSocket,
  operationError,
  rawFetch,
} from "./helpers/hostile.ts";
import { CreateGroup } from "./operations/conversations.ts";

const UPLOAD = `mutation Upload($conversationId: ID!, $file: File!) {
  uploadAttachment(conversationId: $conversationId, file: $file) { id size mimeType }
}`;
const MESSAGE_ADDED =
  "subscription Added($conversationId: ID) { messageAdded(conversationId: $conversationId) { id } }";

/** `depth` nested JSON arrays around a string, written out (JSON.stringify would recurse). */
const deepJson = (depth: number) => `${"[".repeat(depth)}"x"${"]".repeat(depth)}`;

/**
 * Sends the headers and the first bytes of a request that declares `declaredLength` bytes,
 * then waits: resolves with the response if the server answers before the body is complete.
 */
function answeredBeforeBody(
  url: string,
  headers: Record<string, string>,
  declaredLength: number,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const req = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: "POST",
        headers: { ...headers, "content-length": String(declaredLength) },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk) => {
          text += chunk;
        });
        res.on("end", () => {
          resolve({ status: res.statusCode ?? 0, text });
          req.destroy();
        });
      },
    );
    req.on("error", () => {});
    req.write(`--x\r\nContent-Disposition: form-data; name="operations"\r\n\r\n${"{".padEnd(1000, " ")}`);
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error("the server waited for the body instead of answering"));
    }, 5_000);
    req.on("close", () => clearTimeout(timer));
  });
}

function uploadForm(conversationId: string, bytes: Uint8Array, type: string, map?: string): FormData {
  const form = new FormData();
  form.append("operations", JSON.stringify({ query: UPLOAD, variables: { conversationId, file: null } }));
  form.append("map", map ?? JSON.stringify({ 0: ["variables.file"] }));
  form.append("0", new Blob([new Uint8Array(bytes)], { type }), "data.bin");
  return form;
}

describe.each(backends())("hostile input on %s", (backend) => {
  let database: TestDatabase;
  let server: TestServer;
  /** Small caps: 3 operations per socket, 2 sockets per user, 3 per tenant. */
  let capped: TestServer;
  let logged: ReturnType<typeof capturingLogger>;
  let url: string;
  let tenant: TestTenant;
  let alice: TestUser;
  let bob: TestUser;
  let conversationId: string;

  beforeAll(async () => {
    database = await createTestDatabase(backend);
    logged = capturingLogger();
    server = await startServer(database, {}, { log: logged.log });
    capped = await startServer(database, {
      maxSubscriptionsPerSocket: 3,
      maxSocketsPerUser: 2,
      maxSocketsPerTenant: 3,
    });
    url = server.url;
    tenant = await createTenant(url, ["Alice", "Bob"]);
    [alice, bob] = tenant.users as [TestUser, TestUser];
    const group = await ok(
      url,
      CreateGroup,
      { input: { name: "Hostile", memberIds: [bob.id] } },
      { token: alice.token },
    );
    conversationId = group.createGroup.id;
  });

  afterAll(async () => {
    await capped?.stop();
    await server?.stop();
    await database?.drop();
  });

  /** Log lines of a level (pino numbers: 40 warn, 50 error) written since `from`. */
  const linesSince = (from: number, level: number) => logged.lines.slice(from).filter((line) => line.level === level);

  describe("uploads", () => {
    it("refuses an upload with bad credentials before reading its body", async () => {
      const answer = await answeredBeforeBody(
        url,
        { "content-type": "multipart/form-data; boundary=x", authorization: "Bearer garbage" },
        5_000_000,
      );
      expect(answer.status).toBe(401);
      expect(JSON.parse(answer.text).errors[0].extensions.code).toBe("UNAUTHENTICATED");
      const unknownKey = await answeredBeforeBody(
        url,
        { "content-type": "multipart/form-data; boundary=x", "x-api-key": "ck_not_a_real_key" },
        5_000_000,
      );
      expect(unknownKey.status).toBe(401);
    });

    it("refuses an upload over the limit by its declared length before reading it", async () => {
      const answer = await answeredBeforeBody(
        url,
        { "content-type": "multipart/form-data; boundary=x", authorization: `Bearer ${alice.token}` },
        50_000_000,
      );
      expect(answer.status).toBe(413);
      expect(JSON.parse(answer.text).errors[0].extensions.code).toBe("PAYLOAD_TOO_LARGE");
    });

    it("never reads file contents as text: a file of NUL bytes is stored as sent", async () => {
      const bytes = new Uint8Array(2_000_000);
      const response = await rawFetch(url, {
        method: "POST",
        headers: { authorization: `Bearer ${alice.token}` },
        body: uploadForm(conversationId, bytes, "application/zip"),
      });
      expect(response.json?.errors, response.text).toBeUndefined();
      expect(response.json?.data).toMatchObject({ uploadAttachment: { size: 2_000_000, mimeType: "application/zip" } });
    });

    it("a multipart map of the wrong shape is BAD_USER_INPUT", async () => {
      for (const map of ['{"0": 5}', '"variables.file"', '{"0": [5]}', "[1, 2]", '{"0": ["variables.file.x.y"]}']) {
        const response = await rawFetch(url, {
          method: "POST",
          headers: { authorization: `Bearer ${alice.token}` },
          body: uploadForm(conversationId, new Uint8Array([1, 2, 3]), "application/zip", map),
        });
        expectRefused(response, ["BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED"]);
      }
      const form = new FormData();
      form.append("operations", '"just a string"');
      form.append("map", JSON.stringify({ 0: ["variables.file"] }));
      form.append("0", new Blob([new Uint8Array([1])]), "a.bin");
      const stringOperations = await rawFetch(url, {
        method: "POST",
        headers: { authorization: `Bearer ${alice.token}` },
        body: form,
      });
      expectRefused(stringOperations, "BAD_USER_INPUT");
    });
  });

  describe("NUL characters", () => {
    // Each spelling reaches the resolver as a string holding U+0000 unless refused first.
    const spellings: [string, string][] = [
      ["the escape \\u0000", '"a\\u0000b"'],
      ["the escape \\u{0}", '"a\\u{0}b"'],
      ["the escape \\u{000000}", '"a\\u{000000}b"'],
      ["a raw NUL in a string", '"a\u0000b"'],
      ["a raw NUL in a block string", '"""a\u0000b"""'],
    ];
    it.each(spellings)("%s in a literal is refused before execution, without credentials", async (_name, literal) => {
      const result = await request(url, `mutation { createTenant(input: { name: ${literal} }) { tenant { id } } }`);
      const error = expectFailed(result, ["BAD_USER_INPUT", "GRAPHQL_PARSE_FAILED"]);
      if (error.extensions?.code === "BAD_USER_INPUT") expect(error.extensions.field).toBe("input.name");
    });

    it("a NUL in a variable is refused naming its path", async () => {
      const result = await request(
        url,
        "mutation ($input: CreateTenantInput!) { createTenant(input: $input) { apiKey } }",
        {
          input: { name: "a\u0000b" },
        },
      );
      expectFailed(result, "BAD_USER_INPUT", "input.name");
    });

    it("a NUL in a literal over WebSocket fails that operation only", async () => {
      const socket = await initSocket(server.wsUrl, alice.token);
      socket.send({
        id: "nul",
        type: "subscribe",
        payload: { query: 'subscription { messageAdded(conversationId: "a\\u{0}b") { id } }' },
      });
      const [error] = await operationError(socket, "nul");
      expect(error?.extensions?.code).toBe("BAD_USER_INPUT");
      await expectSocketAlive(socket);
      socket.close();
    });
  });

  describe("nesting", () => {
    it("variables nested 10 000 levels deep are BAD_USER_INPUT, without credentials", async () => {
      const body = `{"query":"mutation ($input: CreateTenantInput!) { createTenant(input: $input) { apiKey } }","variables":{"input":{"name":${deepJson(10_000)}}}}`;
      const response = await rawFetch(url, { method: "POST", headers: { "content-type": "application/json" }, body });
      const error = expectRefused(response, "BAD_USER_INPUT");
      expect(error.message).not.toMatch(/stack|RangeError/i);
    });

    it("extensions nested 10 000 levels deep are BAD_USER_INPUT", async () => {
      const body = `{"query":"{ viewer { isService } }","extensions":{"x":${deepJson(10_000)}}}`;
      const response = await rawFetch(url, { method: "POST", headers: { "content-type": "application/json" }, body });
      expectRefused(response, "BAD_USER_INPUT");
    });

    it("a list literal nested 2000 levels deep is refused before the parser recurses", async () => {
      const query = `{ users(search: ${"[".repeat(2000)}"x"${"]".repeat(2000)}) { edges { cursor } } }`;
      const result = await request(url, query, undefined, { apiKey: tenant.apiKey });
      expectFailed(result, "GRAPHQL_PARSE_FAILED");
    });

    it("deep variables and deep literals over WebSocket fail that operation; no internal text reaches the client", async () => {
      const socket = await initSocket(server.wsUrl, alice.token);
      socket.sendRaw(
        `{"id":"deep-vars","type":"subscribe","payload":{"query":${JSON.stringify(MESSAGE_ADDED)},"variables":{"conversationId":${deepJson(10_000)}}}}`,
      );
      const [varsError] = await operationError(socket, "deep-vars");
      expect(varsError?.extensions?.code).toBe("BAD_USER_INPUT");
      socket.send({
        id: "deep-doc",
        type: "subscribe",
        payload: {
          query: `subscription { messageAdded(conversationId: ${"[".repeat(2000)}"x"${"]".repeat(2000)}) { id } }`,
        },
      });
      const [docError] = await operationError(socket, "deep-doc");
      expect(docError?.extensions?.code).toBe("GRAPHQL_PARSE_FAILED");
      expectNoLeak([varsError, docError]);
      await expectSocketAlive(socket);
      socket.close();
    });
  });

  describe("malformed GET requests", () => {
    it.each([
      ["variables", "{bad"],
      ["extensions", "{bad"],
      ["variables", '{"a":'],
    ])("malformed JSON in %s is BAD_USER_INPUT with 400", async (param, value) => {
      const target = new URL(url);
      target.searchParams.set("query", "{ viewer { isService } }");
      target.searchParams.set(param, value);
      const response = await rawFetch(target.toString(), { headers: { accept: "application/json" } });
      expectRefused(response, "BAD_USER_INPUT", 400);
    });
  });

  describe("connection limits", () => {
    it("a socket holds at most MAX_SUBSCRIPTIONS_PER_SOCKET operations; one more fails alone", async () => {
      const socket = await initSocket(capped.wsUrl, alice.token);
      for (const id of ["s1", "s2", "s3"]) {
        socket.send({ id, type: "subscribe", payload: { query: MESSAGE_ADDED, variables: { conversationId } } });
      }
      await sleep(200);
      socket.send({ id: "s4", type: "subscribe", payload: { query: MESSAGE_ADDED, variables: { conversationId } } });
      const [error] = await operationError(socket, "s4");
      expect(error?.extensions?.code).toBe("RATE_LIMITED");
      await expectSocketAlive(socket);
      // Ending one makes room for another.
      socket.send({ id: "s1", type: "complete" });
      await sleep(100);
      socket.send({ id: "s5", type: "subscribe", payload: { query: MESSAGE_ADDED, variables: { conversationId } } });
      await sleep(300);
      expect(socket.messages.filter((m) => m.id === "s5" && m.type === "error")).toEqual([]);
      socket.close();
    });

    it("a user holds at most MAX_SOCKETS_PER_USER sockets and a tenant MAX_SOCKETS_PER_TENANT; closing frees a place", async () => {
      const first = await initSocket(capped.wsUrl, alice.token);
      const second = await initSocket(capped.wsUrl, alice.token);
      const third = await openSocket(capped.wsUrl);
      third.send({ type: "connection_init", payload: { authorization: `Bearer ${alice.token}` } });
      await expectClose(third, 4429);
      // Bob is another user: he still gets in, which fills the tenant (3).
      const bobs = await initSocket(capped.wsUrl, bob.token);
      const service = await openSocket(capped.wsUrl);
      service.send({ type: "connection_init", payload: { apiKey: tenant.apiKey } });
      await expectClose(service, 4429);
      await expectSocketAlive(first);
      first.close();
      await first.closed;
      await sleep(100);
      const again = await initSocket(capped.wsUrl, alice.token);
      await expectSocketAlive(again);
      for (const socket of [second, bobs, again]) socket.close();
    });
  });

  describe("what clients can make the server log", () => {
    it("protocol violations, invalid frames and aborted bodies log one warning each, never an error or a stack", async () => {
      const consoleError = vi.spyOn(console, "error");
      try {
        const from = logged.lines.length;
        for (const type of ["connection_ack", "next"]) {
          const socket = await initSocket(server.wsUrl, alice.token);
          socket.send({ id: "x", type, payload: {} });
          await expectClose(socket, 4400);
        }
        const invalidUtf8 = await initSocket(server.wsUrl, alice.token);
        invalidUtf8.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
        const badFrame = await invalidUtf8.closed;
        expect(badFrame.code).toBe(1007);
        const oversized = await initSocket(server.wsUrl, alice.token);
        oversized.send({ type: "ping", payload: { pad: "x".repeat(server.app.deps.config.maxBodyBytes + 10) } });
        expect((await oversized.closed).code).toBe(1009);
        await abortedBody(url);
        for (let waited = 0; waited < 5_000 && linesSince(from, 40).length < 5; waited += 50) await sleep(50);
        await sleep(200);
        const warnings = linesSince(from, 40);
        expect(linesSince(from, 50), JSON.stringify(logged.lines.slice(from))).toEqual([]);
        expect(warnings.length, JSON.stringify(warnings)).toBe(5);
        for (const line of warnings) expect(JSON.stringify(line)).not.toMatch(/\n\s+at\s/);
        expect(consoleError).not.toHaveBeenCalled();
      } finally {
        consoleError.mockRestore();
      }
    });
  });

  it("after all of it the server still serves HTTP and WebSocket", async () => {
    await ok(url, CreateGroup, { input: { name: "Still", memberIds: [] } }, { token: alice.token });
    const socket = await initSocket(server.wsUrl, bob.token);
    await expectSocketAlive(socket);
    socket.close();
  });
});

/** A JSON POST that declares 10 000 bytes, sends 20 and hangs up. */
function abortedBody(url: string): Promise<void> {
  return new Promise((resolve) => {
    const target = new URL(url);
    const req = httpRequest({
      host: target.hostname,
      port: target.port,
      path: target.pathname,
      method: "POST",
      headers: { "content-type": "application/json", "content-length": "10000" },
    });
    req.on("error", () => {});
    req.write('{"query": "{ viewer');
    setTimeout(() => {
      req.destroy();
      resolve();
    }, 100);
  });
}

describe("a record deleted by a concurrent request", () => {
  it("is NOT_FOUND for the client, not an internal error", async () => {
    const database = await createTestDatabase("pglite");
    const logged = capturingLogger();
    const server = await startServer(database, {}, { log: logged.log });
    try {
      // What Prisma raises when a row found a moment ago is gone (P2025).
      const gone = await server.app.deps.db.prisma.tenant
        .update({ where: { id: "00000000-0000-4000-8000-000000000000" }, data: { name: "x" } })
        .then(
          () => null,
          (error: unknown) => error,
        );
      expect(gone).toBeTruthy();
      const masked = createErrorMasker(logged.log)(
        new GraphQLError("Record not found", { originalError: gone as Error, path: ["sendMessage", "sender"] }),
      );
      expect(masked.extensions.code).toBe("NOT_FOUND");
      expect(masked.path).toEqual(["sendMessage", "sender"]);
      expect(logged.lines.filter((line) => Number(line.level) >= 50)).toEqual([]);
    } finally {
      await server.stop();
      await database.drop();
    }
  });
});

describe("a masked error", () => {
  it("is logged once, with the id the client sees", async () => {
    const database = await createTestDatabase("pglite");
    const logged = capturingLogger();
    const server = await startServer(database, {}, { log: logged.log });
    try {
      // A database that went away is the server's problem, not the client's.
      await server.app.deps.db.close();
      const from = logged.lines.length;
      const result = await request(server.url, 'mutation { createTenant(input: { name: "Gone" }) { apiKey } }');
      const error = result.errors?.[0];
      expect(error?.extensions?.code).toBe("INTERNAL_SERVER_ERROR");
      expectNoLeak(result);
      const errors = logged.lines.slice(from).filter((line) => Number(line.level) >= 50);
      expect(errors.length, JSON.stringify(errors)).toBe(1);
      expect(errors[0]?.errorId).toBe(error?.extensions?.errorId);
    } finally {
      await server.stop().catch(() => {});
      await database.drop().catch(() => {});
    }
  });
});
