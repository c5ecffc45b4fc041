import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ResultOf } from "@graphql-typed-document-node/core";
import { buildSchema, type GraphQLFormattedError } from "graphql";
import type { Client } from "graphql-ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backends, createTestDatabase, startServer, type TestDatabase, type TestServer } from "./helpers/backends.ts";
import {
  type Auth,
  drain,
  fails,
  type GqlResult,
  ok,
  request,
  type Subscription,
  sleep,
  subscribe,
  whenLive,
  wsClient,
} from "./helpers/client.ts";
import { createTenant, createUserWithToken, type TestUser } from "./helpers/fixtures.ts";
import { RevokeSession, Sessions, SignUp } from "./operations/accounts.ts";
import {
  AddMembers,
  Conversation,
  Conversations,
  CreateGroup,
  DeleteGroup,
  MarkRead,
  OpenDirect,
  RemoveMember,
  SetMemberRole,
  UpdateGroup,
} from "./operations/conversations.ts";
import { ConversationEvents, MessageAdded, ReadReceipt, Typing } from "./operations/events.ts";
import {
  AddReaction,
  DeleteMessage,
  EditMessage,
  Messages,
  PinMessage,
  RemoveReaction,
  SearchMessages,
  SendMessage,
  SetTyping,
  UnpinMessage,
} from "./operations/messages.ts";
import { AssignRole, CreateRole, DeleteRole, Role, Roles, UnassignRole, UpdateRole } from "./operations/roles.ts";
import {
  RotateApiKey,
  Tenant,
  TenantSnapshot,
  UpdateTenant,
  UpdateTenantWithDefaultRole,
} from "./operations/tenants.ts";
import {
  CreateUser,
  DeleteUser,
  IssueUserToken,
  RevokeUserTokens,
  UpdateUser,
  User,
  Users,
  Viewer,
} from "./operations/users.ts";

// ---------------------------------------------------------------------------------------------
// Fixtures and helpers
// ---------------------------------------------------------------------------------------------

/** One tenant with a group (owner + member), a direct conversation between them, and an outsider. */
interface Side {
  apiKey: string;
  owner: TestUser;
  member: TestUser;
  /** Same tenant, member of neither conversation. */
  outsider: TestUser;
  group: string;
  direct: string;
  /** The owner's message in `group`; the member reacted to it with 👍. */
  message: string;
  /** Another message of the owner in `group`, pinned. */
  pinned: string;
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
  /** Names, emails, texts and credentials that must never reach another tenant. */
  secrets: string[];
}

