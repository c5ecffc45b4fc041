/**
 * TRUSTED_DOCUMENTS: with a persisted-operations manifest, requests with a user's token (or
 * none) run only its operations, by id or as their exact text, over HTTP and on sockets;
 * the API key (a backend) keeps sending its own documents.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { print } from "graphql";
import { afterAll, describe, expect } from "vitest";
import { loadTrustedDocuments } from "../src/graphql/trusted-documents.ts";
import { backends } from "./helpers/backends.ts";
import { ok, request, subscribe } from "./helpers/client.ts";
import { createUserWithToken, type TestTenant } from "./helpers/fixtures.ts";
import { test, useServer } from "./helpers/world.ts";
import { CreateGroup } from "./operations/conversations.ts";
import { SendMessage } from "./operations/messages.ts";
import { CreateTenant } from "./operations/tenants.ts";
import { Viewer } from "./operations/users.ts";

const VIEWER = "query TrustedViewer { viewer { isService } }";
const MESSAGES =
  "subscription TrustedMessages($conversationId: ID) { messageAdded(conversationId: $conversationId) { id body } }";
const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

const dir = mkdtempSync(join(tmpdir(), "chat-trusted-"));
const manifest = join(dir, "persisted-documents.json");
writeFileSync(manifest, JSON.stringify({ [sha256(VIEWER)]: VIEWER, [sha256(MESSAGES)]: MESSAGES }));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function post(url: string, body: Record<string, unknown>, headers: Record<string, string> = {}) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return (await response.json()) as { data?: Record<string, unknown>; errors?: { extensions?: { code?: string } }[] };
}

const ADMIN_KEY = "platform-admin-key-for-trusted-documents";

/** A tenant with Alice and Bob, made through the admin and API keys (which may send any document). */
async function tenantOf(url: string): Promise<TestTenant> {
  const { createTenant } = await ok(
    url,
    CreateTenant,
    { input: { name: "Trusted" } },
    { headers: { "x-platform-admin-key": ADMIN_KEY } },
  );
  const users = [];
  for (const name of ["Alice", "Bob"]) users.push(await createUserWithToken(url, createTenant.apiKey, name));
  return { id: createTenant.tenant.id, apiKey: createTenant.apiKey, users };
}

describe.each(backends())("trusted documents on %s", (backend) => {
  useServer(backend, { trustedDocuments: manifest, platformAdminKey: ADMIN_KEY });

  test("a user runs the manifest's operations by id or exact text, and nothing else", async ({ server }) => {
    const tenant = await tenantOf(server.url);
    const auth = { authorization: `Bearer ${tenant.users[0]?.token}` };
    const byId = await post(
      server.url,
      { extensions: { persistedQuery: { version: 1, sha256Hash: sha256(VIEWER) } } },
      auth,
    );
    expect(byId).toEqual({ data: { viewer: { isService: false } } });
    expect(await post(server.url, { documentId: sha256(VIEWER) }, auth)).toEqual({
      data: { viewer: { isService: false } },
    });
    expect(await post(server.url, { query: VIEWER }, auth)).toEqual({ data: { viewer: { isService: false } } });
    // Any other document, even the same operation written differently, is refused.
    expect((await post(server.url, { query: print(Viewer) }, auth)).errors?.[0]?.extensions?.code).toBe("FORBIDDEN");
    expect((await post(server.url, { query: `${VIEWER} ` }, auth)).errors?.[0]?.extensions?.code).toBe("FORBIDDEN");
    expect((await post(server.url, { query: "{ __typename }" })).errors?.[0]?.extensions?.code).toBe("FORBIDDEN");
    // A made-up API key or admin key header does not lift the restriction.
    for (const header of [
      { "x-api-key": "ck_made_up_key_0123456789" },
      { "x-platform-admin-key": "made-up-admin-key" },
    ] as Record<string, string>[]) {
      expect((await post(server.url, { query: "{ __typename }" }, header)).errors?.[0]?.extensions?.code).toBe(
        "FORBIDDEN",
      );
    }
    expect((await post(server.url, { documentId: sha256("something else") }, auth)).errors?.[0]?.extensions?.code).toBe(
      "BAD_USER_INPUT",
    );
  });

  test("a trusted id sent with another document runs the trusted document, not the other one", async ({ server }) => {
    const tenant = await tenantOf(server.url);
    const auth = { authorization: `Bearer ${tenant.users[0]?.token}` };
    const persistedQuery = { version: 1, sha256Hash: sha256(VIEWER) };
    const smuggled = await post(
      server.url,
      { query: "{ __typename viewer { permissions } }", extensions: { persistedQuery } },
      auth,
    );
    expect(smuggled).toEqual({ data: { viewer: { isService: false } } });
    const byDocumentId = await post(server.url, { query: "{ __typename }", documentId: sha256(VIEWER) }, auth);
    expect(byDocumentId).toEqual({ data: { viewer: { isService: false } } });
  });

  test("the client kit's manifest is accepted: its Viewer query runs by the kit's hash", async () => {
    const kit = loadTrustedDocuments(
      fileURLToPath(new URL("../client/src/generated/persisted-documents.json", import.meta.url)),
    );
    const [id, text] = [...kit.byId].find(([key, doc]) => !key.includes(":") && /query Viewer \{/.test(doc)) ?? [];
    expect(text).toBeDefined();
    expect(sha256(text as string)).toBe(id);
    expect(kit.byId.get(`sha256:${id}`)).toBe(text);
  });

  test("the API key sends its own documents", async ({ server }) => {
    const tenant = await tenantOf(server.url);
    const { viewer } = await ok(server.url, Viewer, undefined, { apiKey: tenant.apiKey });
    expect(viewer.isService).toBe(true);
    const result = await request(server.url, "{ __typename }", undefined, { apiKey: tenant.apiKey });
    expect(result.data).toEqual({ __typename: "Query" });
  });

  test("on a socket a user subscribes by id; other documents fail with FORBIDDEN", async ({ server, sockets }) => {
    const tenant = await tenantOf(server.url);
    const bob = tenant.users[1] as (typeof tenant.users)[0];
    const conversationId = (
      await ok(server.url, CreateGroup, { input: { name: "T", memberIds: [bob.id] } }, { apiKey: tenant.apiKey })
    ).createGroup.id;
    const client = sockets.open({ token: bob.token });
    const refused = subscribe(client, Viewer);
    const ended = await refused.done;
    expect(JSON.stringify(ended.error)).toContain("FORBIDDEN");
    const events: { data?: { messageAdded?: { body: string } } }[] = [];
    const live = new Promise<void>((resolve, reject) => {
      client.subscribe(
        { query: "", variables: { conversationId }, extensions: { persistedQuery: { sha256Hash: sha256(MESSAGES) } } },
        {
          next: (value) => {
            events.push(value as (typeof events)[0]);
            if (events.some((e) => e.data?.messageAdded?.body === "second")) resolve();
          },
          error: reject,
          complete: () => {},
        },
      );
    });
    const send = (body: string) =>
      ok(server.url, SendMessage, { input: { conversationId, body } }, { apiKey: tenant.apiKey });
    // Sends until the stream is live, then one more that must arrive.
    const deadline = Date.now() + 10_000;
    while (!events.length && Date.now() < deadline) {
      await send("first");
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await send("second");
    await live;
    expect(events.every((e) => e.data?.messageAdded?.body)).toBe(true);
  });
});
