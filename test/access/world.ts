import { randomBytes, randomUUID } from "node:crypto";
import type { ResultOf } from "@graphql-typed-document-node/core";
import type { GraphQLFormattedError } from "graphql";
import type { Client } from "graphql-ws";
import { beforeAll, expect } from "vitest";
import type { BackendName } from "../helpers/backends.ts";
import { type Auth, drain, type GqlResult, ok, type Subscription, sleep, subscribe } from "../helpers/client.ts";
import { createTenant, createUserWithToken, type TestUser } from "../helpers/fixtures.ts";
import { useServer } from "../helpers/world.ts";
import { Sessions, SignUp } from "../operations/accounts.ts";
import {
  AddMembers,
  CreateGroup,
  DeleteGroup,
  OpenDirect,
  RemoveMember,
  SetMemberRole,
  UpdateGroup,
} from "../operations/conversations.ts";
import { ConversationEvents, MessageAdded, ReadReceipt, Typing } from "../operations/events.ts";
import {
  AddReaction,
  DeleteMessage,
  EditMessage,
  Messages,
  PinMessage,
  RemoveReaction,
  SendMessage,
  UnpinMessage,
} from "../operations/messages.ts";
import { PresenceChanged } from "../operations/presence.ts";
import { AssignRole, CreateRole, Roles } from "../operations/roles.ts";
import { ReportMessage } from "../operations/safety.ts";
import { TenantSnapshot, UpdateTenant } from "../operations/tenants.ts";
import { Users, Viewer } from "../operations/users.ts";
import { CreateWebhook } from "../operations/webhooks.ts";

// The access-rule tests share one world per backend: two tenants ("Home" and "Intruder"), each
// with a group, a direct conversation, messages, attachments, a custom role and a signed-up user,
// and the helpers and case tables the tests of test/access/ are written with.

/** One tenant with a group (owner + member), a direct conversation between them, and an outsider. */
export interface Side {
  apiKey: string;
  owner: TestUser;
  member: TestUser;
  /** Same tenant, member of neither conversation. */
  outsider: TestUser;
  group: string;
  direct: string;
  /** The owner's message in `group`; the member reacted to it with 👍. */
  message: string;
  /** The member's report of `message`. */
  report: string;
  /** Another message of the owner in `group`, pinned. */
  pinned: string;
  /** A CUSTOM message of the owner in `group`, with data. */
  custom: string;
  /** A file the owner uploaded to `group` and sent with a message. */
  attachment: string;
  /** A file the owner uploaded to `group` and has not sent yet. */
  upload: string;
  /** The group's name, as created. */
  groupName: string;
  /** A word only this tenant's messages contain (besides the world's shared word). */
  word: string;
  /** A user who signed up with a password (self sign-up is on), with the session it opened. */
  signedUp: { id: string; token: string; session: string };
  /** Holds the tenant's `owner` system role (every permission); member of no conversation. */
  tenantOwner: TestUser;
  /** A custom role, held by `member`. */
  role: string;
  /** The tenant's `owner` system role. */
  ownerRole: string;
  /** A webhook of the tenant (USER_DELETED only, to an unreachable loopback port). */
  webhook: string;
  /** Names, emails, texts and credentials that must never reach another tenant. */
  secrets: string[];
}

export interface World {
  url: string;
  wsUrl: string;
  /** A word in the seeded messages of both tenants: each must find only its own. */
  shared: string;
  home: Side;
  /** The other tenant: its API key and users act on `home`'s ids. */
  intruder: Side;
}

/**
 * "user token": a plain member (the group's owner), with a token the API key issued;
 * "tenant owner token": a user holding every permission; "session token": the access token
 * of a user who signed up with a password (a session of their own).
 */
export type Actor = "API key" | "user token" | "tenant owner token" | "session token";
export const BOTH: Actor[] = ["API key", "user token"];
export const KEY: Actor[] = ["API key"];
export const TOKEN: Actor[] = ["user token"];
/** For operations a plain member may not call at all (rbac:*, tenant:update). */
export const PRIVILEGED: Actor[] = ["API key", "tenant owner token"];
export const ALL: Actor[] = ["API key", "user token", "tenant owner token"];
/** For operations only a user may call (reactions). */
export const USERS: Actor[] = ["user token", "tenant owner token"];
/** For operations on the viewer's own sign-in sessions. */
export const SESSION_USERS: Actor[] = ["user token", "session token"];
export const authOf = (side: Side, actor: Actor): Auth =>
  actor === "API key"
    ? { apiKey: side.apiKey }
    : actor === "user token"
      ? { token: side.owner.token }
      : actor === "tenant owner token"
        ? { token: side.tenantOwner.token }
        : { token: side.signedUp.token };

