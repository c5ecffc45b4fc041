import { type Context, hasPermission } from "../context.ts";
import { forbidden } from "../errors.ts";
import type { Message } from "../generated/prisma/client.ts";
import { messagesAfter, reviveMessage } from "../services/messages.ts";
import type { Unsubscribe } from "./pubsub.ts";
import { BoundedQueue, cancellable } from "./queue.ts";
import { type ReadPayload, type TypingPayload, topics, type UserEvent } from "./topics.ts";

const PAGE = 200;

type Signal = { type: "message"; message: Message } | { type: "membership"; event: UserEvent } | { type: "resync" };

/**
 * A gap-free message stream. Each tracked conversation keeps the last delivered seq;
 * a live message with the next seq is delivered as is (no database read), a jump means
 * something was missed and the gap is read from storage, an old seq is a duplicate and
 * dropped. After a pub/sub reconnect every tracked conversation is re-read from its
 * last seq. Storage stays the source of truth; pub/sub only says "something new".
 */
export function messageFeed(
  ctx: Context,
  options: { conversationId: string | null; afterSeq: number | null },
): AsyncGenerator<Message> {
  const queue = new BoundedQueue<Signal>(ctx.deps.config.subscriberBufferSize);
  return cancellable(runMessageFeed(ctx, options, queue), queue as BoundedQueue<unknown>);
}

async function* runMessageFeed(
  ctx: Context,
  options: { conversationId: string | null; afterSeq: number | null },
  queue: BoundedQueue<Signal>,
): AsyncGenerator<Message> {
  const { pubsub } = ctx.deps;
  const principal = ctx.principal;
  if (!principal) return;
  const tenantId = principal.tenantId;
  const userId = principal.kind === "user" ? principal.userId : null;
  const prisma = ctx.prisma;
  const lastSeq = new Map<string, number>();
  const unsubscribers = new Map<string, Unsubscribe>();
  const cleanups: Unsubscribe[] = [];

  const onMessage = (payload: unknown) =>
    queue.push({ type: "message", message: reviveMessage(payload as Record<string, unknown>) });
  const follow = async (conversationId: string) => {
    if (unsubscribers.has(conversationId)) return;
    unsubscribers.set(conversationId, () => {});
    unsubscribers.set(conversationId, await pubsub.subscribe(topics.messages(tenantId, conversationId), onMessage));
  };
  const unfollow = (conversationId: string) => {
    unsubscribers.get(conversationId)?.();
    unsubscribers.delete(conversationId);
    lastSeq.delete(conversationId);
  };

  try {
    cleanups.push(pubsub.onResync(() => queue.push({ type: "resync" })));
    // Users follow their memberships; the API key follows every conversation of the tenant.
    const membershipTopic = userId ? topics.user(tenantId, userId) : topics.conversations(tenantId);
    cleanups.push(
      await pubsub.subscribe(membershipTopic, (payload) =>
        queue.push({ type: "membership", event: payload as UserEvent }),
      ),
    );
    // Subscribe before reading the starting point, so nothing falls between the two.
    if (options.conversationId) {
      await follow(options.conversationId);
      const conversation = await prisma.conversation.findFirst({
        where: { id: options.conversationId, tenantId },
        select: { lastSeq: true },
      });
      if (!conversation) return;
      lastSeq.set(options.conversationId, options.afterSeq ?? conversation.lastSeq);
    } else {
      const ids = await visibleConversationIds(ctx, tenantId, userId);
      await Promise.all(ids.map(follow));
      const rows = await prisma.conversation.findMany({
        where: { tenantId, id: { in: ids } },
        select: { id: true, lastSeq: true },
      });
      for (const row of rows) lastSeq.set(row.id, row.lastSeq);
    }

    // Replay (or catch up with whatever was committed while subscribing).
    for (const conversationId of [...lastSeq.keys()]) yield* readGap(conversationId);

    while (true) {
      const next = await queue.next();
      if (next.done) return;
      const signal = next.value;
      if (signal.type === "message") {
        const { message } = signal;
        const seen = lastSeq.get(message.conversationId);
        if (seen === undefined || message.seq <= seen) continue;
        if (message.seq === seen + 1) {
          lastSeq.set(message.conversationId, message.seq);
          yield message;
        } else {
          yield* readGap(message.conversationId);
        }
      } else if (signal.type === "membership") {
        const { event } = signal;
        if (event.type === "revoked") return;
        if (event.type === "permissionsChanged") {
          await assertStillAllowed(ctx);
        } else if (event.type === "left") {
          if (options.conversationId === event.conversationId) return;
          unfollow(event.conversationId);
        } else if (!options.conversationId && !lastSeq.has(event.conversationId)) {
          await follow(event.conversationId);
          lastSeq.set(event.conversationId, event.seq);
          yield* readGap(event.conversationId);
        }
      } else {
        if (!options.conversationId) {
          // Memberships may have changed while the transport was down.
          const ids = await visibleConversationIds(ctx, tenantId, userId);
          const current = new Set(ids);
          for (const id of [...lastSeq.keys()]) if (!current.has(id)) unfollow(id);
          for (const id of ids) {
            if (!lastSeq.has(id)) {
              await follow(id);
              lastSeq.set(id, await joinedAtSeq(ctx, id, userId));
            }
          }
        } else if (userId) {
          const still = await prisma.member.findUnique({
            where: { conversationId_userId: { conversationId: options.conversationId, userId } },
          });
          if (!still) return;
        }
        for (const conversationId of [...lastSeq.keys()]) yield* readGap(conversationId);
      }
    }
  } finally {
    for (const cleanup of cleanups) cleanup();
    for (const unsubscribe of unsubscribers.values()) unsubscribe();
    queue.end();
  }

  async function* readGap(conversationId: string): AsyncGenerator<Message> {
    while (true) {
      const from = lastSeq.get(conversationId);
      if (from === undefined) return;
      const rows = await messagesAfter(prisma, tenantId, conversationId, from, PAGE);
      for (const row of rows) {
        lastSeq.set(conversationId, row.seq);
        yield row;
      }
      if (rows.length < PAGE) return;
    }
  }
}

