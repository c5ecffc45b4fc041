import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backends, createTestDatabase, startServer, type TestDatabase, type TestServer } from "./helpers/backends.ts";
import { fails, ok } from "./helpers/client.ts";
import { createTenant, createUserWithToken } from "./helpers/fixtures.ts";
import { Conversations, CreateGroup, MarkRead, OpenDirect } from "./operations/conversations.ts";
import { Messages, SendMessage } from "./operations/messages.ts";
import { CreateTenant, RotateApiKey } from "./operations/tenants.ts";
import { CreateUser, DeleteUser, IssueUserToken, UpdateUser, Users, Viewer } from "./operations/users.ts";

describe.each(backends())("chat API on %s", (backend) => {
  let database: TestDatabase;
  let server: TestServer;
  let url: string;

  beforeAll(async () => {
    database = await createTestDatabase(backend);
    server = await startServer(database);
    url = server.url;
  });
  afterAll(async () => {
    await server?.stop();
    await database?.drop();
  });

  it("onboards a tenant: API key, users, tokens, viewer", async () => {
    const { createTenant: created } = await ok(url, CreateTenant, { input: { name: "Acme" } });
    expect(created.apiKey).toMatch(/^ck_/);
    const apiKey = created.apiKey;

    const service = await ok(url, Viewer, {}, { apiKey });
    expect(service.viewer).toMatchObject({
      isService: true,
      user: null,
      tenant: { id: created.tenant.id, name: "Acme" },
    });
    expect(service.viewer.permissions).toEqual(["*"]);

    const { createUser } = await ok(url, CreateUser, { input: { name: "Ann", email: "Ann@Example.com" } }, { apiKey });
    expect(createUser.email).toBe("ann@example.com");
    const { issueUserToken } = await ok(url, IssueUserToken, { userId: createUser.id }, { apiKey });
    const asUser = await ok(url, Viewer, {}, { token: issueUserToken.token });
    expect(asUser.viewer).toMatchObject({ isService: false, user: { id: createUser.id, name: "Ann" } });
    expect(asUser.viewer.permissions).toContain("chats:create");
    expect(asUser.viewer.permissions).not.toContain("users:create");
  });

  it("refuses bad credentials with UNAUTHENTICATED and anonymous calls to protected fields", async () => {
    await fails(url, Viewer, {}, {}, "UNAUTHENTICATED");
    await fails(url, Viewer, {}, { apiKey: "ck_not-a-real-key-but-long-enough" }, "UNAUTHENTICATED");
    await fails(url, Viewer, {}, { token: "not.a.jwt" }, "UNAUTHENTICATED");
  });

  it("rotating the API key invalidates the old one", async () => {
    const tenant = await createTenant(url, []);
    const { rotateApiKey } = await ok(url, RotateApiKey, {}, { apiKey: tenant.apiKey });
    expect(rotateApiKey.apiKey).not.toBe(tenant.apiKey);
    await fails(url, Viewer, {}, { apiKey: tenant.apiKey }, "UNAUTHENTICATED");
    await ok(url, Viewer, {}, { apiKey: rotateApiKey.apiKey });
  });

  it("users: unique email per tenant, search, pagination, self-update, delete", async () => {
    const tenant = await createTenant(url, ["Alice", "Bob"]);
    const apiKey = tenant.apiKey;
    const [alice, bob] = tenant.users as [(typeof tenant.users)[0], (typeof tenant.users)[0]];
    await ok(url, CreateUser, { input: { name: "Dup", email: "dup@example.com" } }, { apiKey });
    const conflict = await fails(
      url,
      CreateUser,
      { input: { name: "Dup2", email: "DUP@example.com" } },
      { apiKey },
      "CONFLICT",
    );
    expect(conflict.extensions?.field).toBe("input.email");
    // Another tenant may use the same email.
    const other = await createTenant(url, []);
    await ok(url, CreateUser, { input: { name: "Dup", email: "dup@example.com" } }, { apiKey: other.apiKey });

    const found = await ok(url, Users, { search: "ALI" }, { apiKey });
    expect(found.users.edges.map((e) => e.node.id)).toEqual([alice.id]);
    // The search is literal text: LIKE wildcards match themselves only.
    for (const wildcard of ["%", "_", "A%e"]) {
      const none = await ok(url, Users, { search: wildcard }, { apiKey });
      expect(none.users.edges, wildcard).toEqual([]);
    }

    const page1 = await ok(url, Users, { first: 2 }, { apiKey });
    expect(page1.users.edges).toHaveLength(2);
    expect(page1.users.pageInfo.hasNextPage).toBe(true);
    const page2 = await ok(url, Users, { first: 2, after: page1.users.pageInfo.endCursor }, { apiKey });
    expect(page2.users.edges).toHaveLength(1);
    expect(page2.users.pageInfo.hasNextPage).toBe(false);

    const renamed = await ok(url, UpdateUser, { id: alice.id, input: { name: "Alicia" } }, { token: alice.token });
    expect(renamed.updateUser.name).toBe("Alicia");
    await fails(url, UpdateUser, { id: bob.id, input: { name: "Hacked" } }, { token: alice.token }, "FORBIDDEN");
    await fails(url, UpdateUser, { id: alice.id, input: { active: false } }, { token: alice.token }, "FORBIDDEN");
    await fails(url, CreateUser, { input: { name: "x" } }, { token: alice.token }, "FORBIDDEN");

    await ok(url, DeleteUser, { id: bob.id }, { apiKey });
    await fails(url, Viewer, {}, { token: bob.token }, "UNAUTHENTICATED");
    const after = await ok(url, Users, {}, { apiKey });
    expect(after.users.edges.map((e) => e.node.id)).not.toContain(bob.id);
  });

  it("direct conversations are idempotent whoever opens them", async () => {
    const tenant = await createTenant(url, ["Alice", "Bob"]);
    const [alice, bob] = tenant.users as [(typeof tenant.users)[0], (typeof tenant.users)[0]];
    const [a, b, c] = await Promise.all([
      ok(url, OpenDirect, { userId: bob.id }, { token: alice.token }),
      ok(url, OpenDirect, { userId: alice.id }, { token: bob.token }),
      ok(url, OpenDirect, { userId: bob.id }, { token: alice.token }),
    ]);
    expect(b.openDirectConversation.id).toBe(a.openDirectConversation.id);
    expect(c.openDirectConversation.id).toBe(a.openDirectConversation.id);
    expect(a.openDirectConversation.kind).toBe("DIRECT");
    expect(a.openDirectConversation.members.map((m) => m.user.id).sort()).toEqual([alice.id, bob.id].sort());

    // Sending to a recipient lands in the same conversation.
    const sent = await ok(url, SendMessage, { input: { recipientId: alice.id, body: "hi" } }, { token: bob.token });
    expect(sent.sendMessage.conversation.id).toBe(a.openDirectConversation.id);
  });

  it("a repeated clientMessageId returns the original and stores nothing new", async () => {
    const tenant = await createTenant(url, ["Alice", "Bob"]);
    const [alice, bob] = tenant.users as [(typeof tenant.users)[0], (typeof tenant.users)[0]];
    const group = await ok(url, CreateGroup, { input: { name: "G", memberIds: [bob.id] } }, { token: alice.token });
    const conversationId = group.createGroup.id;
    const input = { conversationId, body: "once", clientMessageId: "c-1" };
    const results = await Promise.all([1, 2, 3].map(() => ok(url, SendMessage, { input }, { token: alice.token })));
    const ids = new Set(results.map((r) => r.sendMessage.id));
    expect(ids.size).toBe(1);
    // The same key from another sender is a different message.
    const fromBob = await ok(url, SendMessage, { input }, { token: bob.token });
    expect(fromBob.sendMessage.id).not.toBe(results[0]?.sendMessage.id);
    const page = await ok(url, Messages, { conversationId }, { token: alice.token });
    expect(page.messages.edges.map((e) => e.node.seq)).toEqual([1, 2]);
  });

  it("groups: creator is owner; messages page both ways with opaque cursors", async () => {
    const tenant = await createTenant(url, ["Alice", "Bob"]);
    const [alice, bob] = tenant.users as [(typeof tenant.users)[0], (typeof tenant.users)[0]];
    const { createGroup } = await ok(
      url,
      CreateGroup,
      { input: { name: "Team", memberIds: [bob.id] } },
      { token: alice.token },
    );
    expect(createGroup.members.find((m) => m.user.id === alice.id)?.role).toBe("OWNER");
    expect(createGroup.members.find((m) => m.user.id === bob.id)?.role).toBe("MEMBER");
    const conversationId = createGroup.id;
    for (let i = 1; i <= 7; i++) {
      await ok(
        url,
        SendMessage,
        { input: { conversationId, body: `m${i}` } },
        { token: i % 2 ? alice.token : bob.token },
      );
    }
    const newest = await ok(url, Messages, { conversationId, last: 3 }, { token: bob.token });
    expect(newest.messages.edges.map((e) => e.node.body)).toEqual(["m5", "m6", "m7"]);
    expect(newest.messages.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: false });
    const older = await ok(
      url,
      Messages,
      { conversationId, last: 3, before: newest.messages.pageInfo.startCursor },
      { token: bob.token },
    );
    expect(older.messages.edges.map((e) => e.node.body)).toEqual(["m2", "m3", "m4"]);
    const oldest = await ok(
      url,
      Messages,
      { conversationId, last: 3, before: older.messages.pageInfo.startCursor },
      { token: bob.token },
    );
    expect(oldest.messages.edges.map((e) => e.node.body)).toEqual(["m1"]);
    expect(oldest.messages.pageInfo.hasPreviousPage).toBe(false);
    const forward = await ok(
      url,
      Messages,
      { conversationId, first: 4, after: oldest.messages.pageInfo.endCursor },
      { token: bob.token },
    );
    expect(forward.messages.edges.map((e) => e.node.body)).toEqual(["m2", "m3", "m4", "m5"]);
    expect(forward.messages.pageInfo.hasNextPage).toBe(true);

    await fails(url, Messages, { conversationId, after: "garbage" }, { token: bob.token }, "BAD_USER_INPUT");
    await fails(url, Messages, { conversationId, first: 1, last: 1 }, { token: bob.token }, "BAD_USER_INPUT");
    await fails(url, Messages, { conversationId, first: 1000 }, { token: bob.token }, "BAD_USER_INPUT");
  });

  it("conversations: newest activity first, unreadCount from the read horizon, lastMessage", async () => {
    const tenant = await createTenant(url, ["Alice", "Bob"]);
    const [alice, bob] = tenant.users as [(typeof tenant.users)[0], (typeof tenant.users)[0]];
    const g1 = (await ok(url, CreateGroup, { input: { name: "One", memberIds: [bob.id] } }, { token: alice.token }))
      .createGroup.id;
    const g2 = (await ok(url, CreateGroup, { input: { name: "Two", memberIds: [bob.id] } }, { token: alice.token }))
      .createGroup.id;
    const sent = [];
    for (const body of ["a", "b", "c"]) {
      sent.push(
        (await ok(url, SendMessage, { input: { conversationId: g1, body } }, { token: alice.token })).sendMessage,
      );
    }
    const list = await ok(url, Conversations, {}, { token: bob.token });
    expect(list.conversations.edges.map((e) => e.node.id)).toEqual([g1, g2]);
    const one = list.conversations.edges[0]?.node;
    expect(one).toMatchObject({ unreadCount: 3, lastMessage: { body: "c", seq: 3 } });
    // The sender has read their own messages.
    const aliceView = await ok(url, Conversations, {}, { token: alice.token });
    expect(aliceView.conversations.edges[0]?.node.unreadCount).toBe(0);

    const read = await ok(
      url,
      MarkRead,
      { conversationId: g1, upToMessageId: sent[1]?.id as string },
      { token: bob.token },
    );
    expect(read.markRead).toMatchObject({ lastReadSeq: 2, user: { id: bob.id }, lastReadMessage: { id: sent[1]?.id } });
    // Marking an older message read never moves the horizon back.
    const again = await ok(
      url,
      MarkRead,
      { conversationId: g1, upToMessageId: sent[0]?.id as string },
      { token: bob.token },
    );
    expect(again.markRead.lastReadSeq).toBe(2);
    const after = await ok(url, Conversations, { kind: "GROUP", first: 1 }, { token: bob.token });
    expect(after.conversations.edges[0]?.node.unreadCount).toBe(1);
    expect(after.conversations.pageInfo.hasNextPage).toBe(true);
    const next = await ok(
      url,
      Conversations,
      { kind: "GROUP", first: 1, after: after.conversations.pageInfo.endCursor },
      { token: bob.token },
    );
    expect(next.conversations.edges.map((e) => e.node.id)).toEqual([g2]);

    // A user outside the tenant's conversations sees none of them.
    const carol = await createUserWithToken(url, tenant.apiKey, "Carol");
    const carolView = await ok(url, Conversations, {}, { token: carol.token });
    expect(carolView.conversations.edges).toEqual([]);
  });
});