/** Credentials as HTTP headers, for requests made without `request` (uploads, downloads). */
export const headersOf = (auth: Auth): Record<string, string> => ({
  ...auth.headers,
  ...(auth.apiKey ? { "x-api-key": auth.apiKey } : {}),
  ...(auth.token ? { authorization: `Bearer ${auth.token}` } : {}),
});

/** Lowercase letters only, so that full-text search sees one word. */
export const word = (length = 12) =>
  Array.from(randomBytes(length), (byte) => String.fromCharCode(97 + (byte % 26))).join("");

export async function createSide(url: string, label: string, shared: string): Promise<Side> {
  const tag = randomBytes(4).toString("hex");
  const own = `${label.toLowerCase()}${word()}`;
  const tenant = await createTenant(url, [`${label}Owner${tag}`, `${label}Member${tag}`, `${label}Outsider${tag}`]);
  const [owner, member, outsider] = tenant.users as [TestUser, TestUser, TestUser];
  const groupName = `${label} secret group ${tag}`;
  const description = `${label} secret plans ${tag}`;
  const { createGroup } = await ok(
    url,
    CreateGroup,
    { input: { name: groupName, description, memberIds: [member.id] } },
    { token: owner.token },
  );
  const body = `${label} secret body ${tag} ${own} ${shared}`;
  const { sendMessage } = await ok(
    url,
    SendMessage,
    { input: { conversationId: createGroup.id, body } },
    { token: owner.token },
  );
  await ok(url, AddReaction, { messageId: sendMessage.id, emoji: "👍" }, { token: member.token });
  const reportReason = `${label} secret complaint ${tag}`;
  const { reportMessage } = await ok(
    url,
    ReportMessage,
    { messageId: sendMessage.id, reason: reportReason },
    { token: member.token },
  );
  const pinnedBody = `${label} secret pinned ${tag} ${own} ${shared}`;
  const pinned = (
    await ok(url, SendMessage, { input: { conversationId: createGroup.id, body: pinnedBody } }, { token: owner.token })
  ).sendMessage.id;
  await ok(url, PinMessage, { id: pinned }, { token: owner.token });
  const files = [0, 1].map((n) => ({
    name: `${label}-secret-file-${n}-${tag}.txt`,
    content: `${label} secret content ${n} ${tag}`,
  }));
  const [attachment, upload] = await Promise.all(
    files.map(async (file) => {
      const result = await uploadAttachment(url, createGroup.id, headersOf({ token: owner.token }), file);
      const id = (fieldOf(result, "uploadAttachment") as { id?: string } | null)?.id;
      if (!id) expect.fail(`upload failed: ${JSON.stringify(result)}`);
      return id;
    }),
  );
  await ok(
    url,
    SendMessage,
    { input: { conversationId: createGroup.id, body: "", attachmentIds: [attachment as string] } },
    { token: owner.token },
  );
  const customData = { question: `${label} secret ballot ${tag}`, options: [1, 2] };
  const custom = (
    await ok(
      url,
      SendMessage,
      { input: { conversationId: createGroup.id, type: "CUSTOM", customType: "poll", data: customData } },
      { token: owner.token },
    )
  ).sendMessage.id;
  const directBody = `${label} secret whisper ${tag} ${own} ${shared}`;
  const { openDirectConversation } = await ok(url, OpenDirect, { userId: member.id }, { token: owner.token });
  await ok(
    url,
    SendMessage,
    { input: { conversationId: openDirectConversation.id, body: directBody } },
    { token: member.token },
  );
  const key = { apiKey: tenant.apiKey };
  await ok(url, UpdateTenant, { input: { auth: { selfSignUp: true } } }, key);
  const { signUp } = await ok(url, SignUp, {
    input: {
      tenantId: tenant.id,
      email: `${label.toLowerCase()}-signup-${tag}@example.com`,
      password: `${label} secret password ${tag}`,
      name: `${label}SignedUp${tag}`,
    },
  });
  const tenantOwner = await createUserWithToken(url, tenant.apiKey, `${label}Boss${tag}`);
  const { roles } = await ok(url, Roles, {}, key);
  const ownerRole = roles.find((r) => r.name === "owner")?.id as string;
  await ok(url, AssignRole, { userId: tenantOwner.id, roleId: ownerRole }, key);
  const roleName = `${label} secret role ${tag}`;
  const roleDescription = `${label} secret duty ${tag}`;
  const { createRole } = await ok(
    url,
    CreateRole,
    { input: { name: roleName, description: roleDescription, permissions: ["chats:read", "users:read"] } },
    key,
  );
  await ok(url, AssignRole, { userId: member.id, roleId: createRole.id }, key);
  const hookDescription = `${label} secret hook ${tag}`;
  const { createWebhook } = await ok(
    url,
    CreateWebhook,
    {
      input: { url: `http://127.0.0.1:9/${label}-hook-${tag}`, events: ["USER_DELETED"], description: hookDescription },
    },
    key,
  );
  const { users } = await ok(url, Users, { first: 100 }, key);
  const people = users.edges.flatMap((e) => [e.node.name, e.node.email ?? ""]).filter(Boolean);
  return {
    apiKey: tenant.apiKey,
    owner,
    member,
    outsider,
    group: createGroup.id,
    direct: openDirectConversation.id,
    message: sendMessage.id,
    report: reportMessage.id,
    pinned,
    custom,
    attachment: attachment as string,
    upload: upload as string,
    groupName,
    word: own,
    signedUp: { id: signUp.user.id, token: signUp.accessToken, session: signUp.session.id },
    tenantOwner,
    role: createRole.id,
    ownerRole,
    webhook: createWebhook.webhook.id,
    secrets: [
      hookDescription,
      createWebhook.secret,
      groupName,
      description,
      body,
      reportReason,
      pinnedBody,
      customData.question,
      directBody,
      ...files.flatMap((file) => [file.name, file.content]),
      signUp.accessToken,
      signUp.refreshToken,
      tenant.apiKey,
      ...people,
      owner.token,
      member.token,
      tenantOwner.token,
      roleName,
      roleDescription,
    ],
  };
}

