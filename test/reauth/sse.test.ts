import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backends, startServer, type TestServer } from "../helpers/backends.ts";
import { expectClosed4403, expectOpen, fails, ok, sleep, subscribe, whenLive, wsClient } from "../helpers/client.ts";
import { useServer } from "../helpers/world.ts";
import { RemoveMember } from "../operations/conversations.ts";
import { MessageAdded } from "../operations/events.ts";
import { SendMessage } from "../operations/messages.ts";
import { AssignRole, CreateRole, UnassignRole } from "../operations/roles.ts";
import { RotateApiKey } from "../operations/tenants.ts";
import { DeleteUser, RevokeUserTokens, UpdateUser, Viewer } from "../operations/users.ts";
import {
  activity,
  createTeam,
  expectEnded,
  expectForbiddenEnd,
  expectNothingDelivered,
  expectSocketRefused,
  NO_CHATS_READ,
  nextBody,
  openStreams,
  roleId,
  settle,
  sseLive,
  sseSubscribe,
  streamList,
} from "./helpers.ts";

/** Subscriptions streamed over HTTP (server-sent events) follow the same rules as sockets. */
describe.each(backends())("re-authorization of live subscriptions on %s", (backend) => {
  const server = useServer(backend);

  /** A second instance on the same database and Redis (only where PostgreSQL is configured). */
  let other: TestServer | null = null;
  beforeAll(async () => {
    // PGlite is single-process: a second instance needs a shared PostgreSQL.
    if (backend === "postgres+redis") other = await startServer(server.database);
  });
  afterAll(async () => {
    await other?.stop();
  });

  describe("subscriptions streamed over HTTP (server-sent events) follow the same rules", () => {
    it("a stream opened with an API key ends when the key is rotated away, and carries nothing after", async () => {
      const team = await createTeam(server.url);
      const stream = await sseSubscribe(
        server.url,
        MessageAdded,
        { conversationId: team.group },
        { apiKey: team.apiKey },
      );
      try {
        const send = (body: string) =>
          ok(server.url, SendMessage, { input: { conversationId: team.group, body } }, { token: team.alice.token });
        await sseLive(stream, () => send("probe"));
        await ok(server.url, RotateApiKey, {}, { apiKey: team.apiKey });
        await send("after rotation");
        const ended = await Promise.race([stream.ended, sleep(3_000).then(() => null)]);
        const bodies = stream.buffered.map((event) => event.data?.messageAdded.body);
        expect(bodies, "the old key's stream received a message sent after the rotation").not.toContain(
          "after rotation",
        );
        expect(ended, "the old key's stream is still open after the rotation").not.toBeNull();
      } finally {
        stream.close();
      }
    });

    it.each(["token revocation", "deactivation"] as const)(
      "a user's stream ends on %s and carries nothing after",
      async (action) => {
        const team = await createTeam(server.url);
        const key = { apiKey: team.apiKey };
        const stream = await sseSubscribe(
          server.url,
          MessageAdded,
          { conversationId: team.group },
          { token: team.bob.token },
        );
        try {
          const send = (body: string) =>
            ok(server.url, SendMessage, { input: { conversationId: team.group, body } }, { token: team.alice.token });
          await sseLive(stream, () => send("probe"));
          if (action === "token revocation") await ok(server.url, RevokeUserTokens, { userId: team.bob.id }, key);
          else await ok(server.url, UpdateUser, { id: team.bob.id, input: { active: false } }, key);
          await send("after");
          const ended = await Promise.race([stream.ended, sleep(3_000).then(() => null)]);
          expect(stream.buffered.map((event) => event.data?.messageAdded.body)).not.toContain("after");
          expect(ended, "Bob's stream is still open").not.toBeNull();
        } finally {
          stream.close();
        }
      },
    );

    it("a role change ends a user's stream with FORBIDDEN", async () => {
      const team = await createTeam(server.url);
      const key = { apiKey: team.apiKey };
      const member = await roleId(server.url, team.apiKey, "member");
      const { createRole } = await ok(
        server.url,
        CreateRole,
        { input: { name: "Directory", permissions: NO_CHATS_READ } },
        key,
      );
      await ok(server.url, AssignRole, { userId: team.bob.id, roleId: createRole.id }, key);
      const stream = await sseSubscribe(
        server.url,
        MessageAdded,
        { conversationId: team.group },
        { token: team.bob.token },
      );
      try {
        const send = (body: string) =>
          ok(server.url, SendMessage, { input: { conversationId: team.group, body } }, { token: team.alice.token });
        await sseLive(stream, () => send("probe"));
        await ok(server.url, UnassignRole, { userId: team.bob.id, roleId: member }, key);
        await send("after");
        const ended = await Promise.race([stream.ended, sleep(3_000).then(() => null)]);
        expect(stream.buffered.filter((event) => event.data)).toEqual([]);
        expect(stream.buffered[0]?.errors?.[0]?.extensions?.code, JSON.stringify(stream.buffered)).toBe("FORBIDDEN");
        expect(ended, "Bob's stream is still open").not.toBeNull();
      } finally {
        stream.close();
      }
    });
  });

  // Two instances need a shared database, which PGlite (single process) cannot be.
  const acrossInstances = backend === "postgres+redis" ? describe : null;
  acrossInstances?.("decided on a second instance", () => {
    const second = () => other as TestServer;

    it.each(["deactivation", "deletion", "token revocation"] as const)(
      "%s on the second instance closes a socket held by the first with 4403",
      async (action) => {
        const team = await createTeam(server.url);
        const key = { apiKey: team.apiKey };
        const bob = wsClient(server.wsUrl, { token: team.bob.token });
        const carol = wsClient(server.wsUrl, { token: team.carol.token });
        try {
          await openStreams(server.url, bob, team);
          const carolFeed = subscribe(carol, MessageAdded, { conversationId: team.group });
          await whenLive(carolFeed, () => activity(server.url, team, "probe"));

          if (action === "deactivation") {
            await ok(second().url, UpdateUser, { id: team.bob.id, input: { active: false } }, key);
          } else if (action === "deletion") {
            await ok(second().url, DeleteUser, { id: team.bob.id }, key);
          } else {
            await ok(second().url, RevokeUserTokens, { userId: team.bob.id }, key);
          }

          await expectClosed4403(bob, "Bob's socket on the first instance");
          await fails(server.url, Viewer, {}, { token: team.bob.token }, "UNAUTHENTICATED");
          await expectSocketRefused(server.wsUrl, { token: team.bob.token }, team.group);
          await activity(second().url, team, "after");
          expect(await nextBody(carolFeed)).toBe("after");
          await expectOpen(carol, "Carol's socket on the first instance", 200);
        } finally {
          await bob.dispose();
          await carol.dispose();
        }
      },
    );

    it("rotating the key on the second instance closes the old key's socket on the first", async () => {
      const team = await createTeam(server.url);
      const old = wsClient(server.wsUrl, { apiKey: team.apiKey });
      try {
        const feed = subscribe(old, MessageAdded, {});
        await whenLive(feed, () =>
          ok(
            server.url,
            SendMessage,
            { input: { conversationId: team.group, body: "probe" } },
            { token: team.alice.token },
          ),
        );
        await ok(second().url, RotateApiKey, {}, { apiKey: team.apiKey });
        await expectClosed4403(old, "the old key's socket on the first instance");
      } finally {
        await old.dispose();
      }
    });

    it("a role change on the second instance ends streams on the first with FORBIDDEN", async () => {
      const team = await createTeam(server.url);
      const key = { apiKey: team.apiKey };
      const member = await roleId(server.url, team.apiKey, "member");
      const { createRole } = await ok(
        server.url,
        CreateRole,
        { input: { name: "Directory", permissions: NO_CHATS_READ } },
        key,
      );
      await ok(server.url, AssignRole, { userId: team.bob.id, roleId: createRole.id }, key);
      const bob = wsClient(server.wsUrl, { token: team.bob.token }, { keepOpen: true });
      const carol = wsClient(server.wsUrl, { token: team.carol.token });
      try {
        const streams = await openStreams(server.url, bob, team);
        const carolFeed = subscribe(carol, MessageAdded, { conversationId: team.group });
        await whenLive(carolFeed, () => activity(server.url, team, "probe"));
        await settle(streams);

        await ok(second().url, UnassignRole, { userId: team.bob.id, roleId: member }, key);
        await activity(second().url, team, "after the change");
        expect(await nextBody(carolFeed)).toBe("after the change");
        for (const [name, sub] of streamList(streams)) await expectForbiddenEnd(sub, `Bob's ${name} stream`);
        await expectNothingDelivered(streams);
        await expectOpen(bob, "Bob's socket", 300);
      } finally {
        await bob.dispose();
        await carol.dispose();
      }
    });

    it("removing a member on the second instance ends their typing and readReceipt on the first", async () => {
      const team = await createTeam(server.url);
      const bob = wsClient(server.wsUrl, { token: team.bob.token }, { keepOpen: true });
      try {
        const streams = await openStreams(server.url, bob, team);
        await ok(
          second().url,
          RemoveMember,
          { conversationId: team.group, userId: team.bob.id },
          { apiKey: team.apiKey },
        );
        await activity(second().url, team, "after removal");
        await expectEnded(streams.one, "Bob's messageAdded(conversationId)");
        await expectEnded(streams.typing, "Bob's typing");
        await expectEnded(streams.reads, "Bob's readReceipt");
        await sleep(200);
        await expectNothingDelivered(streams);
        await expectOpen(bob, "Bob's socket", 0);
      } finally {
        await bob.dispose();
      }
    });
  });
});
