import type { ResultOf } from "@graphql-typed-document-node/core";
import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { type Auth, ok } from "../helpers/client.ts";
import { RemoveMember } from "../operations/conversations.ts";
import { DeleteMessage, EditMessage, SearchMessages } from "../operations/messages.ts";
import { as, group, ids, refused, send, useMessagingServers } from "./helpers.ts";

/** searchMessages: full-text search within what the viewer may read. */
describe.each(backends())("messaging on %s", (backend) => {
  const s = useMessagingServers(backend);
  const { setup, foreigner } = s;

  describe("searchMessages", () => {
    async function searchAll(auth: Auth, query: string, conversationId?: string) {
      const { searchMessages } = await ok(s.url, SearchMessages, { query, conversationId, first: 50 }, auth);
      expect(searchMessages.pageInfo.hasNextPage).toBe(false);
      return searchMessages.edges.map((edge) => edge.node);
    }

    it("finds only readable, undeleted messages of the tenant, best match first, with paging and syntax", async () => {
      const { tenant, alice, bob, carol, conversationId: g1 } = await setup();
      const g2 = await group(s.url, as(alice), [bob], "Second");
      const g3 = await group(s.url, as(alice), [carol], "Without Bob");
      const once = await send(s.url, as(alice), g1, "zebra migration season");
      const thrice = await send(s.url, as(carol), g1, "zebra zebra zebra stampede");
      const crossing = await send(s.url, as(bob), g2, "zebra crossing ahead");
      const hidden = await send(s.url, as(alice), g3, "zebra secret plans");
      const deleted = await send(s.url, as(alice), g1, "zebra deleted later");
      await ok(s.url, DeleteMessage, { id: deleted.id }, as(alice));
      const { eve, conversationId: evesRoom } = await foreigner();
      await send(s.url, as(eve), evesRoom, "zebra foreign zebra zebra zebra");

      const found = await searchAll(as(bob), "zebra");
      expect(found[0]?.id).toBe(thrice.id);
      expect(ids(found).sort()).toEqual([once.id, thrice.id, crossing.id].sort());
      for (const node of found) expect(node.deletedAt).toBeNull();
      // The API key reads every conversation of its tenant, and still nothing deleted or foreign.
      expect(ids(await searchAll({ apiKey: tenant.apiKey }, "zebra")).sort()).toEqual(
        [once.id, thrice.id, crossing.id, hidden.id].sort(),
      );
      expect(ids(await searchAll(as(eve), "zebra"))).not.toContain(once.id);

      // conversationId narrows; a conversation the viewer is not in is refused.
      expect(ids(await searchAll(as(bob), "zebra", g2))).toEqual([crossing.id]);
      await refused(s.url, SearchMessages, { query: "zebra", conversationId: g3 }, as(bob), "FORBIDDEN");
      await refused(s.url, SearchMessages, { query: "zebra", conversationId: evesRoom }, as(bob), "NOT_FOUND");

      // Every word must match; a phrase must match in order; -word excludes.
      expect(ids(await searchAll(as(bob), "zebra stampede"))).toEqual([thrice.id]);
      expect(ids(await searchAll(as(bob), '"migration season"'))).toEqual([once.id]);
      expect(await searchAll(as(bob), '"season migration"')).toEqual([]);
      expect(ids(await searchAll(as(bob), "zebra -stampede")).sort()).toEqual([once.id, crossing.id].sort());

      // Cursor paging returns the same results in the same order, one page at a time.
      const paged: string[] = [];
      let after: string | null | undefined = null;
      for (let page = 0; page < 5; page++) {
        const { searchMessages }: ResultOf<typeof SearchMessages> = await ok(
          s.url,
          SearchMessages,
          { query: "zebra", first: 1, after },
          as(bob),
        );
        paged.push(...ids(searchMessages.edges.map((e) => e.node)));
        after = searchMessages.pageInfo.endCursor;
        if (!searchMessages.pageInfo.hasNextPage) break;
      }
      expect(paged).toEqual(ids(found));

      // Once Bob leaves g2, its messages are no longer his to find.
      await ok(s.url, RemoveMember, { conversationId: g2, userId: bob.id }, as(bob));
      expect(ids(await searchAll(as(bob), "zebra")).sort()).toEqual([once.id, thrice.id].sort());
    });

    it("ranks a message with more of the query words above one with fewer, and follows edits", async () => {
      const { alice, bob, conversationId } = await setup();
      const one = await send(s.url, as(alice), conversationId, "giraffe spotted today");
      const both = await send(s.url, as(bob), conversationId, "giraffe neck stretch");
      const other = await send(s.url, as(alice), conversationId, "neck pain again");
      const found = await searchAll(as(bob), "giraffe OR neck");
      expect(found[0]?.id).toBe(both.id);
      expect(ids(found).sort()).toEqual([one.id, both.id, other.id].sort());

      await ok(s.url, EditMessage, { id: one.id, body: "okapi spotted today" }, as(alice));
      expect(ids(await searchAll(as(bob), "okapi"))).toEqual([one.id]);
      expect(ids(await searchAll(as(bob), "giraffe"))).toEqual([both.id]);
    });

    it("refuses an empty query", async () => {
      const { bob } = await setup();
      for (const query of ["", "   "]) {
        await refused(s.url, SearchMessages, { query }, as(bob), "BAD_USER_INPUT", "query");
      }
    });
  });
});
