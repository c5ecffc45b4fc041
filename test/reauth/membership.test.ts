import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { expectOpen, ok, sleep, wsClient } from "../helpers/client.ts";
import { useServer } from "../helpers/world.ts";
import { RemoveMember } from "../operations/conversations.ts";
import { activity, createTeam, expectEnded, expectNothingDelivered, nextBody, openStreams, settle } from "./helpers.ts";

/** Removing a member stops their events from the conversation at once. */
describe.each(backends())("re-authorization of live subscriptions on %s", (backend) => {
  const server = useServer(backend);

  describe("removing a member stops their events from the conversation at once", () => {
    it.each(["the owner", "the API key", "themselves"] as const)("removed by %s", async (remover) => {
      const team = await createTeam(server.url);
      const bob = wsClient(server.wsUrl, { token: team.bob.token }, { keepOpen: true });
      const carol = wsClient(server.wsUrl, { token: team.carol.token });
      try {
        const bobStreams = await openStreams(server.url, bob, team);
        const carolStreams = await openStreams(server.url, carol, team);
        await settle(bobStreams);

        const auth =
          remover === "the owner"
            ? { token: team.alice.token }
            : remover === "the API key"
              ? { apiKey: team.apiKey }
              : { token: team.bob.token };
        await ok(server.url, RemoveMember, { conversationId: team.group, userId: team.bob.id }, auth);
        await activity(server.url, team, "after removal");

        // Carol still gets everything; Bob's streams of the group end and carry none of it.
        expect(await nextBody(carolStreams.one)).toBe("after removal");
        expect((await carolStreams.typing.next()).data?.typing).toMatchObject({ user: { id: team.alice.id } });
        expect((await carolStreams.reads.next()).data?.readReceipt).toMatchObject({ user: { id: team.alice.id } });
        await expectEnded(bobStreams.one, "Bob's messageAdded(conversationId)");
        await expectEnded(bobStreams.typing, "Bob's typing");
        await expectEnded(bobStreams.reads, "Bob's readReceipt");
        await expectNothingDelivered(bobStreams);
        // The socket and the all-conversations stream stay; it no longer carries the group.
        await expectOpen(bob, "Bob's socket", 300);
        const outcome = await Promise.race([bobStreams.all.done, sleep(0).then(() => "open")]);
        expect(outcome).toBe("open");
      } finally {
        await bob.dispose();
        await carol.dispose();
      }
    });
  });
});