interface World {
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
type Actor = "API key" | "user token" | "tenant owner token" | "session token";
const BOTH: Actor[] = ["API key", "user token"];
const KEY: Actor[] = ["API key"];
const TOKEN: Actor[] = ["user token"];
/** For operations a plain member may not call at all (rbac:*, tenant:update). */
const PRIVILEGED: Actor[] = ["API key", "tenant owner token"];
const ALL: Actor[] = ["API key", "user token", "tenant owner token"];
/** For operations only a user may call (reactions). */
const USERS: Actor[] = ["user token", "tenant owner token"];
/** For operations on the viewer's own sign-in sessions. */
const SESSION_USERS: Actor[] = ["user token", "session token"];
const authOf = (side: Side, actor: Actor): Auth =>
  actor === "API key"
    ? { apiKey: side.apiKey }
    : actor === "user token"
      ? { token: side.owner.token }
      : actor === "tenant owner token"
        ? { token: side.tenantOwner.token }
        : { token: side.signedUp.token };

/** Credentials as HTTP headers, for requests made without `request` (uploads, downloads). */
const headersOf = (auth: Auth): Record<string, string> => ({
  ...auth.headers,
  ...(auth.apiKey ? { "x-api-key": auth.apiKey } : {}),
  ...(auth.token ? { authorization: `Bearer ${auth.token}` } : {}),
});

/** Lowercase letters only, so that full-text search sees one word. */
const word = (length = 12) => Array.from(randomBytes(length), (byte) => String.fromCharCode(97 + (byte % 26))).join("");

async function createSide(url: string, label: string, shared: string): Promise<Side> {
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
    pinned,
    attachment: attachment as string,
    upload: upload as string,
    groupName,
    word: own,
    signedUp: { id: signUp.user.id, token: signUp.accessToken, session: signUp.session.id },
    tenantOwner,
    role: createRole.id,
    ownerRole,
    secrets: [
      groupName,
      description,
      body,
      pinnedBody,
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
async function stateOf(w: World, side: Side) {
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
async function download(w: Pick<World, "url">, id: string, headers: Record<string, string>) {
  const response = await fetch(new URL(`/attachments/${id}`, w.url), { headers });
  return { status: response.status, type: response.headers.get("content-type"), body: await response.text() };
}

/** A fresh tenant whose owner (Alice) runs a group with Bob and Carol as plain members. */
async function createTeam(url: string) {
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

function firstError(result: GqlResult<unknown>): GraphQLFormattedError {
  const error = result.errors?.[0];
  if (!error) expect.fail(`expected an error, got ${JSON.stringify(result, null, 2)}`);
  return error;
}

/** The value of one root field in a response, null when the field (or all of data) is null. */
function fieldOf(result: GqlResult<unknown>, field: string): unknown {
  return (result.data as Record<string, unknown> | null | undefined)?.[field] ?? null;
}

function expectNoLeak(secrets: string[], value: unknown): void {
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
async function refusal<T>(sub: Subscription<T>, timeoutMs = 5_000): Promise<GraphQLFormattedError[]> {
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

async function expectRefused<T>(sub: Subscription<T>, code: string): Promise<GraphQLFormattedError> {
  const errors = await refusal(sub);
  const error = errors[0] as GraphQLFormattedError;
  expect(error.extensions?.code, JSON.stringify(errors)).toBe(code);
  return error;
}

/** Waits until the server completes or errors a subscription. */
async function ended<T>(sub: Subscription<T>, timeoutMs = 5_000): Promise<void> {
  const outcome = await Promise.race([sub.done, sleep(timeoutMs).then(() => "open" as const)]);
  if (outcome === "open") expect.fail("the subscription is still open");
}

function bodiesOf(events: { data?: { messageAdded: { body?: string | null } } | null }[]): (string | null)[] {
  return events.map((e) => e.data?.messageAdded.body ?? null);
}

const EVENT_TYPES = [
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

type EventsFeed = Subscription<ResultOf<typeof ConversationEvents>>;

/**
 * Causes every kind of conversation event in home's conversations, leaving them as they were
 * (apart from one more deleted message), and returns the event types `feed` (a home member's
 * stream of all their conversations) delivered meanwhile.
 */
async function stirHome(w: World, feed: EventsFeed): Promise<string[]> {
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

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

interface ForeignIdCase {
  name: string;
  /** The root field whose data must be null. */
  field: string;
  actors: Actor[];
  /** The id of `home` the intruder passes. */
  foreign: (home: Side) => string;
  call: (w: World, auth: Auth, id: string) => Promise<GqlResult<unknown>>;
  /** What an unknown id gets, and so the foreign one too; NOT_FOUND unless given. */
  code?: "NOT_FOUND" | "BAD_USER_INPUT";
}

/** Each call is made with a `home` id and with a random UUID; both must fail the same way. */
const foreignIdCases: ForeignIdCase[] = [
  {
    name: "updateUser(id)",
    field: "updateUser",
    actors: BOTH,
    foreign: (home) => home.member.id,
    call: (w, auth, id) => request(w.url, UpdateUser, { id, input: { name: "Renamed" } }, auth),
  },
  {
    name: "deleteUser(id)",
    field: "deleteUser",
    actors: KEY,
    foreign: (home) => home.outsider.id,
    call: (w, auth, id) => request(w.url, DeleteUser, { id }, auth),
  },
  {
    name: "issueUserToken(userId)",
    field: "issueUserToken",
    actors: KEY,
    foreign: (home) => home.member.id,
    call: (w, auth, id) => request(w.url, IssueUserToken, { userId: id }, auth),
  },
  {
    name: "conversation(id) of a group",
    field: "conversation",
    actors: BOTH,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, Conversation, { id }, auth),
  },
  {
    name: "conversation(id) of a direct conversation",
    field: "conversation",
    actors: BOTH,
    foreign: (home) => home.direct,
    call: (w, auth, id) => request(w.url, Conversation, { id }, auth),
  },
  {
    name: "messages(conversationId)",
    field: "messages",
    actors: BOTH,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, Messages, { last: 50, conversationId: id }, auth),
  },
  {
    name: "updateGroup(id)",
    field: "updateGroup",
    actors: BOTH,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, UpdateGroup, { id, input: { name: "Taken over" } }, auth),
  },
  {
    name: "deleteGroup(id)",
    field: "deleteGroup",
    actors: BOTH,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, DeleteGroup, { id }, auth),
  },
  {
    name: "addMembers(conversationId)",
    field: "addMembers",
    actors: BOTH,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, AddMembers, { conversationId: id, userIds: [w.intruder.outsider.id] }, auth),
  },
  {
    name: "addMembers(userIds) with a foreign user to the own group",
    field: "addMembers",
    actors: BOTH,
    foreign: (home) => home.outsider.id,
    call: (w, auth, id) => request(w.url, AddMembers, { conversationId: w.intruder.group, userIds: [id] }, auth),
  },
  {
    name: "removeMember(conversationId)",
    field: "removeMember",
    actors: BOTH,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, RemoveMember, { conversationId: id, userId: w.home.member.id }, auth),
  },
  {
    name: "removeMember(userId) with a foreign user from the own group",
    field: "removeMember",
    actors: BOTH,
    foreign: (home) => home.member.id,
    call: (w, auth, id) => request(w.url, RemoveMember, { conversationId: w.intruder.group, userId: id }, auth),
  },
  {
    name: "openDirectConversation(userId)",
    field: "openDirectConversation",
    actors: TOKEN,
    foreign: (home) => home.member.id,
    call: (w, auth, id) => request(w.url, OpenDirect, { userId: id }, auth),
  },
  {
    name: "sendMessage(input.conversationId)",
    field: "sendMessage",
    actors: BOTH,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, SendMessage, { input: { conversationId: id, body: "hello" } }, auth),
  },
  {
    name: "sendMessage(input.recipientId)",
    field: "sendMessage",
    actors: TOKEN,
    foreign: (home) => home.member.id,
    call: (w, auth, id) => request(w.url, SendMessage, { input: { recipientId: id, body: "hello" } }, auth),
  },
  {
    name: "sendMessage(input.recipientId) sending as an own user",
    field: "sendMessage",
    actors: KEY,
    foreign: (home) => home.member.id,
    call: (w, auth, id) =>
      request(w.url, SendMessage, { input: { recipientId: id, senderId: w.intruder.owner.id, body: "hello" } }, auth),
  },
  {
    name: "sendMessage(input.replyToId) in the own group",
    field: "sendMessage",
    actors: BOTH,
    foreign: (home) => home.message,
    call: (w, auth, id) =>
      request(w.url, SendMessage, { input: { conversationId: w.intruder.group, replyToId: id, body: "re" } }, auth),
  },
  {
    name: "sendMessage(input.senderId) in the own group",
    field: "sendMessage",
    actors: KEY,
    foreign: (home) => home.owner.id,
    call: (w, auth, id) =>
      request(w.url, SendMessage, { input: { conversationId: w.intruder.group, senderId: id, body: "hi" } }, auth),
  },
  {
    name: "sendMessage(input.senderId) to an own recipient",
    field: "sendMessage",
    actors: KEY,
    foreign: (home) => home.owner.id,
    call: (w, auth, id) =>
      request(w.url, SendMessage, { input: { recipientId: w.intruder.member.id, senderId: id, body: "hi" } }, auth),
  },
  {
    name: "markRead(conversationId)",
    field: "markRead",
    actors: TOKEN,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, MarkRead, { conversationId: id, upToMessageId: w.home.message }, auth),
  },
  {
    name: "markRead(upToMessageId) with a foreign message in the own group",
    field: "markRead",
    actors: TOKEN,
    foreign: (home) => home.message,
    call: (w, auth, id) => request(w.url, MarkRead, { conversationId: w.intruder.group, upToMessageId: id }, auth),
  },
  {
    name: "setTyping(conversationId)",
    field: "setTyping",
    actors: TOKEN,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, SetTyping, { conversationId: id, isTyping: true }, auth),
  },
  {
    name: "updateRole(id) of a custom role",
    field: "updateRole",
    actors: PRIVILEGED,
    foreign: (home) => home.role,
    call: (w, auth, id) =>
      request(w.url, UpdateRole, { id, input: { name: "Taken over", permissions: ["chats:read"] } }, auth),
  },
  {
    name: "updateRole(id) of a system role",
    field: "updateRole",
    actors: PRIVILEGED,
    foreign: (home) => home.ownerRole,
    call: (w, auth, id) => request(w.url, UpdateRole, { id, input: { description: "Taken over" } }, auth),
  },
  {
    name: "deleteRole(id)",
    field: "deleteRole",
    actors: PRIVILEGED,
    foreign: (home) => home.role,
    call: (w, auth, id) => request(w.url, DeleteRole, { id }, auth),
  },
  {
    name: "assignRole(userId) with a foreign user and an own role",
    field: "assignRole",
    actors: PRIVILEGED,
    foreign: (home) => home.outsider.id,
    call: (w, auth, id) => request(w.url, AssignRole, { userId: id, roleId: w.intruder.role }, auth),
  },
  {
    name: "assignRole(roleId) with a foreign custom role to an own user",
    field: "assignRole",
    actors: PRIVILEGED,
    foreign: (home) => home.role,
    call: (w, auth, id) => request(w.url, AssignRole, { userId: w.intruder.outsider.id, roleId: id }, auth),
  },
  {
    name: "assignRole(roleId) with the foreign owner role to an own user",
    field: "assignRole",
    actors: PRIVILEGED,
    foreign: (home) => home.ownerRole,
    call: (w, auth, id) => request(w.url, AssignRole, { userId: w.intruder.outsider.id, roleId: id }, auth),
  },
  {
    name: "unassignRole(userId) with a foreign user and an own role",
    field: "unassignRole",
    actors: PRIVILEGED,
    foreign: (home) => home.member.id,
    call: (w, auth, id) => request(w.url, UnassignRole, { userId: id, roleId: w.intruder.role }, auth),
  },
  {
    name: "unassignRole(roleId) with a foreign role from an own user",
    field: "unassignRole",
    actors: PRIVILEGED,
    foreign: (home) => home.role,
    call: (w, auth, id) => request(w.url, UnassignRole, { userId: w.intruder.member.id, roleId: id }, auth),
  },
  {
    name: "revokeUserTokens(userId)",
    field: "revokeUserTokens",
    actors: ALL,
    foreign: (home) => home.member.id,
    call: (w, auth, id) => request(w.url, RevokeUserTokens, { userId: id }, auth),
  },
  {
    name: "editMessage(id)",
    field: "editMessage",
    actors: ALL,
    foreign: (home) => home.message,
    call: (w, auth, id) => request(w.url, EditMessage, { id, body: "rewritten" }, auth),
  },
  {
    name: "deleteMessage(id)",
    field: "deleteMessage",
    actors: ALL,
    foreign: (home) => home.message,
    call: (w, auth, id) => request(w.url, DeleteMessage, { id }, auth),
  },
  {
    name: "setMemberRole(conversationId)",
    field: "setMemberRole",
    actors: ALL,
    foreign: (home) => home.group,
    call: (w, auth, id) =>
      request(w.url, SetMemberRole, { conversationId: id, userId: w.home.member.id, role: "OWNER" }, auth),
  },
  {
    // The tenant owner is not in the group, so only the API key and the group's owner get this far.
    name: "setMemberRole(userId) with a foreign user in the own group",
    field: "setMemberRole",
    actors: BOTH,
    foreign: (home) => home.member.id,
    call: (w, auth, id) =>
      request(w.url, SetMemberRole, { conversationId: w.intruder.group, userId: id, role: "ADMIN" }, auth),
  },
  {
    name: "updateTenant(input.defaultRoleId)",
    field: "updateTenant",
    actors: PRIVILEGED,
    foreign: (home) => home.role,
    call: (w, auth, id) => request(w.url, UpdateTenantWithDefaultRole, { input: { defaultRoleId: id } }, auth),
  },
  {
    name: "pinMessage(id)",
    field: "pinMessage",
    actors: ALL,
    foreign: (home) => home.message,
    call: (w, auth, id) => request(w.url, PinMessage, { id }, auth),
  },
  {
    name: "unpinMessage(id)",
    field: "unpinMessage",
    actors: ALL,
    foreign: (home) => home.pinned,
    call: (w, auth, id) => request(w.url, UnpinMessage, { id }, auth),
  },
  {
    name: "addReaction(messageId)",
    field: "addReaction",
    actors: USERS,
    foreign: (home) => home.message,
    call: (w, auth, id) => request(w.url, AddReaction, { messageId: id, emoji: "👎" }, auth),
  },
  {
    // The home member reacted with 👍: the foreign call must not take it back.
    name: "removeReaction(messageId)",
    field: "removeReaction",
    actors: USERS,
    foreign: (home) => home.message,
    call: (w, auth, id) => request(w.url, RemoveReaction, { messageId: id, emoji: "👍" }, auth),
  },
  {
    name: "searchMessages(conversationId) of a group",
    field: "searchMessages",
    actors: ALL,
    foreign: (home) => home.group,
    call: (w, auth, id) => request(w.url, SearchMessages, { first: 100, query: w.home.word, conversationId: id }, auth),
  },
  {
    name: "searchMessages(conversationId) of a direct conversation",
    field: "searchMessages",
    actors: ALL,
    foreign: (home) => home.direct,
    call: (w, auth, id) => request(w.url, SearchMessages, { first: 100, query: w.shared, conversationId: id }, auth),
  },
  {
    name: "uploadAttachment(conversationId)",
    field: "uploadAttachment",
    actors: ALL,
    foreign: (home) => home.group,
    call: (w, auth, id) => uploadAttachment(w.url, id, headersOf(auth)),
  },
  {
    name: "sendMessage(input.attachmentIds) with a foreign upload not sent yet, in the own group",
    field: "sendMessage",
    actors: BOTH,
    foreign: (home) => home.upload,
    call: (w, auth, id) =>
      request(
        w.url,
        SendMessage,
        { input: { conversationId: w.intruder.group, body: "mine now", attachmentIds: [id] } },
        auth,
      ),
  },
  {
    name: "sendMessage(input.attachmentIds) with a foreign attachment already sent, in the own group",
    field: "sendMessage",
    actors: BOTH,
    foreign: (home) => home.attachment,
    call: (w, auth, id) =>
      request(
        w.url,
        SendMessage,
        { input: { conversationId: w.intruder.group, body: "mine now", attachmentIds: [id] } },
        auth,
      ),
  },
  {
    // Mentioning someone who is not a member is BAD_USER_INPUT; a foreign user is just that.
    name: "sendMessage(input.mentionedUserIds) with a foreign user, in the own group",
    field: "sendMessage",
    actors: BOTH,
    code: "BAD_USER_INPUT",
    foreign: (home) => home.member.id,
    call: (w, auth, id) =>
      request(
        w.url,
        SendMessage,
        { input: { conversationId: w.intruder.group, body: "hi @you", mentionedUserIds: [w.intruder.member.id, id] } },
        auth,
      ),
  },
  {
    name: "revokeSession(id)",
    field: "revokeSession",
    actors: SESSION_USERS,
    foreign: (home) => home.signedUp.session,
    call: (w, auth, id) => request(w.url, RevokeSession, { id }, auth),
  },
];

