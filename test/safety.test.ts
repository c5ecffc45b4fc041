import type { ResultOf } from "@graphql-typed-document-node/core";
import { describe, expect } from "vitest";
import { backends, startServer, type TestServer } from "./helpers/backends.ts";
import { type Auth, fails, ok, sleep, subscribe, whenLive } from "./helpers/client.ts";
import type { TestTenant, TestUser } from "./helpers/fixtures.ts";
import { test, useServer } from "./helpers/world.ts";
import { AuditLog } from "./operations/audit.ts";
import { CreateGroup, OpenDirect } from "./operations/conversations.ts";
import { Typing } from "./operations/events.ts";
import { EditMessage, EditMessageData, SendMessage, SetTyping } from "./operations/messages.ts";
import { PresenceChanged, UserPresence } from "./operations/presence.ts";
import { AssignRole, CreateRole, Roles } from "./operations/roles.ts";
import {
  BlockedUsers,
  BlockUser,
  MessageAddedSenderBlocked,
  MessagesSenderBlocked,
  ReportMessage,
  Reports,
  ResolveReport,
  TenantWordFilter,
  UnblockUser,
  UpdateWordFilter,
} from "./operations/safety.ts";
import { ViewerId } from "./operations/users.ts";

type Users = [TestUser, TestUser, TestUser, ...TestUser[]];
const usersOf = (tenant: TestTenant) => tenant.users as Users;
const as = (user: TestUser): Auth => ({ token: user.token });

async function groupOf(url: string, tenant: TestTenant, members: TestUser[]): Promise<string> {
  const { createGroup } = await ok(
    url,
    CreateGroup,
    { input: { name: "Safety", memberIds: members.map((member) => member.id) } },
    { apiKey: tenant.apiKey },
  );
  return createGroup.id;
}

async function send(url: string, user: TestUser, conversationId: string, body: string) {
  return (await ok(url, SendMessage, { input: { conversationId, body } }, as(user))).sendMessage;
}

/** Gives a user a role: a system role by name, or a new custom role with these permissions. */
async function grant(url: string, tenant: TestTenant, user: TestUser, role: string | string[]): Promise<void> {
  let roleId: string;
  if (typeof role === "string") {
    const { roles } = await ok(url, Roles, {}, { apiKey: tenant.apiKey });
    roleId = roles.find((r) => r.name === role)?.id as string;
  } else {
    const name = `custom-${Math.random().toString(36).slice(2, 8)}`;
    roleId = (await ok(url, CreateRole, { input: { name, permissions: role } }, { apiKey: tenant.apiKey })).createRole
      .id;
  }
  await ok(url, AssignRole, { userId: user.id, roleId }, { apiKey: tenant.apiKey });
}

async function setWordFilter(url: string, tenant: TestTenant, words: string[], action: "REFUSE" | "MASK") {
  return ok(url, UpdateWordFilter, { input: { wordFilter: { words, action } } }, { apiKey: tenant.apiKey });
}

