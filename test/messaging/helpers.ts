import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ResultOf, VariablesOf } from "@graphql-typed-document-node/core";
import { type GraphQLFormattedError, print } from "graphql";
import { afterAll, beforeAll, expect } from "vitest";
import type { BackendName } from "../helpers/backends.ts";
import { createTestDatabase, startServer, type TestDatabase, type TestServer } from "../helpers/backends.ts";
import { type Auth, fails, ok, type Subscription, sleep } from "../helpers/client.ts";
import { createTenant, type TestTenant, type TestUser } from "../helpers/fixtures.ts";
import { UploadAttachment } from "../operations/attachments.ts";
import { Conversation, CreateGroup } from "../operations/conversations.ts";
import type { ConversationEvents } from "../operations/events.ts";
import { Messages, SendFullMessage } from "../operations/messages.ts";

export type MessageFields = ResultOf<typeof SendFullMessage>["sendMessage"];
export type SendInput = VariablesOf<typeof SendFullMessage>["input"];
export type EventsResult = ResultOf<typeof ConversationEvents>;
export type ConversationEvent = EventsResult["conversationEvents"];
export type ReactionGroups = { emoji: string; count: number; users: { id: string }[] }[];

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

export const as = (user: TestUser): Auth => ({ token: user.token });
export const ids = (list: readonly { id: string }[]) => list.map((item) => item.id);
export const range = (from: number, count: number) => Array.from({ length: count }, (_, i) => from + i);

/** mulberry32: a tiny seeded PRNG, so a failing random scenario can be replayed exactly. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function pick<T>(rand: () => number, list: readonly T[]): T {
  if (list.length === 0) throw new Error("pick from an empty list");
  return list[Math.floor(rand() * list.length)] as T;
}

export function four(tenant: TestTenant): [TestUser, TestUser, TestUser, TestUser] {
  const [a, b, c, d] = tenant.users;
  if (!a || !b || !c || !d) throw new Error("tenant needs four users");
  return [a, b, c, d];
}

export async function group(url: string, owner: Auth, members: TestUser[], name = "Room"): Promise<string> {
  const { createGroup } = await ok(url, CreateGroup, { input: { name, memberIds: ids(members) } }, owner);
  return createGroup.id;
}

export async function send(
  url: string,
  auth: Auth,
  conversationId: string,
  body: string,
  extra: Partial<SendInput> = {},
): Promise<MessageFields> {
  return (await ok(url, SendFullMessage, { input: { conversationId, body, ...extra } }, auth)).sendMessage;
}

export async function history(url: string, auth: Auth, conversationId: string): Promise<MessageFields[]> {
  const { messages } = await ok(url, Messages, { conversationId, first: 100 }, auth);
  expect(messages.pageInfo.hasNextPage).toBe(false);
  return messages.edges.map((edge) => edge.node);
}

export async function messageAs(url: string, auth: Auth, conversationId: string, id: string): Promise<MessageFields> {
  const found = (await history(url, auth, conversationId)).find((message) => message.id === id);
  if (!found) return expect.fail(`message ${id} is not in the history`);
  return found;
}

export async function conversationAs(url: string, auth: Auth, id: string) {
  const { conversation } = await ok(url, Conversation, { id }, auth);
  if (!conversation) return expect.fail(`conversation ${id} not visible`);
  return conversation;
}

/** Fails with the given code (and field, when given); returns the error. */
export async function refused<T, V>(
  url: string,
  document: Parameters<typeof fails<T, V>>[1],
  variables: V,
  auth: Auth,
  code: string,
  field?: string,
): Promise<GraphQLFormattedError> {
  const error = await fails(url, document, variables, auth, code);
  if (field !== undefined) expect(error.extensions?.field, JSON.stringify(error)).toBe(field);
  return error;
}

/** Reactions as a set: emoji sorted, user ids sorted (reactions within one millisecond have no defined order). */
export function normalizeGroups(groups: ReactionGroups) {
  for (const group of groups) expect(group.count).toBe(group.users.length);
  return groups
    .map((group) => ({ emoji: group.emoji, users: ids(group.users).sort() }))
    .sort((a, b) => (a.emoji < b.emoji ? -1 : a.emoji > b.emoji ? 1 : 0));
}

