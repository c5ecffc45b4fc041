import { revokesPrincipal, watchCredentialEnd } from "../auth/credential-end.ts";
import { hasPermission } from "../auth/permissions.ts";
import type { Context } from "../context.ts";
import { forbidden } from "../errors.ts";
import { type HubListener, liveHub } from "./hub.ts";
import { readCounters, readResumePoints, type StreamStore } from "./position-reads.ts";
import { type Positioned, type RebasePolicy, type StreamCursor, StreamPosition } from "./positions.ts";
import type { Unsubscribe } from "./pubsub.ts";
import { BoundedQueue, cancellable, type Slot } from "./queue.ts";
import { type ReadPayload, type Topic, type TypingPayload, topics, type UserEvent } from "./topics.ts";

const PAGE = 200;

/**
 * A stream of rows numbered per conversation (messages by `seq`, conversation events by
 * their own `seq`), read from storage and announced on a pub/sub topic, where each row
 * crosses in its wire form W.
 */
export interface SequencedSource<T, W> {
  /** Its rows and counter, for the positions of streams over all conversations. */
  store: StreamStore;
  topic(tenantId: string, conversationId: string): Topic<W>;
  /** Rows cross pub/sub as JSON; revive dates and the like. */
  revive(payload: W): T;
  conversationOf(item: T): string;
  seqOf(item: T): number;
  /** Where a conversation stands now, from its row. */
  currentSeq(conversation: { lastSeq: number; lastEventSeq: number }): number;
  /** Where a membership event says a new member starts. */
  joinedSeq(event: { seq: number; eventSeq?: number }): number;
  fetchAfter(ctx: Context, tenantId: string, conversationId: string, afterSeq: number, limit: number): Promise<T[]>;
  /** Rows since a member joined, for a membership found after a reconnect. */
  seqBefore(ctx: Context, conversationId: string, joinedAt: Date): Promise<number>;
  /** What to deliver when a followed conversation is deleted, if anything. */
  deleted?(conversationId: string): T;
}

/** Revived rows per source and wire payload: every local subscriber gets the same object. */
const revivedBySource = new WeakMap<object, WeakMap<object, unknown>>();

/**
 * Revives a wire payload once for all local subscribers, so that a live event is one
 * object everywhere and its execution can be shared (see graphql/shared-execution.ts).
 */
function reviveShared<T, W>(source: SequencedSource<T, W>, payload: W): T {
  if (payload === null || typeof payload !== "object") return source.revive(payload);
  let revived = revivedBySource.get(source);
  if (!revived) {
    revived = new WeakMap();
    revivedBySource.set(source, revived);
  }
  let item = revived.get(payload) as T | undefined;
  if (item === undefined) {
    item = source.revive(payload);
    revived.set(payload, item);
  }
  return item;
}

type Signal<T> =
  | { type: "item"; item: T }
  | { type: "membership"; event: UserEvent }
  | { type: "resync" }
  /** Rows of a conversation arrived ahead of a missing one, which did not come in time. */
  | { type: "gap"; conversationId: string };

/** Rows of one conversation that arrived ahead of a missing one, by seq, and the timer that reads the gap. */
interface Early<T> {
  rows: Map<number, T>;
  timer: NodeJS.Timeout | null;
}

/** Most rows held per conversation while waiting; past it the gap is read at once. */
const MAX_EARLY_ROWS = 64;

/**
 * Reads of the same rows by many subscribers at once (a gap every stream of a conversation
 * saw) share one query while it runs. Only in flight: nothing is cached after it answers.
 */
const inFlightReads = new WeakMap<object, Map<string, Promise<unknown[]>>>();

function sharedFetchAfter<T, W>(
  source: SequencedSource<T, W>,
  ctx: Context,
  tenantId: string,
  conversationId: string,
  afterSeq: number,
  limit: number,
): Promise<T[]> {
  let reads = inFlightReads.get(source);
  if (!reads) {
    reads = new Map();
    inFlightReads.set(source, reads);
  }
  const key = `${tenantId}:${conversationId}:${afterSeq}:${limit}`;
  let read = reads.get(key) as Promise<T[]> | undefined;
  if (!read) {
    const started = source.fetchAfter(ctx, tenantId, conversationId, afterSeq, limit);
    read = started;
    reads.set(key, started);
    const forget = () => {
      if (reads?.get(key) === started) reads.delete(key);
    };
    started.then(forget, forget);
  }
  return read;
}

