import { describe, expect } from "vitest";
import { backends } from "../helpers/backends.ts";
import { drain, ok, subscribe, whenLive } from "../helpers/client.ts";
import { test } from "../helpers/world.ts";
import { OpenDirect, RemoveMember } from "../operations/conversations.ts";
import { MessageAdded } from "../operations/events.ts";
import { SendMessage } from "../operations/messages.ts";
import { bodiesOf, createTeam, ended, useAccessWorld } from "./world.ts";

/** Removing a member ends their live messageAdded for that conversation, and only for it. */
describe.each(backends())("access rules on %s", (backend) => {
  const w = useAccessWorld(backend);

  describe("removing a member ends their live messageAdded", () => {
    test.for(["the owner", "the API key", "themselves"] as const)("removed by %s", async (remover, { sockets }) => {
      const team = await createTeam(w.url);
      const { alice, bob, carol } = team;
      const aliceAndBob = (await ok(w.url, OpenDirect, { userId: bob.id }, { token: alice.token }))
        .openDirectConversation.id;
      const bobClient = sockets.open({ token: bob.token });
      const carolClient = sockets.open({ token: carol.token });
      const send = (conversationId: string, body: string) =>
        ok(w.url, SendMessage, { input: { conversationId, body } }, { token: alice.token });
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
    });
  });
});