/** Everything a foreign call could change on one side, as its own API key sees it. */
export async function stateOf(w: World, side: Side) {
  const state = await ok(
    w.url,
    TenantSnapshot,
    {
      role: side.role,
      ownerRole: side.ownerRole,
      member: side.member.id,
      outsider: side.outsider.id,
      group: side.group,
      direct: side.direct,
    },
    { apiKey: side.apiKey },
  );
  // Every token still works.
  const viewers = [];
  for (const user of [side.owner, side.member, side.outsider, side.tenantOwner, side.signedUp]) {
    viewers.push((await ok(w.url, Viewer, {}, { token: user.token })).viewer.user?.id);
  }
  // The signed-up user's session is still open.
  const sessions = (await ok(w.url, Sessions, {}, { token: side.signedUp.token })).sessions.map((s) => s.id);
  // The sent file is the group's; the unsent upload is still only its uploader's (not claimed by any message).
  const downloads = {
    attachment: (await download(w, side.attachment, headersOf({ token: side.member.token }))).status,
    uploadByUploader: (await download(w, side.upload, headersOf({ token: side.owner.token }))).status,
    uploadByMember: (await download(w, side.upload, headersOf({ token: side.member.token }))).status,
  };
  return { ...state, viewers, sessions, downloads };
}

/** GET /attachments/<id> on the server of `w`. */
export async function download(w: Pick<World, "url">, id: string, headers: Record<string, string>) {
  const response = await fetch(new URL(`/attachments/${id}`, w.url), { headers });
  return { status: response.status, type: response.headers.get("content-type"), body: await response.text() };
}

/** A fresh tenant whose owner (Alice) runs a group with Bob and Carol as plain members. */
export async function createTeam(url: string) {
  const tenant = await createTenant(url, ["Alice", "Bob", "Carol", "Dave"]);
  const [alice, bob, carol, dave] = tenant.users as [TestUser, TestUser, TestUser, TestUser];
  const { createGroup } = await ok(
    url,
    CreateGroup,
    { input: { name: "Team", memberIds: [bob.id, carol.id] } },
    { token: alice.token },
  );
  return { apiKey: tenant.apiKey, alice, bob, carol, dave, group: createGroup.id };
}

export function firstError(result: GqlResult<unknown>): GraphQLFormattedError {
  const error = result.errors?.[0];
  if (!error) expect.fail(`expected an error, got ${JSON.stringify(result, null, 2)}`);
  return error;
}