/** Lookups that answer null, without an error, for an id that does not exist. */
const foreignNullCases: ForeignIdCase[] = [
  {
    name: "user(id)",
    field: "user",
    actors: BOTH,
    foreign: (home) => home.member.id,
    call: (w, auth, id) => request(w.url, User, { id }, auth),
  },
  {
    name: "role(id) of a custom role",
    field: "role",
    actors: PRIVILEGED,
    foreign: (home) => home.role,
    call: (w, auth, id) => request(w.url, Role, { id }, auth),
  },
  {
    name: "role(id) of a system role",
    field: "role",
    actors: PRIVILEGED,
    foreign: (home) => home.ownerRole,
    call: (w, auth, id) => request(w.url, Role, { id }, auth),
  },
];

const withActors = <C extends { name: string; actors: Actor[] }>(cases: C[]) =>
  cases.flatMap((c) => c.actors.map((actor) => ({ ...c, actor, name: `${c.name} as the foreign ${actor}` })));

type Subscribe = (client: Client, conversationId: string) => Subscription<unknown>;

/** The subscriptions that take a conversation id. */
const subscriptionCases: { name: string; open: Subscribe }[] = [
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
];

/** The oldest of the newest messages of a conversation, read with the tenant's API key. */
async function aMessageOf(w: World, conversationId: string): Promise<string> {
  const page = await ok(w.url, Messages, { last: 50, conversationId }, { apiKey: w.home.apiKey });
  return page.messages.edges[0]?.node.id as string;
}

/** Operations on a conversation of the same tenant, made by a user who is not a member. */
const nonMemberCases: {
  name: string;
  field: string;
  call: (w: World, conversationId: string) => Promise<GqlResult<unknown>>;
}[] = [
  {
    name: "conversation(id)",
    field: "conversation",
    call: (w, id) => request(w.url, Conversation, { id }, { token: w.home.outsider.token }),
  },
  {
    name: "messages(conversationId)",
    field: "messages",
    call: (w, id) => request(w.url, Messages, { last: 50, conversationId: id }, { token: w.home.outsider.token }),
  },
  {
    name: "sendMessage(input.conversationId)",
    field: "sendMessage",
    call: (w, id) =>
      request(
        w.url,
        SendMessage,
        { input: { conversationId: id, body: "let me in" } },
        { token: w.home.outsider.token },
      ),
  },
  {
    name: "markRead(conversationId)",
    field: "markRead",
    call: async (w, id) => {
      const page = await ok(w.url, Messages, { last: 50, conversationId: id }, { apiKey: w.home.apiKey });
      const upToMessageId = page.messages.edges[0]?.node.id as string;
      return request(w.url, MarkRead, { conversationId: id, upToMessageId }, { token: w.home.outsider.token });
    },
  },
  {
    name: "setTyping(conversationId)",
    field: "setTyping",
    call: (w, id) =>
      request(w.url, SetTyping, { conversationId: id, isTyping: true }, { token: w.home.outsider.token }),
  },
  {
    name: "searchMessages(conversationId)",
    field: "searchMessages",
    call: (w, id) =>
      request(
        w.url,
        SearchMessages,
        { first: 100, query: w.shared, conversationId: id },
        { token: w.home.outsider.token },
      ),
  },
  {
    name: "uploadAttachment(conversationId)",
    field: "uploadAttachment",
    call: (w, id) => uploadAttachment(w.url, id, headersOf({ token: w.home.outsider.token })),
  },
  {
    name: "pinMessage(id) of a message in it",
    field: "pinMessage",
    call: async (w, id) =>
      request(w.url, PinMessage, { id: await aMessageOf(w, id) }, { token: w.home.outsider.token }),
  },
  {
    name: "unpinMessage(id) of a message in it",
    field: "unpinMessage",
    call: async (w, id) =>
      request(w.url, UnpinMessage, { id: await aMessageOf(w, id) }, { token: w.home.outsider.token }),
  },
  {
    name: "addReaction(messageId) of a message in it",
    field: "addReaction",
    call: async (w, id) =>
      request(
        w.url,
        AddReaction,
        { messageId: await aMessageOf(w, id), emoji: "👀" },
        { token: w.home.outsider.token },
      ),
  },
  {
    name: "removeReaction(messageId) of a message in it",
    field: "removeReaction",
    call: async (w, id) =>
      request(
        w.url,
        RemoveReaction,
        { messageId: await aMessageOf(w, id), emoji: "👍" },
        { token: w.home.outsider.token },
      ),
  },
];

