import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import type { SqlDatabase } from "../db/sql.ts";
import type { Logger } from "../logger.ts";
import type { PubSub } from "./pubsub.ts";
import { type PresenceChange, topics } from "./topics.ts";

/**
 * Who is online: a user is online while at least one authenticated socket of theirs is
 * open on any instance. Each change (a user's first socket opening anywhere, their last
 * one closing) is published once on the tenant's presence topic, and a user going
 * offline has their `lastSeenAt` stored (in batches, off the connect/close path). Going
 * offline waits `offlineDelayMs` after the last socket closed: a user who reconnects
 * meanwhile (a page reload, a flaky network) stays online and nothing is announced.
 */
export interface Presence {
  /** Counts one open socket of a user on this instance; the returned function releases it (once). */
  connect(tenantId: string, userId: string): () => void;
  /** Which of these users of the tenant have an open socket on some instance. */
  online(tenantId: string, userIds: readonly string[]): Promise<Set<string>>;
  /** A last-seen time decided here and not yet stored, if any (so reads do not lag the batch). */
  pendingLastSeen(userId: string): Date | undefined;
  /**
   * Counts one live subscription of a socket that follows `target` (see followKeys); the
   * returned function releases it (once). A socket counts once per target however many
   * of its subscriptions follow it.
   */
  follow(socketId: string, target: string): () => void;
  /** The distinct sockets, on every instance, with a live subscription following any of these targets. */
  followers(targets: readonly string[]): Promise<number>;
  close(): Promise<void>;
}

export interface PresenceOptions {
  sql: SqlDatabase;
  pubsub: PubSub;
  log: Logger;
  /** How long an instance's presence entries live without a heartbeat. */
  ttlSeconds: number;
  /** How often the instance renews its entries and looks for instances that died. */
  heartbeatSeconds: number;
  /** How long a user stays online after their last socket here closed (0: not at all). */
  offlineDelayMs?: number;
}

/**
 * Users whose last socket on this instance closed, still counted here until the offline
 * delay ends: then `leave` runs with the time the socket closed. A socket of theirs
 * opening meanwhile takes the user back (`rejoin` is true: nothing was announced).
 */
class Departures {
  private readonly timers = new Map<string, { timer: NodeJS.Timeout; at: Date }>();

  constructor(
    private readonly delayMs: number,
    private readonly leave: (key: string, at: Date) => void,
  ) {}

  has(key: string): boolean {
    return this.timers.has(key);
  }

  keys(): IterableIterator<string> {
    return this.timers.keys();
  }

  depart(key: string, at: Date): void {
    if (this.delayMs <= 0) {
      this.leave(key, at);
      return;
    }
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.leave(key, at);
    }, this.delayMs);
    timer.unref();
    this.timers.set(key, { timer, at });
  }

  /** A socket of the user opened: true when they were departing (and now are not). */
  rejoin(key: string): boolean {
    const pending = this.timers.get(key);
    if (!pending) return false;
    clearTimeout(pending.timer);
    this.timers.delete(key);
    return true;
  }

  /** Ends every pending departure now (shutdown), each with the time its socket closed. */
  flush(): void {
    const pending = [...this.timers];
    this.timers.clear();
    for (const [key, { timer, at }] of pending) {
      clearTimeout(timer);
      this.leave(key, at);
    }
  }
}

const keyOf = (tenantId: string, userId: string) => `${tenantId}:${userId}`;

/** What a subscription follows: one conversation, all of a user's, or all of a tenant's (the API key). */
export const followKeys = {
  conversation: (tenantId: string, conversationId: string) => `conversation:${tenantId}:${conversationId}`,
  user: (tenantId: string, userId: string) => `user:${tenantId}:${userId}`,
  tenant: (tenantId: string) => `tenant:${tenantId}`,
};

/** Sockets following each target on this instance, each with the number of its subscriptions there. */
class LocalFollows {
  readonly targets = new Map<string, Map<string, number>>();

  /** Returns true when this is the socket's first subscription following the target. */
  add(target: string, socketId: string): boolean {
    let sockets = this.targets.get(target);
    if (!sockets) {
      sockets = new Map();
      this.targets.set(target, sockets);
    }
    const count = (sockets.get(socketId) ?? 0) + 1;
    sockets.set(socketId, count);
    return count === 1;
  }

