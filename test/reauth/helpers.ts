import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { type ExecutionResult, type GraphQLFormattedError, print } from "graphql";
import { expect } from "vitest";
import type { MessageAddedSubscription, ReadReceiptSubscription, TypingSubscription } from "../generated/graphql.ts";
import {
  type Auth,
  drain,
  expectClosed4403,
  ok,
  type Subscription,
  sleep,
  subscribe,
  type WsClient,
  whenLive,
  wsClient,
} from "../helpers/client.ts";
import { createTenant, type TestUser } from "../helpers/fixtures.ts";
import { CreateGroup, MarkRead } from "../operations/conversations.ts";
import { MessageAdded, ReadReceipt, Typing } from "../operations/events.ts";
import { SendMessage, SetTyping } from "../operations/messages.ts";
import { Roles } from "../operations/roles.ts";

// ---------------------------------------------------------------------------------------------
// Fixtures and helpers
// ---------------------------------------------------------------------------------------------

/** Member permissions without chats:read (and without anything else that reads conversations). */
export const NO_CHATS_READ = ["users:read", "groups:read"];
/** What the member system role grants. */
export const MEMBER_PERMISSIONS = [
  "users:read",
  "groups:create",
  "groups:read",
  "chats:create",
  "chats:read",
  "chats:update",
  "chats:delete",
];

/** A subscription over plain HTTP, as Yoga serves it with server-sent events. */
export interface SseStream<T> {
  /** Waits for the next event (fails after timeoutMs). */
  next(timeoutMs?: number): Promise<ExecutionResult<T>>;
  /** Everything received and not yet taken. */
  buffered: ExecutionResult<T>[];
  /** Resolves when the server ends the stream: a `complete` event or the response ending. */
  ended: Promise<"complete" | "closed">;
  close(): void;
}

export async function sseSubscribe<T, V>(
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
export async function sseLive<T>(stream: SseStream<T>, poke: () => Promise<unknown>): Promise<void> {
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
export interface Team {
  apiKey: string;
  alice: TestUser;
  bob: TestUser;
  carol: TestUser;
  group: string;
  message: string;
}

export async function createTeam(url: string): Promise<Team> {
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

export async function roleId(url: string, apiKey: string, name: string): Promise<string> {
  const { roles } = await ok(url, Roles, {}, { apiKey });
  const role = roles.find((r) => r.name === name);
  if (!role) expect.fail(`no role named ${name}`);
  return role.id;
}

/** Alice's activity in the group: a message, typing on and off, and a read receipt. */
export async function activity(url: string, team: Team, body: string): Promise<void> {
  const auth = { token: team.alice.token };
  await ok(url, SendMessage, { input: { conversationId: team.group, body } }, auth);
  await ok(url, SetTyping, { conversationId: team.group, isTyping: true }, auth);
  await ok(url, SetTyping, { conversationId: team.group, isTyping: false }, auth);
  await ok(url, MarkRead, { conversationId: team.group, upToMessageId: team.message }, auth);
}

/** The four streams a member can hold on a group, all live and drained. */
export interface Streams {
  one: Subscription<MessageAddedSubscription>;
  all: Subscription<MessageAddedSubscription>;
  typing: Subscription<TypingSubscription>;
  reads: Subscription<ReadReceiptSubscription>;
}

export async function openStreams(url: string, client: WsClient, team: Team): Promise<Streams> {
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

export async function settle(streams: Streams): Promise<void> {
  for (const sub of Object.values(streams)) await drain(sub as Subscription<unknown>, 100);
}

export const streamList = (streams: Streams) => Object.entries(streams) as [keyof Streams, Subscription<unknown>][];

/** A new socket with these credentials is refused with 4403 and delivers nothing. */
export async function expectSocketRefused(wsUrl: string, auth: Auth, conversationId: string): Promise<void> {
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
export async function endedWithErrors<T>(sub: Subscription<T>, what: string): Promise<GraphQLFormattedError[]> {
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
export async function refusal<T>(sub: Subscription<T>): Promise<GraphQLFormattedError[]> {
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

export async function expectForbiddenEnd<T>(sub: Subscription<T>, what: string): Promise<void> {
  const errors = await endedWithErrors(sub, what);
  expect(errors[0]?.extensions?.code, `${what}: ${JSON.stringify(errors)}`).toBe("FORBIDDEN");
}

/** Waits until the server completes or errors a subscription. */
export async function expectEnded<T>(sub: Subscription<T>, what: string): Promise<void> {
  const outcome = await Promise.race([sub.done, sleep(5_000).then(() => "open" as const)]);
  if (outcome === "open") expect.fail(`${what} is still open`);
}

/** Asserts that nothing with data reached these streams since they were last drained. */
export async function expectNothingDelivered(streams: Streams): Promise<void> {
  for (const [name, sub] of streamList(streams)) {
    const events = await drain(sub, 100);
    const withData = events.filter((event) => event.data);
    expect(withData, `${name} delivered ${JSON.stringify(withData)}`).toEqual([]);
  }
}

/** Waits for the next message on a stream and returns its body. */
export async function nextBody(sub: Subscription<MessageAddedSubscription>): Promise<string | null | undefined> {
  const event = await sub.next();
  return event.data?.messageAdded.body;
}