/** uploadAttachment as a GraphQL multipart request (a one-line text file). */
async function uploadAttachment(
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
const anyId = () => randomUUID();

/**
 * Root fields that need no credentials by design: creating a tenant (guarded by
 * PLATFORM_ADMIN_KEY when set) and the ways an end user obtains credentials.
 */
const PUBLIC_ROOT_FIELDS = new Set([
  "createTenant",
  "signUp",
  "signIn",
  "signInWithEmailCode",
  "refreshSession",
  "requestEmailCode",
  "resetPassword",
]);

/** Every root field but the public ones, called without credentials (some in more than one form). */
const anonymousCases: { field: string; form?: string; call: (url: string) => Promise<GqlResult<unknown>> }[] = [
  { field: "viewer", call: (url) => request(url, Viewer, {}) },
  { field: "tenant", call: (url) => request(url, Tenant, {}) },
  { field: "user", call: (url) => request(url, User, { id: anyId() }) },
  { field: "users", call: (url) => request(url, Users, { first: 100 }) },
  { field: "conversation", call: (url) => request(url, Conversation, { id: anyId() }) },
  { field: "conversations", call: (url) => request(url, Conversations, {}) },
  { field: "messages", call: (url) => request(url, Messages, { last: 50, conversationId: anyId() }) },
  { field: "updateTenant", call: (url) => request(url, UpdateTenant, { input: { name: "Mine now" } }) },
  { field: "rotateApiKey", call: (url) => request(url, RotateApiKey, {}) },
  { field: "issueUserToken", call: (url) => request(url, IssueUserToken, { userId: anyId() }) },
  { field: "createUser", call: (url) => request(url, CreateUser, { input: { name: "Nobody" } }) },
  { field: "updateUser", call: (url) => request(url, UpdateUser, { id: anyId(), input: { name: "Nobody" } }) },
  { field: "deleteUser", call: (url) => request(url, DeleteUser, { id: anyId() }) },
  { field: "createGroup", call: (url) => request(url, CreateGroup, { input: { name: "Nobody's" } }) },
  { field: "updateGroup", call: (url) => request(url, UpdateGroup, { id: anyId(), input: { name: "x" } }) },
  { field: "deleteGroup", call: (url) => request(url, DeleteGroup, { id: anyId() }) },
  { field: "addMembers", call: (url) => request(url, AddMembers, { conversationId: anyId(), userIds: [anyId()] }) },
  { field: "removeMember", call: (url) => request(url, RemoveMember, { conversationId: anyId(), userId: anyId() }) },
  { field: "openDirectConversation", call: (url) => request(url, OpenDirect, { userId: anyId() }) },
  {
    field: "sendMessage",
    call: (url) => request(url, SendMessage, { input: { conversationId: anyId(), body: "hi" } }),
  },
  { field: "markRead", call: (url) => request(url, MarkRead, { conversationId: anyId(), upToMessageId: anyId() }) },
  { field: "setTyping", call: (url) => request(url, SetTyping, { conversationId: anyId(), isTyping: true }) },
  // Over HTTP, Yoga runs subscriptions too (a single result, or server-sent events).
  { field: "messageAdded", call: (url) => request(url, MessageAdded, { conversationId: anyId() }) },
  { field: "typing", call: (url) => request(url, Typing, { conversationId: anyId() }) },
  { field: "readReceipt", call: (url) => request(url, ReadReceipt, { conversationId: anyId() }) },
  // Roles, audit and moderation, sent as plain documents.
  { field: "role", call: (url) => request(url, `query { role(id: "${anyId()}") { id } }`) },
  { field: "roles", call: (url) => request(url, "query { roles { id } }") },
  { field: "permissionCatalog", call: (url) => request(url, "query { permissionCatalog }") },
  { field: "auditLog", call: (url) => request(url, "query { auditLog { edges { node { id } } } }") },
  {
    field: "createRole",
    call: (url) => request(url, 'mutation { createRole(input: { name: "x", permissions: [] }) { id } }'),
  },
  {
    field: "updateRole",
    call: (url) => request(url, `mutation { updateRole(id: "${anyId()}", input: { name: "x" }) { id } }`),
  },
  { field: "deleteRole", call: (url) => request(url, `mutation { deleteRole(id: "${anyId()}") }`) },
  {
    field: "assignRole",
    call: (url) => request(url, `mutation { assignRole(userId: "${anyId()}", roleId: "${anyId()}") { id } }`),
  },
  {
    field: "unassignRole",
    call: (url) => request(url, `mutation { unassignRole(userId: "${anyId()}", roleId: "${anyId()}") { id } }`),
  },
  { field: "revokeUserTokens", call: (url) => request(url, `mutation { revokeUserTokens(userId: "${anyId()}") }`) },
  {
    field: "editMessage",
    call: (url) => request(url, `mutation { editMessage(id: "${anyId()}", body: "x") { id } }`),
  },
  { field: "deleteMessage", call: (url) => request(url, `mutation { deleteMessage(id: "${anyId()}") { id } }`) },
  // Message features: threads, reactions, pins, search, the event stream.
  { field: "searchMessages", call: (url) => request(url, SearchMessages, { first: 100, query: "x" }) },
  {
    field: "searchMessages",
    form: "with conversationId",
    call: (url) => request(url, SearchMessages, { first: 100, query: "x", conversationId: anyId() }),
  },
  { field: "addReaction", call: (url) => request(url, AddReaction, { messageId: anyId(), emoji: "👍" }) },
  { field: "removeReaction", call: (url) => request(url, RemoveReaction, { messageId: anyId(), emoji: "👍" }) },
  { field: "pinMessage", call: (url) => request(url, PinMessage, { id: anyId() }) },
  { field: "unpinMessage", call: (url) => request(url, UnpinMessage, { id: anyId() }) },
  // End-user accounts: what needs a signed-in user.
  { field: "sessions", call: (url) => request(url, Sessions, {}) },
  { field: "signOut", call: (url) => request(url, "mutation { signOut }") },
  { field: "signOutEverywhere", call: (url) => request(url, "mutation { signOutEverywhere }") },
  { field: "revokeSession", call: (url) => request(url, RevokeSession, { id: anyId() }) },
  { field: "verifyEmail", call: (url) => request(url, 'mutation { verifyEmail(code: "123456") { id } }') },
  {
    field: "requestEmailChange",
    call: (url) => request(url, 'mutation { requestEmailChange(newEmail: "new@example.com") }'),
  },
  {
    field: "changePassword",
    call: (url) =>
      request(
        url,
        'mutation { changePassword(input: { currentPassword: "old password 1", newPassword: "new password 2" }) }',
      ),
  },
  {
    field: "updateProfile",
    call: (url) => request(url, 'mutation { updateProfile(input: { name: "Nobody" }) { id } }'),
  },
  {
    // A multipart request without any credential header is refused before GraphQL (415, see
    // hardening.test.ts); the nearest anonymous upload presents a token that verifies to nobody.
    field: "uploadAttachment",
    call: (url) => uploadAttachment(url, anyId(), { authorization: "Bearer not-a-token" }),
  },
  { field: "conversationEvents", call: (url) => request(url, ConversationEvents, { conversationId: anyId() }) },
  { field: "conversationEvents", form: "without conversationId", call: (url) => request(url, ConversationEvents, {}) },
  {
    field: "setMemberRole",
    call: (url) =>
      request(
        url,
        `mutation { setMemberRole(conversationId: "${anyId()}", userId: "${anyId()}", role: ADMIN) { id } }`,
      ),
  },
];

const MALFORMED_IDS = ["abc", '\'; DROP TABLE "User"; --'];

/** Each call passes `bad` in exactly one id argument, named by `field`; everything else is valid. */
const malformedIdCases: {
  name: string;
  field: string;
  call: (w: World, bad: string) => Promise<GqlResult<unknown>>;
}[] = [
  {
    name: "user(id)",
    field: "id",
    call: (w, bad) => request(w.url, User, { id: bad }, { apiKey: w.home.apiKey }),
  },
  {
    name: "updateUser(id)",
    field: "id",
    call: (w, bad) => request(w.url, UpdateUser, { id: bad, input: { name: "x" } }, { apiKey: w.home.apiKey }),
  },
  {
    name: "deleteUser(id)",
    field: "id",
    call: (w, bad) => request(w.url, DeleteUser, { id: bad }, { apiKey: w.home.apiKey }),
  },
  {
    name: "issueUserToken(userId)",
    field: "userId",
    call: (w, bad) => request(w.url, IssueUserToken, { userId: bad }, { apiKey: w.home.apiKey }),
  },
  {
    name: "conversation(id)",
    field: "id",
    call: (w, bad) => request(w.url, Conversation, { id: bad }, { token: w.home.owner.token }),
  },
  {
    name: "messages(conversationId)",
    field: "conversationId",
    call: (w, bad) => request(w.url, Messages, { last: 50, conversationId: bad }, { token: w.home.owner.token }),
  },
  {
    name: "createGroup(input.memberIds)",
    field: "input.memberIds",
    call: (w, bad) =>
      request(
        w.url,
        CreateGroup,
        { input: { name: "G", memberIds: [w.home.member.id, bad] } },
        { token: w.home.owner.token },
      ),
  },
  {
    name: "updateGroup(id)",
    field: "id",
    call: (w, bad) => request(w.url, UpdateGroup, { id: bad, input: { name: "x" } }, { token: w.home.owner.token }),
  },
  {
    name: "deleteGroup(id)",
    field: "id",
    call: (w, bad) => request(w.url, DeleteGroup, { id: bad }, { token: w.home.owner.token }),
  },
  {
    name: "addMembers(conversationId)",
    field: "conversationId",
    call: (w, bad) =>
      request(w.url, AddMembers, { conversationId: bad, userIds: [w.home.outsider.id] }, { apiKey: w.home.apiKey }),
  },
  {
    name: "addMembers(userIds)",
    field: "userIds",
    call: (w, bad) =>
      request(w.url, AddMembers, { conversationId: w.home.group, userIds: [bad] }, { apiKey: w.home.apiKey }),
  },
  {
    name: "removeMember(conversationId)",
    field: "conversationId",
    call: (w, bad) =>
      request(w.url, RemoveMember, { conversationId: bad, userId: w.home.member.id }, { apiKey: w.home.apiKey }),
  },
  {
    name: "removeMember(userId)",
    field: "userId",
    call: (w, bad) =>
      request(w.url, RemoveMember, { conversationId: w.home.group, userId: bad }, { apiKey: w.home.apiKey }),
  },
  {
    name: "openDirectConversation(userId)",
    field: "userId",
    call: (w, bad) => request(w.url, OpenDirect, { userId: bad }, { token: w.home.owner.token }),
  },
  {
    name: "sendMessage(input.conversationId)",
    field: "input.conversationId",
    call: (w, bad) =>
      request(w.url, SendMessage, { input: { conversationId: bad, body: "x" } }, { token: w.home.owner.token }),
  },
  {
    name: "sendMessage(input.recipientId)",
    field: "input.recipientId",
    call: (w, bad) =>
      request(w.url, SendMessage, { input: { recipientId: bad, body: "x" } }, { token: w.home.owner.token }),
  },
  {
    name: "sendMessage(input.replyToId)",
    field: "input.replyToId",
    call: (w, bad) =>
      request(
        w.url,
        SendMessage,
        { input: { conversationId: w.home.group, replyToId: bad, body: "x" } },
        { token: w.home.owner.token },
      ),
  },
  {
    name: "sendMessage(input.senderId)",
    field: "input.senderId",
    call: (w, bad) =>
      request(
        w.url,
        SendMessage,
        { input: { conversationId: w.home.group, senderId: bad, body: "x" } },
        { apiKey: w.home.apiKey },
      ),
  },
  {
    name: "markRead(conversationId)",
    field: "conversationId",
    call: (w, bad) =>
      request(w.url, MarkRead, { conversationId: bad, upToMessageId: w.home.message }, { token: w.home.member.token }),
  },
  {
    name: "markRead(upToMessageId)",
    field: "upToMessageId",
    call: (w, bad) =>
      request(w.url, MarkRead, { conversationId: w.home.group, upToMessageId: bad }, { token: w.home.member.token }),
  },
  {
    name: "setTyping(conversationId)",
    field: "conversationId",
    call: (w, bad) =>
      request(w.url, SetTyping, { conversationId: bad, isTyping: true }, { token: w.home.member.token }),
  },
  {
    name: "role(id)",
    field: "id",
    call: (w, bad) => request(w.url, Role, { id: bad }, { apiKey: w.home.apiKey }),
  },
  {
    name: "updateRole(id)",
    field: "id",
    call: (w, bad) => request(w.url, UpdateRole, { id: bad, input: { name: "x" } }, { apiKey: w.home.apiKey }),
  },
  {
    name: "deleteRole(id)",
    field: "id",
    call: (w, bad) => request(w.url, DeleteRole, { id: bad }, { apiKey: w.home.apiKey }),
  },
  {
    name: "assignRole(userId)",
    field: "userId",
    call: (w, bad) => request(w.url, AssignRole, { userId: bad, roleId: w.home.role }, { apiKey: w.home.apiKey }),
  },
  {
    name: "assignRole(roleId)",
    field: "roleId",
    call: (w, bad) =>
      request(w.url, AssignRole, { userId: w.home.outsider.id, roleId: bad }, { apiKey: w.home.apiKey }),
  },
  {
    name: "unassignRole(userId)",
    field: "userId",
    call: (w, bad) => request(w.url, UnassignRole, { userId: bad, roleId: w.home.role }, { apiKey: w.home.apiKey }),
  },
  {
    name: "unassignRole(roleId)",
    field: "roleId",
    call: (w, bad) =>
      request(w.url, UnassignRole, { userId: w.home.member.id, roleId: bad }, { apiKey: w.home.apiKey }),
  },
  {
    name: "revokeUserTokens(userId)",
    field: "userId",
    call: (w, bad) => request(w.url, RevokeUserTokens, { userId: bad }, { apiKey: w.home.apiKey }),
  },
  {
    name: "editMessage(id)",
    field: "id",
    call: (w, bad) => request(w.url, EditMessage, { id: bad, body: "x" }, { token: w.home.owner.token }),
  },
  {
    name: "deleteMessage(id)",
    field: "id",
    call: (w, bad) => request(w.url, DeleteMessage, { id: bad }, { token: w.home.owner.token }),
  },
  {
    name: "setMemberRole(conversationId)",
    field: "conversationId",
    call: (w, bad) =>
      request(
        w.url,
        SetMemberRole,
        { conversationId: bad, userId: w.home.member.id, role: "ADMIN" },
        { apiKey: w.home.apiKey },
      ),
  },
  {
    name: "setMemberRole(userId)",
    field: "userId",
    call: (w, bad) =>
      request(
        w.url,
        SetMemberRole,
        { conversationId: w.home.group, userId: bad, role: "ADMIN" },
        { apiKey: w.home.apiKey },
      ),
  },
  {
    name: "updateTenant(input.defaultRoleId)",
    field: "input.defaultRoleId",
    call: (w, bad) =>
      request(w.url, UpdateTenantWithDefaultRole, { input: { defaultRoleId: bad } }, { apiKey: w.home.apiKey }),
  },
  {
    name: "pinMessage(id)",
    field: "id",
    call: (w, bad) => request(w.url, PinMessage, { id: bad }, { token: w.home.owner.token }),
  },
  {
    name: "unpinMessage(id)",
    field: "id",
    call: (w, bad) => request(w.url, UnpinMessage, { id: bad }, { token: w.home.owner.token }),
  },
  {
    name: "addReaction(messageId)",
    field: "messageId",
    call: (w, bad) => request(w.url, AddReaction, { messageId: bad, emoji: "👍" }, { token: w.home.owner.token }),
  },
  {
    name: "removeReaction(messageId)",
    field: "messageId",
    call: (w, bad) => request(w.url, RemoveReaction, { messageId: bad, emoji: "👍" }, { token: w.home.owner.token }),
  },
  {
    name: "searchMessages(conversationId)",
    field: "conversationId",
    call: (w, bad) =>
      request(
        w.url,
        SearchMessages,
        { first: 100, query: w.home.word, conversationId: bad },
        { token: w.home.owner.token },
      ),
  },
  {
    name: "searchMessages(conversationId) with the API key",
    field: "conversationId",
    call: (w, bad) =>
      request(
        w.url,
        SearchMessages,
        { first: 100, query: w.home.word, conversationId: bad },
        { apiKey: w.home.apiKey },
      ),
  },
  {
    name: "uploadAttachment(conversationId)",
    field: "conversationId",
    call: (w, bad) => uploadAttachment(w.url, bad, headersOf({ token: w.home.owner.token })),
  },
  {
    name: "sendMessage(input.attachmentIds)",
    field: "input.attachmentIds",
    call: (w, bad) =>
      request(
        w.url,
        SendMessage,
        { input: { conversationId: w.home.group, body: "x", attachmentIds: [bad] } },
        { token: w.home.owner.token },
      ),
  },
  {
    name: "sendMessage(input.mentionedUserIds)",
    field: "input.mentionedUserIds",
    call: (w, bad) =>
      request(
        w.url,
        SendMessage,
        { input: { conversationId: w.home.group, body: "x", mentionedUserIds: [w.home.member.id, bad] } },
        { token: w.home.owner.token },
      ),
  },
  {
    name: "revokeSession(id)",
    field: "id",
    call: (w, bad) => request(w.url, RevokeSession, { id: bad }, { token: w.home.signedUp.token }),
  },
];

/** Every case once per kind of conversation. */
const inBothKinds = <C extends { name: string }>(cases: C[]) =>
  cases.flatMap((c) =>
    (["group", "direct conversation"] as const).map((kind) => ({ ...c, kind, name: `${c.name} in a ${kind}` })),
  );

/** it.each rows titled by the case name (`$name` would be quoted and truncated). */
const named = <C extends { name: string }>(cases: C[]) => cases.map((c) => [c.name, c] as const);

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

describe.each(backends())("access rules on %s", (backend) => {
  let database: TestDatabase;
  let server: TestServer;
  let dataDir: string;
  const w = {} as World;

  beforeAll(async () => {
    database = await createTestDatabase(backend);
    // Uploads and the sign-up mail outbox stay in a directory of this run.
    dataDir = await mkdtemp(join(tmpdir(), "chat-access-"));
    server = await startServer(database, { dataDir, attachmentsDir: join(dataDir, "attachments") });
    w.url = server.url;
    w.wsUrl = server.wsUrl;
    w.shared = `shared${word()}`;
    w.home = await createSide(w.url, "Home", w.shared);
    w.intruder = await createSide(w.url, "Intruder", w.shared);
  });
  afterAll(async () => {
    await server?.stop();
    await database?.drop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  describe("an id of another tenant behaves like an id that does not exist", () => {
    it.each(named(withActors(foreignNullCases)))(
      "%s is null without an error, as for an unknown id",
      async (_, { actor, foreign, call, field }) => {
        const auth = authOf(w.intruder, actor);
        for (const id of [foreign(w.home), randomUUID()]) {
          const result = await call(w, auth, id);
          expect(result.errors, JSON.stringify(result)).toBeUndefined();
          expect(result.data).toEqual({ [field]: null });
        }
      },
    );

    it.each(withActors(foreignIdCases).map((c) => [`${c.name}: ${c.code ?? "NOT_FOUND"}`, c] as const))(
      "%s",
      async (_, { actor, foreign, call, field, code = "NOT_FOUND" }) => {
        const auth = authOf(w.intruder, actor);
        const before = [await stateOf(w, w.home), await stateOf(w, w.intruder)];
        const viaForeign = await call(w, auth, foreign(w.home));
        const viaUnknown = await call(w, auth, randomUUID());
        const foreignError = firstError(viaForeign);
        const unknownError = firstError(viaUnknown);
        expect(foreignError.extensions?.code, JSON.stringify(viaForeign)).toBe(code);
        expect(unknownError.extensions?.code, JSON.stringify(viaUnknown)).toBe(code);
        expect(foreignError.message).toBe(unknownError.message);
        expect(foreignError.extensions).toEqual(unknownError.extensions);
        expect(viaForeign.status).toBe(viaUnknown.status);
        expect(fieldOf(viaForeign, field)).toBeNull();
        expectNoLeak(w.home.secrets, viaForeign);
        // Nothing changed on either side: no foreign row was touched, no own row pointed abroad.
        expect([await stateOf(w, w.home), await stateOf(w, w.intruder)]).toEqual(before);
      },
    );

    it.each(PRIVILEGED)("roles lists only the tenant's own roles (foreign %s)", async (actor) => {
      const result = await request(w.url, Roles, {}, authOf(w.intruder, actor));
      expect(result.errors, JSON.stringify(result)).toBeUndefined();
      const ids = result.data?.roles.map((r) => r.id) ?? [];
      expect(ids).toContain(w.intruder.role);
      expect(ids).not.toContain(w.home.role);
      expect(ids).not.toContain(w.home.ownerRole);
      expectNoLeak(w.home.secrets, result);
    });

    it.each(named(withActors(subscriptionCases.map((c) => ({ ...c, actors: BOTH })))))(
      "%s: NOT_FOUND at subscribe time, and no event",
      async (_, { actor, open }) => {
        const client = wsClient(w.wsUrl, authOf(w.intruder, actor));
        try {
          const viaForeign = open(client, w.home.group);
          // Activity the foreign subscription must not see.
          await ok(
            w.url,
            SendMessage,
            { input: { conversationId: w.home.group, body: "news" } },
            { token: w.home.owner.token },
          );
          await ok(w.url, SetTyping, { conversationId: w.home.group, isTyping: true }, { token: w.home.owner.token });
          await ok(
            w.url,
            MarkRead,
            { conversationId: w.home.group, upToMessageId: w.home.message },
            { token: w.home.member.token },
          );
          const foreignError = await expectRefused(viaForeign, "NOT_FOUND");
          const unknownError = await expectRefused(open(client, randomUUID()), "NOT_FOUND");
          expect(foreignError.message).toBe(unknownError.message);
          expect(foreignError.extensions).toEqual(unknownError.extensions);
          expectNoLeak(w.home.secrets, foreignError);
        } finally {
          await client.dispose();
        }
      },
    );

    it.each(BOTH)("messageAdded without an id never carries another tenant's messages (foreign %s)", async (actor) => {
      const intruderClient = wsClient(w.wsUrl, authOf(w.intruder, actor));
      const memberClient = wsClient(w.wsUrl, { token: w.home.member.token });
      try {
        const intruderFeed = subscribe(intruderClient, MessageAdded, {});
        const memberFeed = subscribe(memberClient, MessageAdded, {});
        const pokeIntruder = () =>
          ok(
            w.url,
            SendMessage,
            { input: { conversationId: w.intruder.group, body: "probe" } },
            { apiKey: w.intruder.apiKey },
          );
        await whenLive(intruderFeed, pokeIntruder);
        await whenLive(memberFeed, () =>
          ok(w.url, SendMessage, { input: { conversationId: w.home.group, body: "probe" } }, { apiKey: w.home.apiKey }),
        );
        for (const conversationId of [w.home.group, w.home.direct]) {
          await ok(w.url, SendMessage, { input: { conversationId, body: "home only" } }, { token: w.home.owner.token });
        }
        expect(bodiesOf(await memberFeed.take(2))).toEqual(["home only", "home only"]);
        // A fence in the intruder's own conversation: anything leaked would have arrived first.
        await pokeIntruder();
        const next = await intruderFeed.next();
        expect(next.data?.messageAdded.conversation.id).toBe(w.intruder.group);
        await intruderFeed.expectSilence(200);
      } finally {
        await intruderClient.dispose();
        await memberClient.dispose();
      }
    });

    it.each(ALL)(
      "searchMessages without conversationId never finds another tenant's messages (foreign %s)",
      async (actor) => {
        // The words are searchable: each tenant's API key finds its own seeded messages with them.
        for (const side of [w.home, w.intruder]) {
          for (const query of [side.word, w.shared]) {
            const { searchMessages } = await ok(w.url, SearchMessages, { first: 100, query }, { apiKey: side.apiKey });
            expect(searchMessages.edges.map((e) => e.node.id)).toEqual(
              expect.arrayContaining([side.message, side.pinned]),
            );
          }
        }
        const auth = authOf(w.intruder, actor);
        const own = await ok(w.url, Conversations, {}, auth);
        const ownConversations = own.conversations.edges.map((e) => e.node.id);
        const queries = [
          w.home.word,
          w.shared,
          `"${w.home.word}"`,
          `${w.home.word} OR ${w.shared}`,
          `${w.shared} -${w.intruder.word}`,
          "secret",
          "Home",
        ];
        for (const query of queries) {
          const result = await request(w.url, SearchMessages, { first: 100, query }, auth);
          expect(result.errors, JSON.stringify(result)).toBeUndefined();
          const hits = result.data?.searchMessages.edges.map((e) => e.node) ?? [];
          for (const hit of hits) {
            expect(ownConversations, `${query} found ${JSON.stringify(hit)}`).toContain(hit.conversation.id);
          }
          expect(hits.map((hit) => hit.id)).not.toContain(w.home.message);
          expect(hits.map((hit) => hit.id)).not.toContain(w.home.pinned);
          expectNoLeak(w.home.secrets, result);
        }
        // The shared word finds the intruder's own messages wherever it reads them.
        const { searchMessages } = await ok(w.url, SearchMessages, { first: 100, query: w.shared }, auth);
        if (actor !== "tenant owner token") {
          expect(searchMessages.edges.map((e) => e.node.id)).toEqual(
            expect.arrayContaining([w.intruder.message, w.intruder.pinned]),
          );
        }
      },
    );

    it.each(ALL)("GET /attachments/<id> of another tenant answers like an unknown id (foreign %s)", async (actor) => {
      const headers = headersOf(authOf(w.intruder, actor));
      // The ids are real: home downloads both.
      expect((await download(w, w.home.attachment, headersOf({ apiKey: w.home.apiKey }))).status).toBe(200);
      expect((await download(w, w.home.upload, headersOf({ token: w.home.owner.token }))).status).toBe(200);
      const unknown = await download(w, randomUUID(), headers);
      expect(unknown.status, unknown.body).toBe(404);
      for (const id of [w.home.attachment, w.home.upload]) {
        const foreign = await download(w, id, headers);
        expect(foreign).toEqual(unknown);
        expectNoLeak(w.home.secrets, foreign);
      }
    });

    it("GET /attachments/<malformed id> is not found either, and reveals nothing", async () => {
      for (const bad of MALFORMED_IDS) {
        const response = await download(w, encodeURIComponent(bad), headersOf({ apiKey: w.home.apiKey }));
        expect(response.status, response.body).toBe(404);
        expectNoLeak(w.home.secrets, response);
      }
    });

    it.each(BOTH)(
      "conversationEvents without an id never carries another tenant's events (foreign %s)",
      async (actor) => {
        const intruderClient = wsClient(w.wsUrl, authOf(w.intruder, actor));
        const memberClient = wsClient(w.wsUrl, { token: w.home.member.token });
        try {
          const intruderFeed = subscribe(intruderClient, ConversationEvents, {});
          const memberFeed = subscribe(memberClient, ConversationEvents, {});
          const pokeIntruder = () =>
            ok(
              w.url,
              SendMessage,
              { input: { conversationId: w.intruder.group, body: "probe" } },
              { apiKey: w.intruder.apiKey },
            );
          await whenLive(intruderFeed, pokeIntruder);
          await whenLive(memberFeed, () =>
            ok(
              w.url,
              SendMessage,
              { input: { conversationId: w.home.group, body: "probe" } },
              { apiKey: w.home.apiKey },
            ),
          );
          // Every kind of event, in home's conversations; a home member sees them all.
          const seen = await stirHome(w, memberFeed);
          expect([...new Set(seen)].sort()).toEqual([...EVENT_TYPES].sort());
          // A fence in the intruder's own conversation: anything leaked would have arrived first.
          await pokeIntruder();
          const received = [await intruderFeed.next(), ...(await drain(intruderFeed, 200))];
          expect(received.map((e) => e.data?.conversationEvents.conversationId)).toEqual([w.intruder.group]);
          expectNoLeak(w.home.secrets, received);
        } finally {
          await intruderClient.dispose();
          await memberClient.dispose();
        }
      },
    );

    it.each(SESSION_USERS)("sessions never lists another tenant's sessions (foreign %s)", async (actor) => {
      const result = await request(w.url, Sessions, {}, authOf(w.intruder, actor));
      expect(result.errors, JSON.stringify(result)).toBeUndefined();
      const ids = result.data?.sessions.map((s) => s.id) ?? [];
      expect(ids).not.toContain(w.home.signedUp.session);
      if (actor === "session token") expect(ids).toEqual([w.intruder.signedUp.session]);
      else expect(ids).toEqual([]);
      expectNoLeak(w.home.secrets, result);
      // And home still sees its own.
      const home = await ok(w.url, Sessions, {}, { token: w.home.signedUp.token });
      expect(home.sessions.map((s) => s.id)).toEqual([w.home.signedUp.session]);
    });
  });

  describe("a user of the same tenant who is not a member is FORBIDDEN", () => {
    it.each(named(inBothKinds(nonMemberCases)))("%s", async (_, c) => {
      const conversationId = c.kind === "group" ? w.home.group : w.home.direct;
      const result = await c.call(w, conversationId);
      expect(firstError(result).extensions?.code, JSON.stringify(result)).toBe("FORBIDDEN");
      expect(fieldOf(result, c.field)).toBeNull();
    });

    it.each(named(inBothKinds(subscriptionCases)))("%s", async (_, c) => {
      const conversation = c.kind === "group" ? w.home.group : w.home.direct;
      const client = wsClient(w.wsUrl, { token: w.home.outsider.token });
      try {
        await expectRefused(c.open(client, conversation), "FORBIDDEN");
      } finally {
        await client.dispose();
      }
    });

    it("messageAdded without an id carries only the viewer's conversations", async () => {
      const tenant = await createTenant(w.url, ["Ann", "Ben", "Cid"]);
      const [ann, ben, cid] = tenant.users as [TestUser, TestUser, TestUser];
      const group = (
        await ok(w.url, CreateGroup, { input: { name: "A+B", memberIds: [ben.id] } }, { token: ann.token })
      ).createGroup.id;
      const cidsOwn = (await ok(w.url, CreateGroup, { input: { name: "Cid alone" } }, { token: cid.token })).createGroup
        .id;
      const benClient = wsClient(w.wsUrl, { token: ben.token });
      const cidClient = wsClient(w.wsUrl, { token: cid.token });
      try {
        const benFeed = subscribe(benClient, MessageAdded, {});
        const cidFeed = subscribe(cidClient, MessageAdded, {});
        const pokeCid = () =>
          ok(w.url, SendMessage, { input: { conversationId: cidsOwn, body: "fence" } }, { token: cid.token });
        await whenLive(cidFeed, pokeCid);
        await whenLive(benFeed, () =>
          ok(w.url, SendMessage, { input: { conversationId: group, body: "probe" } }, { token: ann.token }),
        );
        for (const body of ["one", "two", "three"]) {
          await ok(w.url, SendMessage, { input: { conversationId: group, body } }, { token: ann.token });
        }
        expect(bodiesOf(await benFeed.take(3))).toEqual(["one", "two", "three"]);
        await pokeCid();
        const next = await cidFeed.next();
        expect(next.data?.messageAdded.conversation.id).toBe(cidsOwn);
        await cidFeed.expectSilence(200);
      } finally {
        await benClient.dispose();
        await cidClient.dispose();
      }
    });
  });

  describe("group management", () => {
    const memberAttempts: {
      name: string;
      field: string;
      call: (url: string, team: Awaited<ReturnType<typeof createTeam>>) => Promise<GqlResult<unknown>>;
    }[] = [
      {
        name: "updateGroup",
        field: "updateGroup",
        call: (url, t) => request(url, UpdateGroup, { id: t.group, input: { name: "Bob's" } }, { token: t.bob.token }),
      },
      {
        name: "deleteGroup",
        field: "deleteGroup",
        call: (url, t) => request(url, DeleteGroup, { id: t.group }, { token: t.bob.token }),
      },
      {
        name: "addMembers",
        field: "addMembers",
        call: (url, t) =>
          request(url, AddMembers, { conversationId: t.group, userIds: [t.dave.id] }, { token: t.bob.token }),
      },
      {
        name: "removeMember of another member",
        field: "removeMember",
        call: (url, t) =>
          request(url, RemoveMember, { conversationId: t.group, userId: t.carol.id }, { token: t.bob.token }),
      },
      {
        name: "removeMember of the owner",
        field: "removeMember",
        call: (url, t) =>
          request(url, RemoveMember, { conversationId: t.group, userId: t.alice.id }, { token: t.bob.token }),
      },
    ];

    it.each(named(memberAttempts))("a plain member cannot %s (FORBIDDEN), and nothing changes", async (_, c) => {
      const team = await createTeam(w.url);
      const result = await c.call(w.url, team);
      expect(firstError(result).extensions?.code, JSON.stringify(result)).toBe("FORBIDDEN");
      expect(fieldOf(result, c.field)).toBeNull();
      const { conversation } = await ok(w.url, Conversation, { id: team.group }, { apiKey: team.apiKey });
      expect(conversation?.name).toBe("Team");
      expect(conversation?.members.map((m) => m.user.id).sort()).toEqual(
        [team.alice.id, team.bob.id, team.carol.id].sort(),
      );
    });

    it("the owner (no admin in the group) can rename, add, remove and delete", async () => {
      const team = await createTeam(w.url);
      const auth = { token: team.alice.token };
      const renamed = await ok(w.url, UpdateGroup, { id: team.group, input: { name: "Renamed" } }, auth);
      expect(renamed.updateGroup.name).toBe("Renamed");
      const added = await ok(w.url, AddMembers, { conversationId: team.group, userIds: [team.dave.id] }, auth);
      expect(added.addMembers.members.map((m) => m.user.id)).toContain(team.dave.id);
      const removed = await ok(w.url, RemoveMember, { conversationId: team.group, userId: team.carol.id }, auth);
      expect(removed.removeMember.members.map((m) => m.user.id)).not.toContain(team.carol.id);
      await fails(w.url, Conversation, { id: team.group }, { token: team.carol.token }, "FORBIDDEN");
      const deleted = await ok(w.url, DeleteGroup, { id: team.group }, auth);
      expect(deleted.deleteGroup).toBe(team.group);
      await fails(w.url, Conversation, { id: team.group }, { apiKey: team.apiKey }, "NOT_FOUND");
    });

    it.each(["bob", "alice"] as const)("anyone can remove themselves (%s)", async (who) => {
      const team = await createTeam(w.url);
      const user = team[who];
      if (who === "alice") {
        // The last owner of a group with members hands ownership on before leaving.
        await fails(
          w.url,
          RemoveMember,
          { conversationId: team.group, userId: user.id },
          { token: user.token },
          "CONFLICT",
        );
        await ok(
          w.url,
          SetMemberRole,
          { conversationId: team.group, userId: team.bob.id, role: "OWNER" },
          { token: user.token },
        );
      }
      const left = await ok(
        w.url,
        RemoveMember,
        { conversationId: team.group, userId: user.id },
        { token: user.token },
      );
      expect(left.removeMember.members.map((m) => m.user.id)).not.toContain(user.id);
      await fails(w.url, Conversation, { id: team.group }, { token: user.token }, "FORBIDDEN");
      await fails(
        w.url,
        SendMessage,
        { input: { conversationId: team.group, body: "still here?" } },
        { token: user.token },
        "FORBIDDEN",
      );
    });

    const directAttempts: {
      name: string;
      field: string;
      call: (url: string, t: Awaited<ReturnType<typeof createTeam>>, direct: string) => Promise<GqlResult<unknown>>;
    }[] = [
      {
        name: "updateGroup by a participant",
        field: "id",
        call: (url, t, id) => request(url, UpdateGroup, { id, input: { name: "Ours" } }, { token: t.alice.token }),
      },
      {
        name: "updateGroup by the API key",
        field: "id",
        call: (url, t, id) => request(url, UpdateGroup, { id, input: { name: "Ours" } }, { apiKey: t.apiKey }),
      },
      {
        name: "deleteGroup by a participant",
        field: "id",
        call: (url, t, id) => request(url, DeleteGroup, { id }, { token: t.alice.token }),
      },
      {
        name: "deleteGroup by the API key",
        field: "id",
        call: (url, t, id) => request(url, DeleteGroup, { id }, { apiKey: t.apiKey }),
      },
      {
        name: "leaving it (removeMember of oneself)",
        field: "conversationId",
        call: (url, t, id) =>
          request(url, RemoveMember, { conversationId: id, userId: t.bob.id }, { token: t.bob.token }),
      },
      {
        name: "removeMember by the API key",
        field: "conversationId",
        call: (url, t, id) =>
          request(url, RemoveMember, { conversationId: id, userId: t.bob.id }, { apiKey: t.apiKey }),
      },
      {
        name: "addMembers by the API key",
        field: "conversationId",
        call: (url, t, id) =>
          request(url, AddMembers, { conversationId: id, userIds: [t.dave.id] }, { apiKey: t.apiKey }),
      },
    ];

    it.each(named(directAttempts))(
      "a direct conversation refuses %s (BAD_USER_INPUT naming the argument)",
      async (_, c) => {
        const team = await createTeam(w.url);
        const direct = (await ok(w.url, OpenDirect, { userId: team.bob.id }, { token: team.alice.token }))
          .openDirectConversation.id;
        const result = await c.call(w.url, team, direct);
        const error = firstError(result);
        expect(error.extensions?.code, JSON.stringify(result)).toBe("BAD_USER_INPUT");
        expect(error.extensions?.field, JSON.stringify(result)).toBe(c.field);
        const { conversation } = await ok(w.url, Conversation, { id: direct }, { apiKey: team.apiKey });
        expect(conversation?.members.map((m) => m.user.id).sort()).toEqual([team.alice.id, team.bob.id].sort());
      },
    );

    it("the API key may do everything in its tenant without being a member", async () => {
      const team = await createTeam(w.url);
      const auth = { apiKey: team.apiKey };
      const { conversation } = await ok(w.url, Conversation, { id: team.group }, auth);
      expect(conversation?.id).toBe(team.group);
      const system = await ok(w.url, SendMessage, { input: { conversationId: team.group, body: "notice" } }, auth);
      expect(system.sendMessage).toMatchObject({ type: "SYSTEM", sender: null });
      const asBob = await ok(
        w.url,
        SendMessage,
        { input: { conversationId: team.group, senderId: team.bob.id, body: "from Bob" } },
        auth,
      );
      expect(asBob.sendMessage).toMatchObject({ type: "TEXT", sender: { id: team.bob.id } });
      const page = await ok(w.url, Messages, { last: 50, conversationId: team.group }, auth);
      expect(page.messages.edges.map((e) => e.node.body)).toEqual(["notice", "from Bob"]);

      const client = wsClient(w.wsUrl, auth);
      try {
        const messages = subscribe(client, MessageAdded, { conversationId: team.group });
        const typing = subscribe(client, Typing, { conversationId: team.group });
        const reads = subscribe(client, ReadReceipt, { conversationId: team.group });
        await whenLive(messages, () =>
          ok(w.url, SendMessage, { input: { conversationId: team.group, body: "probe" } }, auth),
        );
        const typed = await whenLive(typing, () =>
          ok(w.url, SetTyping, { conversationId: team.group, isTyping: true }, { token: team.carol.token }),
        );
        expect(typed.data?.typing).toMatchObject({ isTyping: true, user: { id: team.carol.id } });
        const read = await whenLive(reads, () =>
          ok(
            w.url,
            MarkRead,
            { conversationId: team.group, upToMessageId: asBob.sendMessage.id },
            { token: team.carol.token },
          ),
        );
        expect(read.data?.readReceipt).toMatchObject({ lastReadSeq: 2, user: { id: team.carol.id } });
      } finally {
        await client.dispose();
      }

      const renamed = await ok(w.url, UpdateGroup, { id: team.group, input: { name: "By the key" } }, auth);
      expect(renamed.updateGroup.name).toBe("By the key");
      const added = await ok(w.url, AddMembers, { conversationId: team.group, userIds: [team.dave.id] }, auth);
      expect(added.addMembers.members.map((m) => m.user.id)).toContain(team.dave.id);
      const removed = await ok(w.url, RemoveMember, { conversationId: team.group, userId: team.alice.id }, auth);
      expect(removed.removeMember.members.map((m) => m.user.id)).not.toContain(team.alice.id);
      const deleted = await ok(w.url, DeleteGroup, { id: team.group }, auth);
      expect(deleted.deleteGroup).toBe(team.group);
    });
  });

  describe("principals", () => {
    it.each(
      named([
        {
          name: "issueUserToken for another user",
          field: "issueUserToken",
          call: () => request(w.url, IssueUserToken, { userId: w.home.member.id }, { token: w.home.owner.token }),
        },
        {
          name: "issueUserToken for oneself",
          field: "issueUserToken",
          call: () => request(w.url, IssueUserToken, { userId: w.home.owner.id }, { token: w.home.owner.token }),
        },
        {
          name: "rotateApiKey",
          field: "rotateApiKey",
          call: () => request(w.url, RotateApiKey, {}, { token: w.home.owner.token }),
        },
      ]),
    )("a user token cannot call %s (FORBIDDEN)", async (_, { call, field }) => {
      const result = await call();
      expect(firstError(result).extensions?.code, JSON.stringify(result)).toBe("FORBIDDEN");
      expect(fieldOf(result, field)).toBeNull();
      // The tenant's key still works.
      await ok(w.url, Viewer, {}, { apiKey: w.home.apiKey });
    });

    it.each(
      named([
        {
          name: "markRead",
          field: "markRead",
          call: () =>
            request(
              w.url,
              MarkRead,
              { conversationId: w.home.group, upToMessageId: w.home.message },
              { apiKey: w.home.apiKey },
            ),
        },
        {
          name: "setTyping",
          field: "setTyping",
          call: () =>
            request(w.url, SetTyping, { conversationId: w.home.group, isTyping: true }, { apiKey: w.home.apiKey }),
        },
        {
          name: "openDirectConversation",
          field: "openDirectConversation",
          call: () => request(w.url, OpenDirect, { userId: w.home.member.id }, { apiKey: w.home.apiKey }),
        },
      ]),
    )("the API key cannot call %s (FORBIDDEN)", async (_, { call, field }) => {
      const result = await call();
      expect(firstError(result).extensions?.code, JSON.stringify(result)).toBe("FORBIDDEN");
      expect(fieldOf(result, field)).toBeNull();
    });

    it("the anonymous table covers every root field but the reviewed public ones", () => {
      const schema = buildSchema(readFileSync(new URL("../schema.graphql", import.meta.url), "utf8"));
      const roots = [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()];
      const all = roots.flatMap((type) => Object.keys(type?.getFields() ?? {}));
      const covered = [...new Set(anonymousCases.map((c) => c.field))];
      expect(covered.sort()).toEqual(all.filter((f) => !PUBLIC_ROOT_FIELDS.has(f)).sort());
    });

    it.each(anonymousCases.map((c) => [c.form ? `${c.field} ${c.form}` : c.field, c] as const))(
      "anonymous %s: UNAUTHENTICATED",
      async (_, { call, field }) => {
        const result = await call(w.url);
        expect(firstError(result).extensions?.code, JSON.stringify(result)).toBe("UNAUTHENTICATED");
        expect(fieldOf(result, field)).toBeNull();
      },
    );

    it("an anonymous WebSocket is closed with 4403 and delivers nothing", async () => {
      const client = wsClient(w.wsUrl);
      try {
        const sub = subscribe(client, MessageAdded, { conversationId: w.home.group });
        const closed = await Promise.race([client.closed, sleep(5_000).then(() => null)]);
        expect(closed?.code).toBe(4403);
        const outcome = await sub.done;
        expect(outcome.error).toBeDefined();
        expect(await drain(sub)).toEqual([]);
      } finally {
        await client.dispose();
      }
    });
  });

  describe("malformed ids are BAD_USER_INPUT naming the argument", () => {
    const withBadIds = <C extends { name: string }>(cases: C[]) =>
      cases.flatMap((c) => MALFORMED_IDS.map((bad) => ({ ...c, bad, name: `${c.name} = ${JSON.stringify(bad)}` })));

    it.each(named(withBadIds(malformedIdCases)))("%s", async (_, c) => {
      const result = await c.call(w, c.bad);
      const error = firstError(result);
      expect(error.extensions?.code, JSON.stringify(result)).toBe("BAD_USER_INPUT");
      expect(error.extensions?.field, JSON.stringify(result)).toBe(c.field);
    });

    it.each(named(withBadIds(subscriptionCases)))("%s", async (_, c) => {
      const client = wsClient(w.wsUrl, { token: w.home.member.token });
      try {
        const error = await expectRefused(c.open(client, c.bad), "BAD_USER_INPUT");
        expect(error.extensions?.field, JSON.stringify(error)).toBe("conversationId");
      } finally {
        await client.dispose();
      }
    });
  });

  describe("removing a member ends their live messageAdded", () => {
    it.each(["the owner", "the API key", "themselves"] as const)("removed by %s", async (remover) => {
      const team = await createTeam(w.url);
      const { alice, bob, carol } = team;
      const aliceAndBob = (await ok(w.url, OpenDirect, { userId: bob.id }, { token: alice.token }))
        .openDirectConversation.id;
      const bobClient = wsClient(w.wsUrl, { token: bob.token });
      const carolClient = wsClient(w.wsUrl, { token: carol.token });
      const send = (conversationId: string, body: string) =>
        ok(w.url, SendMessage, { input: { conversationId, body } }, { token: alice.token });
      try {
        const bobFeed = subscribe(bobClient, MessageAdded, { conversationId: team.group });
        const bobAll = subscribe(bobClient, MessageAdded, {});
        const carolFeed = subscribe(carolClient, MessageAdded, { conversationId: team.group });
        await whenLive(bobFeed, () => send(team.group, "probe"));
        await whenLive(bobAll, () => send(aliceAndBob, "probe"));
        await whenLive(carolFeed, () => send(team.group, "probe"));
        for (const feed of [bobFeed, bobAll, carolFeed]) await drain(feed);

        const auth =
          remover === "the owner"
            ? { token: alice.token }
            : remover === "the API key"
              ? { apiKey: team.apiKey }
              : { token: bob.token };
        await ok(w.url, RemoveMember, { conversationId: team.group, userId: bob.id }, auth);
        await send(team.group, "after");

        // Carol keeps receiving; Bob's stream of the group ends without the later message.
        expect(bodiesOf([await carolFeed.next()])).toEqual(["after"]);
        await ended(bobFeed);
        expect(bodiesOf(await drain(bobFeed))).not.toContain("after");
        // Bob's all-conversations stream stops carrying the group, and keeps the rest.
        await send(aliceAndBob, "fence");
        expect(bodiesOf([await bobAll.next()])).toEqual(["fence"]);
        await bobAll.expectSilence(200);
      } finally {
        await bobClient.dispose();
        await carolClient.dispose();
      }
    });
  });
});