  /** Returns true when that was the socket's last one. */
  remove(target: string, socketId: string): boolean {
    const sockets = this.targets.get(target);
    if (!sockets) return false;
    const count = (sockets.get(socketId) ?? 0) - 1;
    if (count > 0) {
      sockets.set(socketId, count);
      return false;
    }
    sockets.delete(socketId);
    if (!sockets.size) this.targets.delete(target);
    return true;
  }

  /** A handle that counts one subscription and releases it once. */
  hold(target: string, socketId: string, first: () => void, last: () => void, closed: () => boolean): () => void {
    if (this.add(target, socketId)) first();
    let released = false;
    return () => {
      if (released || closed()) return;
      released = true;
      if (this.remove(target, socketId)) last();
    };
  }
}
const split = (key: string) => {
  const [tenantId, userId] = key.split(":") as [string, string];
  return { tenantId, userId };
};

/** Stores last-seen times in one statement per batch, never moving one back. */
class LastSeenWriter {
  private readonly pending = new Map<string, Date>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly sql: SqlDatabase,
    private readonly log: Logger,
  ) {}

  record(userId: string, at: Date): void {
    this.pending.set(userId, at);
    this.timer ??= setTimeout(() => {
      this.timer = null;
      this.flushing = this.flushing.then(() => this.flush());
    }, 50);
  }

  get(userId: string): Date | undefined {
    return this.pending.get(userId);
  }

  private async flush(): Promise<void> {
    if (!this.pending.size) return;
    const batch = [...this.pending];
    try {
      await this.sql.query(
        `UPDATE "User" u SET "lastSeenAt" = v.at
           FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, at)
          WHERE u."id" = v.id AND (u."lastSeenAt" IS NULL OR u."lastSeenAt" < v.at)`,
        [batch.map(([id]) => id), batch.map(([, at]) => at.toISOString())],
        { name: "presence-last-seen" },
      );
    } catch (error) {
      this.log.warn({ err: (error as Error).message }, "storing last-seen times failed");
    }
    // Entries recorded again meanwhile stay for the next batch.
    for (const [id, at] of batch) if (this.pending.get(id) === at) this.pending.delete(id);
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.flushing = this.flushing.then(() => this.flush());
    await this.flushing;
  }
}

/** Sockets per user on this instance. */
class LocalCounts {
  readonly counts = new Map<string, number>();

  /** Returns true when this is the key's first socket. */
  add(key: string): boolean {
    const count = (this.counts.get(key) ?? 0) + 1;
    this.counts.set(key, count);
    return count === 1;
  }

  /** Returns true when this was the key's last socket. */
  remove(key: string): boolean {
    const count = (this.counts.get(key) ?? 0) - 1;
    if (count > 0) {
      this.counts.set(key, count);
      return false;
    }
    this.counts.delete(key);
    return true;
  }

  /** Releases one socket of `key`, once, and not after `closed()`; the key's last socket starts its departure. */
  releaser(key: string, departures: Departures, closed: () => boolean): () => void {
    let released = false;
    return () => {
      if (released || closed()) return;
      released = true;
      if (this.remove(key)) departures.depart(key, new Date());
    };
  }
}

function announce(options: PresenceOptions, writer: LastSeenWriter, key: string, online: boolean, at: Date): void {
  const { tenantId, userId } = split(key);
  const change: PresenceChange = { userId, online, lastSeenAt: online ? null : at.toISOString() };
  if (!online) writer.record(userId, at);
  options.pubsub
    .publish(topics.presence(tenantId), change)
    .catch((error: Error) => options.log.warn({ err: error.message }, "publishing a presence change failed"));
}

