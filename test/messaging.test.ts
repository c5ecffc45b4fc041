/**
 * Messaging through the real server: edit, delete, pins, reactions, replies, mentions,
 * attachments (multipart upload and download), search, conversationEvents, and unread
 * counts under edits and deletes. The random scenario replays exactly with TEST_SEED=<n>.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ResultOf, VariablesOf } from "@graphql-typed-document-node/core";
import { type GraphQLFormattedError, print } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backends, createTestDatabase, startServer, type TestDatabase, type TestServer } from "./helpers/backends.ts";
import { type Auth, fails, ok, type Subscription, sleep, subscribe, wsClient } from "./helpers/client.ts";
import { createTenant, type TestTenant, type TestUser } from "./helpers/fixtures.ts";
import { UploadAttachment } from "./operations/attachments.ts";
import {
  AddMembers,
  Conversation,
  ConversationSummaries,
  CreateGroup,
  DeleteGroup,
  MarkRead,
  RemoveMember,
  SetMemberRole,
  UpdateGroup,
} from "./operations/conversations.ts";
import { ConversationEvents, MessageAddedSeq, ReadReceipt, Typing } from "./operations/events.ts";
import {
  AddReaction,
  DeleteMessage,
  EditMessage,
  Messages,
  PinMessage,
  RemoveReaction,
  SearchMessages,
  SendFullMessage,
  SetTyping,
  Threads,
  UnpinMessage,
} from "./operations/messages.ts";
import { AssignRole, Roles } from "./operations/roles.ts";

type MessageFields = ResultOf<typeof SendFullMessage>["sendMessage"];
type SendInput = VariablesOf<typeof SendFullMessage>["input"];
type EventsResult = ResultOf<typeof ConversationEvents>;
type ConversationEvent = EventsResult["conversationEvents"];
type ReactionGroups = { emoji: string; count: number; users: { id: string }[] }[];

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

const as = (user: TestUser): Auth => ({ token: user.token });
const ids = (list: readonly { id: string }[]) => list.map((item) => item.id);
const range = (from: number, count: number) => Array.from({ length: count }, (_, i) => from + i);

/** mulberry32: a tiny seeded PRNG, so a failing random scenario can be replayed exactly. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pick<T>(rand: () => number, list: readonly T[]): T {
  if (list.length === 0) throw new Error("pick from an empty list");
  return list[Math.floor(rand() * list.length)] as T;
}

function four(tenant: TestTenant): [TestUser, TestUser, TestUser, TestUser] {
  const [a, b, c, d] = tenant.users;
  if (!a || !b || !c || !d) throw new Error("tenant needs four users");
  return [a, b, c, d];
}

async function group(url: string, owner: Auth, members: TestUser[], name = "Room"): Promise<string> {
  const { createGroup } = await ok(url, CreateGroup, { input: { name, memberIds: ids(members) } }, owner);
  return createGroup.id;
}

async function send(
  url: string,
  auth: Auth,
  conversationId: string,
  body: string,
  extra: Partial<SendInput> = {},
): Promise<MessageFields> {
  return (await ok(url, SendFullMessage, { input: { conversationId, body, ...extra } }, auth)).sendMessage;
}

async function history(url: string, auth: Auth, conversationId: string): Promise<MessageFields[]> {
  const { messages } = await ok(url, Messages, { conversationId, first: 100 }, auth);
  expect(messages.pageInfo.hasNextPage).toBe(false);
  return messages.edges.map((edge) => edge.node);
}

async function messageAs(url: string, auth: Auth, conversationId: string, id: string): Promise<MessageFields> {
  const found = (await history(url, auth, conversationId)).find((message) => message.id === id);
  if (!found) return expect.fail(`message ${id} is not in the history`);
  return found;
}

async function conversationAs(url: string, auth: Auth, id: string) {
  const { conversation } = await ok(url, Conversation, { id }, auth);
  if (!conversation) return expect.fail(`conversation ${id} not visible`);
  return conversation;
}

/** Fails with the given code (and field, when given); returns the error. */
async function refused<T, V>(
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
function normalizeGroups(groups: ReactionGroups) {
  for (const group of groups) expect(group.count).toBe(group.users.length);
  return groups
    .map((group) => ({ emoji: group.emoji, users: ids(group.users).sort() }))
    .sort((a, b) => (a.emoji < b.emoji ? -1 : a.emoji > b.emoji ? 1 : 0));
}

// --- uploads and downloads ---------------------------------------------------------------

interface UploadFile {
  name: string;
  type: string;
  bytes: Uint8Array;
}

type Uploaded = ResultOf<typeof UploadAttachment>["uploadAttachment"];

/** A GraphQL multipart request (operations, map, 0) built by hand, as a browser client sends it. */
async function uploadRaw(url: string, auth: Auth, conversationId: string, file: UploadFile) {
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

async function upload(url: string, auth: Auth, conversationId: string, file: UploadFile): Promise<Uploaded> {
  const result = await uploadRaw(url, auth, conversationId, file);
  if (result.errors?.length || !result.data?.uploadAttachment) {
    return expect.fail(`upload failed: ${JSON.stringify(result)}`);
  }
  return result.data.uploadAttachment;
}

async function uploadRefused(
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

const text = (content: string, name = "notes.txt"): UploadFile => ({
  name,
  type: "text/plain",
  bytes: new TextEncoder().encode(content),
});

/** A real 1x1 PNG. */
const PNG = Uint8Array.from(
  Buffer.from(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
    "base64",
  ),
);

async function download(url: string, headers: Record<string, string> = {}) {
  const response = await fetch(url, { headers });
  return { status: response.status, headers: response.headers, bytes: new Uint8Array(await response.arrayBuffer()) };
}

const bearer = (user: TestUser) => ({ authorization: `Bearer ${user.token}` });
const unsigned = (url: string) => url.split("?")[0] as string;

// --- subscriptions -------------------------------------------------------------------------

async function drain<T>(sub: Subscription<T>, waitMs = 100) {
  const events = [];
  while (true) {
    try {
      events.push(await sub.next(waitMs));
    } catch {
      return events;
    }
  }
}

async function nextEvent(sub: Subscription<EventsResult>, timeoutMs = 10_000): Promise<ConversationEvent> {
  const result = await sub.next(timeoutMs);
  if (result.errors?.length || !result.data) return expect.fail(`event with errors: ${JSON.stringify(result)}`);
  return result.data.conversationEvents;
}

async function takeEvents(sub: Subscription<EventsResult>, n: number, timeoutMs = 10_000) {
  const events: ConversationEvent[] = [];
  for (let i = 0; i < n; i++) events.push(await nextEvent(sub, timeoutMs));
  return events;
}

/** Repeats `poke` until the subscription delivers something: proves it is live. Drains what follows. */
async function whenLive<T>(sub: Subscription<T>, poke: () => Promise<unknown>) {
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
async function refusalCode<T>(sub: Subscription<T>): Promise<string | undefined> {
  const outcome = await Promise.race([sub.done, sleep(5000).then(() => "open" as const)]);
  if (outcome === "open") return expect.fail("the subscription was accepted");
  const errors: GraphQLFormattedError[] = Array.isArray(outcome.error) ? [...outcome.error] : [];
  for (const event of await drain(sub, 50)) {
    expect(event.data ?? null).toBeNull();
    errors.push(...((event.errors ?? []) as unknown as GraphQLFormattedError[]));
  }
  return errors[0]?.extensions?.code as string | undefined;
}

function cursorOf(event: ConversationEvent): string {
  if (event.__typename === "ConversationDeletedEvent") return expect.fail("a deleted conversation has no cursor");
  return event.cursor;
}

function seqOf(event: ConversationEvent): number {
  if (event.__typename === "ConversationDeletedEvent") return expect.fail("a deleted conversation has no seq");
  return event.seq;
}

// ---------------------------------------------------------------------------------------
// A local copy kept in sync from conversationEvents alone
// ---------------------------------------------------------------------------------------

interface CopiedMessage {
  id: string;
  seq: number;
  type: string;
  sender: string | null;
  replyTo: string | null;
  body: string | null;
  editedAt: string | null;
  deletedAt: string | null;
  deletedBy: string | null;
  pinned: boolean;
  /** Event seq of the latest pin, to order pinnedMessages (most recently pinned first). */
  pinSeq: number;
  /** emoji -> user ids */
  reactions: Map<string, string[]>;
}

interface ChatState {
  name: string | null;
  description: string | null;
  members: { id: string; role: string }[];
  pinned: string[];
  messages: (Omit<CopiedMessage, "pinSeq" | "reactions"> & { reactions: { emoji: string; users: string[] }[] })[];
}

type SnapshotMessage = Extract<ConversationEvent, { __typename: "MessageAddedEvent" }>["message"];

function fromSnapshot(message: SnapshotMessage) {
  return {
    body: message.body ?? null,
    editedAt: message.editedAt ?? null,
    deletedAt: message.deletedAt ?? null,
    deletedBy: message.deletedBy?.id ?? null,
    pinned: message.pinned,
  };
}

class LocalCopy {
  readonly messages = new Map<string, CopiedMessage>();
  readonly members = new Map<string, string>();
  name: string | null = null;
  description: string | null = null;
  deleted = false;
  readonly seqs: number[] = [];
  lastCursor: string | null = null;

  constructor(readonly conversationId: string) {}

  private known(id: string): CopiedMessage {
    const message = this.messages.get(id);
    if (!message) return expect.fail(`an event about message ${id}, which was never added`);
    return message;
  }

  apply(event: ConversationEvent): void {
    if (event.conversationId !== this.conversationId) return;
    if (event.__typename === "ConversationDeletedEvent") {
      this.deleted = true;
      return;
    }
    this.seqs.push(event.seq);
    this.lastCursor = event.cursor;
    switch (event.__typename) {
      case "MessageAddedEvent": {
        const m = event.message;
        expect(this.messages.has(m.id), `message ${m.id} added twice`).toBe(false);
        this.messages.set(m.id, {
          id: m.id,
          seq: m.seq,
          type: m.type,
          sender: m.sender?.id ?? null,
          replyTo: m.replyTo?.id ?? null,
          ...fromSnapshot(m),
          pinSeq: 0,
          reactions: new Map(),
        });
        break;
      }
      case "MessageEditedEvent":
      case "MessageDeletedEvent":
      case "MessagePinnedEvent":
      case "MessageUnpinnedEvent": {
        const local = this.known(event.message.id);
        Object.assign(local, fromSnapshot(event.message));
        if (event.__typename === "MessageDeletedEvent") local.reactions.clear();
        if (event.__typename === "MessagePinnedEvent") local.pinSeq = event.seq;
        break;
      }
      case "ReactionChangedEvent": {
        const local = this.known(event.message.id);
        const userId = event.user?.id;
        if (!userId) throw new Error("a reaction event without its user");
        const users = local.reactions.get(event.emoji) ?? [];
        if (event.added) {
          expect(users, `${userId} reacted ${event.emoji} twice`).not.toContain(userId);
          local.reactions.set(event.emoji, [...users, userId]);
        } else {
          expect(users, `${userId} took back a ${event.emoji} never given`).toContain(userId);
          const rest = users.filter((id) => id !== userId);
          if (rest.length) local.reactions.set(event.emoji, rest);
          else local.reactions.delete(event.emoji);
        }
        // The event also carries the message's full set: it must agree with the deltas.
        expect(this.reactionsOf(local)).toEqual(normalizeGroups(event.reactions));
        break;
      }
      case "MemberAddedEvent":
      case "MemberRoleChangedEvent": {
        const userId = event.user?.id;
        if (!userId) throw new Error("a member event without its user");
        this.members.set(userId, event.role);
        break;
      }
      case "MemberRemovedEvent": {
        const userId = event.user?.id;
        if (!userId) throw new Error("a member event without its user");
        expect(this.members.has(userId), `${userId} removed but never added`).toBe(true);
        this.members.delete(userId);
        break;
      }
      case "ConversationUpdatedEvent":
        this.name = event.name ?? null;
        this.description = event.description ?? null;
        break;
    }
  }

  private reactionsOf(message: CopiedMessage) {
    return normalizeGroups(
      [...message.reactions].map(([emoji, users]) => ({
        emoji,
        count: users.length,
        users: users.map((id) => ({ id })),
      })),
    );
  }

  state(): ChatState {
    const messages = [...this.messages.values()].sort((a, b) => a.seq - b.seq);
    return {
      name: this.name,
      description: this.description,
      members: [...this.members].map(([id, role]) => ({ id, role })).sort((a, b) => (a.id < b.id ? -1 : 1)),
      pinned: messages
        .filter((m) => m.pinned)
        .sort((a, b) => b.pinSeq - a.pinSeq)
        .map((m) => m.id),
      messages: messages.map(({ pinSeq: _pinSeq, reactions: _reactions, ...rest }) => ({
        ...rest,
        reactions: this.reactionsOf(this.known(rest.id)),
      })),
    };
  }
}

/** What `messages(first: 100)` and `conversation { name members pinnedMessages }` say, in the copy's shape. */
async function serverState(url: string, auth: Auth, conversationId: string): Promise<ChatState> {
  const conversation = await conversationAs(url, auth, conversationId);
  const messages = await history(url, auth, conversationId);
  return {
    name: conversation.name ?? null,
    description: conversation.description ?? null,
    members: conversation.members
      .map((member) => ({ id: member.user.id, role: member.role }))
      .sort((a, b) => (a.id < b.id ? -1 : 1)),
    pinned: ids(conversation.pinnedMessages),
    messages: messages.map((m) => ({
      id: m.id,
      seq: m.seq,
      type: m.type,
      sender: m.sender?.id ?? null,
      replyTo: m.replyTo?.id ?? null,
      body: m.body ?? null,
      editedAt: m.editedAt ?? null,
      deletedAt: m.deletedAt ?? null,
      deletedBy: m.deletedBy?.id ?? null,
      pinned: m.pinned,
      reactions: normalizeGroups(m.reactions),
    })),
  };
}

/** A client of conversationEvents that applies every event it receives to its local copy. */
class Observer {
  private client: ReturnType<typeof wsClient> | null = null;
  private sub: Subscription<EventsResult> | null = null;
  readonly copy: LocalCopy;
  readonly received: ConversationEvent[] = [];

  constructor(
    readonly auth: Auth,
    conversationId: string,
  ) {
    this.copy = new LocalCopy(conversationId);
  }

  connect(wsUrl: string, variables: VariablesOf<typeof ConversationEvents>): Subscription<EventsResult> {
    this.client = wsClient(wsUrl, this.auth);
    this.sub = subscribe(this.client, ConversationEvents, variables);
    return this.sub;
  }

  private handle(event: ConversationEvent) {
    this.received.push(event);
    this.copy.apply(event);
  }

  /** Applies whatever has arrived so far. */
  async pump(waitMs = 100): Promise<void> {
    if (!this.sub) return;
    for (const result of await drain(this.sub, waitMs)) {
      if (result.errors?.length || !result.data) expect.fail(`event with errors: ${JSON.stringify(result)}`);
      this.handle(result.data.conversationEvents);
    }
  }

  /** Applies events until the copy satisfies `done`. */
  async until(done: (copy: LocalCopy) => boolean, timeoutMs = 20_000): Promise<void> {
    const sub = this.sub;
    if (!sub) return expect.fail("not connected");
    while (!done(this.copy)) this.handle(await nextEvent(sub, timeoutMs));
  }

  /** Drops the connection abruptly; events that had arrived are still applied. */
  async disconnect(): Promise<void> {
    await this.client?.dispose();
    await this.pump(50);
    this.client = null;
    this.sub = null;
  }
}

// ---------------------------------------------------------------------------------------
// The random scenario driven against the server
// ---------------------------------------------------------------------------------------

const EMOJIS = ["👍", "❤️", "😂", "👍🏽", "🇯🇵", "👩‍💻", "🎉"];
const WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"];

interface DrivenMessage {
  id: string;
  senderId: string;
  clientMessageId: string | null;
  body: string;
  deleted: boolean;
  pinned: boolean;
}

interface Cast {
  alice: TestUser;
  bob: TestUser;
  carol: TestUser;
  dave: TestUser;
}

/**
 * Random operations by Alice (group owner), Bob (admin) and Carol (member) on one group;
 * Dave comes and goes. Keeps just enough of its own bookkeeping to choose valid operations.
 */
class Scenario {
  readonly messages: DrivenMessage[] = [];
  readonly reactions = new Set<string>();
  daveIn = false;
  readonly log: string[] = [];

  constructor(
    readonly rand: () => number,
    readonly urls: string[],
    readonly cast: Cast,
    readonly conversationId: string,
  ) {}

  private url(): string {
    return pick(this.rand, this.urls);
  }

  private live(filter: (m: DrivenMessage) => boolean = () => true) {
    return this.messages.filter((m) => !m.deleted && filter(m));
  }

  private words(n: number): string {
    return Array.from({ length: n }, () => pick(this.rand, WORDS)).join(" ");
  }

  async step(i: number): Promise<void> {
    const { alice, bob, carol, dave } = this.cast;
    const actor = pick(this.rand, [alice, bob, carol]);
    const url = this.url();
    const roll = this.rand();
    const op =
      roll < 0.2
        ? "send"
        : roll < 0.28
          ? "reply"
          : roll < 0.38
            ? "edit"
            : roll < 0.45
              ? "delete"
              : roll < 0.6
                ? "react"
                : roll < 0.68
                  ? "unreact"
                  : roll < 0.75
                    ? "pin"
                    : roll < 0.81
                      ? "unpin"
                      : roll < 0.86
                        ? "rename"
                        : roll < 0.93
                          ? "member"
                          : "resend";
    this.log.push(`${i}:${op}:${actor.name}@${this.urls.indexOf(url)}`);
    const mine = this.live((m) => m.senderId === actor.id);
    const any = this.live();
    switch (op) {
      case "reply":
        if (any.length) return this.send(url, actor, i, pick(this.rand, any).id);
        return this.send(url, actor, i);
      case "edit": {
        if (!mine.length) return this.send(url, actor, i);
        const target = pick(this.rand, mine);
        const body = `edited ${this.words(3)}`;
        const { editMessage } = await ok(url, EditMessage, { id: target.id, body }, as(actor));
        expect(editMessage.editedAt).toBeTruthy();
        target.body = body;
        return;
      }
      case "delete": {
        if (!mine.length) return this.send(url, actor, i);
        const target = pick(this.rand, mine);
        await ok(url, DeleteMessage, { id: target.id }, as(actor));
        target.deleted = true;
        target.pinned = false;
        for (const key of [...this.reactions]) if (key.startsWith(`${target.id} `)) this.reactions.delete(key);
        return;
      }
      case "react": {
        if (!any.length) return this.send(url, actor, i);
        const target = pick(this.rand, any);
        const emoji = pick(this.rand, EMOJIS);
        await ok(url, AddReaction, { messageId: target.id, emoji }, as(actor));
        this.reactions.add(`${target.id} ${actor.id} ${emoji}`);
        return;
      }
      case "unreact": {
        const given = [...this.reactions].filter((key) => key.split(" ")[1] === actor.id);
        if (!given.length) return this.send(url, actor, i);
        const key = pick(this.rand, given);
        const [messageId, , emoji] = key.split(" ") as [string, string, string];
        await ok(url, RemoveReaction, { messageId, emoji }, as(actor));
        this.reactions.delete(key);
        return;
      }
      case "pin": {
        if (!any.length) return this.send(url, actor, i);
        const target = pick(this.rand, any);
        await ok(url, PinMessage, { id: target.id }, as(actor));
        target.pinned = true;
        return;
      }
      case "unpin": {
        const pinned = this.live((m) => m.pinned);
        if (!pinned.length) return this.send(url, actor, i);
        const target = pick(this.rand, pinned);
        await ok(url, UnpinMessage, { id: target.id }, as(actor));
        target.pinned = false;
        return;
      }
      case "rename": {
        const manager = pick(this.rand, [alice, bob]);
        const input = this.rand() < 0.5 ? { name: `Room ${i}` } : { name: `Room ${i}`, description: `About ${i}` };
        await ok(url, UpdateGroup, { id: this.conversationId, input }, as(manager));
        return;
      }
      case "member": {
        const manager = pick(this.rand, [alice, bob]);
        if (this.daveIn) {
          await ok(url, RemoveMember, { conversationId: this.conversationId, userId: dave.id }, as(manager));
        } else {
          await ok(url, AddMembers, { conversationId: this.conversationId, userIds: [dave.id] }, as(manager));
        }
        this.daveIn = !this.daveIn;
        return;
      }
      case "resend": {
        // A retried send with the same clientMessageId returns the original and changes nothing.
        const earlier = this.messages.filter((m) => m.senderId === actor.id && m.clientMessageId);
        if (!earlier.length) return this.send(url, actor, i);
        const original = pick(this.rand, earlier);
        const again = await send(url, as(actor), this.conversationId, original.body, {
          clientMessageId: original.clientMessageId,
        });
        expect(again.id).toBe(original.id);
        return;
      }
      default:
        return this.send(url, actor, i);
    }
  }

  private async send(url: string, actor: TestUser, i: number, replyToId?: string): Promise<void> {
    const { alice, bob, carol, dave } = this.cast;
    const mentionable = this.daveIn ? [alice, bob, carol, dave] : [alice, bob, carol];
    const mentionedUserIds = this.rand() < 0.3 ? [pick(this.rand, mentionable).id] : [];
    const body = `${replyToId ? "reply" : "message"} ${i} ${this.words(4)}`;
    const clientMessageId = `c-${i}`;
    const message = await send(url, as(actor), this.conversationId, body, {
      clientMessageId,
      mentionedUserIds,
      ...(replyToId ? { replyToId } : {}),
    });
    this.messages.push({ id: message.id, senderId: actor.id, clientMessageId, body, deleted: false, pinned: false });
  }
}

const SEED = Number(process.env.TEST_SEED ?? 20261122);

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

describe.each(backends())("messaging on %s", (backend) => {
  let database: TestDatabase;
  let attachmentsDir: string;
  let server: TestServer;
  /** A second instance on the same database and Redis (postgres+redis); the same server on PGlite. */
  let second: TestServer;
  /** Small upload limits and one-second download links. */
  let limited: TestServer;
  let url: string;
  let wsUrl: string;

  beforeAll(async () => {
    database = await createTestDatabase(backend);
    attachmentsDir = await mkdtemp(join(tmpdir(), "chat-attachments-"));
    server = await startServer(database, { attachmentsDir });
    second = backend === "postgres+redis" ? await startServer(database, { attachmentsDir }) : server;
    limited = await startServer(database, {
      attachmentsDir,
      maxUploadBytes: 1000,
      attachmentTypes: ["text/plain", "image/png"],
      attachmentUrlTtlSeconds: 1,
    });
    url = server.url;
    wsUrl = server.wsUrl;
  });
  afterAll(async () => {
    await limited?.stop();
    if (second !== server) await second?.stop();
    await server?.stop();
    await database?.drop();
    if (attachmentsDir) await rm(attachmentsDir, { recursive: true, force: true });
  });

  /** A tenant with Alice, Bob, Carol and Dave; a group of the first three, owned by Alice. */
  async function setup() {
    const tenant = await createTenant(url, ["Alice", "Bob", "Carol", "Dave"]);
    const [alice, bob, carol, dave] = four(tenant);
    const conversationId = await group(url, as(alice), [bob, carol]);
    return { tenant, alice, bob, carol, dave, conversationId };
  }

  /** Another tenant with one user and a group of their own. */
  async function foreigner() {
    const tenant = await createTenant(url, ["Eve"]);
    const eve = tenant.users[0] as TestUser;
    const conversationId = await group(url, as(eve), [], "Elsewhere");
    return { tenant, eve, conversationId };
  }

  // -------------------------------------------------------------------------------------
  // 1. edit, delete, pin, reactions
  // -------------------------------------------------------------------------------------

  describe("editMessage", () => {
    it("lets the sender edit, sets editedAt and shows the new text in the history", async () => {
      const { alice, bob, conversationId } = await setup();
      const sent = await send(url, as(alice), conversationId, "hello");
      expect(sent.editedAt).toBeNull();
      const { editMessage } = await ok(url, EditMessage, { id: sent.id, body: "hello, edited" }, as(alice));
      expect(editMessage).toMatchObject({ id: sent.id, seq: sent.seq, body: "hello, edited" });
      expect(editMessage.editedAt).toBeTruthy();
      expect(Date.parse(editMessage.editedAt as string)).toBeGreaterThanOrEqual(Date.parse(sent.createdAt));
      const seen = await messageAs(url, as(bob), conversationId, sent.id);
      expect(seen).toMatchObject({ body: "hello, edited", editedAt: editMessage.editedAt, seq: sent.seq });
    });

    it("refuses other members, outsiders, other tenants, empty text and deleted messages", async () => {
      const { alice, bob, dave, conversationId } = await setup();
      const { eve } = await foreigner();
      const sent = await send(url, as(alice), conversationId, "original");
      await refused(url, EditMessage, { id: sent.id, body: "hijacked" }, as(bob), "FORBIDDEN");
      await refused(url, EditMessage, { id: sent.id, body: "hijacked" }, as(dave), "FORBIDDEN");
      await refused(url, EditMessage, { id: sent.id, body: "hijacked" }, as(eve), "NOT_FOUND");
      await refused(url, EditMessage, { id: sent.id, body: "   " }, as(alice), "BAD_USER_INPUT", "body");
      await refused(url, EditMessage, { id: "not-an-id", body: "x" }, as(alice), "BAD_USER_INPUT", "id");
      const seen = await messageAs(url, as(alice), conversationId, sent.id);
      expect(seen).toMatchObject({ body: "original", editedAt: null });

      await ok(url, DeleteMessage, { id: sent.id }, as(alice));
      await refused(url, EditMessage, { id: sent.id, body: "resurrected" }, as(alice), "BAD_USER_INPUT");
      const tombstone = await messageAs(url, as(alice), conversationId, sent.id);
      expect(tombstone).toMatchObject({ body: null, editedAt: null });
    });
  });

  describe("deleteMessage", () => {
    it("leaves a tombstone: no body, attachments, reactions or mentions; deletedAt and deletedBy set", async () => {
      const { alice, bob, carol, conversationId } = await setup();
      const file = await upload(url, as(alice), conversationId, text("secret file"));
      const sent = await send(url, as(alice), conversationId, "soon gone", {
        mentionedUserIds: [bob.id],
        attachmentIds: [file.id],
      });
      await ok(url, AddReaction, { messageId: sent.id, emoji: "👍" }, as(bob));
      await ok(url, PinMessage, { id: sent.id }, as(carol));
      const before = await messageAs(url, as(bob), conversationId, sent.id);
      expect(before).toMatchObject({ pinned: true, mentionsViewer: true, type: "FILE" });
      expect(before.attachments).toHaveLength(1);
      expect(before.reactions).toHaveLength(1);

      const { deleteMessage } = await ok(url, DeleteMessage, { id: sent.id }, as(alice));
      expect(deleteMessage).toMatchObject({
        id: sent.id,
        seq: sent.seq,
        body: null,
        attachments: [],
        reactions: [],
        mentions: [],
        mentionsViewer: false,
        pinned: false,
        deletedBy: { id: alice.id },
      });
      expect(deleteMessage.deletedAt).toBeTruthy();
      const seen = await messageAs(url, as(bob), conversationId, sent.id);
      expect(seen).toMatchObject({ body: null, attachments: [], reactions: [], deletedBy: { id: alice.id } });
      expect(seen.deletedAt).toBe(deleteMessage.deletedAt);
      expect(ids((await conversationAs(url, as(bob), conversationId)).pinnedMessages)).toEqual([]);

      // Deleting again is harmless and changes nothing.
      const again = await ok(url, DeleteMessage, { id: sent.id }, as(alice));
      expect(again.deleteMessage.deletedAt).toBe(deleteMessage.deletedAt);
      // A tombstone cannot be reacted to or pinned.
      await refused(url, AddReaction, { messageId: sent.id, emoji: "👍" }, as(bob), "BAD_USER_INPUT");
      await refused(url, PinMessage, { id: sent.id }, as(bob), "BAD_USER_INPUT");
    });

    it("refuses other members, outsiders and other tenants; moderators and the API key may delete", async () => {
      const { tenant, alice, bob, carol, dave, conversationId } = await setup();
      const { eve } = await foreigner();
      const sent = await send(url, as(alice), conversationId, "mine");
      await refused(url, DeleteMessage, { id: sent.id }, as(bob), "FORBIDDEN");
      await refused(url, DeleteMessage, { id: sent.id }, as(dave), "FORBIDDEN");
      await refused(url, DeleteMessage, { id: sent.id }, as(eve), "NOT_FOUND");
      expect((await messageAs(url, as(alice), conversationId, sent.id)).body).toBe("mine");

      // Carol becomes a tenant admin (chats:* includes chats:moderate).
      const { roles } = await ok(url, Roles, undefined, { apiKey: tenant.apiKey });
      const admin = roles.find((role) => role.name === "admin");
      if (!admin) return expect.fail("no admin role");
      await ok(url, AssignRole, { userId: carol.id, roleId: admin.id }, { apiKey: tenant.apiKey });
      const moderated = await ok(url, DeleteMessage, { id: sent.id }, as(carol));
      expect(moderated.deleteMessage).toMatchObject({ body: null, deletedBy: { id: carol.id } });

      const bobs = await send(url, as(bob), conversationId, "by bob");
      const byKey = await ok(url, DeleteMessage, { id: bobs.id }, { apiKey: tenant.apiKey });
      expect(byKey.deleteMessage).toMatchObject({ body: null, deletedBy: null });
      expect(byKey.deleteMessage.deletedAt).toBeTruthy();
    });
  });

  describe("pins", () => {
    it("pinMessage/unpinMessage: pinnedMessages most recently pinned first, idempotent both ways", async () => {
      const { alice, bob, carol, conversationId } = await setup();
      const [m1, m2, m3] = [
        await send(url, as(alice), conversationId, "m1"),
        await send(url, as(alice), conversationId, "m2"),
        await send(url, as(bob), conversationId, "m3"),
      ];
      const pinned1 = await ok(url, PinMessage, { id: m1.id }, as(bob));
      expect(pinned1.pinMessage).toMatchObject({ pinned: true, pinnedBy: { id: bob.id } });
      expect(pinned1.pinMessage.pinnedAt).toBeTruthy();
      await sleep(20);
      await ok(url, PinMessage, { id: m3.id }, as(carol));
      let conversation = await conversationAs(url, as(alice), conversationId);
      expect(ids(conversation.pinnedMessages)).toEqual([m3.id, m1.id]);
      expect(conversation.pinnedMessages[1]).toMatchObject({ pinned: true, pinnedBy: { id: bob.id } });

      // Pinning again changes nothing: not the pin time, not the order, not who pinned it.
      const again = await ok(url, PinMessage, { id: m1.id }, as(carol));
      expect(again.pinMessage).toMatchObject({ pinned: true, pinnedBy: { id: bob.id } });
      expect(again.pinMessage.pinnedAt).toBe(pinned1.pinMessage.pinnedAt);
      conversation = await conversationAs(url, as(alice), conversationId);
      expect(ids(conversation.pinnedMessages)).toEqual([m3.id, m1.id]);

      const unpinned = await ok(url, UnpinMessage, { id: m3.id }, as(alice));
      expect(unpinned.unpinMessage).toMatchObject({ pinned: false, pinnedAt: null, pinnedBy: null });
      const twice = await ok(url, UnpinMessage, { id: m3.id }, as(alice));
      expect(twice.unpinMessage.pinned).toBe(false);
      await ok(url, UnpinMessage, { id: m2.id }, as(alice));
      conversation = await conversationAs(url, as(alice), conversationId);
      expect(ids(conversation.pinnedMessages)).toEqual([m1.id]);
      expect((await messageAs(url, as(carol), conversationId, m1.id)).pinned).toBe(true);
    });

    it("refuses outsiders and other tenants", async () => {
      const { alice, dave, conversationId } = await setup();
      const { eve } = await foreigner();
      const sent = await send(url, as(alice), conversationId, "pin me");
      await refused(url, PinMessage, { id: sent.id }, as(dave), "FORBIDDEN");
      await refused(url, PinMessage, { id: sent.id }, as(eve), "NOT_FOUND");
      await ok(url, PinMessage, { id: sent.id }, as(alice));
      await refused(url, UnpinMessage, { id: sent.id }, as(dave), "FORBIDDEN");
      await refused(url, UnpinMessage, { id: sent.id }, as(eve), "NOT_FOUND");
      expect(ids((await conversationAs(url, as(alice), conversationId)).pinnedMessages)).toEqual([sent.id]);
    });
  });

  describe("reactions", () => {
    it("one per user per emoji, idempotent, aggregated with count, reactedByViewer and users in order", async () => {
      const { alice, bob, carol, conversationId } = await setup();
      const sent = await send(url, as(alice), conversationId, "react to me");
      await ok(url, AddReaction, { messageId: sent.id, emoji: "👍" }, as(bob));
      await sleep(5);
      await ok(url, AddReaction, { messageId: sent.id, emoji: "👍" }, as(bob));
      await ok(url, AddReaction, { messageId: sent.id, emoji: "❤️" }, as(carol));
      await sleep(5);
      const last = await ok(url, AddReaction, { messageId: sent.id, emoji: "👍" }, as(carol));
      expect(last.addReaction.reactions).toEqual([
        { emoji: "👍", count: 2, reactedByViewer: true, users: [{ id: bob.id }, { id: carol.id }] },
        { emoji: "❤️", count: 1, reactedByViewer: true, users: [{ id: carol.id }] },
      ]);
      const asBob = await messageAs(url, as(bob), conversationId, sent.id);
      expect(asBob.reactions.map((g) => [g.emoji, g.count, g.reactedByViewer])).toEqual([
        ["👍", 2, true],
        ["❤️", 1, false],
      ]);
      const asAlice = await messageAs(url, as(alice), conversationId, sent.id);
      expect(asAlice.reactions.map((g) => g.reactedByViewer)).toEqual([false, false]);

      const removed = await ok(url, RemoveReaction, { messageId: sent.id, emoji: "👍" }, as(bob));
      expect(normalizeGroups(removed.removeReaction.reactions)).toEqual(
        normalizeGroups([
          { emoji: "👍", count: 1, users: [{ id: carol.id }] },
          { emoji: "❤️", count: 1, users: [{ id: carol.id }] },
        ]),
      );
      expect(removed.removeReaction.reactions.map((g) => g.reactedByViewer)).toEqual([false, false]);
      // Taking back what is not there is harmless.
      const twice = await ok(url, RemoveReaction, { messageId: sent.id, emoji: "👍" }, as(bob));
      expect(twice.removeReaction.reactions.map((g) => g.count)).toEqual([1, 1]);
      await ok(url, RemoveReaction, { messageId: sent.id, emoji: "❤️" }, as(carol));
      const final = await messageAs(url, as(alice), conversationId, sent.id);
      expect(final.reactions).toEqual([{ emoji: "👍", count: 1, reactedByViewer: false, users: [{ id: carol.id }] }]);
    });

    it("accepts skin tones, flags, keycaps and ZWJ sequences as single emoji", async () => {
      const { alice, bob, conversationId } = await setup();
      const sent = await send(url, as(alice), conversationId, "so many");
      const accepted = ["👍🏽", "👋🏿", "🇫🇷", "🇯🇵", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "#️⃣", "🧑🏽‍🚀"];
      for (const emoji of accepted) await ok(url, AddReaction, { messageId: sent.id, emoji }, as(bob));
      const seen = await messageAs(url, as(alice), conversationId, sent.id);
      expect(seen.reactions.map((g) => g.emoji).sort()).toEqual([...accepted].sort());
      for (const group of seen.reactions) expect(group).toMatchObject({ count: 1, users: [{ id: bob.id }] });
    });

    it("refuses anything but one emoji (BAD_USER_INPUT on emoji), outsiders and other tenants", async () => {
      const { alice, dave, conversationId } = await setup();
      const { eve } = await foreigner();
      const sent = await send(url, as(alice), conversationId, "careful");
      for (const emoji of ["a", "👍👍", "", " ", ":+1:", "👍a", "ab", "<b>", "❤️👍", "🇫🇷🇯🇵"]) {
        await refused(url, AddReaction, { messageId: sent.id, emoji }, as(alice), "BAD_USER_INPUT", "emoji");
        await refused(url, RemoveReaction, { messageId: sent.id, emoji }, as(alice), "BAD_USER_INPUT", "emoji");
      }
      await refused(url, AddReaction, { messageId: sent.id, emoji: "👍" }, as(dave), "FORBIDDEN");
      await refused(url, AddReaction, { messageId: sent.id, emoji: "👍" }, as(eve), "NOT_FOUND");
      expect((await messageAs(url, as(alice), conversationId, sent.id)).reactions).toEqual([]);
    });
  });

  // -------------------------------------------------------------------------------------
  // 2. replies
  // -------------------------------------------------------------------------------------

  describe("replies", () => {
    it("replyTo, a thread paged with replies(first, after), and replyCount without deleted replies", async () => {
      const { alice, bob, carol, conversationId } = await setup();
      const root = await send(url, as(alice), conversationId, "root");
      await send(url, as(carol), conversationId, "not in the thread");
      const replies: MessageFields[] = [];
      for (let i = 1; i <= 5; i++) {
        const reply = await send(url, as(i % 2 ? bob : carol), conversationId, `r${i}`, { replyToId: root.id });
        expect(reply.replyTo?.id).toBe(root.id);
        replies.push(reply);
      }
      const doomed = await send(url, as(carol), conversationId, "r6", { replyToId: root.id });
      await ok(url, DeleteMessage, { id: doomed.id }, as(carol));

      const rootAs = async (first: number, after?: string | null) => {
        const { messages } = await ok(url, Threads, { conversationId, first, after }, as(bob));
        const node = messages.edges.find((edge) => edge.node.id === root.id)?.node;
        if (!node) return expect.fail("root not found");
        return node;
      };
      const page1 = await rootAs(2);
      expect(page1.replyCount).toBe(5);
      expect(page1.replies.edges.map((e) => e.node.body)).toEqual(["r1", "r2"]);
      expect(page1.replies.pageInfo.hasNextPage).toBe(true);
      const page2 = await rootAs(2, page1.replies.pageInfo.endCursor);
      expect(page2.replies.edges.map((e) => e.node.body)).toEqual(["r3", "r4"]);
      const page3 = await rootAs(2, page2.replies.pageInfo.endCursor);
      const rest = page3.replies.edges.map((e) => e.node);
      // The rest of the thread: r5 and, if the thread lists it, r6 only as a tombstone.
      expect(rest[0]?.body).toBe("r5");
      for (const node of rest.slice(1)) expect(node).toMatchObject({ id: doomed.id, body: null });
      expect(page3.replies.pageInfo.hasNextPage).toBe(false);
      for (const node of [...page1.replies.edges, ...page2.replies.edges].map((e) => e.node)) {
        expect(node.replyTo?.id).toBe(root.id);
      }
      const all = await rootAs(100);
      expect(all.replies.edges.map((e) => e.node.id).filter((id) => id !== doomed.id)).toEqual(ids(replies));

      // A reply deleted later stops counting too.
      await ok(url, DeleteMessage, { id: (replies[0] as MessageFields).id }, as(bob));
      expect((await rootAs(1)).replyCount).toBe(4);
      expect((await messageAs(url, as(alice), conversationId, root.id)).replyCount).toBe(4);
    });

    it("refuses a replyToId from another conversation, another tenant or a malformed one", async () => {
      const { alice, bob, conversationId } = await setup();
      const other = await group(url, as(alice), [bob], "Other");
      const elsewhere = await send(url, as(alice), other, "elsewhere");
      const { eve, conversationId: evesRoom } = await foreigner();
      const foreign = await send(url, as(eve), evesRoom, "foreign");
      const input = (replyToId: string) => ({ input: { conversationId, body: "reply", replyToId } });
      await refused(url, SendFullMessage, input(elsewhere.id), as(bob), "NOT_FOUND");
      await refused(url, SendFullMessage, input(foreign.id), as(bob), "NOT_FOUND");
      await refused(url, SendFullMessage, input("nope"), as(bob), "BAD_USER_INPUT", "input.replyToId");
      expect(await history(url, as(bob), conversationId)).toEqual([]);
    });
  });

  // -------------------------------------------------------------------------------------
  // 3. mentions
  // -------------------------------------------------------------------------------------

  describe("mentions", () => {
    it("records mentions, mentionsViewer, and a mentionCount after the read horizon that markRead clears", async () => {
      const { alice, bob, carol, conversationId } = await setup();
      const m1 = await send(url, as(alice), conversationId, "hi @bob @carol", { mentionedUserIds: [bob.id, carol.id] });
      expect(ids(m1.mentions).sort()).toEqual([bob.id, carol.id].sort());
      expect(m1.mentionsViewer).toBe(false);
      const seenByBob = await messageAs(url, as(bob), conversationId, m1.id);
      expect(seenByBob.mentionsViewer).toBe(true);
      expect(ids(seenByBob.mentions).sort()).toEqual([bob.id, carol.id].sort());

      const mentionCount = async (user: TestUser) => (await conversationAs(url, as(user), conversationId)).mentionCount;
      expect(await mentionCount(bob)).toBe(1);
      expect(await mentionCount(alice)).toBe(0);
      const m2 = await send(url, as(carol), conversationId, "@bob again", { mentionedUserIds: [bob.id] });
      await send(url, as(alice), conversationId, "@carol only", { mentionedUserIds: [carol.id] });
      await send(url, as(alice), conversationId, "nobody");
      expect(await mentionCount(bob)).toBe(2);
      // Carol's own message moved her read horizon past m1: only "@carol only" is left for her.
      expect(await mentionCount(carol)).toBe(1);

      await ok(url, MarkRead, { conversationId, upToMessageId: m1.id }, as(bob));
      expect(await mentionCount(bob)).toBe(1);
      await ok(url, MarkRead, { conversationId, upToMessageId: m2.id }, as(bob));
      expect(await mentionCount(bob)).toBe(0);
      const list = await ok(url, ConversationSummaries, { first: 50 }, as(bob));
      expect(list.conversations.edges.find((e) => e.node.id === conversationId)?.node.mentionCount).toBe(0);

      // A new mention counts; once deleted it no longer does.
      const m5 = await send(url, as(alice), conversationId, "@bob last", { mentionedUserIds: [bob.id] });
      expect(await mentionCount(bob)).toBe(1);
      await ok(url, DeleteMessage, { id: m5.id }, as(alice));
      expect(await mentionCount(bob)).toBe(0);
    });

    it("refuses mentioning non-members or users of another tenant, and stores nothing", async () => {
      const { alice, bob, dave, conversationId } = await setup();
      const { eve } = await foreigner();
      for (const mentioned of [[dave.id], [bob.id, dave.id], [eve.id]]) {
        await refused(
          url,
          SendFullMessage,
          { input: { conversationId, body: "hey", mentionedUserIds: mentioned } },
          as(alice),
          "BAD_USER_INPUT",
          "input.mentionedUserIds",
        );
      }
      expect(await history(url, as(alice), conversationId)).toEqual([]);
      expect((await conversationAs(url, as(bob), conversationId)).mentionCount).toBe(0);
    });
  });

  // -------------------------------------------------------------------------------------
  // 4. attachments
  // -------------------------------------------------------------------------------------

  describe("attachments", () => {
    it("uploads with a multipart request, sends as FILE, and downloads the exact bytes safely", async () => {
      const { alice, bob, conversationId } = await setup();
      const content = "hello attachment\nline two\n";
      const uploaded = await upload(url, as(alice), conversationId, text(content, "notes.txt"));
      expect(uploaded).toMatchObject({
        filename: "notes.txt",
        mimeType: "text/plain",
        size: Buffer.byteLength(content),
      });
      expect(new URL(uploaded.url).origin).toBe(new URL(url).origin);

      const message = await send(url, as(alice), conversationId, "", { attachmentIds: [uploaded.id] });
      expect(message.type).toBe("FILE");
      expect(message.attachments).toMatchObject([{ id: uploaded.id, filename: "notes.txt", mimeType: "text/plain" }]);

      // Another member reads the message and follows its link.
      const seen = await messageAs(url, as(bob), conversationId, message.id);
      const link = seen.attachments[0]?.url as string;
      const file = await download(link);
      expect(file.status).toBe(200);
      expect(Buffer.from(file.bytes).toString()).toBe(content);
      expect(file.headers.get("content-type")).toMatch(/^text\/plain\b/);
      expect(file.headers.get("content-disposition")).toMatch(/^attachment;/);
      expect(file.headers.get("content-disposition")).toContain('filename="notes.txt"');
      expect(file.headers.get("x-content-type-options")).toBe("nosniff");

      const png = await upload(url, as(bob), conversationId, { name: "pixel.png", type: "image/png", bytes: PNG });
      expect(png).toMatchObject({ mimeType: "image/png", size: PNG.byteLength });
      const image = await download(png.url);
      expect(image.status).toBe(200);
      expect(image.headers.get("content-type")).toBe("image/png");
      expect(image.headers.get("content-disposition")).toMatch(/^attachment;/);
      expect(Buffer.compare(Buffer.from(image.bytes), Buffer.from(PNG))).toBe(0);
    });

    it("keeps an ordinary file name as uploaded, minus any path", async () => {
      const { alice, conversationId } = await setup();
      const named = await upload(url, as(alice), conversationId, text("q3", "Report Q3 2024.txt"));
      expect(named.filename).toBe("Report Q3 2024.txt");
      const pathed = await upload(url, as(alice), conversationId, text("pw", "../../etc/Passwd-2.txt"));
      expect(pathed.filename).toBe("Passwd-2.txt");
      const file = await download(named.url);
      expect(file.headers.get("content-disposition")).toContain('filename="Report Q3 2024.txt"');
    });

    it("refuses tampered and expired links; members may download with their header, others may not", async () => {
      const { alice, bob, dave, conversationId } = await setup();
      const { eve } = await foreigner();
      const uploaded = await upload(url, as(alice), conversationId, text("guarded"));
      await send(url, as(alice), conversationId, "", { attachmentIds: [uploaded.id] });
      const link = new URL(uploaded.url);
      expect(link.searchParams.get("signature")).toBeTruthy();
      expect((await download(link.toString())).status).toBe(200);

      const tampered = new URL(link);
      const signature = link.searchParams.get("signature") as string;
      tampered.searchParams.set("signature", `${signature.slice(0, -2)}${signature.endsWith("AA") ? "BB" : "AA"}`);
      expect((await download(tampered.toString())).status).toBe(403);
      const extended = new URL(link);
      extended.searchParams.set("expires", String(Number(link.searchParams.get("expires")) + 3600));
      expect((await download(extended.toString())).status).toBe(403);
      const other = await upload(url, as(alice), conversationId, text("other"));
      const swapped = new URL(other.url);
      swapped.searchParams.set("signature", signature);
      swapped.searchParams.set("expires", link.searchParams.get("expires") as string);
      expect((await download(swapped.toString())).status).toBe(403);

      // Header credentials instead of a signature.
      const plain = unsigned(uploaded.url);
      const byBob = await download(plain, bearer(bob));
      expect(byBob.status).toBe(200);
      expect(Buffer.from(byBob.bytes).toString()).toBe("guarded");
      expect([403, 404]).toContain((await download(plain, bearer(dave))).status);
      expect((await download(plain, bearer(eve))).status).toBe(404);
      expect((await download(plain)).status).toBe(401);
      // An upload not sent yet is only its uploader's.
      expect((await download(unsigned(other.url), bearer(alice))).status).toBe(200);
      expect((await download(unsigned(other.url), bearer(bob))).status).toBe(404);
    });

    it("refuses a link once it has expired", async () => {
      const { alice, conversationId } = await setup();
      const uploaded = await upload(limited.url, as(alice), conversationId, text("short-lived"));
      await sleep(2100);
      expect((await download(uploaded.url)).status).toBe(403);
      // A fresh link from the API works again.
      const fresh = await upload(limited.url, as(alice), conversationId, text("fresh"));
      expect((await download(unsigned(fresh.url), bearer(alice))).status).toBe(200);
    });

    it("answers 404 once the message is deleted, with a link or with credentials", async () => {
      const { alice, bob, conversationId } = await setup();
      const uploaded = await upload(url, as(alice), conversationId, text("temporary"));
      const message = await send(url, as(alice), conversationId, "with file", { attachmentIds: [uploaded.id] });
      const link = (await messageAs(url, as(bob), conversationId, message.id)).attachments[0]?.url as string;
      expect((await download(link)).status).toBe(200);
      const { deleteMessage } = await ok(url, DeleteMessage, { id: message.id }, as(alice));
      expect(deleteMessage.attachments).toEqual([]);
      expect((await download(link)).status).toBe(404);
      expect((await download(unsigned(link), bearer(bob))).status).toBe(404);
      expect((await download(unsigned(link), bearer(alice))).status).toBe(404);
    });

    it("refuses oversized files, disallowed and empty files, outsiders and other tenants' conversations", async () => {
      const { alice, dave, conversationId } = await setup();
      const { eve, conversationId: evesRoom } = await foreigner();
      const exact = await upload(limited.url, as(alice), conversationId, text("x".repeat(1000)));
      expect(exact.size).toBe(1000);
      await uploadRefused(limited.url, as(alice), conversationId, text("x".repeat(1001)), "PAYLOAD_TOO_LARGE");
      const huge = await uploadRaw(limited.url, as(alice), conversationId, text("x".repeat(1_100_000)));
      expect(huge.status).toBe(413);
      expect(huge.errors?.[0]?.extensions?.code).toBe("PAYLOAD_TOO_LARGE");

      const pdf = { name: "doc.pdf", type: "application/pdf", bytes: new Uint8Array([37, 80, 68, 70]) };
      await uploadRefused(limited.url, as(alice), conversationId, pdf, "BAD_USER_INPUT", "file");
      const html = { name: "page.html", type: "text/html", bytes: new TextEncoder().encode("<script>1</script>") };
      await uploadRefused(limited.url, as(alice), conversationId, html, "BAD_USER_INPUT", "file");
      await uploadRefused(url, as(alice), conversationId, html, "BAD_USER_INPUT", "file");
      const exe = { name: "run.exe", type: "application/x-msdownload", bytes: new Uint8Array([77, 90]) };
      await uploadRefused(url, as(alice), conversationId, exe, "BAD_USER_INPUT", "file");
      await uploadRefused(url, as(alice), conversationId, text(""), "BAD_USER_INPUT", "file");

      await uploadRefused(url, as(dave), conversationId, text("intruder"), "FORBIDDEN");
      await uploadRefused(url, as(eve), conversationId, text("intruder"), "NOT_FOUND");
      await uploadRefused(url, as(alice), evesRoom, text("intruder"), "NOT_FOUND");
    });

    it("only the uploader sends an attachment, once, to the conversation it was uploaded to", async () => {
      const { alice, bob, conversationId } = await setup();
      const other = await group(url, as(alice), [bob], "Other");
      const uploaded = await upload(url, as(alice), conversationId, text("mine"));
      const sendWith = (attachmentIds: string[], target = conversationId) => ({
        input: { conversationId: target, body: "", attachmentIds },
      });
      await refused(url, SendFullMessage, sendWith([uploaded.id]), as(bob), "FORBIDDEN");
      await refused(url, SendFullMessage, sendWith([uploaded.id], other), as(alice), "NOT_FOUND");
      const sent = await ok(url, SendFullMessage, sendWith([uploaded.id]), as(alice));
      expect(sent.sendMessage.type).toBe("FILE");
      await refused(url, SendFullMessage, sendWith([uploaded.id]), as(alice), "CONFLICT");
      // Nothing half-sent: exactly one message carries the file.
      const messages = await history(url, as(alice), conversationId);
      expect(messages.map((m) => m.attachments.length)).toEqual([1]);
    });

    it("refuses a multipart POST that carries no credentials header with 415", async () => {
      const { conversationId } = await setup();
      const result = await uploadRaw(url, {}, conversationId, text("anonymous"));
      expect(result.status).toBe(415);
      // Even a cookie is not a credentials header.
      const cookie = await uploadRaw(url, { headers: { cookie: "session=1" } }, conversationId, text("anonymous"));
      expect(cookie.status).toBe(415);
    });
  });

  // -------------------------------------------------------------------------------------
  // 5. search
  // -------------------------------------------------------------------------------------

  describe("searchMessages", () => {
    async function searchAll(auth: Auth, query: string, conversationId?: string) {
      const { searchMessages } = await ok(url, SearchMessages, { query, conversationId, first: 50 }, auth);
      expect(searchMessages.pageInfo.hasNextPage).toBe(false);
      return searchMessages.edges.map((edge) => edge.node);
    }

    it("finds only readable, undeleted messages of the tenant, best match first, with paging and syntax", async () => {
      const { tenant, alice, bob, carol, conversationId: g1 } = await setup();
      const g2 = await group(url, as(alice), [bob], "Second");
      const g3 = await group(url, as(alice), [carol], "Without Bob");
      const once = await send(url, as(alice), g1, "zebra migration season");
      const thrice = await send(url, as(carol), g1, "zebra zebra zebra stampede");
      const crossing = await send(url, as(bob), g2, "zebra crossing ahead");
      const hidden = await send(url, as(alice), g3, "zebra secret plans");
      const deleted = await send(url, as(alice), g1, "zebra deleted later");
      await ok(url, DeleteMessage, { id: deleted.id }, as(alice));
      const { eve, conversationId: evesRoom } = await foreigner();
      await send(url, as(eve), evesRoom, "zebra foreign zebra zebra zebra");

      const found = await searchAll(as(bob), "zebra");
      expect(found[0]?.id).toBe(thrice.id);
      expect(ids(found).sort()).toEqual([once.id, thrice.id, crossing.id].sort());
      for (const node of found) expect(node.deletedAt).toBeNull();
      // The API key reads every conversation of its tenant, and still nothing deleted or foreign.
      expect(ids(await searchAll({ apiKey: tenant.apiKey }, "zebra")).sort()).toEqual(
        [once.id, thrice.id, crossing.id, hidden.id].sort(),
      );
      expect(ids(await searchAll(as(eve), "zebra"))).not.toContain(once.id);

      // conversationId narrows; a conversation the viewer is not in is refused.
      expect(ids(await searchAll(as(bob), "zebra", g2))).toEqual([crossing.id]);
      await refused(url, SearchMessages, { query: "zebra", conversationId: g3 }, as(bob), "FORBIDDEN");
      await refused(url, SearchMessages, { query: "zebra", conversationId: evesRoom }, as(bob), "NOT_FOUND");

      // Every word must match; a phrase must match in order; -word excludes.
      expect(ids(await searchAll(as(bob), "zebra stampede"))).toEqual([thrice.id]);
      expect(ids(await searchAll(as(bob), '"migration season"'))).toEqual([once.id]);
      expect(await searchAll(as(bob), '"season migration"')).toEqual([]);
      expect(ids(await searchAll(as(bob), "zebra -stampede")).sort()).toEqual([once.id, crossing.id].sort());

      // Cursor paging returns the same results in the same order, one page at a time.
      const paged: string[] = [];
      let after: string | null | undefined = null;
      for (let page = 0; page < 5; page++) {
        const { searchMessages }: ResultOf<typeof SearchMessages> = await ok(
          url,
          SearchMessages,
          { query: "zebra", first: 1, after },
          as(bob),
        );
        paged.push(...ids(searchMessages.edges.map((e) => e.node)));
        after = searchMessages.pageInfo.endCursor;
        if (!searchMessages.pageInfo.hasNextPage) break;
      }
      expect(paged).toEqual(ids(found));

      // Once Bob leaves g2, its messages are no longer his to find.
      await ok(url, RemoveMember, { conversationId: g2, userId: bob.id }, as(bob));
      expect(ids(await searchAll(as(bob), "zebra")).sort()).toEqual([once.id, thrice.id].sort());
    });

    it("ranks a message with more of the query words above one with fewer, and follows edits", async () => {
      const { alice, bob, conversationId } = await setup();
      const one = await send(url, as(alice), conversationId, "giraffe spotted today");
      const both = await send(url, as(bob), conversationId, "giraffe neck stretch");
      const other = await send(url, as(alice), conversationId, "neck pain again");
      const found = await searchAll(as(bob), "giraffe OR neck");
      expect(found[0]?.id).toBe(both.id);
      expect(ids(found).sort()).toEqual([one.id, both.id, other.id].sort());

      await ok(url, EditMessage, { id: one.id, body: "okapi spotted today" }, as(alice));
      expect(ids(await searchAll(as(bob), "okapi"))).toEqual([one.id]);
      expect(ids(await searchAll(as(bob), "giraffe"))).toEqual([both.id]);
    });

    it("refuses an empty query", async () => {
      const { bob } = await setup();
      for (const query of ["", "   "]) {
        await refused(url, SearchMessages, { query }, as(bob), "BAD_USER_INPUT", "query");
      }
    });
  });

  // -------------------------------------------------------------------------------------
  // 6. live events
  // -------------------------------------------------------------------------------------

  describe("conversationEvents", () => {
    it("delivers every event type with a cursor and consecutive seqs; replays after a cursor; ends on delete", async () => {
      const { alice, bob, carol, dave, conversationId } = await setup();
      const client = wsClient(wsUrl, as(bob));
      const sub = subscribe(client, ConversationEvents, { conversationId });
      let pokes = 0;
      const warmup = await whenLive(sub, () =>
        ok(url, UpdateGroup, { id: conversationId, input: { name: `Warmup ${++pokes}` } }, as(alice)),
      );
      const lastWarmup = warmup.at(-1)?.data?.conversationEvents as ConversationEvent;
      expect(lastWarmup.__typename).toBe("ConversationUpdatedEvent");

      const sent = await send(url, as(alice), conversationId, "first");
      await ok(url, EditMessage, { id: sent.id, body: "first, edited" }, as(alice));
      await ok(url, AddReaction, { messageId: sent.id, emoji: "👍" }, as(bob));
      await ok(url, RemoveReaction, { messageId: sent.id, emoji: "👍" }, as(bob));
      await ok(url, PinMessage, { id: sent.id }, as(carol));
      await ok(url, UnpinMessage, { id: sent.id }, as(carol));
      await ok(url, UpdateGroup, { id: conversationId, input: { name: "Renamed", description: "About" } }, as(alice));
      await ok(url, AddMembers, { conversationId, userIds: [dave.id] }, as(alice));
      await ok(url, SetMemberRole, { conversationId, userId: dave.id, role: "ADMIN" }, as(alice));
      await ok(url, RemoveMember, { conversationId, userId: dave.id }, as(alice));
      await ok(url, DeleteMessage, { id: sent.id }, as(alice));

      const events = await takeEvents(sub, 11);
      expect(events.map((e) => e.__typename)).toEqual([
        "MessageAddedEvent",
        "MessageEditedEvent",
        "ReactionChangedEvent",
        "ReactionChangedEvent",
        "MessagePinnedEvent",
        "MessageUnpinnedEvent",
        "ConversationUpdatedEvent",
        "MemberAddedEvent",
        "MemberRoleChangedEvent",
        "MemberRemovedEvent",
        "MessageDeletedEvent",
      ]);
      const seqs = events.map(seqOf);
      expect(seqs).toEqual(range(seqOf(lastWarmup) + 1, 11));
      const cursors = events.map(cursorOf);
      for (const cursor of cursors) expect(cursor).toMatch(/\S/);
      expect(new Set(cursors).size).toBe(cursors.length);
      for (const event of events) expect(event.conversationId).toBe(conversationId);

      const [added, edited, reacted, unreacted, pinned, unpinned, updated, joined, promoted, removed, deleted] = events;
      expect(added).toMatchObject({
        actor: { id: alice.id },
        message: { id: sent.id, body: "first", seq: sent.seq, sender: { id: alice.id }, type: "TEXT" },
      });
      expect(edited).toMatchObject({ actor: { id: alice.id }, message: { id: sent.id, body: "first, edited" } });
      expect(edited?.__typename === "MessageEditedEvent" && edited.message.editedAt).toBeTruthy();
      expect(reacted).toMatchObject({
        actor: { id: bob.id },
        emoji: "👍",
        added: true,
        user: { id: bob.id },
        message: { id: sent.id },
        reactions: [{ emoji: "👍", count: 1, users: [{ id: bob.id }] }],
      });
      expect(unreacted).toMatchObject({ emoji: "👍", added: false, user: { id: bob.id }, reactions: [] });
      expect(pinned).toMatchObject({ actor: { id: carol.id }, message: { id: sent.id, pinned: true } });
      expect(unpinned).toMatchObject({ actor: { id: carol.id }, message: { id: sent.id, pinned: false } });
      expect(updated).toMatchObject({ actor: { id: alice.id }, name: "Renamed", description: "About" });
      expect(joined).toMatchObject({ actor: { id: alice.id }, user: { id: dave.id }, role: "MEMBER" });
      expect(promoted).toMatchObject({ user: { id: dave.id }, role: "ADMIN" });
      expect(removed).toMatchObject({ actor: { id: alice.id }, user: { id: dave.id } });
      expect(deleted).toMatchObject({
        actor: { id: alice.id },
        message: { id: sent.id, body: null, pinned: false, deletedBy: { id: alice.id } },
      });
      expect(deleted?.__typename === "MessageDeletedEvent" && deleted.message.deletedAt).toBeTruthy();

      // Replay after the third event: exactly the rest, same seqs and cursors, then live.
      const replayClient = wsClient(second.wsUrl, as(carol));
      const replay = subscribe(replayClient, ConversationEvents, { conversationId, after: cursors[2] });
      const replayed = await takeEvents(replay, 8);
      expect(replayed.map(seqOf)).toEqual(seqs.slice(3));
      expect(replayed.map(cursorOf)).toEqual(cursors.slice(3));
      expect(replayed.map((e) => e.__typename)).toEqual(events.slice(3).map((e) => e.__typename));
      const live = await send(second.url, as(carol), conversationId, "live");
      const [bobsLive, carolsLive] = [await nextEvent(sub), await nextEvent(replay)];
      for (const event of [bobsLive, carolsLive]) {
        expect(event).toMatchObject({ __typename: "MessageAddedEvent", message: { id: live.id } });
        expect(seqOf(event)).toBe((seqs.at(-1) as number) + 1);
      }

      // Deleting the group: ConversationDeletedEvent, then the stream ends.
      await ok(url, DeleteGroup, { id: conversationId }, as(alice));
      for (const stream of [sub, replay]) {
        expect(await nextEvent(stream)).toEqual({ __typename: "ConversationDeletedEvent", conversationId });
        expect(await stream.done).toEqual({});
      }
      await client.dispose();
      await replayClient.dispose();
    });

    it("refuses a cursor without conversationId or of another conversation, outsiders and other tenants", async () => {
      const { alice, bob, dave, conversationId } = await setup();
      const other = await group(url, as(alice), [bob], "Other");
      const { eve } = await foreigner();
      // A cursor of the other conversation, from a replay of it.
      await send(url, as(alice), other, "one");
      await ok(url, UpdateGroup, { id: other, input: { name: "Other 2" } }, as(alice));
      const probe = wsClient(wsUrl, as(bob));
      const probeSub = subscribe(probe, ConversationEvents, { conversationId: other });
      await whenLive(probeSub, () => ok(url, UpdateGroup, { id: other, input: { name: "Other 3" } }, as(alice)));
      await ok(url, UpdateGroup, { id: other, input: { name: "Other 4" } }, as(alice));
      const foreignCursor = cursorOf(await nextEvent(probeSub));
      await probe.dispose();

      const cases: [VariablesOf<typeof ConversationEvents>, TestUser, string][] = [
        [{ after: foreignCursor }, bob, "BAD_USER_INPUT"],
        [{ conversationId, after: foreignCursor }, bob, "BAD_USER_INPUT"],
        [{ conversationId, after: "garbage" }, bob, "BAD_USER_INPUT"],
        [{ conversationId }, dave, "FORBIDDEN"],
        [{ conversationId }, eve, "NOT_FOUND"],
      ];
      for (const [variables, user, code] of cases) {
        const client = wsClient(wsUrl, as(user));
        const actual = await refusalCode(subscribe(client, ConversationEvents, variables));
        expect(actual, `${user.name} ${JSON.stringify(variables)}`).toBe(code);
        await client.dispose();
      }
    });

    it("without conversationId streams all of the viewer's conversations, including ones joined later", async () => {
      const { alice, bob, carol, conversationId: g1 } = await setup();
      const g2 = await group(url, as(carol), [alice], "Carol's");
      const client = wsClient(second.wsUrl, as(bob));
      const sub = subscribe(client, ConversationEvents, {});
      await whenLive(sub, () => ok(url, UpdateGroup, { id: g1, input: { name: "Poke" } }, as(alice)));

      await send(url, as(carol), g2, "not for bob");
      const inG1 = await send(url, as(alice), g1, "for bob");
      const first = await nextEvent(sub);
      expect(first).toMatchObject({ __typename: "MessageAddedEvent", conversationId: g1, message: { id: inG1.id } });

      // Added to g2 later: from his own MemberAddedEvent on, g2 is in his stream.
      await ok(url, AddMembers, { conversationId: g2, userIds: [bob.id] }, as(carol));
      const joined = await nextEvent(sub);
      expect(joined).toMatchObject({ __typename: "MemberAddedEvent", conversationId: g2, user: { id: bob.id } });
      const inG2 = await send(url, as(carol), g2, "now bob is in");
      expect(await nextEvent(sub)).toMatchObject({ conversationId: g2, message: { id: inG2.id } });

      // A group created later with him in it joins the stream too.
      const g3 = await group(url, as(alice), [bob], "Later");
      await sleep(200);
      const inG3 = await send(url, as(alice), g3, "brand new");
      expect(await nextEvent(sub)).toMatchObject({ conversationId: g3, message: { id: inG3.id } });

      // Removed from g2: his removal is the last he hears of it.
      await ok(url, RemoveMember, { conversationId: g2, userId: bob.id }, as(carol));
      expect(await nextEvent(sub)).toMatchObject({
        __typename: "MemberRemovedEvent",
        conversationId: g2,
        user: { id: bob.id },
      });
      await sleep(200);
      await send(url, as(carol), g2, "bob is gone");

      // A deleted group is announced, and the stream goes on for the others.
      await ok(url, DeleteGroup, { id: g1 }, as(alice));
      expect(await nextEvent(sub)).toEqual({ __typename: "ConversationDeletedEvent", conversationId: g1 });
      const after = await send(url, as(alice), g3, "still here");
      expect(await nextEvent(sub)).toMatchObject({ conversationId: g3, message: { id: after.id } });
      await sub.expectSilence(300);
      await client.dispose();
    });

    it("messageAdded, typing and readReceipt work as before, next to conversationEvents", async () => {
      const { alice, bob, conversationId } = await setup();
      const bobClient = wsClient(wsUrl, as(bob));
      const aliceClient = wsClient(wsUrl, as(alice));
      const added = subscribe(bobClient, MessageAddedSeq, { conversationId });
      const typing = subscribe(bobClient, Typing, { conversationId });
      const events = subscribe(bobClient, ConversationEvents, { conversationId });
      const receipts = subscribe(aliceClient, ReadReceipt, { conversationId });
      const warm = await whenLive(added, () => send(url, as(alice), conversationId, "warmup"));
      await drain(events, 300);
      const warmSeq = (warm.at(-1)?.data?.messageAdded.seq ?? 0) as number;

      const m1 = await send(url, as(alice), conversationId, "one");
      expect((await added.next()).data?.messageAdded).toEqual({ id: m1.id, seq: warmSeq + 1, body: "one" });
      expect(await nextEvent(events)).toMatchObject({ __typename: "MessageAddedEvent", message: { id: m1.id } });

      // Edits, reactions and deletes are conversation events, not new messages.
      await ok(url, EditMessage, { id: m1.id, body: "one!" }, as(alice));
      await ok(url, AddReaction, { messageId: m1.id, emoji: "🎉" }, as(bob));
      const m2 = await send(url, as(alice), conversationId, "two");
      expect((await added.next()).data?.messageAdded).toEqual({ id: m2.id, seq: warmSeq + 2, body: "two" });
      expect((await takeEvents(events, 3)).map((e) => e.__typename)).toEqual([
        "MessageEditedEvent",
        "ReactionChangedEvent",
        "MessageAddedEvent",
      ]);

      await ok(url, SetTyping, { conversationId, isTyping: true }, as(alice));
      expect((await typing.next()).data?.typing).toEqual({ isTyping: true, user: { id: alice.id } });
      await ok(url, SetTyping, { conversationId, isTyping: false }, as(alice));
      expect((await typing.next()).data?.typing).toEqual({ isTyping: false, user: { id: alice.id } });

      await ok(url, MarkRead, { conversationId, upToMessageId: m2.id }, as(bob));
      expect((await receipts.next()).data?.readReceipt).toEqual({
        lastReadSeq: m2.seq,
        user: { id: bob.id },
        lastReadMessage: { id: m2.id },
      });
      await added.expectSilence(200);
      await events.expectSilence(0);
      await bobClient.dispose();
      await aliceClient.dispose();
    });

    it("replays more than one page of stored events after a cursor, in order, then continues live", async () => {
      const { alice, bob, carol, conversationId } = await setup();
      const probe = wsClient(wsUrl, as(bob));
      const probeSub = subscribe(probe, ConversationEvents, { conversationId });
      const warm = await whenLive(probeSub, () => send(url, as(alice), conversationId, "start"));
      const start = warm.at(-1)?.data?.conversationEvents as ConversationEvent;
      await probe.dispose();

      // More than the 200 rows the server reads from storage at a time.
      const total = 210;
      const sent: string[] = [];
      for (let batch = 0; batch < total / 10; batch++) {
        const results = await Promise.all(
          range(batch * 10, 10).map((i) => send(url, as(i % 2 ? alice : carol), conversationId, `bulk ${i}`)),
        );
        sent.push(...ids(results));
      }
      const client = wsClient(second.wsUrl, as(bob));
      const sub = subscribe(client, ConversationEvents, { conversationId, after: cursorOf(start) });
      const replayed = await takeEvents(sub, total, 20_000);
      expect(replayed.map(seqOf)).toEqual(range(seqOf(start) + 1, total));
      const messageIds = replayed.map((e) => (e.__typename === "MessageAddedEvent" ? e.message.id : e.__typename));
      expect([...messageIds].sort()).toEqual([...sent].sort());
      const live = await send(url, as(alice), conversationId, "live again");
      expect(await nextEvent(sub)).toMatchObject({ seq: seqOf(start) + total + 1, message: { id: live.id } });
      await sub.expectSilence(200);
      await client.dispose();
    }, 90_000);

    it("a replay after a message was deleted does not reveal its text", async () => {
      const { alice, bob, conversationId } = await setup();
      const probe = wsClient(wsUrl, as(bob));
      const probeSub = subscribe(probe, ConversationEvents, { conversationId });
      const warm = await whenLive(probeSub, () => send(url, as(alice), conversationId, "before"));
      const start = warm.at(-1)?.data?.conversationEvents as ConversationEvent;

      const secret = await send(url, as(alice), conversationId, "my password is hunter2");
      await ok(url, EditMessage, { id: secret.id, body: "my password is hunter3" }, as(alice));
      // Live, before the delete, the text is of course delivered.
      const [liveAdded] = await takeEvents(probeSub, 2);
      expect(liveAdded).toMatchObject({ message: { body: "my password is hunter2" } });
      await ok(url, DeleteMessage, { id: secret.id }, as(alice));
      await probe.dispose();

      const client = wsClient(wsUrl, as(bob));
      const sub = subscribe(client, ConversationEvents, { conversationId, after: cursorOf(start) });
      const replayed = await takeEvents(sub, 3);
      expect(replayed.map((e) => e.__typename)).toEqual([
        "MessageAddedEvent",
        "MessageEditedEvent",
        "MessageDeletedEvent",
      ]);
      for (const event of replayed) {
        expect(JSON.stringify(event)).not.toContain("hunter");
      }
      await client.dispose();
    });

    it("a removed member's conversation stream tells them, then ends", async () => {
      const { alice, dave, conversationId } = await setup();
      await ok(url, AddMembers, { conversationId, userIds: [dave.id] }, as(alice));
      const client = wsClient(wsUrl, as(dave));
      const sub = subscribe(client, ConversationEvents, { conversationId });
      await whenLive(sub, () => send(url, as(alice), conversationId, "welcome"));
      await ok(url, RemoveMember, { conversationId, userId: dave.id }, as(alice));
      expect(await nextEvent(sub)).toMatchObject({ __typename: "MemberRemovedEvent", user: { id: dave.id } });
      expect(await sub.done).toEqual({});
      await client.dispose();
    });

    it("repeating the same change concurrently records it once: one reaction, one pin, one delete, one event each", async () => {
      const { alice, bob, carol, conversationId } = await setup();
      const client = wsClient(wsUrl, as(bob));
      const sub = subscribe(client, ConversationEvents, { conversationId });
      await whenLive(sub, () => send(url, as(alice), conversationId, "warmup"));
      const target = await send(url, as(alice), conversationId, "target");
      const times = 6;
      const burst = <T>(run: () => Promise<T>) => Promise.all(Array.from({ length: times }, run));

      await burst(() => ok(url, AddReaction, { messageId: target.id, emoji: "👍" }, as(carol)));
      await burst(() => ok(url, PinMessage, { id: target.id }, as(carol)));
      await burst(() => ok(url, UnpinMessage, { id: target.id }, as(carol)));
      await burst(() => ok(url, RemoveReaction, { messageId: target.id, emoji: "👍" }, as(carol)));
      const deletes = await burst(() => ok(url, DeleteMessage, { id: target.id }, as(alice)));
      const end = await send(url, as(alice), conversationId, "end");

      const events: ConversationEvent[] = [];
      while (true) {
        const event = await nextEvent(sub);
        if (event.__typename === "MessageAddedEvent" && event.message.id === end.id) break;
        events.push(event);
      }
      expect(events.map((e) => e.__typename)).toEqual([
        "MessageAddedEvent",
        "ReactionChangedEvent",
        "MessagePinnedEvent",
        "MessageUnpinnedEvent",
        "ReactionChangedEvent",
        "MessageDeletedEvent",
      ]);
      const stored = await messageAs(url, as(bob), conversationId, target.id);
      expect(new Set(deletes.map((d) => d.deleteMessage.deletedAt))).toEqual(new Set([stored.deletedAt]));
      await client.dispose();
    });

    it(`a client applying only conversationEvents ends with exactly the server's state (seed ${SEED})`, async () => {
      const rand = mulberry32(SEED);
      const tenant = await createTenant(url, ["Alice", "Bob", "Carol", "Dave"]);
      const [alice, bob, carol, dave] = four(tenant);
      const key: Auth = { apiKey: tenant.apiKey };
      const urls = second === server ? [url] : [url, second.url];

      // The API key creates an empty group, so the first events describe everything in it.
      const conversationId = await group(url, key, [], "Seed");
      const watcher = new Observer(key, conversationId);
      const watcherSub = watcher.connect(wsUrl, { conversationId });
      let pokes = 0;
      const poke = () => ok(url, UpdateGroup, { id: conversationId, input: { name: `Seed ${++pokes}` } }, key);
      for (const result of await whenLive(watcherSub, poke)) {
        watcher.copy.apply((result.data as EventsResult).conversationEvents);
      }

      // Alice follows all of her conversations before she is added: her stream must start with her own arrival.
      const lobby = await group(url, as(alice), [], "Lobby");
      const alices = new Observer(as(alice), conversationId);
      const alicesSub = alices.connect(second.wsUrl, {});
      await whenLive(alicesSub, () => ok(url, UpdateGroup, { id: lobby, input: { name: "Lobby!" } }, as(alice)));

      await ok(url, AddMembers, { conversationId, userIds: [alice.id, bob.id, carol.id] }, key);
      await ok(url, SetMemberRole, { conversationId, userId: alice.id, role: "OWNER" }, key);
      await ok(url, SetMemberRole, { conversationId, userId: bob.id, role: "ADMIN" }, key);
      // Alice's stream starts at her arrival: the group is named again after it.
      const team = { name: "Team", description: "A random mix" };
      await ok(second.url, UpdateGroup, { id: conversationId, input: team }, as(alice));

      const scenario = new Scenario(rand, urls, { alice, bob, carol, dave }, conversationId);
      const total = 60;
      for (let i = 0; i < total; i++) {
        if (i === 25) await watcher.disconnect();
        if (i === 40) {
          expect(watcher.copy.lastCursor).toBeTruthy();
          // Reconnect through the other instance where there is one.
          watcher.connect(second.wsUrl, { conversationId, after: watcher.copy.lastCursor });
        }
        await scenario.step(i);
      }
      const sentinel = await send(url, key, conversationId, "sentinel");
      const seen = (copy: LocalCopy) => copy.messages.has(sentinel.id);
      await watcher.until(seen);
      await alices.until(seen);
      await watcher.pump(300);
      await alices.pump(300);

      const context = `seed ${SEED}; ops ${scenario.log.join(" ")}`;
      // No gap and no duplicate, across the reconnect.
      const watcherSeqs = watcher.copy.seqs;
      expect(watcherSeqs, context).toEqual(range(watcherSeqs[0] as number, watcherSeqs.length));
      expect(alices.copy.seqs, context).toEqual(range(pokes + 1, alices.copy.seqs.length));
      expect(
        alices.received.find((e) => e.conversationId === conversationId),
        context,
      ).toMatchObject({
        __typename: "MemberAddedEvent",
        user: { id: alice.id },
      });
      // Alice's stream carried her lobby too, and nothing else.
      for (const event of alices.received) expect([conversationId, lobby]).toContain(event.conversationId);

      const truth = await serverState(url, key, conversationId);
      expect(truth.messages.length, context).toBeGreaterThan(10);
      expect(truth.members.map((m) => m.id)).toEqual(expect.arrayContaining([alice.id, bob.id, carol.id]));
      expect(watcher.copy.state(), context).toEqual(truth);
      expect(alices.copy.state(), context).toEqual(await serverState(second.url, as(alice), conversationId));

      await watcher.disconnect();
      await alices.disconnect();
    }, 120_000);
  });

  // -------------------------------------------------------------------------------------
  // 7. unread counts and lastMessage
  // -------------------------------------------------------------------------------------

  describe("unreadCount and lastMessage", () => {
    it("stay correct under edits and deletes", async () => {
      const { alice, bob, conversationId } = await setup();
      const view = async (user: TestUser) => {
        const conversation = await conversationAs(url, as(user), conversationId);
        const list = await ok(url, ConversationSummaries, { first: 50 }, as(user));
        const listed = list.conversations.edges.find((e) => e.node.id === conversationId)?.node;
        expect(listed?.unreadCount).toBe(conversation.unreadCount);
        expect(listed?.lastMessage ?? null).toEqual(
          conversation.lastMessage ? { id: conversation.lastMessage.id, body: conversation.lastMessage.body } : null,
        );
        return { unread: conversation.unreadCount, last: conversation.lastMessage };
      };
      const m1 = await send(url, as(alice), conversationId, "m1");
      const m2 = await send(url, as(alice), conversationId, "m2");
      const m3 = await send(url, as(alice), conversationId, "m3");
      expect(await view(bob)).toMatchObject({ unread: 3, last: { id: m3.id, body: "m3" } });
      expect(await view(alice)).toMatchObject({ unread: 0, last: { id: m3.id } });

      await ok(url, DeleteMessage, { id: m3.id }, as(alice));
      expect(await view(bob)).toMatchObject({ unread: 2, last: { id: m2.id, body: "m2" } });
      expect((await view(alice)).last?.id).toBe(m2.id);

      await ok(url, EditMessage, { id: m2.id, body: "m2, edited" }, as(alice));
      const edited = await view(bob);
      expect(edited).toMatchObject({ unread: 2, last: { id: m2.id, body: "m2, edited" } });
      expect(edited.last?.editedAt).toBeTruthy();

      await ok(url, DeleteMessage, { id: m1.id }, as(alice));
      expect(await view(bob)).toMatchObject({ unread: 1, last: { id: m2.id } });

      await ok(url, MarkRead, { conversationId, upToMessageId: m2.id }, as(bob));
      expect(await view(bob)).toMatchObject({ unread: 0, last: { id: m2.id } });

      const m4 = await send(url, as(alice), conversationId, "m4");
      expect(await view(bob)).toMatchObject({ unread: 1, last: { id: m4.id } });
      await ok(url, DeleteMessage, { id: m4.id }, as(alice));
      expect(await view(bob)).toMatchObject({ unread: 0, last: { id: m2.id, body: "m2, edited" } });

      await ok(url, DeleteMessage, { id: m2.id }, as(alice));
      expect(await view(bob)).toEqual({ unread: 0, last: null });
      // Bob's own messages never count as unread for him.
      await send(url, as(bob), conversationId, "mine");
      expect((await view(bob)).unread).toBe(0);
      expect((await view(alice)).unread).toBe(1);
    });
  });
});
