import DataLoader from "dataloader";
import type { Context } from "../context.ts";
import { followKeys } from "../realtime/presence.ts";
import { type PresenceChange, topics } from "../realtime/topics.ts";
import { actingUserId, tenantOf } from "./access.ts";
import { requireConversation } from "./conversations.ts";

/** What presenceChanged delivers: a change, and the conversation the subscription names (null without one). */
export interface PresenceEvent extends PresenceChange {
  conversationId: string | null;
}

/** Whether a user has an open socket on some instance. */
export async function isOnline(ctx: Context, tenantId: string, userId: string): Promise<boolean> {
  return (await ctx.deps.presence.online(tenantId, [userId])).has(userId);
}

/** When a user's last socket closed: a time not yet stored wins over the stored one. */
export function lastSeenAt(ctx: Context, user: { id: string; lastSeenAt: Date | null }): Date | null {
  const pending = ctx.deps.presence.pendingLastSeen(user.id);
  if (pending && (!user.lastSeenAt || pending > user.lastSeenAt)) return pending;
  return user.lastSeenAt ?? null;
}

/** Member ids per conversation: one query for all the conversations a request resolves at once. */
const memberIdLoaders = new WeakMap<object, DataLoader<string, string[]>>();

function memberIds(ctx: Context, conversationId: string): Promise<string[]> {
  let loader = memberIdLoaders.get(ctx.loaders);
  if (!loader) {
    loader = new DataLoader(
      async (ids) => {
        const rows = await ctx.deps.db.sql.query<{ conversationId: string; userId: string }>(
          `SELECT "conversationId", "userId" FROM "Member" WHERE "conversationId" = ANY($1::uuid[])`,
          [[...ids]],
          { name: "presence-members" },
        );
        const byConversation = new Map<string, string[]>(ids.map((id) => [id, []]));
        for (const row of rows) byConversation.get(row.conversationId)?.push(row.userId);
        return ids.map((id) => byConversation.get(id) ?? []);
        // Batched, never cached: membership changes within a request (mutations) and a subscription's life.
      },
      { cache: false },
    );
    memberIdLoaders.set(ctx.loaders, loader);
  }
  return loader.load(conversationId);
}

/** Members of a conversation online now. */
export async function onlineCount(ctx: Context, conversationId: string): Promise<number> {
  return (await ctx.deps.presence.online(tenantOf(ctx), await memberIds(ctx, conversationId))).size;
}

/**
 * Distinct sockets, on every instance, with a live subscription that follows this
 * conversation: naming it, or following all conversations of one of its members (or, for
 * the API key, of the tenant).
 */
export async function connectionCount(ctx: Context, conversationId: string): Promise<number> {
  const tenantId = tenantOf(ctx);
  const members = await memberIds(ctx, conversationId);
  return ctx.deps.presence.followers([
    followKeys.conversation(tenantId, conversationId),
    followKeys.tenant(tenantId),
    ...members.map((userId) => followKeys.user(tenantId, userId)),
  ]);
}

/**
 * Reads made for one change, shared by every subscription of this instance that receives it
 * (pub/sub hands each local listener the same object): a change costs a query or two per
 * instance, not one per subscriber.
 */
const readsOfChange = new WeakMap<PresenceChange, Map<string, Promise<Set<string>>>>();

function shared(change: PresenceChange, key: string, read: () => Promise<Set<string>>): Promise<Set<string>> {
  let reads = readsOfChange.get(change);
  if (!reads) {
    reads = new Map();
    readsOfChange.set(change, reads);
  }
  let result = reads.get(key);
  if (!result) {
    result = read();
    reads.set(key, result);
  }
  return result;
}

async function idsOf(ctx: Context, sql: string, params: unknown[], name: string): Promise<Set<string>> {
  const rows = await ctx.deps.db.sql.query<{ userId: string }>(sql, params, { name });
  return new Set(rows.map((row) => row.userId));
}