// --- uploads and downloads ---------------------------------------------------------------

export interface UploadFile {
  name: string;
  type: string;
  bytes: Uint8Array;
}

export type Uploaded = ResultOf<typeof UploadAttachment>["uploadAttachment"];

/** A GraphQL multipart request (operations, map, 0) built by hand, as a browser client sends it. */
export async function uploadRaw(url: string, auth: Auth, conversationId: string, file: UploadFile) {
  const form = new FormData();
  form.append(
    "operations",
    JSON.stringify({ query: print(UploadAttachment), variables: { conversationId, file: null } }),
  );
  form.append("map", JSON.stringify({ 0: ["variables.file"] }));
  form.append("0", new Blob([new Uint8Array(file.bytes)], { type: file.type }), file.name);
  const headers: Record<string, string> = { ...auth.headers };
  if (auth.token) headers.authorization = `Bearer ${auth.token}`;
  if (auth.apiKey) headers["x-api-key"] = auth.apiKey;
  const response = await fetch(url, { method: "POST", headers, body: form });
  const text = await response.text();
  let body: { data?: { uploadAttachment?: Uploaded } | null; errors?: GraphQLFormattedError[] } = {};
  try {
    body = JSON.parse(text);
  } catch {
    expect.fail(`upload answered ${response.status} with a non-JSON body: ${text.slice(0, 200)}`);
  }
  return { status: response.status, ...body };
}

export async function upload(url: string, auth: Auth, conversationId: string, file: UploadFile): Promise<Uploaded> {
  const result = await uploadRaw(url, auth, conversationId, file);
  if (result.errors?.length || !result.data?.uploadAttachment) {
    return expect.fail(`upload failed: ${JSON.stringify(result)}`);
  }
  return result.data.uploadAttachment;
}

export async function uploadRefused(
  url: string,
  auth: Auth,
  conversationId: string,
  file: UploadFile,
  code: string,
  field?: string,
) {
  const result = await uploadRaw(url, auth, conversationId, file);
  const error = result.errors?.[0];
  if (!error || error.extensions?.code !== code) {
    return expect.fail(`expected upload error ${code}, got ${JSON.stringify(result)}`);
  }
  if (field !== undefined) expect(error.extensions?.field).toBe(field);
  expect(result.data?.uploadAttachment ?? null).toBeNull();
  return result;
}

export const text = (content: string, name = "notes.txt"): UploadFile => ({
  name,
  type: "text/plain",
  bytes: new TextEncoder().encode(content),
});

/** A real 1x1 PNG. */
export const PNG = Uint8Array.from(
  Buffer.from(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
    "base64",
  ),
);

export async function download(url: string, headers: Record<string, string> = {}) {
  const response = await fetch(url, { headers });
  return { status: response.status, headers: response.headers, bytes: new Uint8Array(await response.arrayBuffer()) };
}

export const bearer = (user: TestUser) => ({ authorization: `Bearer ${user.token}` });
export const unsigned = (url: string) => url.split("?")[0] as string;

// --- subscriptions -------------------------------------------------------------------------

export async function drain<T>(sub: Subscription<T>, waitMs = 100) {
  const events = [];
  while (true) {
    try {
      events.push(await sub.next(waitMs));
    } catch {
      return events;
    }
  }
}

export async function nextEvent(sub: Subscription<EventsResult>, timeoutMs = 10_000): Promise<ConversationEvent> {
  const result = await sub.next(timeoutMs);
  if (result.errors?.length || !result.data) return expect.fail(`event with errors: ${JSON.stringify(result)}`);
  return result.data.conversationEvents;
}

export async function takeEvents(sub: Subscription<EventsResult>, n: number, timeoutMs = 10_000) {
  const events: ConversationEvent[] = [];
  for (let i = 0; i < n; i++) events.push(await nextEvent(sub, timeoutMs));
  return events;
}

