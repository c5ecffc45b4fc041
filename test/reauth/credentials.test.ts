import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import {
  type Auth,
  drain,
  expectClosed4403,
  expectOpen,
  fails,
  ok,
  request,
  type Subscription,
  subscribe,
  type WsClient,
  whenLive,
  wsClient,
} from "../helpers/client.ts";
import { useServer } from "../helpers/world.ts";
import { MessageAdded, Typing } from "../operations/events.ts";
import { SendMessage } from "../operations/messages.ts";
import { RotateApiKey } from "../operations/tenants.ts";
import { DeleteUser, IssueUserToken, RevokeUserTokens, UpdateUser, Viewer } from "../operations/users.ts";
import { activity, createTeam, expectSocketRefused, nextBody, openStreams, settle, streamList } from "./helpers.ts";

/** Live subscriptions end when their credentials stop being valid: a user deactivated or deleted, the API key rotated, a user's tokens revoked. */
describe.each(backends())("re-authorization of live subscriptions on %s", (backend) => {
  const server = useServer(backend);

  describe("deactivating a user", () => {
    it("closes every one of their sockets with 4403; other users' sockets stay open and keep receiving", async () => {
      const team = await createTeam(server.url);
      const bobMany = wsClient(server.wsUrl, { token: team.bob.token });
      const bobOne = wsClient(server.wsUrl, { token: team.bob.token });
      const carol = wsClient(server.wsUrl, { token: team.carol.token });
      const keyClient = wsClient(server.wsUrl, { apiKey: team.apiKey });
      try {
        const bobStreams = await openStreams(server.url, bobMany, team);
        const bobAll = subscribe(bobOne, MessageAdded, {});
        await whenLive(bobAll, () =>
          ok(server.url, SendMessage, { input: { conversationId: team.group, body: "p" } }, { apiKey: team.apiKey }),
        );
        const carolStreams = await openStreams(server.url, carol, team);
        const keyFeed = subscribe(keyClient, MessageAdded, { conversationId: team.group });
        await whenLive(keyFeed, () =>
          ok(server.url, SendMessage, { input: { conversationId: team.group, body: "k" } }, { apiKey: team.apiKey }),
        );
        await drain(bobAll, 100);
        await settle(carolStreams);
        await settle(bobStreams);

        const { updateUser } = await ok(
          server.url,
          UpdateUser,
          { id: team.bob.id, input: { active: false } },
          { apiKey: team.apiKey },
        );
        expect(updateUser.active).toBe(false);

        await expectClosed4403(bobMany, "Bob's socket with four subscriptions");
        await expectClosed4403(bobOne, "Bob's socket with one subscription");

        await activity(server.url, team, "after deactivation");
        expect(await nextBody(carolStreams.one)).toBe("after deactivation");
        expect(await nextBody(carolStreams.all)).toBe("after deactivation");
        expect((await carolStreams.typing.next()).data).toBeTruthy();
        expect((await carolStreams.reads.next()).data).toBeTruthy();
        expect((await keyFeed.next()).data?.messageAdded.body).toBe("after deactivation");
        await expectOpen(carol, "Carol's socket", 200);
        await expectOpen(keyClient, "the API key's socket", 0);
        for (const [name, sub] of streamList(bobStreams)) {
          const bodies = (await drain(sub)).map((e) => JSON.stringify(e));
          expect(
            bodies.filter((b) => b.includes("after deactivation")),
            name,
          ).toEqual([]);
        }
      } finally {
        for (const client of [bobMany, bobOne, carol, keyClient]) await client.dispose();
      }
    });

    it("refuses the token on HTTP and on new sockets; after reactivation a fresh token works", async () => {
      const team = await createTeam(server.url);
      const key = { apiKey: team.apiKey };
      await ok(server.url, UpdateUser, { id: team.bob.id, input: { active: false } }, key);

      await fails(server.url, Viewer, {}, { token: team.bob.token }, "UNAUTHENTICATED");
      await expectSocketRefused(server.wsUrl, { token: team.bob.token }, team.group);
      // A deactivated user cannot be given new credentials either.
      await fails(server.url, IssueUserToken, { userId: team.bob.id }, key, "FORBIDDEN");

      await ok(server.url, UpdateUser, { id: team.bob.id, input: { active: true } }, key);
      const fresh = (await ok(server.url, IssueUserToken, { userId: team.bob.id }, key)).issueUserToken.token;
      const { viewer } = await ok(server.url, Viewer, {}, { token: fresh });
      expect(viewer.user?.id).toBe(team.bob.id);
      const client = wsClient(server.wsUrl, { token: fresh });
      try {
        const feed = subscribe(client, MessageAdded, { conversationId: team.group });
        await whenLive(feed, () =>
          ok(server.url, SendMessage, { input: { conversationId: team.group, body: "back" } }, key),
        );
        await expectOpen(client, "the reactivated user's socket", 200);
      } finally {
        await client.dispose();
      }
    });
  });

  describe("changes that keep a user's credentials valid", () => {
    it("a profile update, or reactivating an active user, closes nothing", async () => {
      const team = await createTeam(server.url);
      const bob = wsClient(server.wsUrl, { token: team.bob.token });
      try {
        const feed = subscribe(bob, MessageAdded, { conversationId: team.group });
        const send = (body: string) =>
          ok(server.url, SendMessage, { input: { conversationId: team.group, body } }, { token: team.alice.token });
        await whenLive(feed, () => send("probe"));
        await ok(server.url, UpdateUser, { id: team.bob.id, input: { name: "Robert" } }, { token: team.bob.token });
        await ok(server.url, UpdateUser, { id: team.bob.id, input: { active: true } }, { apiKey: team.apiKey });
        await send("still here");
        expect((await feed.next()).data?.messageAdded.body).toBe("still here");
        await expectOpen(bob, "Bob's socket", 300);
        expect((await ok(server.url, Viewer, {}, { token: team.bob.token })).viewer.user?.id).toBe(team.bob.id);
      } finally {
        await bob.dispose();
      }
    });
  });

  describe("deleting a user", () => {
    it("closes their sockets with 4403 and refuses their token; others are unaffected", async () => {
      const team = await createTeam(server.url);
      const bobMany = wsClient(server.wsUrl, { token: team.bob.token });
      const bobOne = wsClient(server.wsUrl, { token: team.bob.token });
      const carol = wsClient(server.wsUrl, { token: team.carol.token });
      try {
        const bobStreams = await openStreams(server.url, bobMany, team);
        // The all-conversations stream outlives the end of the memberships.
        const bobAll = subscribe(bobOne, MessageAdded, {});
        await whenLive(bobAll, () =>
          ok(server.url, SendMessage, { input: { conversationId: team.group, body: "p" } }, { apiKey: team.apiKey }),
        );
        const carolFeed = subscribe(carol, MessageAdded, { conversationId: team.group });
        await whenLive(carolFeed, () =>
          ok(
            server.url,
            SendMessage,
            { input: { conversationId: team.group, body: "p" } },
            { token: team.alice.token },
          ),
        );
        await drain(bobAll, 100);
        await settle(bobStreams);

        const { deleteUser } = await ok(server.url, DeleteUser, { id: team.bob.id }, { apiKey: team.apiKey });
        expect(deleteUser).toBe(team.bob.id);

        await expectClosed4403(bobMany, "the deleted user's socket with four subscriptions");
        await expectClosed4403(bobOne, "the deleted user's socket with one subscription");
        await fails(server.url, Viewer, {}, { token: team.bob.token }, "UNAUTHENTICATED");
        await expectSocketRefused(server.wsUrl, { token: team.bob.token }, team.group);

        await activity(server.url, team, "after deletion");
        expect(await nextBody(carolFeed)).toBe("after deletion");
        await expectOpen(carol, "Carol's socket", 200);
      } finally {
        for (const client of [bobMany, bobOne, carol]) await client.dispose();
      }
    });
  });

  describe("rotating the API key", () => {
    it("closes sockets opened with the old key; the new key's sockets and user sockets stay open", async () => {
      const team = await createTeam(server.url);
      const oldKey = { apiKey: team.apiKey };
      const oldAll = wsClient(server.wsUrl, oldKey);
      const oldOne = wsClient(server.wsUrl, oldKey);
      const bob = wsClient(server.wsUrl, { token: team.bob.token });
      let newClient: WsClient | null = null;
      try {
        const send = (body: string, auth: Auth = { token: team.alice.token }) =>
          ok(server.url, SendMessage, { input: { conversationId: team.group, body } }, auth);
        const oldAllFeed = subscribe(oldAll, MessageAdded, {});
        const oldOneFeeds = [
          subscribe(oldOne, MessageAdded, { conversationId: team.group }),
          subscribe(oldOne, Typing, { conversationId: team.group }),
        ];
        const bobFeed = subscribe(bob, MessageAdded, { conversationId: team.group });
        await whenLive(oldAllFeed, () => send("probe"));
        await whenLive(oldOneFeeds[0] as Subscription<unknown>, () => send("probe"));
        await whenLive(bobFeed, () => send("probe"));

        const { rotateApiKey } = await ok(server.url, RotateApiKey, {}, oldKey);
        const newKey = { apiKey: rotateApiKey.apiKey };
        expect(newKey.apiKey).not.toBe(team.apiKey);

        await expectClosed4403(oldAll, "a socket of the old key");
        await expectClosed4403(oldOne, "a socket of the old key with two subscriptions");
        await fails(server.url, Viewer, {}, oldKey, "UNAUTHENTICATED");
        await expectSocketRefused(server.wsUrl, oldKey, team.group);

        newClient = wsClient(server.wsUrl, newKey);
        const newFeed = subscribe(newClient, MessageAdded, { conversationId: team.group });
        await whenLive(newFeed, () => send("probe", newKey));
        await drain(bobFeed, 100);
        await send("after rotation");
        expect((await newFeed.next()).data?.messageAdded.body).toBe("after rotation");
        expect((await bobFeed.next()).data?.messageAdded.body).toBe("after rotation");
        await expectOpen(newClient, "the new key's socket", 300);
        await expectOpen(bob, "a user's socket", 0);
        const { viewer } = await ok(server.url, Viewer, {}, newKey);
        expect(viewer.isService).toBe(true);
      } finally {
        for (const client of [oldAll, oldOne, bob, newClient]) await client?.dispose();
      }
    });
  });

  describe("revoking a user's tokens", () => {
    it.each(["the API key", "the user themselves"] as const)(
      "by %s: every earlier token stops working and the sockets close with 4403; a later token works",
      async (by) => {
        const team = await createTeam(server.url);
        const key = { apiKey: team.apiKey };
        const second = (await ok(server.url, IssueUserToken, { userId: team.bob.id }, key)).issueUserToken.token;
        const bobFirst = wsClient(server.wsUrl, { token: team.bob.token });
        const bobSecond = wsClient(server.wsUrl, { token: second });
        const carol = wsClient(server.wsUrl, { token: team.carol.token });
        try {
          await openStreams(server.url, bobFirst, team);
          const secondFeed = subscribe(bobSecond, MessageAdded, {});
          const carolFeed = subscribe(carol, MessageAdded, { conversationId: team.group });
          const send = (body: string) =>
            ok(server.url, SendMessage, { input: { conversationId: team.group, body } }, { token: team.alice.token });
          await whenLive(secondFeed, () => send("probe"));
          await whenLive(carolFeed, () => send("probe"));

          const auth = by === "the API key" ? key : { token: team.bob.token };
          const { revokeUserTokens } = await ok(server.url, RevokeUserTokens, { userId: team.bob.id }, auth);
          expect(revokeUserTokens).toBe(true);

          await expectClosed4403(bobFirst, "the socket of the first token");
          await expectClosed4403(bobSecond, "the socket of the second token");
          for (const token of [team.bob.token, second]) {
            await fails(server.url, Viewer, {}, { token }, "UNAUTHENTICATED");
            await expectSocketRefused(server.wsUrl, { token }, team.group);
          }

          // Late probes under load must not stand in for the message that proves delivery.
          await drain(carolFeed, 100);
          await send("after revocation");
          expect(await nextBody(carolFeed)).toBe("after revocation");
          await expectOpen(carol, "another user's socket", 200);

          const fresh = (await ok(server.url, IssueUserToken, { userId: team.bob.id }, key)).issueUserToken.token;
          expect((await ok(server.url, Viewer, {}, { token: fresh })).viewer.user?.id).toBe(team.bob.id);
          const again = wsClient(server.wsUrl, { token: fresh });
          try {
            const feed = subscribe(again, MessageAdded, { conversationId: team.group });
            await whenLive(feed, () => send("probe"));
            await expectOpen(again, "the socket of a token issued afterwards", 200);
          } finally {
            await again.dispose();
          }
        } finally {
          for (const client of [bobFirst, bobSecond, carol]) await client.dispose();
        }
      },
    );

    it("another plain user cannot revoke them (FORBIDDEN), and nothing closes", async () => {
      const team = await createTeam(server.url);
      const bob = wsClient(server.wsUrl, { token: team.bob.token });
      try {
        const feed = subscribe(bob, MessageAdded, { conversationId: team.group });
        const send = (body: string) =>
          ok(server.url, SendMessage, { input: { conversationId: team.group, body } }, { token: team.alice.token });
        await whenLive(feed, () => send("probe"));

        const result = await request(
          server.url,
          RevokeUserTokens,
          { userId: team.bob.id },
          { token: team.carol.token },
        );
        expect(result.errors?.[0]?.extensions?.code, JSON.stringify(result)).toBe("FORBIDDEN");
        expect(result.data?.revokeUserTokens ?? null).toBeNull();

        await send("still here");
        expect((await feed.next()).data?.messageAdded.body).toBe("still here");
        await expectOpen(bob, "Bob's socket", 300);
        expect((await ok(server.url, Viewer, {}, { token: team.bob.token })).viewer.user?.id).toBe(team.bob.id);
        expect((await ok(server.url, Viewer, {}, { token: team.carol.token })).viewer.user?.id).toBe(team.carol.id);
      } finally {
        await bob.dispose();
      }
    });
  });
});