/**
 * One event object per change and conversation, handed to every subscription of this
 * instance that delivers it, so that subscribers running the same document share one
 * execution of it (see graphql/shared-execution.ts).
 */
const eventsOfChange = new WeakMap<PresenceChange, Map<string | null, PresenceEvent>>();

function eventOf(change: PresenceChange, conversationId: string | null): PresenceEvent {
  let events = eventsOfChange.get(change);
  if (!events) {
    events = new Map();
    eventsOfChange.set(change, events);
  }
  let event = events.get(conversationId);
  if (!event) {
    event = { ...change, conversationId };
    events.set(conversationId, event);
  }
  return event;
}

/**
 * Whether the viewer may hear of this change now: never of a user they block. With a
 * conversation: both the user and the viewer are its members (the API key: the user is).
 * Without: they share a conversation (the API key: every user of its tenant, whose topic this is).
 */
async function concerns(ctx: Context, conversationId: string | null, change: PresenceChange): Promise<boolean> {
  const viewerId = actingUserId(ctx);
  // The presence of users the viewer blocks is not delivered (from the cache: no query per change).
  if (viewerId && (await ctx.deps.safety.blockedBy(tenantOf(ctx), viewerId)).has(change.userId)) return false;
  if (conversationId) {
    const members = await shared(change, `members:${conversationId}`, () =>
      idsOf(
        ctx,
        `SELECT "userId" FROM "Member" WHERE "conversationId" = $1::uuid`,
        [conversationId],
        "presence-conversation-members",
      ),
    );
    return members.has(change.userId) && (!viewerId || members.has(viewerId));
  }
  if (!viewerId) return true;
  const partners = await shared(change, "partners", () =>
    idsOf(
      ctx,
      `SELECT DISTINCT b."userId" FROM "Member" a JOIN "Member" b ON b."conversationId" = a."conversationId"
        WHERE a."userId" = $1::uuid`,
      [change.userId],
      "presence-partners",
    ),
  );
  return partners.has(viewerId);
}

/**
 * Presence changes of a conversation's members, or without one of everyone who shares a
 * conversation with the viewer. The conversation is checked as `conversation(id)` checks
 * it. Changes are delivered in order; while the subscriber is behind, only each user's
 * latest change is kept (an online-offline flicker the subscriber never saw is not replayed).
 */
export async function presenceFeed(
  ctx: Context,
  conversationId: string | null,
): Promise<AsyncGenerator<PresenceEvent, undefined>> {
  const id = conversationId ? (await requireConversation(ctx, conversationId, "conversationId")).conversation.id : null;
  const pending = new Map<string, PresenceChange>();
  let wake: (() => void) | null = null;
  let checks = Promise.resolve();
  let stopped = false;
  const unsubscribe = await ctx.deps.pubsub.subscribe(topics.presence(tenantOf(ctx)), (change) => {
    checks = checks
      .then(async () => {
        if (stopped || !(await concerns(ctx, id, change))) return;
        if (stopped) return;
        pending.delete(change.userId);
        pending.set(change.userId, change);
        wake?.();
      })
      .catch((error: Error) => ctx.deps.log.warn({ err: error.message }, "presence check failed"));
  });
  const done = { value: undefined, done: true } as const;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    unsubscribe();
    pending.clear();
    wake?.();
  };
  // A plain iterator rather than a generator: return() must release the topic even before the first next().
  const feed: AsyncGenerator<PresenceEvent, undefined> = {
    async next() {
      while (!stopped) {
        const next = pending.entries().next();
        if (!next.done) {
          const [userId, change] = next.value;
          pending.delete(userId);
          return { value: eventOf(change, id), done: false };
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = null;
      }
      return done;
    },
    async return() {
      stop();
      return done;
    },
    async throw(error: unknown) {
      stop();
      throw error;
    },
    [Symbol.asyncIterator]() {
      return feed;
    },
  };
  return feed;
}