export interface FeedOptions {
  conversationId: string | null;
  afterSeq: number | null;
  /** Without conversationId: the stream cursor to resume from. */
  resume?: StreamCursor | null;
  /** Without conversationId: when the position takes a new snapshot (the default suits every stream). */
  rebase?: RebasePolicy;
}

/** What a feed yields: rows, each with its stream's position when the feed follows all conversations. */
export type FeedItem<T> = T | Positioned<T>;

/**
 * A gap-free stream. Each tracked conversation keeps the last delivered seq; a live row
 * with the next seq is delivered as is (no database read), a jump means something was
 * missed and the gap is read from storage, an old seq is a duplicate and dropped. After
 * a pub/sub reconnect every tracked conversation is re-read from its last seq. Storage
 * stays the source of truth; pub/sub only says "something new".
 *
 * Without a conversation id the stream also keeps its position over all conversations (a
 * database snapshot plus exceptions, see positions.ts) and yields each row with it, so
 * its cursor can resume the whole stream; with `resume` it starts from such a position.
 */
export function sequencedFeed<T, W>(
  ctx: Context,
  options: FeedOptions,
  source: SequencedSource<T, W>,
): AsyncGenerator<FeedItem<T>> {
  const queue = new BoundedQueue<Signal<T>>(ctx.deps.config.subscriberBufferSize);
  return cancellable(runFeed(ctx, options, source, queue), queue as BoundedQueue<unknown>, ctx.streams);
}

