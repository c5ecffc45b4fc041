import { describe, expect, it } from "vitest";
import { backends, startServer } from "../helpers/backends.ts";
import { drain, expectClosed4403, expectOpen, ok, sleep, subscribe, whenLive, wsClient } from "../helpers/client.ts";
import { useServer } from "../helpers/world.ts";
import { MessageAdded, MessageAddedWithEmail, ReadReceipt, Typing } from "../operations/events.ts";
import { AssignRole, CreateRole, DeleteRole, UnassignRole, UpdateRole } from "../operations/roles.ts";
import {
  activity,
  createTeam,
  expectForbiddenEnd,
  expectNothingDelivered,
  MEMBER_PERMISSIONS,
  NO_CHATS_READ,
  nextBody,
  openStreams,
  refusal,
  roleId,
  type Streams,
  settle,
  streamList,
} from "./helpers.ts";

/** Role changes reach live subscriptions without reconnecting, also when the news of a revocation was lost, and field by field. */
describe.each(backends())("re-authorization of live subscriptions on %s", (backend) => {
  const server = useServer(backend);

  describe("a role change takes effect without reconnecting", () => {
    it("losing chats:read (member unassigned) ends every stream with FORBIDDEN; the socket stays open", async () => {
      const team = await createTeam(server.url);
      const key = { apiKey: team.apiKey };
      const member = await roleId(server.url, team.apiKey, "member");
      const bob = wsClient(server.wsUrl, { token: team.bob.token }, { keepOpen: true });
      const carol = wsClient(server.wsUrl, { token: team.carol.token });
      try {
        const streams = await openStreams(server.url, bob, team);
        const carolFeed = subscribe(carol, MessageAdded, { conversationId: team.group });
        await whenLive(carolFeed, () => activity(server.url, team, "probe"));
        await settle(streams);

        // A role without chats:read first: Bob keeps chats:read through member, so nothing ends.
        const { createRole } = await ok(
          server.url,
          CreateRole,
          { input: { name: "Directory", permissions: NO_CHATS_READ } },
          key,
        );
        await ok(server.url, AssignRole, { userId: team.bob.id, roleId: createRole.id }, key);
        await drain(carolFeed, 100);
        await activity(server.url, team, "still allowed");
        expect(await nextBody(streams.one)).toBe("still allowed");
        expect(await nextBody(streams.all)).toBe("still allowed");
        expect((await streams.typing.next()).data).toBeTruthy();
        expect((await streams.reads.next()).data).toBeTruthy();
        expect(await nextBody(carolFeed)).toBe("still allowed");
        await settle(streams);

        await ok(server.url, UnassignRole, { userId: team.bob.id, roleId: member }, key);
        await activity(server.url, team, "after the change");
        // Carol's copy is the fence: anything Bob would get has been published by now.
        expect(await nextBody(carolFeed)).toBe("after the change");

        for (const [name, sub] of streamList(streams)) await expectForbiddenEnd(sub, `Bob's ${name} stream`);
        await expectNothingDelivered(streams);
        await expectOpen(bob, "Bob's socket", 500);

        // While Bob lacks chats:read, a new subscription on the same socket is refused.
        const refused = await refusal(subscribe(bob, MessageAdded, { conversationId: team.group }));
        expect(refused[0]?.extensions?.code, JSON.stringify(refused)).toBe("FORBIDDEN");
        await expectOpen(bob, "Bob's socket", 200);

        // Given back, chats:read works on the same socket at once.
        await ok(server.url, AssignRole, { userId: team.bob.id, roleId: member }, key);
        const renewed: Streams = {
          one: subscribe(bob, MessageAdded, { conversationId: team.group }),
          all: subscribe(bob, MessageAdded, {}),
          typing: subscribe(bob, Typing, { conversationId: team.group }),
          reads: subscribe(bob, ReadReceipt, { conversationId: team.group }),
        };
        await whenLive(renewed.one, () => activity(server.url, team, "renewed"));
        await settle(renewed);
        await activity(server.url, team, "renewed again");
        expect(await nextBody(renewed.one)).toBe("renewed again");
        expect(await nextBody(renewed.all)).toBe("renewed again");
        expect((await renewed.typing.next()).data).toBeTruthy();
        expect((await renewed.reads.next()).data).toBeTruthy();
        await expectOpen(bob, "Bob's socket", 0);
      } finally {
        await bob.dispose();
        await carol.dispose();
      }
    });

    it.each(["updateRole removing chats:read", "deleteRole"] as const)(
      "%s ends the holders' streams with FORBIDDEN, and only theirs",
      async (change) => {
        const team = await createTeam(server.url);
        const key = { apiKey: team.apiKey };
        const member = await roleId(server.url, team.apiKey, "member");
        const { createRole } = await ok(
          server.url,
          CreateRole,
          { input: { name: "Chatter", permissions: MEMBER_PERMISSIONS } },
          key,
        );
        // Bob and Carol read only through the custom role; Alice keeps member.
        for (const user of [team.bob, team.carol]) {
          await ok(server.url, AssignRole, { userId: user.id, roleId: createRole.id }, key);
          await ok(server.url, UnassignRole, { userId: user.id, roleId: member }, key);
        }
        const bob = wsClient(server.wsUrl, { token: team.bob.token }, { keepOpen: true });
        const carol = wsClient(server.wsUrl, { token: team.carol.token }, { keepOpen: true });
        const alice = wsClient(server.wsUrl, { token: team.alice.token });
        try {
          const bobStreams = await openStreams(server.url, bob, team);
          const carolStreams = await openStreams(server.url, carol, team);
          const aliceFeed = subscribe(alice, MessageAdded, { conversationId: team.group });
          await whenLive(aliceFeed, () => activity(server.url, team, "probe"));
          await settle(bobStreams);
          await settle(carolStreams);

          if (change === "deleteRole") {
            expect((await ok(server.url, DeleteRole, { id: createRole.id }, key)).deleteRole).toBe(createRole.id);
          } else {
            const { updateRole } = await ok(
              server.url,
              UpdateRole,
              { id: createRole.id, input: { permissions: NO_CHATS_READ } },
              key,
            );
            expect(updateRole.permissions).not.toContain("chats:read");
          }
          await activity(server.url, team, "after the edit");
          expect((await aliceFeed.next()).data?.messageAdded.body).toBe("after the edit");

          for (const [who, streams] of [
            ["Bob", bobStreams],
            ["Carol", carolStreams],
          ] as const) {
            for (const [name, sub] of streamList(streams)) await expectForbiddenEnd(sub, `${who}'s ${name} stream`);
            await expectNothingDelivered(streams);
          }
          await expectOpen(bob, "Bob's socket", 300);
          await expectOpen(carol, "Carol's socket", 0);
          await expectOpen(alice, "Alice's socket", 0);
          await aliceFeed.expectSilence(100);
        } finally {
          for (const client of [bob, carol, alice]) await client.dispose();
        }
      },
    );
  });

  describe("revocations whose news was lost", () => {
    it("a token revoked in storage alone closes its socket at the next resync; valid sockets stay", async () => {
      const resyncing = await startServer(server.database, { credentialResyncSeconds: 1 });
      const team = await createTeam(resyncing.url);
      const bob = wsClient(resyncing.wsUrl, { token: team.bob.token }, { keepOpen: true });
      const carol = wsClient(resyncing.wsUrl, { token: team.carol.token }, { keepOpen: true });
      const key = wsClient(resyncing.wsUrl, { apiKey: team.apiKey }, { keepOpen: true });
      try {
        const feed = subscribe(bob, MessageAdded, { conversationId: team.group });
        const carolFeed = subscribe(carol, MessageAdded, { conversationId: team.group });
        const keyFeed = subscribe(key, MessageAdded, {});
        await whenLive(feed, () => activity(resyncing.url, team, "probe"));
        await whenLive(carolFeed, () => activity(resyncing.url, team, "probe"));
        await whenLive(keyFeed, () => activity(resyncing.url, team, "probe"));
        // As if the revocation's publish had been lost: only the database knows.
        const jti = JSON.parse(Buffer.from(team.bob.token.split(".")[1] as string, "base64url").toString()).jti;
        await resyncing.app.deps.db.sql.query(`UPDATE "UserToken" SET "revokedAt" = now() WHERE id = $1`, [jti]);
        await expectClosed4403(bob, "the socket of a token revoked in storage");
        await expectOpen(carol, "Carol's socket", 1500);
        await expectOpen(key, "the API key's socket", 0);
        await drain(carolFeed, 100);
        await activity(resyncing.url, team, "after the resync");
        expect(await nextBody(carolFeed)).toBe("after the resync");
      } finally {
        await bob.dispose();
        await carol.dispose();
        await key.dispose();
        await resyncing.stop();
      }
    });
  });

  describe("field permissions follow role changes event by event", () => {
    it("losing users:read hides other users' emails from the next event of a live stream", async () => {
      const team = await createTeam(server.url);
      const key = { apiKey: team.apiKey };
      const member = await roleId(server.url, team.apiKey, "member");
      const bob = wsClient(server.wsUrl, { token: team.bob.token }, { keepOpen: true });
      try {
        const feed = subscribe(bob, MessageAddedWithEmail, { conversationId: team.group });
        await whenLive(feed, () => activity(server.url, team, "probe"));
        await activity(server.url, team, "with users:read");
        const before = await feed.next();
        expect(before.data?.messageAdded).toMatchObject({ body: "with users:read", sender: { id: team.alice.id } });
        expect(before.data?.messageAdded.sender?.email).toMatch(/@/);

        // Chats without the directory: Bob keeps reading the group but loses users:read.
        const chatsOnly = MEMBER_PERMISSIONS.filter((permission) => permission !== "users:read");
        const { createRole } = await ok(
          server.url,
          CreateRole,
          { input: { name: "Chats only", permissions: chatsOnly } },
          key,
        );
        await ok(server.url, AssignRole, { userId: team.bob.id, roleId: createRole.id }, key);
        await ok(server.url, UnassignRole, { userId: team.bob.id, roleId: member }, key);
        await sleep(200);
        await activity(server.url, team, "without users:read");
        const after = await feed.next();
        expect(after.data?.messageAdded.body).toBe("without users:read");
        expect(after.data?.messageAdded.sender?.email ?? null).toBeNull();
        expect(after.errors?.[0]?.extensions?.code, JSON.stringify(after)).toBe("FORBIDDEN");

        // And back: the next event shows it again.
        await ok(server.url, AssignRole, { userId: team.bob.id, roleId: member }, key);
        await sleep(200);
        await activity(server.url, team, "users:read again");
        const again = await feed.next();
        expect(again.data?.messageAdded.sender?.email).toMatch(/@/);
      } finally {
        await bob.dispose();
      }
    });
  });
});