/** Repeats `poke` until the subscription delivers something: proves it is live. Drains what follows. */
export async function whenLive<T>(sub: Subscription<T>, poke: () => Promise<unknown>) {
  for (let attempt = 0; attempt < 20; attempt++) {
    await poke();
    try {
      const first = await sub.next(1000);
      return [first, ...(await drain(sub, 300))];
    } catch {
      // not subscribed yet: poke again
    }
  }
  return expect.fail("the subscription never became live");
}

/**
 * How a refused subscription ended: graphql-ws reports errors from the subscribe
 * resolver as one `next` with errors, and errors before execution through the error sink.
 */
export async function refusalCode<T>(sub: Subscription<T>): Promise<string | undefined> {
  const outcome = await Promise.race([sub.done, sleep(5000).then(() => "open" as const)]);
  if (outcome === "open") return expect.fail("the subscription was accepted");
  const errors: GraphQLFormattedError[] = Array.isArray(outcome.error) ? [...outcome.error] : [];
  for (const event of await drain(sub, 50)) {
    expect(event.data ?? null).toBeNull();
    errors.push(...((event.errors ?? []) as unknown as GraphQLFormattedError[]));
  }
  return errors[0]?.extensions?.code as string | undefined;
}

export function cursorOf(event: ConversationEvent): string {
  if (event.__typename === "ConversationDeletedEvent") return expect.fail("a deleted conversation has no cursor");
  return event.cursor;
}

export function seqOf(event: ConversationEvent): number {
  if (event.__typename === "ConversationDeletedEvent") return expect.fail("a deleted conversation has no seq");
  return event.seq;
}

// ---------------------------------------------------------------------------------------
// The servers of a describe block
// ---------------------------------------------------------------------------------------

export interface MessagingServers {
  database: TestDatabase;
  attachmentsDir: string;
  server: TestServer;
  /** A second instance on the same database and Redis (postgres+redis); the same server on PGlite. */
  second: TestServer;
  /** Small upload limits and one-second download links. */
  limited: TestServer;
  url: string;
  wsUrl: string;
}

/** Starts the servers for the enclosing describe block; their fields are set before its tests. */
export function useMessagingServers(backend: BackendName) {
  const s = {} as MessagingServers;
  beforeAll(async () => {
    s.database = await createTestDatabase(backend);
    s.attachmentsDir = await mkdtemp(join(tmpdir(), "chat-attachments-"));
    s.server = await startServer(s.database, { attachmentsDir: s.attachmentsDir });
    s.second =
      backend === "postgres+redis" ? await startServer(s.database, { attachmentsDir: s.attachmentsDir }) : s.server;
    s.limited = await startServer(s.database, {
      attachmentsDir: s.attachmentsDir,
      maxUploadBytes: 1000,
      attachmentTypes: ["text/plain", "image/png"],
      attachmentUrlTtlSeconds: 1,
    });
    s.url = s.server.url;
    s.wsUrl = s.server.wsUrl;
  });
  afterAll(async () => {
    await s.limited?.stop();
    if (s.second !== s.server) await s.second?.stop();
    await s.server?.stop();
    await s.database?.drop();
    if (s.attachmentsDir) await rm(s.attachmentsDir, { recursive: true, force: true });
  });

  /** A tenant with Alice, Bob, Carol and Dave; a group of the first three, owned by Alice. */
  async function setup() {
    const tenant = await createTenant(s.url, ["Alice", "Bob", "Carol", "Dave"]);
    const [alice, bob, carol, dave] = four(tenant);
    const conversationId = await group(s.url, as(alice), [bob, carol]);
    return { tenant, alice, bob, carol, dave, conversationId };
  }

  /** Another tenant with one user and a group of their own. */
  async function foreigner() {
    const tenant = await createTenant(s.url, ["Eve"]);
    const eve = tenant.users[0] as TestUser;
    const conversationId = await group(s.url, as(eve), [], "Elsewhere");
    return { tenant, eve, conversationId };
  }

  return Object.assign(s, { setup, foreigner });
}