async function* runFeed<T, W>(
  ctx: Context,
  options: FeedOptions,
  source: SequencedSource<T, W>,
  queue: BoundedQueue<Signal<T>>,
): AsyncGenerator<FeedItem<T>> {
  const { pubsub } = ctx.deps;
  const principal = ctx.principal;
  if (!principal) return;
  const tenantId = principal.tenantId;
  const userId = principal.kind === "user" ? principal.userId : null;
  const prisma = ctx.prisma;
  const lastSeq = new Map<string, number>();
  /** Rows that arrived ahead of a missing one, per conversation (see LIVE_REORDER_WAIT_MS); made when first needed. */
  let early: Map<string, Early<T>> | null = null;
  const unsubscribers = new Map<string, Unsubscribe>();
  const cleanups: Unsubscribe[] = [];
  /** Set for streams over all conversations. */
  let position: StreamPosition | null = null;
  const emit = (item: T): FeedItem<T> =>
    position ? position.deliver(item, source.conversationOf(item), source.seqOf(item)) : item;

  const onItem = (payload: W) => queue.push({ type: "item", item: reviveShared(source, payload) });
  /**
   * Live rows come through the hub. Each takes its place in the queue as it arrives; when it
   * is handed over and is first in line for a waiting stream, the next row of its
   * conversation, and the socket can take its frame now (FrameDelivery.fast: the group's
   * result is ready), it is written right there, in the hub's one pass over the topic's
   * subscribers, with no promise of its own. Anything else goes through the queue, in order.
   */
  const listener: HubListener<W> = {
    arrive: (payload) => {
      if (!ctx.delivery?.fast) {
        onItem(payload);
        return null;
      }
      return queue.reserve();
    },
    prepare: (payload) => (ctx.delivery?.prepare ? ctx.delivery.prepare(reviveShared(source, payload)) : undefined),
    deliver: (payload, token) => {
      const slot = token as Slot<Signal<T>> | null;
      if (!slot) return;
      const item = reviveShared(source, payload);
      const fast = ctx.delivery?.fast;
      if (fast && !position && queue.isNext(slot)) {
        const conversationId = source.conversationOf(item);
        const seen = lastSeq.get(conversationId);
        if (seen !== undefined && source.seqOf(item) === seen + 1 && !early?.has(conversationId) && fast(item)) {
          lastSeq.set(conversationId, seen + 1);
          queue.drop(slot);
          return;
        }
      }
      queue.fill(slot, { type: "item", item });
    },
  };
  const hub = liveHub(pubsub);
  const follow = async (conversationId: string) => {
    if (unsubscribers.has(conversationId)) return;
    unsubscribers.set(conversationId, () => {});
    unsubscribers.set(conversationId, await hub.subscribe(source.topic(tenantId, conversationId), listener));
  };
  const unfollow = (conversationId: string) => {
    unsubscribers.get(conversationId)?.();
    unsubscribers.delete(conversationId);
    lastSeq.delete(conversationId);
    position?.delete(conversationId);
    forgetEarly(conversationId);
  };
  const forgetEarly = (conversationId: string) => {
    const held = early?.get(conversationId);
    if (!held) return;
    if (held.timer) clearTimeout(held.timer);
    early?.delete(conversationId);
  };
  /** A conversation followed from a seq the position's snapshot does not stand for. */
  const startAt = (conversationId: string, seq: number) => {
    lastSeq.set(conversationId, seq);
    position?.set(conversationId, seq);
  };
  const positions = { lastSeq: true, lastEventSeq: true } as const;

  try {
    cleanups.push(pubsub.onResync(() => queue.push({ type: "resync" })));
    // On a socket, the socket's own watch closes it (ending this stream) when the credentials end.
    if (!ctx.streams) {
      cleanups.push(
        await watchCredentialEnd(
          ctx.deps.pubsub,
          ctx.principal,
          () => queue.push({ type: "membership", event: { type: "revoked" } }),
          { userRevocations: false },
        ),
      );
    }
    // Users follow their memberships; the API key follows every conversation of the tenant.
    const onMembership = (event: UserEvent) => queue.push({ type: "membership", event });
    cleanups.push(
      userId
        ? await pubsub.subscribe(topics.user(tenantId, userId), onMembership)
        : await pubsub.subscribe(topics.conversations(tenantId), onMembership),
    );
    // Subscribe before reading the starting point, so nothing falls between the two.
    if (options.conversationId) {
      await follow(options.conversationId);
      const conversation = await prisma.conversation.findFirst({
        where: { id: options.conversationId, tenantId },
        select: positions,
      });
      if (!conversation) return;
      lastSeq.set(
        options.conversationId,
        options.afterSeq ?? (await startingSeq(ctx, source, options.conversationId, source.currentSeq(conversation))),
      );
    } else {
      const ids = await visibleConversationIds(ctx, tenantId, userId);
      await Promise.all(ids.map(follow));
      if (options.resume) {
        const { snapshot, at } = options.resume;
        const points = await readResumePoints(prisma, source.store, tenantId, userId, ids, options.resume);
        const exceptions: [string, number][] = [];
        for (const [id, point] of points) {
          lastSeq.set(id, point.from);
          if (point.exception) exceptions.push([id, point.from]);
        }
        position = new StreamPosition(source.store.kind, snapshot, at, exceptions, options.rebase);
      } else {
        // The counters and the snapshot come from one statement: the position starts with no exception.
        const now = await readCounters(prisma, source.store, tenantId, ids);
        for (const [id, seq] of now.seqs) lastSeq.set(id, seq);
        position = new StreamPosition(source.store.kind, now.snapshot, now.at, [], options.rebase);
      }
    }

    // Replay (or catch up with whatever was committed while subscribing).
    for (const conversationId of [...lastSeq.keys()]) yield* readGap(conversationId);

    while (true) {
      if (position?.dueForRebase()) yield* rebase(position);
      const next = await queue.next();
      if (next.done) return;
      const signal = next.value;
      if (signal.type === "item") {
        const { item } = signal;
        const conversationId = source.conversationOf(item);
        const seen = lastSeq.get(conversationId);
        const seq = source.seqOf(item);
        if (seen === undefined || seq <= seen) continue;
        if (seq === seen + 1) {
          lastSeq.set(conversationId, seq);
          yield emit(item);
          if (early?.size) yield* deliverEarly(conversationId);
        } else {
          // Ahead of a missing row: hold it a moment (LIVE_REORDER_WAIT_MS), the missing one is
          // likely on its way (concurrent sends commit in seq order but may publish out of it),
          // rather than have every subscriber read the gap from storage.
          early ??= new Map();
          let held = early.get(conversationId);
          if (!held) {
            held = { rows: new Map(), timer: null };
            early.set(conversationId, held);
          }
          held.rows.set(seq, item);
          if (held.rows.size > MAX_EARLY_ROWS) {
            yield* readGap(conversationId);
          } else if (!held.timer) {
            const waiting = held;
            waiting.timer = setTimeout(() => {
              waiting.timer = null;
              queue.push({ type: "gap", conversationId });
            }, ctx.deps.config.liveReorderWaitMs);
          }
        }
      } else if (signal.type === "gap") {
        if (early?.has(signal.conversationId)) yield* readGap(signal.conversationId);
      } else if (signal.type === "membership") {
        const { event } = signal;
        if (revokesPrincipal(ctx.principal, event)) return;
        if (event.type === "revoked") continue;
        if (event.type === "permissionsChanged") {
          await assertStillAllowed(ctx);
        } else if (event.type === "left") {
          if (!lastSeq.has(event.conversationId)) continue;
          // Nothing more is read for someone who left: only the news of a deletion.
          if (event.deleted && source.deleted) yield source.deleted(event.conversationId);
          if (options.conversationId === event.conversationId) return;
          unfollow(event.conversationId);
        } else if (!options.conversationId && !lastSeq.has(event.conversationId)) {
          await follow(event.conversationId);
          startAt(event.conversationId, source.joinedSeq(event));
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
              startAt(id, await joinedAtSeq(ctx, source, id, userId));
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
    for (const held of early?.values() ?? []) if (held.timer) clearTimeout(held.timer);
    queue.end();
  }

  /** Reads what was committed after the last delivered row, then what was held and still follows. */
  async function* readGap(conversationId: string): AsyncGenerator<FeedItem<T>> {
    while (true) {
      const from = lastSeq.get(conversationId);
      if (from === undefined) return;
      const rows = await sharedFetchAfter(source, ctx, tenantId, conversationId, from, PAGE);
      for (const row of rows) {
        const seq = source.seqOf(row);
        // A shared read may have started before a row this stream already has.
        if (seq <= (lastSeq.get(conversationId) ?? seq)) continue;
        lastSeq.set(conversationId, seq);
        yield emit(row);
      }
      if (rows.length < PAGE) break;
    }
    yield* deliverEarly(conversationId);
  }

  /** Delivers held rows that now follow on, and drops those already delivered. */
  function* deliverEarly(conversationId: string): Generator<FeedItem<T>> {
    const waiting = early?.get(conversationId)?.rows;
    if (!waiting) return;
    let seen = lastSeq.get(conversationId);
    while (seen !== undefined) {
      const next = waiting.get(seen + 1);
      if (next === undefined) break;
      waiting.delete(seen + 1);
      seen += 1;
      lastSeq.set(conversationId, seen);
      yield emit(next);
    }
    for (const seq of waiting.keys()) if (seen === undefined || seq <= seen) waiting.delete(seq);
    if (waiting.size === 0) forgetEarly(conversationId);
  }

  /**
   * Takes a new snapshot for the position. Whatever that snapshot sees and the stream has
   * not delivered (a publish that failed or is still on its way) is read from storage first;
   * then a conversation needs an exception only if the stream delivered something there the
   * snapshot does not see, or lags behind it (neither happens unless rows commit meanwhile).
   */
  async function* rebase(current: StreamPosition): AsyncGenerator<FeedItem<T>> {
    current.attempted();
    const now = await readCounters(prisma, source.store, tenantId, [...lastSeq.keys()]);
    const moved = new Set<string>();
    for (const [id, seq] of now.seqs) {
      const seen = lastSeq.get(id);
      if (seen === undefined || seq <= seen) continue;
      moved.add(id);
      yield* readGap(id);
    }
    const exceptions: [string, number][] = [];
    for (const [id, seen] of lastSeq) if (moved.has(id) || now.seqs.get(id) !== seen) exceptions.push([id, seen]);
    current.rebase(now.snapshot, now.at, exceptions);
  }
}

/**
 * Where a stream without a cursor starts: at the row before the first one stored after the
 * operation arrived, so a row sent while the stream was being set up (right after the
 * subscribe frame) is delivered too. Row times are the database's, the arrival time this
 * instance's: clocks apart by a few ms move that point by as much.
 */
async function startingSeq<T, W>(
  ctx: Context,
  source: SequencedSource<T, W>,
  conversationId: string,
  current: number,
): Promise<number> {
  if (current === 0) return 0;
  return Math.min(current, await source.seqBefore(ctx, conversationId, new Date(ctx.startedAt)));
}

async function visibleConversationIds(ctx: Context, tenantId: string, userId: string | null): Promise<string[]> {
  if (userId) {
    const rows = await ctx.prisma.member.findMany({ where: { tenantId, userId }, select: { conversationId: true } });
    return rows.map((row) => row.conversationId);
  }
  const rows = await ctx.prisma.conversation.findMany({ where: { tenantId }, select: { id: true } });
  return rows.map((row) => row.id);
}

/** For a membership discovered after a reconnect: deliver what happened since the user joined. */
async function joinedAtSeq<T, W>(
  ctx: Context,
  source: SequencedSource<T, W>,
  conversationId: string,
  userId: string | null,
): Promise<number> {
  if (!userId) return 0;
  const member = await ctx.prisma.member.findUnique({
    where: { conversationId_userId: { conversationId, userId } },
    select: { joinedAt: true },
  });
  if (!member) return Number.MAX_SAFE_INTEGER;
  return source.seqBefore(ctx, conversationId, member.joinedAt);
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
  return ctx.deps.pubsub.subscribe(topics.user(principal.tenantId, principal.userId), (event) => {
    if (revokesPrincipal(ctx.principal, event) || (event.type === "left" && event.conversationId === conversationId)) {
      queue.end();
    } else if (event.type === "permissionsChanged") {
      assertStillAllowed(ctx).catch((error: unknown) => queue.fail(error));
    }
  });
}

/**
 * A live-only feed of one conversation topic: events are handed to `accept`, which
 * pushes what the subscriber should see; the feed ends when the viewer leaves. Its
 * events are states per `keyOf` (see BoundedQueue): a slow subscriber gets the latest.
 */
function conversationTopicFeed<P, T>(
  ctx: Context,
  conversationId: string,
  topicOf: (tenantId: string, conversationId: string) => Topic<P>,
  accept: (payload: P, push: (event: T) => void) => void,
  keyOf: (event: T) => string,
  dispose: () => void = () => {},
): AsyncGenerator<T> {
  const queue = new BoundedQueue<T>(ctx.deps.config.subscriberBufferSize, keyOf);
  const push = (event: T) => queue.push(event);
  async function* run(): AsyncGenerator<T> {
    const principal = ctx.principal;
    if (!principal) return;
    const unsubscribe = await ctx.deps.pubsub.subscribe(topicOf(principal.tenantId, conversationId), (payload) =>
      accept(payload, push),
    );
    const unwatch = await watchMembership(ctx, conversationId, queue as BoundedQueue<unknown>);
    // On a socket, the socket's own watch closes it (ending this stream) when the credentials end.
    const unwatchCredentials = ctx.streams
      ? () => {}
      : await watchCredentialEnd(ctx.deps.pubsub, ctx.principal, () => queue.end(), { userRevocations: false });
    try {
      while (true) {
        const next = await queue.next();
        if (next.done) return;
        yield next.value;
      }
    } finally {
      unsubscribe();
      unwatch();
      unwatchCredentials();
      dispose();
      queue.end();
    }
  }
  return cancellable(run(), queue as BoundedQueue<unknown>, ctx.streams);
}

/**
 * Typing indicators: coalesced per user (a refresh while typing emits nothing), and a
 * user who stops refreshing is reported as stopped after TYPING_TIMEOUT_MS. The
 * viewer's own typing is not echoed back, nor the typing of users the viewer blocks.
 */
export function typingFeed(
  ctx: Context,
  conversationId: string,
  /** The users the viewer blocks: their typing is not delivered. */
  blocked: () => ReadonlySet<string> = () => new Set(),
): AsyncGenerator<TypingPayload> {
  const viewerId = ctx.principal?.kind === "user" ? ctx.principal.userId : null;
  const timeout = ctx.deps.config.typingTimeoutMs;
  const timers = new Map<string, NodeJS.Timeout>();
  return conversationTopicFeed<TypingPayload, TypingPayload>(
    ctx,
    conversationId,
    topics.typing,
    (event, push) => {
      if (event.userId === viewerId || blocked().has(event.userId)) return;
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
    (event) => event.userId,
    () => {
      for (const timer of timers.values()) clearTimeout(timer);
    },
  );
}

/** Read receipts of the members of a conversation, as they happen (a slow subscriber gets each member's latest). */
export function readFeed(ctx: Context, conversationId: string): AsyncGenerator<ReadPayload> {
  return conversationTopicFeed<ReadPayload, ReadPayload>(
    ctx,
    conversationId,
    topics.reads,
    (receipt, push) => push(receipt),
    (receipt) => receipt.userId,
  );
}