/** Embedded mode: one process, so its own counts are the whole truth. */
export function createMemoryPresence(options: PresenceOptions): Presence {
  const local = new LocalCounts();
  const follows = new LocalFollows();
  const writer = new LastSeenWriter(options.sql, options.log);
  const departures = new Departures(options.offlineDelayMs ?? 0, (key, at) =>
    announce(options, writer, key, false, at),
  );
  let closed = false;
  return {
    follow: (socketId, target) =>
      follows.hold(
        target,
        socketId,
        () => {},
        () => {},
        () => closed,
      ),
    async followers(targets) {
      const sockets = new Set<string>();
      for (const target of targets) for (const id of follows.targets.get(target)?.keys() ?? []) sockets.add(id);
      return sockets.size;
    },
    connect(tenantId, userId) {
      const key = keyOf(tenantId, userId);
      if (local.add(key) && !departures.rejoin(key)) announce(options, writer, key, true, new Date());
      return local.releaser(key, departures, () => closed);
    },
    async online(tenantId, userIds) {
      return new Set(
        userIds.filter((id) => {
          const key = keyOf(tenantId, id);
          return local.counts.has(key) || departures.has(key);
        }),
      );
    },
    pendingLastSeen: (userId) => writer.get(userId),
    async close() {
      closed = true;
      departures.flush();
      const at = new Date();
      for (const key of local.counts.keys()) announce(options, writer, key, false, at);
      local.counts.clear();
      await writer.close();
    },
  };
}

const INSTANCES = "presence:instances";
const userKey = (key: string) => `presence:user:${key}`;
const instanceKey = (id: string) => `presence:instance:${id}`;
const followKey = (target: string) => `presence:follow:${target}`;

/**
 * Across instances, in Redis. Every instance (each worker process is one) has an id; for
 * each user it has sockets of, it holds an entry in the user's sorted set
 * `presence:user:<tenant>:<user>` scored with the time it expires, renewed by its
 * heartbeat. A user is online while their set has an unexpired entry, so the users of an
 * instance that died without closing its sockets count as offline once its entries
 * expire (at most one TTL). The instances themselves are in `presence:instances`, scored
 * the same way; the first instance to find a dead one there removes it (ZREM decides who)
 * and announces its users that are then offline everywhere. Adding or removing an entry
 * and counting the live ones is one transaction, so exactly one instance sees a user's
 * first entry arrive or last one leave, and announces it.
 */
