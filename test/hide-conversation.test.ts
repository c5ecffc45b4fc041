import { describe, expect } from "vitest";
import { backends } from "./helpers/backends.ts";
import { type Auth, fails, ok, subscribe, whenLive } from "./helpers/client.ts";
import type { TestTenant, TestUser } from "./helpers/fixtures.ts";
import { test, useServer } from "./helpers/world.ts";
import { Conversation, Conversations, CreateGroup, HideConversation, OpenDirect } from "./operations/conversations.ts";
import { MessageAdded } from "./operations/events.ts";
import { Messages, SendMessage } from "./operations/messages.ts";

// hideConversation: a direct conversation leaves the viewer's list until it has new activity.

const as = (user: TestUser): Auth => ({ token: user.token });
const usersOf = (tenant: TestTenant) => tenant.users as [TestUser, TestUser, TestUser];

describe.each(backends())("hideConversation on %s", (backend) => {
  const world = useServer(backend);

  /** The ids of the viewer's conversations, newest activity first. */
  async function listed(user: TestUser, kind?: "DIRECT" | "GROUP"): Promise<string[]> {
    const { conversations } = await ok(world.url, Conversations, { first: 100, kind }, as(user));
    return conversations.edges.map((edge) => edge.node.id);
  }

  async function direct(from: TestUser, to: TestUser): Promise<string> {
    return (await ok(world.url, OpenDirect, { userId: to.id }, as(from))).openDirectConversation.id;
  }

  async function send(from: TestUser, conversationId: string, body: string): Promise<void> {
    await ok(world.url, SendMessage, { input: { conversationId, body } }, as(from));
  }

  async function bodies(user: TestUser, conversationId: string): Promise<string[]> {
    const { messages } = await ok(world.url, Messages, { conversationId, last: 50 }, as(user));
    return messages.edges.map((edge) => edge.node.body ?? "");
  }

  test("removes the conversation from the viewer's list only, keeping its history", async ({ tenant }) => {
    const [alice, bob, carol] = usersOf(tenant);
    const withBob = await direct(alice, bob);
    const withCarol = await direct(alice, carol);
    await send(alice, withBob, "hello Bob");
    await send(bob, withBob, "hello Alice");
    await send(alice, withCarol, "hello Carol");
    expect(await listed(alice)).toEqual([withCarol, withBob]);

    const { hideConversation } = await ok(world.url, HideConversation, { id: withBob }, as(alice));
    expect(hideConversation).toBe(true);
    expect(await listed(alice)).toEqual([withCarol]);
    expect(await listed(alice, "DIRECT")).toEqual([withCarol]);
    // Bob still sees it; the messages are all there, for both.
    expect(await listed(bob)).toEqual([withBob]);
    expect(await bodies(alice, withBob)).toEqual(["hello Bob", "hello Alice"]);
    expect(await bodies(bob, withBob)).toEqual(["hello Bob", "hello Alice"]);
    // The conversation itself still answers for the one who hid it.
    const { conversation } = await ok(world.url, Conversation, { id: withBob }, as(alice));
    expect(conversation?.id).toBe(withBob);
    expect(conversation?.lastMessage?.body).toBe("hello Alice");
    // Hiding twice is the same as once.
    await ok(world.url, HideConversation, { id: withBob }, as(alice));
    expect(await listed(alice)).toEqual([withCarol]);
  });

  test("a new message from the other member brings it back", async ({ tenant }) => {
    const [alice, bob] = usersOf(tenant);
    const withBob = await direct(alice, bob);
    await send(alice, withBob, "first");
    await ok(world.url, HideConversation, { id: withBob }, as(alice));
    expect(await listed(alice)).toEqual([]);
    await send(bob, withBob, "are you there?");
    expect(await listed(alice)).toEqual([withBob]);
    expect(await bodies(alice, withBob)).toEqual(["first", "are you there?"]);
  });

  test("a new message from the viewer brings it back", async ({ tenant }) => {
    const [alice, bob] = usersOf(tenant);
    const withBob = await direct(alice, bob);
    // Hidden before any message was sent.
    await ok(world.url, HideConversation, { id: withBob }, as(alice));
    expect(await listed(alice)).toEqual([]);
    expect(await listed(bob)).toEqual([withBob]);
    await send(alice, withBob, "back again");
    expect(await listed(alice)).toEqual([withBob]);
  });

  test("the viewer's openDirectConversation brings it back, the other member's does not", async ({ tenant }) => {
    const [alice, bob] = usersOf(tenant);
    const withBob = await direct(alice, bob);
    await send(bob, withBob, "hi");
    await ok(world.url, HideConversation, { id: withBob }, as(alice));
    // Bob opening it (no message) leaves Alice's list as it is.
    expect(await direct(bob, alice)).toBe(withBob);
    expect(await listed(alice)).toEqual([]);
    expect(await direct(alice, bob)).toBe(withBob);
    expect(await listed(alice)).toEqual([withBob]);
    // Hidden again, then a message: shown; hidden once more: hidden, until the next one.
    await ok(world.url, HideConversation, { id: withBob }, as(alice));
    await send(bob, withBob, "again");
    expect(await listed(alice)).toEqual([withBob]);
    await ok(world.url, HideConversation, { id: withBob }, as(alice));
    expect(await listed(alice)).toEqual([]);
  });

  test("pages of the list skip hidden conversations", async ({ tenant }) => {
    const [alice, bob, carol] = usersOf(tenant);
    const withBob = await direct(alice, bob);
    const withCarol = await direct(alice, carol);
    const group = (await ok(world.url, CreateGroup, { input: { name: "Trio", memberIds: [bob.id] } }, as(alice)))
      .createGroup.id;
    await send(alice, withBob, "1");
    await send(alice, withCarol, "2");
    await send(alice, group, "3");
    await ok(world.url, HideConversation, { id: withCarol }, as(alice));
    const first = await ok(world.url, Conversations, { first: 1 }, as(alice));
    expect(first.conversations.edges.map((e) => e.node.id)).toEqual([group]);
    expect(first.conversations.pageInfo.hasNextPage).toBe(true);
    const rest = await ok(
      world.url,
      Conversations,
      { first: 5, after: first.conversations.pageInfo.endCursor },
      as(alice),
    );
    expect(rest.conversations.edges.map((e) => e.node.id)).toEqual([withBob]);
    expect(rest.conversations.pageInfo.hasNextPage).toBe(false);
  });

  test("a group is BAD_USER_INPUT and stays listed", async ({ tenant }) => {
    const [alice, bob] = usersOf(tenant);
    const group = (await ok(world.url, CreateGroup, { input: { name: "Pair", memberIds: [bob.id] } }, as(alice)))
      .createGroup.id;
    const error = await fails(world.url, HideConversation, { id: group }, as(bob), "BAD_USER_INPUT");
    expect(error.message).toMatch(/removeMember/);
    expect(await listed(bob)).toEqual([group]);
  });

  test("the live stream of all the viewer's conversations still carries a hidden one", async ({ tenant, sockets }) => {
    const [alice, bob] = usersOf(tenant);
    const withBob = await direct(alice, bob);
    await ok(world.url, HideConversation, { id: withBob }, as(alice));
    const feed = subscribe(sockets.open(as(alice)), MessageAdded, {});
    const event = await whenLive(feed, () => send(bob, withBob, "live"));
    expect(event.data?.messageAdded.conversation.id).toBe(withBob);
    expect(await listed(alice)).toEqual([withBob]);
  });
});