/** The value of one root field in a response, null when the field (or all of data) is null. */
export function fieldOf(result: GqlResult<unknown>, field: string): unknown {
  return (result.data as Record<string, unknown> | null | undefined)?.[field] ?? null;
}

export function expectNoLeak(secrets: string[], value: unknown): void {
  const text = JSON.stringify(value);
  for (const secret of secrets) {
    expect(text, `the response reveals ${JSON.stringify(secret)}: ${text}`).not.toContain(secret);
  }
}

/**
 * How a refused subscription ended. graphql-ws delivers errors raised before execution
 * (onSubscribe, validation) as an `error` message, which reaches the client's error sink as
 * a GraphQLError array; errors thrown by a field's subscribe resolver arrive as a single
 * `next` carrying `errors` (and no data), followed by `complete`. Both count as a refusal;
 * an event with data, an accepted subscription or a closed socket do not.
 */
export async function refusal<T>(sub: Subscription<T>, timeoutMs = 5_000): Promise<GraphQLFormattedError[]> {
  const outcome = await Promise.race([sub.done, sleep(timeoutMs).then(() => "accepted" as const)]);
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

export async function expectRefused<T>(sub: Subscription<T>, code: string): Promise<GraphQLFormattedError> {
  const errors = await refusal(sub);
  const error = errors[0] as GraphQLFormattedError;
  expect(error.extensions?.code, JSON.stringify(errors)).toBe(code);
  return error;
}

/** Waits until the server completes or errors a subscription. */
export async function ended<T>(sub: Subscription<T>, timeoutMs = 5_000): Promise<void> {
  const outcome = await Promise.race([sub.done, sleep(timeoutMs).then(() => "open" as const)]);
  if (outcome === "open") expect.fail("the subscription is still open");
}

export function bodiesOf(events: { data?: { messageAdded: { body?: string | null } } | null }[]): (string | null)[] {
  return events.map((e) => e.data?.messageAdded.body ?? null);
}

export const EVENT_TYPES = [
  "MessageAddedEvent",
  "MessageEditedEvent",
  "MessageDeletedEvent",
  "MessagePinnedEvent",
  "MessageUnpinnedEvent",
  "ReactionChangedEvent",
  "MemberAddedEvent",
  "MemberRemovedEvent",
  "MemberRoleChangedEvent",
  "ConversationUpdatedEvent",
  "ConversationDeletedEvent",
];

export type EventsFeed = Subscription<ResultOf<typeof ConversationEvents>>;

/**
 * Causes every kind of conversation event in home's conversations, leaving them as they were
 * (apart from one more deleted message), and returns the event types `feed` (a home member's
 * stream of all their conversations) delivered meanwhile.
 */
export async function stirHome(w: World, feed: EventsFeed): Promise<string[]> {
  const owner = { token: w.home.owner.token };
  const key = { apiKey: w.home.apiKey };
  const seen: string[] = [];
  const until = async (last: (event: ResultOf<typeof ConversationEvents>["conversationEvents"]) => boolean) => {
    while (true) {
      const event = (await feed.next()).data?.conversationEvents;
      if (!event) return expect.fail("an event without data");
      seen.push(event.__typename);
      if (last(event)) return;
    }
  };
  // A group that comes and goes.
  const passing = (await ok(w.url, CreateGroup, { input: { name: "Passing", memberIds: [w.home.member.id] } }, owner))
    .createGroup.id;
  await ok(w.url, SendMessage, { input: { conversationId: passing, body: "passing through" } }, owner);
  await ok(w.url, DeleteGroup, { id: passing }, owner);
  await until((e) => e.__typename === "ConversationDeletedEvent" && e.conversationId === passing);
  // Everything else, in the group.
  const group = w.home.group;
  const { id } = (await ok(w.url, SendMessage, { input: { conversationId: group, body: "stirring" } }, owner))
    .sendMessage;
  await ok(w.url, EditMessage, { id, body: "stirred" }, owner);
  await ok(w.url, AddReaction, { messageId: id, emoji: "🎉" }, owner);
  await ok(w.url, RemoveReaction, { messageId: id, emoji: "🎉" }, owner);
  await ok(w.url, PinMessage, { id }, owner);
  await ok(w.url, UnpinMessage, { id }, owner);
  await ok(w.url, DeleteMessage, { id }, owner);
  await ok(w.url, UpdateGroup, { id: group, input: { name: "Renamed for a moment" } }, owner);
  await ok(w.url, UpdateGroup, { id: group, input: { name: w.home.groupName } }, owner);
  await ok(w.url, AddMembers, { conversationId: group, userIds: [w.home.outsider.id] }, key);
  await ok(w.url, SetMemberRole, { conversationId: group, userId: w.home.outsider.id, role: "ADMIN" }, key);
  await ok(w.url, RemoveMember, { conversationId: group, userId: w.home.outsider.id }, key);
  await ok(w.url, SendMessage, { input: { conversationId: w.home.direct, body: "stirring directly" } }, owner);
  const fence = (await ok(w.url, SendMessage, { input: { conversationId: group, body: "stir fence" } }, owner))
    .sendMessage.id;
  await until((e) => e.__typename === "MessageAddedEvent" && e.message.id === fence);
  return seen;
}

export const withActors = <C extends { name: string; actors: Actor[] }>(cases: C[]) =>
  cases.flatMap((c) => c.actors.map((actor) => ({ ...c, actor, name: `${c.name} as the foreign ${actor}` })));

export type Subscribe = (client: Client, conversationId: string) => Subscription<unknown>;

/** The subscriptions that take a conversation id. */
export const subscriptionCases: { name: string; open: Subscribe }[] = [
  {
    name: "messageAdded(conversationId)",
    open: (client, id) => subscribe(client, MessageAdded, { conversationId: id }),
  },
  { name: "typing(conversationId)", open: (client, id) => subscribe(client, Typing, { conversationId: id }) },
  { name: "readReceipt(conversationId)", open: (client, id) => subscribe(client, ReadReceipt, { conversationId: id }) },
  {
    name: "conversationEvents(conversationId)",
    open: (client, id) => subscribe(client, ConversationEvents, { conversationId: id }),
  },
  {
    name: "presenceChanged(conversationId)",
    open: (client, id) => subscribe(client, PresenceChanged, { conversationId: id }),
  },
];

/** The oldest of the newest messages of a conversation, read with the tenant's API key. */
export async function aMessageOf(w: World, conversationId: string): Promise<string> {
  const page = await ok(w.url, Messages, { last: 50, conversationId }, { apiKey: w.home.apiKey });
  return page.messages.edges[0]?.node.id as string;
}

/** uploadAttachment as a GraphQL multipart request (a one-line text file). */
export async function uploadAttachment(
  url: string,
  conversationId: string,
  headers: Record<string, string>,
  file = { name: "hello.txt", content: "hello" },
): Promise<GqlResult<unknown>> {
  const form = new FormData();
  form.set(
    "operations",
    JSON.stringify({
      query: "mutation ($c: ID!, $file: File!) { uploadAttachment(conversationId: $c, file: $file) { id } }",
      variables: { c: conversationId, file: null },
    }),
  );
  form.set("map", JSON.stringify({ 0: ["variables.file"] }));
  form.set("0", new Blob([file.content], { type: "text/plain" }), file.name);
  const response = await fetch(url, { method: "POST", body: form, headers });
  const body = (await response.json()) as GqlResult<unknown>;
  return { data: body.data, errors: body.errors, status: response.status };
}

/** A random well-formed id, for calls whose other arguments must pass validation. */
export const anyId = () => randomUUID();

export const MALFORMED_IDS = ["abc", '\'; DROP TABLE "User"; --'];

/** Every case once per kind of conversation. */
export const inBothKinds = <C extends { name: string }>(cases: C[]) =>
  cases.flatMap((c) =>
    (["group", "direct conversation"] as const).map((kind) => ({ ...c, kind, name: `${c.name} in a ${kind}` })),
  );

/** it.each rows titled by the case name (`$name` would be quoted and truncated). */
export const named = <C extends { name: string }>(cases: C[]) => cases.map((c) => [c.name, c] as const);

/**
 * Starts a server for the enclosing describe block and fills the returned world, before the
 * tests, with the two tenants. Uploads and the sign-up mail outbox stay in a directory of this run.
 */
export function useAccessWorld(backend: BackendName): World {
  const server = useServer(backend, {}, { dataDir: true });
  const w = {} as World;
  beforeAll(async () => {
    w.url = server.url;
    w.wsUrl = server.wsUrl;
    w.shared = `shared${word()}`;
    w.home = await createSide(w.url, "Home", w.shared);
    w.intruder = await createSide(w.url, "Intruder", w.shared);
  });
  return w;
}