export async function createRedisPresence(url: string, options: PresenceOptions): Promise<Presence> {
  const { log } = options;
  const ttlMs = options.ttlSeconds * 1000;
  const id = randomUUID();
  const redis = new Redis(url, {
    connectionName: "chat-presence",
    disableClientInfo: true,
    enableAutoPipelining: true,
    maxRetriesPerRequest: 2,
    lazyConnect: true,
  });
  redis.on("error", (error: Error) => {
    if (!closed) log.warn({ err: error.message }, "redis presence error");
  });
  await redis.connect();
  const local = new LocalCounts();
  const follows = new LocalFollows();
  const writer = new LastSeenWriter(options.sql, log);
  let closed = false;
  const expiry = () => Date.now() + ttlMs;

  /** Adds this instance's entry for a user; `renewed`: the entry may exist already (see heartbeat). */
  const arrive = async (key: string, renewed = false) => {
    const now = Date.now();
    const result = await redis
      .multi()
      .zadd(userKey(key), now + ttlMs, id)
      .pexpire(userKey(key), 2 * ttlMs)
      .sadd(instanceKey(id), key)
      .pexpire(instanceKey(id), 10 * ttlMs)
      .zcount(userKey(key), now, "+inf")
      .exec();
    // Announced only when our entry is new and the only live one (an entry still there, of
    // a user departing within the offline delay, was never announced offline).
    if ((renewed || result?.[0]?.[1] === 1) && result?.[4]?.[1] === 1) {
      announce(options, writer, key, true, new Date(now));
    }
  };

  /** Removes an instance's entry for a user; announces the user offline if it was their last live one. */
  const leave = async (key: string, instance: string, at?: Date) => {
    const now = Date.now();
    const result = await redis
      .multi()
      .zrem(userKey(key), instance)
      .srem(instanceKey(instance), key)
      .zcount(userKey(key), now, "+inf")
      .exec();
    if (result?.[0]?.[1] === 1 && result[2]?.[1] === 0) announce(options, writer, key, false, at ?? new Date(now));
  };
  const departures = new Departures(options.offlineDelayMs ?? 0, (key, at) => inOrder(key, () => leave(key, id, at)));

  const report = (what: string) => (error: Error) => log.warn({ err: error.message }, `presence ${what} failed`);

  const heartbeat = async () => {
    const until = expiry();
    const renew = redis.multi().zadd(INSTANCES, until, id);
    for (const key of [...local.counts.keys(), ...departures.keys()]) {
      renew.zadd(userKey(key), until, id).pexpire(userKey(key), 2 * ttlMs);
    }
    for (const [target, sockets] of follows.targets) {
      renew.zadd(followKey(target), ...[...sockets.keys()].flatMap((socket) => [until, socket]));
      renew.pexpire(followKey(target), 2 * ttlMs);
    }
    renew.pexpire(instanceKey(id), 10 * ttlMs);
    const renewed = await renew.exec();
    // Our entry was gone: another instance took us for dead (a heartbeat late by a whole TTL)
    // and announced our users offline. Add them back; those now online nowhere else are announced.
    if (renewed?.[0]?.[1] === 1) {
      log.warn({ instance: id }, "presence: this instance was taken for dead; announcing its users again");
      for (const key of local.counts.keys()) inOrder(key, () => arrive(key, true));
    }
    // Instances whose heartbeat stopped: the first to remove one announces its users.
    const dead = await redis.zrangebyscore(INSTANCES, "-inf", Date.now());
    for (const other of dead) {
      if (other === id || (await redis.zrem(INSTANCES, other)) !== 1) continue;
      const keys = await redis.smembers(instanceKey(other));
      await Promise.all(keys.map((key) => leave(key, other)));
      await redis.del(instanceKey(other));
      log.info({ instance: other, users: keys.length }, "presence: an instance stopped without closing its sockets");
    }
  };
  await redis.zadd(INSTANCES, expiry(), id);
  const timer = setInterval(() => {
    if (!closed) heartbeat().catch(report("heartbeat"));
  }, options.heartbeatSeconds * 1000);
  timer.unref();

  // Operations on one user run in order (connect and release can interleave on a socket's life).
  const chains = new Map<string, Promise<void>>();
  const inOrder = (key: string, work: () => Promise<void>) => {
    const next = (chains.get(key) ?? Promise.resolve()).then(work).catch(report("update"));
    chains.set(key, next);
    next.then(() => {
      if (chains.get(key) === next) chains.delete(key);
    });
  };

  return {
    follow: (socketId, target) =>
      follows.hold(
        target,
        socketId,
        () =>
          inOrder(`follow:${target}:${socketId}`, async () => {
            await redis
              .multi()
              .zadd(followKey(target), expiry(), socketId)
              .pexpire(followKey(target), 2 * ttlMs)
              .exec();
          }),
        () =>
          inOrder(`follow:${target}:${socketId}`, async () => {
            await redis.zrem(followKey(target), socketId);
          }),
        () => closed,
      ),
    async followers(targets) {
      const now = Date.now();
      const lists = await Promise.all(targets.map((target) => redis.zrangebyscore(followKey(target), now, "+inf")));
      return new Set(lists.flat()).size;
    },
    connect(tenantId, userId) {
      const key = keyOf(tenantId, userId);
      // A user departing here comes back too: arrive renews the entry and announces nothing.
      if (local.add(key)) {
        departures.rejoin(key);
        inOrder(key, () => arrive(key));
      }
      return local.releaser(key, departures, () => closed);
    },
    async online(tenantId, userIds) {
      const now = Date.now();
      const online = new Set<string>();
      await Promise.all(
        userIds.map(async (userId) => {
          const key = keyOf(tenantId, userId);
          if (local.counts.has(key) || departures.has(key) || (await redis.zcount(userKey(key), now, "+inf")) > 0) {
            online.add(userId);
          }
        }),
      );
      return online;
    },
    pendingLastSeen: (userId) => writer.get(userId),
    async close() {
      closed = true;
      clearInterval(timer);
      try {
        departures.flush();
        await Promise.all([...chains.values()]);
        await Promise.all([...local.counts.keys()].map((key) => leave(key, id)));
        const unfollow = redis.multi();
        for (const [target, sockets] of follows.targets) unfollow.zrem(followKey(target), ...sockets.keys());
        await unfollow.exec();
        await redis.multi().zrem(INSTANCES, id).del(instanceKey(id)).exec();
      } catch (error) {
        report("shutdown")(error as Error);
      }
      local.counts.clear();
      follows.targets.clear();
      await writer.close();
      redis.disconnect();
    },
  };
}