describe.each(backends())("safety tools on %s", (backend) => {
  const world = useServer(backend);

  describe("word filters", () => {
    test("REFUSE refuses sends and edits with a matching word, naming the rule, whatever its case, accents or width", async ({
      tenant,
    }) => {
      const [alice, bob] = usersOf(tenant);
      const group = await groupOf(world.url, tenant, [alice, bob]);
      const set = await setWordFilter(world.url, tenant, ["Darn", "heck*", "*shoot", "*frak*"], "REFUSE");
      expect(set.updateTenant.wordFilter).toEqual({ words: ["darn", "heck*", "*shoot", "*frak*"], action: "REFUSE" });

      const refused: [string, string][] = [
        ["That is DÁRN good", "darn"],
        ["ｄａｒｎ", "darn"],
        ["stop heckling me", "heck*"],
        ["bullshoot!", "*shoot"],
        ["unfrakkingbelievable", "*frak*"],
      ];
      for (const [body, rule] of refused) {
        const error = await fails(
          world.url,
          SendMessage,
          { input: { conversationId: group, body } },
          as(alice),
          "BAD_USER_INPUT",
        );
        expect(error.extensions?.field).toBe("input.body");
        expect(error.message).toContain(`"${rule}"`);
      }
      // Whole words only for an exact rule; a prefix rule does not match inside a word.
      for (const body of ["darning socks", "shooting stars", "check it"]) {
        expect((await send(world.url, alice, group, body)).body).toBe(body);
      }

      const clean = await send(world.url, alice, group, "all fine");
      const error = await fails(world.url, EditMessage, { id: clean.id, body: "oh heck" }, as(alice), "BAD_USER_INPUT");
      expect(error.extensions?.field).toBe("body");
      expect(error.message).toContain('"heck*"');

      // A CUSTOM message's data strings are filtered too.
      const custom = await fails(
        world.url,
        SendMessage,
        { input: { conversationId: group, type: "CUSTOM", customType: "poll", data: { options: ["ok", "Darn"] } } },
        as(alice),
        "BAD_USER_INPUT",
      );
      expect(custom.extensions?.field).toBe("input.data");

      // An empty list turns the filter off.
      await setWordFilter(world.url, tenant, [], "REFUSE");
      expect((await send(world.url, alice, group, "darn")).body).toBe("darn");
    });

    test("MASK replaces the matched words by stars in sends and edits", async ({ tenant }) => {
      const [alice, bob] = usersOf(tenant);
      const group = await groupOf(world.url, tenant, [alice, bob]);
      await setWordFilter(world.url, tenant, ["darn", "heck*"], "MASK");
      const sent = await send(world.url, alice, group, "Darn it, stop HECKLING!");
      expect(sent.body).toBe("**** it, stop ********!");
      const { editMessage } = await ok(world.url, EditMessage, { id: sent.id, body: "darn darn fine" }, as(alice));
      expect(editMessage.body).toBe("**** **** fine");
      const { sendMessage: custom } = await ok(
        world.url,
        SendMessage,
        { input: { conversationId: group, type: "CUSTOM", customType: "poll", data: { q: "x" } } },
        as(alice),
      );
      const { editMessage: edited } = await ok(
        world.url,
        EditMessageData,
        { id: custom.id, body: "", data: { q: "heck yes", n: 2 } },
        as(alice),
      );
      expect(edited.data).toEqual({ q: "**** yes", n: 2 });
      const { messages } = await ok(world.url, MessagesSenderBlocked, { conversationId: group }, as(bob));
      expect(messages.edges.map((edge) => edge.node.body)).toContain("**** **** fine");
    });

    test("rules are checked: one word with * only at its ends, bounded count and length; reading needs tenant:update or chats:moderate", async ({
      tenant,
    }) => {
      const [alice] = usersOf(tenant);
      const bad = async (words: string[], field: string) => {
        const error = await fails(
          world.url,
          UpdateWordFilter,
          { input: { wordFilter: { words } } },
          { apiKey: tenant.apiKey },
          "BAD_USER_INPUT",
        );
        expect(error.extensions?.field).toBe(field);
      };
      await bad(["fine", "a*b"], "input.wordFilter.words.1");
      await bad(["two words"], "input.wordFilter.words.0");
      await bad(["*"], "input.wordFilter.words.0");
      await bad(["(a+)+$"], "input.wordFilter.words.0");
      await bad(["x".repeat(65)], "input.wordFilter.words.0");
      await bad(
        Array.from({ length: 1001 }, (_, i) => `w${i}`),
        "input.wordFilter.words",
      );
      // A thousand long rules are fine, and a long message is checked against them at once, even
      // one made to be slow for a naive search (every rule almost matches at every position).
      const many = Array.from({ length: 1000 }, (_, i) => `*${"a".repeat(58)}${i}*`);
      await setWordFilter(world.url, tenant, many, "REFUSE");
      const group = await groupOf(world.url, tenant, [alice]);
      const started = Date.now();
      await send(world.url, alice, group, `${"a".repeat(3000)} ${"a".repeat(61)}`);
      expect(Date.now() - started).toBeLessThan(5_000);

      await fails(world.url, TenantWordFilter, {}, as(alice), "FORBIDDEN");
      const { tenant: read } = await ok(world.url, TenantWordFilter, {}, { apiKey: tenant.apiKey });
      expect(read.wordFilter?.words).toHaveLength(1000);
      await grant(world.url, tenant, alice, ["chats:read", "chats:moderate"]);
      expect((await ok(world.url, TenantWordFilter, {}, as(alice))).tenant.wordFilter?.action).toBe("REFUSE");
    });
  });

  describe("blocking", () => {
    test("a blocked user cannot open or send to a direct conversation with the blocker, without being told why", async ({
      tenant,
    }) => {
      const [alice, bob, carol] = usersOf(tenant);
      const { sendMessage: first } = await ok(
        world.url,
        SendMessage,
        { input: { recipientId: alice.id, body: "hi" } },
        as(bob),
      );
      const direct = first.conversation.id;
      const group = await groupOf(world.url, tenant, [alice, bob]);

      expect((await ok(world.url, BlockUser, { userId: bob.id }, as(alice))).blockUser).toBe(true);
      expect((await ok(world.url, BlockUser, { userId: bob.id }, as(alice))).blockUser).toBe(true);
      expect((await ok(world.url, BlockedUsers, {}, as(alice))).blockedUsers.map((u) => u.id)).toEqual([bob.id]);

      const refusals = [
        await fails(world.url, OpenDirect, { userId: alice.id }, as(bob), "FORBIDDEN"),
        await fails(world.url, SendMessage, { input: { conversationId: direct, body: "hey" } }, as(bob), "FORBIDDEN"),
        await fails(world.url, SendMessage, { input: { recipientId: alice.id, body: "hey" } }, as(bob), "FORBIDDEN"),
        await fails(
          world.url,
          SendMessage,
          { input: { conversationId: direct, senderId: bob.id, body: "hey" } },
          { apiKey: tenant.apiKey },
          "FORBIDDEN",
        ),
      ];
      for (const error of refusals) expect(error.message.toLowerCase()).not.toContain("block");

      // The blocker still may write; groups are untouched; others are not affected.
      await ok(world.url, SendMessage, { input: { conversationId: direct, body: "leave me be" } }, as(alice));
      await send(world.url, bob, group, "in the group");
      await ok(world.url, SendMessage, { input: { recipientId: alice.id, body: "hello" } }, as(carol));
      expect((await ok(world.url, BlockedUsers, {}, as(bob))).blockedUsers).toEqual([]);

      expect((await ok(world.url, UnblockUser, { userId: bob.id }, as(alice))).unblockUser).toBe(true);
      expect((await ok(world.url, UnblockUser, { userId: bob.id }, as(alice))).unblockUser).toBe(true);
      await send(world.url, bob, direct, "sorry");
      await ok(world.url, OpenDirect, { userId: alice.id }, as(bob));
      expect((await ok(world.url, BlockedUsers, {}, as(alice))).blockedUsers).toEqual([]);
    });

    test("blocking needs a user token and another user of the tenant", async ({ tenant }) => {
      const [alice] = usersOf(tenant);
      const self = await fails(world.url, BlockUser, { userId: alice.id }, as(alice), "BAD_USER_INPUT");
      expect(self.extensions?.field).toBe("userId");
      await fails(world.url, BlockUser, { userId: "00000000-0000-4000-8000-000000000000" }, as(alice), "NOT_FOUND");
      await fails(world.url, BlockUser, { userId: "nope" }, as(alice), "BAD_USER_INPUT");
      await fails(world.url, BlockUser, { userId: alice.id }, { apiKey: tenant.apiKey }, "FORBIDDEN");
      await fails(world.url, BlockedUsers, {}, { apiKey: tenant.apiKey }, "FORBIDDEN");
    });

    test("Message.senderBlockedByViewer is per viewer, in history and in shared live delivery", async ({
      tenant,
      sockets,
    }) => {
      const [alice, bob, carol] = usersOf(tenant);
      const group = await groupOf(world.url, tenant, [alice, bob, carol]);
      await send(world.url, bob, group, "before");
      await send(world.url, carol, group, "from carol");
      await ok(world.url, BlockUser, { userId: bob.id }, as(alice));

      const view = async (user: TestUser) =>
        (await ok(world.url, MessagesSenderBlocked, { conversationId: group }, as(user))).messages.edges.map(
          (edge) => edge.node,
        );
      expect(await view(alice)).toEqual([
        { body: "before", senderBlockedByViewer: true },
        { body: "from carol", senderBlockedByViewer: false },
      ]);
      expect((await view(carol)).map((node) => node.senderBlockedByViewer)).toEqual([false, false]);

      // Same document and variables for both subscribers: the field must keep them apart.
      const aliceSub = subscribe(sockets.open(as(alice)), MessageAddedSenderBlocked, { conversationId: group });
      const carolSub = subscribe(sockets.open(as(carol)), MessageAddedSenderBlocked, { conversationId: group });
      await whenLive(aliceSub, () => send(world.url, carol, group, "poke"));
      await whenLive(carolSub, () => send(world.url, alice, group, "poke"));
      await send(world.url, bob, group, "live");
      const seenBy = async (sub: typeof aliceSub) => {
        while (true) {
          const event = await sub.next();
          expect(event.errors, JSON.stringify(event)).toBeUndefined();
          if (event.data?.messageAdded.body === "live") return event.data.messageAdded.senderBlockedByViewer;
        }
      };
      expect(await seenBy(aliceSub)).toBe(true);
      expect(await seenBy(carolSub)).toBe(false);
    });

    test("the blocker does not receive the blocked user's typing", async ({ tenant, sockets }) => {
      const [alice, bob, carol] = usersOf(tenant);
      const group = await groupOf(world.url, tenant, [alice, bob, carol]);
      const typing = (user: TestUser, isTyping: boolean) =>
        ok(world.url, SetTyping, { conversationId: group, isTyping }, as(user));
      const sub = subscribe(sockets.open(as(alice)), Typing, { conversationId: group });
      await whenLive(sub, () => typing(carol, true));
      await ok(world.url, BlockUser, { userId: bob.id }, as(alice));
      await typing(bob, true);
      await typing(carol, false);
      type Event = ResultOf<typeof Typing>["typing"];
      const next = async () => (await sub.next()).data?.typing as Event;
      // Bob's typing came first: had it been delivered, it would be the next event.
      expect(await next()).toEqual({ isTyping: false, user: { id: carol.id } });

      await ok(world.url, UnblockUser, { userId: bob.id }, as(alice));
      await typing(bob, true);
      expect(await next()).toEqual({ isTyping: true, user: { id: bob.id } });
    });
  });

  describe("blocking and presence", () => {
    test.override("userNames", ["Alice", "Bob", "Carol", "Dave"]);

    test("the blocker does not receive the blocked user's presence", async ({ tenant, sockets }) => {
      const [alice, bob, carol, dave] = usersOf(tenant) as [TestUser, TestUser, TestUser, TestUser];
      const group = await groupOf(world.url, tenant, [alice, bob, carol, dave]);
      await ok(world.url, BlockUser, { userId: bob.id }, as(alice));
      const sub = subscribe(sockets.open(as(alice), { keepOpen: true }), PresenceChanged, { conversationId: group });
      type Change = ResultOf<typeof PresenceChanged>["presenceChanged"];
      const changesUntil = async (fence: string) => {
        const seen: Change[] = [];
        while (true) {
          const event = await sub.next(10_000);
          expect(event.errors, JSON.stringify(event)).toBeUndefined();
          const change = event.data?.presenceChanged as Change;
          seen.push(change);
          if (change.user.id === fence) return seen;
        }
      };
      const onlineNow = async (user: TestUser) => {
        for (let attempt = 0; attempt < 100; attempt++) {
          const { user: read } = await ok(world.url, UserPresence, { id: user.id }, { apiKey: tenant.apiKey });
          if (read?.online) return;
          await sleep(50);
        }
        expect.fail(`${user.name} never came online`);
      };
      await onlineNow(alice);
      // The subscription is live once it delivers a change: Carol's.
      sockets.open(as(carol), { keepOpen: true });
      await changesUntil(carol.id);
      // Bob comes online, then Dave: only Dave's change arrives.
      sockets.open(as(bob), { keepOpen: true });
      await onlineNow(bob);
      sockets.open(as(dave), { keepOpen: true });
      const seen = await changesUntil(dave.id);
      expect(seen.filter((change) => change.user.id === bob.id)).toEqual([]);
    });
  });

  if (backend === "postgres+redis") {
    test("word filter and block changes on one instance reach the cache of another", async ({ tenant }) => {
      const [alice, bob] = usersOf(tenant);
      const group = await groupOf(world.url, tenant, [alice, bob]);
      let other: TestServer | undefined;
      try {
        other = await startServer(world.database);
        const url = other.url;
        // The other instance caches the tenant's (empty) filter and Alice's (empty) block list.
        await send(url, alice, group, "darn");
        const blockedOn = async () =>
          (await ok(url, MessagesSenderBlocked, { conversationId: group }, as(alice))).messages.edges.map(
            (edge) => edge.node.senderBlockedByViewer,
          );
        await send(world.url, bob, group, "from bob");
        expect(await blockedOn()).toEqual([false, false]);

        await setWordFilter(world.url, tenant, ["darn"], "MASK");
        await ok(world.url, BlockUser, { userId: bob.id }, as(alice));
        // Across instances the news travels through Redis: wait for it, within a bound.
        const deadline = Date.now() + 5000;
        let body: string | null | undefined;
        let blocked: boolean[] = [];
        while (Date.now() < deadline) {
          body = (await send(url, alice, group, "darn")).body;
          blocked = await blockedOn();
          if (body === "****" && blocked.at(1) === true) break;
          await sleep(50);
        }
        expect(body).toBe("****");
        expect(blocked.slice(0, 2)).toEqual([false, true]);
      } finally {
        await other?.stop();
      }
    });
  }

  describe("reports", () => {
    test("members report others' messages once; the queue is for chats:moderate, newest first, by status", async ({
      tenant,
    }) => {
      const [alice, bob, carol] = usersOf(tenant);
      const group = await groupOf(world.url, tenant, [alice, bob]);
      const first = await send(world.url, bob, group, "rude one");
      const second = await send(world.url, bob, group, "rude two");
      const mine = await send(world.url, alice, group, "mine");

      const { reportMessage } = await ok(world.url, ReportMessage, { messageId: first.id, reason: "rude" }, as(alice));
      expect(reportMessage).toMatchObject({
        reason: "rude",
        status: "OPEN",
        action: null,
        reporter: { id: alice.id },
        message: { id: first.id, body: "rude one" },
        resolvedBy: null,
      });
      const again = await ok(world.url, ReportMessage, { messageId: first.id, reason: "still rude" }, as(alice));
      expect(again.reportMessage.id).toBe(reportMessage.id);
      const later = (await ok(world.url, ReportMessage, { messageId: second.id, reason: "again" }, as(alice)))
        .reportMessage;

      const own = await fails(
        world.url,
        ReportMessage,
        { messageId: mine.id, reason: "x" },
        as(alice),
        "BAD_USER_INPUT",
      );
      expect(own.extensions?.field).toBe("messageId");
      await fails(world.url, ReportMessage, { messageId: first.id, reason: "  " }, as(alice), "BAD_USER_INPUT");
      await fails(world.url, ReportMessage, { messageId: first.id, reason: "x" }, as(carol), "FORBIDDEN");
      await fails(
        world.url,
        ReportMessage,
        { messageId: first.id, reason: "x" },
        { apiKey: tenant.apiKey },
        "FORBIDDEN",
      );

      await fails(world.url, Reports, {}, as(alice), "FORBIDDEN");
      const page1 = (await ok(world.url, Reports, { first: 1 }, { apiKey: tenant.apiKey })).reports;
      expect(page1.edges.map((edge) => edge.node.id)).toEqual([later.id]);
      expect(page1.pageInfo.hasNextPage).toBe(true);
      const page2 = (
        await ok(world.url, Reports, { first: 5, after: page1.pageInfo.endCursor }, { apiKey: tenant.apiKey })
      ).reports;
      expect(page2.edges.map((edge) => edge.node.id)).toEqual([reportMessage.id]);
      expect(page2.pageInfo.hasNextPage).toBe(false);

      await grant(world.url, tenant, carol, ["chats:read", "chats:moderate"]);
      await ok(world.url, ResolveReport, { id: later.id, action: "DISMISS" }, as(carol));
      const open = (await ok(world.url, Reports, { status: "OPEN" }, as(carol))).reports.edges;
      expect(open.map((edge) => edge.node.id)).toEqual([reportMessage.id]);
      const resolved = (await ok(world.url, Reports, { status: "RESOLVED" }, as(carol))).reports.edges;
      expect(resolved.map((edge) => edge.node.id)).toEqual([later.id]);
    });

    test("moderators resolve reports: DISMISS, DELETE_MESSAGE, DEACTIVATE_USER (with users:update, not over owners), all audited", async ({
      tenant,
    }) => {
      const [alice, bob, carol] = usersOf(tenant);
      const group = await groupOf(world.url, tenant, [alice, bob]);
      const report = async (body: string, sender = bob) => {
        const message = await send(world.url, sender, group, body);
        const reporter = sender === bob ? alice : bob;
        return (await ok(world.url, ReportMessage, { messageId: message.id, reason: "bad" }, as(reporter)))
          .reportMessage;
      };
      // Carol moderates without being a member of the group.
      await grant(world.url, tenant, carol, ["chats:read", "chats:moderate"]);

      const dismissed = await report("meh");
      const { resolveReport } = await ok(world.url, ResolveReport, { id: dismissed.id, action: "DISMISS" }, as(carol));
      expect(resolveReport).toMatchObject({ status: "RESOLVED", action: "DISMISS", resolvedBy: { id: carol.id } });
      expect(resolveReport.resolvedAt).not.toBeNull();
      const twice = await fails(
        world.url,
        ResolveReport,
        { id: dismissed.id, action: "DISMISS" },
        as(carol),
        "CONFLICT",
      );
      expect(twice.extensions?.field).toBe("id");
      await fails(world.url, ResolveReport, { id: dismissed.id, action: "DISMISS" }, as(alice), "FORBIDDEN");

      const deleted = await report("delete me");
      const afterDelete = (await ok(world.url, ResolveReport, { id: deleted.id, action: "DELETE_MESSAGE" }, as(carol)))
        .resolveReport;
      expect(afterDelete.action).toBe("DELETE_MESSAGE");
      expect(afterDelete.message.body).toBeNull();
      expect(afterDelete.message.deletedAt).not.toBeNull();

      // Deactivating needs users:update as well; the report stays open when refused.
      const deactivate = await report("deactivate me");
      const refused = await fails(
        world.url,
        ResolveReport,
        { id: deactivate.id, action: "DEACTIVATE_USER" },
        as(carol),
        "FORBIDDEN",
      );
      expect(refused.message).toContain("users:update");
      const stillOpen = (await ok(world.url, Reports, { status: "OPEN" }, as(carol))).reports.edges;
      expect(stillOpen.map((edge) => edge.node.id)).toContain(deactivate.id);
      await grant(world.url, tenant, carol, "admin");

      // The owner holds permissions an admin lacks: an admin cannot deactivate them.
      await grant(world.url, tenant, alice, "owner");
      const overOwner = await report("from the owner", alice);
      await fails(world.url, ResolveReport, { id: overOwner.id, action: "DEACTIVATE_USER" }, as(carol), "FORBIDDEN");
      await ok(world.url, ViewerId, {}, as(alice));

      await ok(world.url, ResolveReport, { id: deactivate.id, action: "DEACTIVATE_USER" }, as(carol));
      await fails(world.url, ViewerId, {}, as(bob), "UNAUTHENTICATED");

      const { auditLog } = await ok(world.url, AuditLog, { first: 50 }, { apiKey: tenant.apiKey });
      const actions = auditLog.edges.map((edge) => edge.node.action);
      expect(actions.filter((action) => action === "message.reported")).toHaveLength(4);
      expect(actions.filter((action) => action === "report.resolved")).toHaveLength(3);
      expect(actions).toContain("message.moderated");
      expect(actions).toContain("user.deactivated");
    });
  });
});