async function visibleConversationIds(ctx: Context, tenantId: string, userId: string | null): Promise<string[]> {
  if (userId) {
    const rows = await ctx.prisma.member.findMany({ where: { tenantId, userId }, select: { conversationId: true } });
    return rows.map((row) => row.conversationId);
  }
  const rows = await ctx.prisma.conversation.findMany({ where: { tenantId }, select: { id: true } });
  return rows.map((row) => row.id);
}

/** For a membership discovered after a reconnect: deliver what was sent since the user joined. */
async function joinedAtSeq(ctx: Context, conversationId: string, userId: string | null): Promise<number> {
  if (!userId) return 0;
  const member = await ctx.prisma.member.findUnique({
    where: { conversationId_userId: { conversationId, userId } },
    select: { joinedAt: true },
  });
  if (!member) return Number.MAX_SAFE_INTEGER;
  const before = await ctx.prisma.message.findFirst({
    where: { conversationId, createdAt: { lt: member.joinedAt } },
    orderBy: { seq: "desc" },
    select: { seq: true },
  });
  return before?.seq ?? 0;
}

/** A role change applies to open streams: re-read permissions, and stop when chats:read is gone. */
async function assertStillAllowed(ctx: Context): Promise<void> {
  ctx.refreshPermissions();
  if (!(await hasPermission(ctx, "chats:read"))) {
    throw forbidden("Your roles no longer allow reading conversations");
  }
}

/**
 * Re-authorizes a live-only stream on the user's events: it ends when the user leaves
 * the conversation or loses their credentials, and fails when they lose chats:read.
 */
async function watchMembership(
  ctx: Context,
  conversationId: string,
  queue: BoundedQueue<unknown>,
): Promise<Unsubscribe> {
  const principal = ctx.principal;
  if (principal?.kind !== "user") return () => {};
  return ctx.deps.pubsub.subscribe(topics.user(principal.tenantId, principal.userId), (payload) => {
    const event = payload as UserEvent;
    if (event.type === "revoked" || (event.type === "left" && event.conversationId === conversationId)) {
      queue.end();
    } else if (event.type === "permissionsChanged") {
      assertStillAllowed(ctx).catch((error: unknown) => queue.fail(error));
    }
  });
}

/**
 * A live-only feed of one conversation topic: events are handed to `accept`, which
 * pushes what the subscriber should see; the feed ends when the viewer leaves.
 */
function conversationTopicFeed<T>(
  ctx: Context,
  conversationId: string,
  topicOf: (tenantId: string, conversationId: string) => string,
  accept: (payload: unknown, push: (event: T) => void) => void,
  dispose: () => void = () => {},
): AsyncGenerator<T> {
  const queue = new BoundedQueue<T>(ctx.deps.config.subscriberBufferSize);
  const push = (event: T) => queue.push(event);
  async function* run(): AsyncGenerator<T> {
    const principal = ctx.principal;
    if (!principal) return;
    const unsubscribe = await ctx.deps.pubsub.subscribe(topicOf(principal.tenantId, conversationId), (payload) =>
      accept(payload, push),
    );
    const unwatch = await watchMembership(ctx, conversationId, queue as BoundedQueue<unknown>);
    try {
      while (true) {
        const next = await queue.next();
        if (next.done) return;
        yield next.value;
      }
    } finally {
      unsubscribe();
      unwatch();
      dispose();
    }
  }
  return cancellable(run(), queue as BoundedQueue<unknown>);
}

/**
 * Typing indicators: coalesced per user (a refresh while typing emits nothing), and a
 * user who stops refreshing is reported as stopped after TYPING_TIMEOUT_MS. The
 * viewer's own typing is not echoed back.
 */
export function typingFeed(ctx: Context, conversationId: string): AsyncGenerator<TypingPayload> {
  const viewerId = ctx.principal?.kind === "user" ? ctx.principal.userId : null;
  const timeout = ctx.deps.config.typingTimeoutMs;
  const timers = new Map<string, NodeJS.Timeout>();
  return conversationTopicFeed<TypingPayload>(
    ctx,
    conversationId,
    topics.typing,
    (payload, push) => {
      const event = payload as TypingPayload;
      if (event.userId === viewerId) return;
      const stop = () => {
        clearTimeout(timers.get(event.userId));
        timers.delete(event.userId);
        push({ conversationId, userId: event.userId, isTyping: false });
      };
      const typing = timers.has(event.userId);
      if (event.isTyping) {
        clearTimeout(timers.get(event.userId));
        timers.set(event.userId, setTimeout(stop, timeout));
        if (!typing) push(event);
      } else if (typing) {
        stop();
      }
    },
    () => {
      for (const timer of timers.values()) clearTimeout(timer);
    },
  );
}

/** Read receipts of the members of a conversation, as they happen. */
export function readFeed(ctx: Context, conversationId: string): AsyncGenerator<ReadPayload> {
  return conversationTopicFeed<ReadPayload>(ctx, conversationId, topics.reads, (payload, push) =>
    push(payload as ReadPayload),
  );
}
