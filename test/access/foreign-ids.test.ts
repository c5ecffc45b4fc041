import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { drain, fails, ok, request, subscribe, whenLive, wsClient } from "../helpers/client.ts";
import { Sessions } from "../operations/accounts.ts";
import { Conversations, MarkRead } from "../operations/conversations.ts";
import { ConversationEvents, MessageAdded } from "../operations/events.ts";
import { SearchMessages, SendMessage, SetTyping } from "../operations/messages.ts";
import { Roles } from "../operations/roles.ts";
import { BlockedUsers, BlockUser, Reports } from "../operations/safety.ts";
import { foreignIdCases, foreignNullCases } from "./foreign-id-cases.ts";
import {
  ALL,
  authOf,
  BOTH,
  bodiesOf,
  download,
  EVENT_TYPES,
  expectNoLeak,
  expectRefused,
  fieldOf,
  firstError,
  headersOf,
  MALFORMED_IDS,
  named,
  PRIVILEGED,
  SESSION_USERS,
  stateOf,
  stirHome,
  subscriptionCases,
  useAccessWorld,
  withActors,
} from "./world.ts";

/** An id of another tenant behaves, for every operation and every kind of caller, like an id that does not exist. */
describe.each(backends())("access rules on %s", (backend) => {
  const w = useAccessWorld(backend);

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

    it.each(PRIVILEGED)("reports never lists another tenant's reports (foreign %s)", async (actor) => {
      const result = await request(w.url, Reports, { first: 100 }, authOf(w.intruder, actor));
      expect(result.errors, JSON.stringify(result)).toBeUndefined();
      expect(result.data?.reports.edges.map((edge) => edge.node.id)).toEqual([w.intruder.report]);
      expectNoLeak(w.home.secrets, result);
      // And home still sees its own.
      const home = await ok(w.url, Reports, { first: 100 }, { apiKey: w.home.apiKey });
      expect(home.reports.edges.map((edge) => edge.node.id)).toEqual([w.home.report]);
    });

    it("blockedUsers never lists a user of another tenant, who cannot be blocked", async () => {
      const auth = authOf(w.intruder, "user token");
      await fails(w.url, BlockUser, { userId: w.home.owner.id }, auth, "NOT_FOUND");
      const result = await request(w.url, BlockedUsers, {}, auth);
      expect(result.errors, JSON.stringify(result)).toBeUndefined();
      expect(result.data?.blockedUsers).toEqual([]);
    });

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
});
