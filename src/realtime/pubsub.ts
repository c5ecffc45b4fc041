import { Redis } from "ioredis";
import type { Logger } from "../logger.ts";
import { tallies } from "../metrics.ts";
import type { Topic } from "./topics.ts";

export type Listener<T> = (payload: T) => void;
export type Unsubscribe = () => void;

/**
 * Carries news between server instances. At most once: storage is the source of
 * truth, and `onResync` tells listeners when the transport may have dropped messages
 * (a Redis reconnect), so they re-read what they missed from the database.
 * Each topic names its payload type (see topics.ts), so a publish is checked against it
 * and a listener receives it typed.
 */
export interface PubSub {
  readonly kind: "memory" | "redis";
  publish<T>(topic: Topic<T>, payload: NoInfer<T>): Promise<void>;
  /** Resolves once the subscription is live: anything published afterwards is delivered. */
  subscribe<T>(topic: Topic<T>, listener: Listener<NoInfer<T>>): Promise<Unsubscribe>;
  onResync(listener: () => void): Unsubscribe;
  isReady(): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * Keeps topic -> listeners locally so one backend subscription serves every local subscriber.
 * Untyped inside: what a topic carries is settled by its Topic<T> at publish and subscribe.
 */
class LocalFanout {
  readonly topics = new Map<string, Set<Listener<unknown>>>();
  private readonly resyncListeners = new Set<() => void>();

  constructor(private readonly log: Logger) {}

  /** Returns true when this is the first listener of the topic. */
  add<T>(topic: Topic<T>, listener: Listener<T>): boolean {
    let set = this.topics.get(topic);
    const first = !set;
    if (!set) {
      set = new Set();
      this.topics.set(topic, set);
    }
    // Sound because only payloads published on this Topic<T> are dispatched to it.
    set.add(listener as Listener<unknown>);
    return first;
  }

  /** Returns true when the topic has no listener left. */
  remove<T>(topic: Topic<T>, listener: Listener<T>): boolean {
    const set = this.topics.get(topic);
    if (!set) return false;
    set.delete(listener as Listener<unknown>);
    if (set.size === 0) {
      this.topics.delete(topic);
      return true;
    }
    return false;
  }

  dispatch(topic: string, payload: unknown): void {
    const set = this.topics.get(topic);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(payload);
      } catch (error) {
        this.log.error({ err: error, topic }, "pub/sub listener failed");
      }
    }
  }

  onResync(listener: () => void): Unsubscribe {
    this.resyncListeners.add(listener);
    return () => this.resyncListeners.delete(listener);
  }

  resync(): void {
    for (const listener of [...this.resyncListeners]) listener();
  }
}

export function createMemoryPubSub(log: Logger): PubSub {
  const fanout = new LocalFanout(log);
  return {
    kind: "memory",
    async publish(topic, payload) {
      tallies.published++;
      // Deliver asynchronously, as a network transport would, so publishers never
      // run subscriber code inside their own transaction or call stack.
      setImmediate(() => fanout.dispatch(topic, payload));
    },
    async subscribe(topic, listener) {
      fanout.add(topic, listener);
      return () => {
        fanout.remove(topic, listener);
      };
    },
    onResync: (listener) => fanout.onResync(listener),
    async isReady() {
      return true;
    },
    async close() {},
  };
}

/**
 * Redis transport: one Redis subscription per topic shared by the local listeners, JSON
 * payloads, and resubscription by hand after a reconnect so that `onResync` fires only once
 * every topic is live again (the no-gap guarantee after a Redis restart).
 *
 * Why not `RedisPubSub` from graphql-redis-subscriptions (checked with 2.7.0, ioredis 5.9):
 * it does the per-topic reference counting and its `subscribe()` does wait for Redis to
 * confirm SUBSCRIBE, but with these settings it cannot keep the guarantee:
 * - It has no reconnect handling (dist/redis-pubsub.js listens only to `message` and
 *   `pmessage`, lines 41-42). With `autoResubscribe: false` nothing resubscribes, and a
 *   later `subscribe()` of a topic it still counts resolves without any Redis command
 *   (lines 72-74), so the topic stays dead. With ioredis's `autoResubscribe` the SUBSCRIBE
 *   is fired from ioredis's ready handler with its promise dropped: no event says when it
 *   completed, so resync could only wait on a PING queued behind it, relying on ioredis
 *   internals (the order in its ready handler and the deferred `ready` event).
 * - `unsubscribe()` fires UNSUBSCRIBE and PUNSUBSCRIBE without handling their promises
 *   (lines 106-107). During an outage they are rejected after `maxRetriesPerRequest`
 *   reconnect attempts (or at once without an offline queue), and an unhandled rejection
 *   ends the Node process.
 * - A payload that is not JSON reaches listeners as the raw string (lines 151-152), and a
 *   throwing listener stops delivery to the others (lines 154-157).
 * Working around all of that would keep this code and add the package on top, so the
 * transport stays ours, on the package's model: one SUBSCRIBE per topic, JSON payloads.
 */
export async function createRedisPubSub(url: string, log: Logger): Promise<PubSub> {
  const fanout = new LocalFanout(log);
  // disableClientInfo: a SUBSCRIBE issued during the handshake otherwise breaks the
  // ready check and the subscription is silently lost (ioredis #2037).
  const options = {
    disableClientInfo: true,
    lazyConnect: true,
    maxRetriesPerRequest: 2,
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
  } as const;
  // Publishing never waits for a reconnect: a message is already stored when it is
  // published, and subscribers re-read storage after the outage.
  // Publishes issued in the same tick (a send's message and event, concurrent requests) share one write.
  const publisher = new Redis(url, {
    ...options,
    connectionName: "chat-pub",
    enableOfflineQueue: false,
    enableAutoPipelining: true,
  });
  // Resubscription is done by hand so that listeners resync only once it is complete.
  const subscriber = new Redis(url, {
    ...options,
    connectionName: "chat-sub",
    autoResubscribe: false,
  });
  let closing = false;
  let wasConnected = false;
  let lostConnection = false;

  for (const [name, client] of [
    ["publisher", publisher],
    ["subscriber", subscriber],
  ] as const) {
    client.on("error", (error: Error) => {
      if (!closing) log.warn({ err: error.message }, `redis ${name} error`);
    });
  }
  subscriber.on("close", () => {
    if (wasConnected && !closing) lostConnection = true;
  });
  subscriber.on("ready", () => {
    wasConnected = true;
    if (!lostConnection) return;
    lostConnection = false;
    const topics = [...fanout.topics.keys()];
    const resubscribe = topics.length ? subscriber.subscribe(...topics) : Promise.resolve();
    resubscribe.then(
      () => {
        log.info({ topics: topics.length }, "redis subscriber reconnected; resyncing from storage");
        tallies.pubsubResyncs++;
        fanout.resync();
      },
      (error: Error) => {
        log.error({ err: error.message }, "redis resubscribe failed");
        subscriber.disconnect(true);
      },
    );
  });
  subscriber.on("message", (topic: string, message: string) => {
    let payload: unknown;
    try {
      payload = JSON.parse(message);
    } catch {
      log.warn({ topic }, "ignored a malformed pub/sub payload");
      return;
    }
    fanout.dispatch(topic, payload);
  });

  try {
    await Promise.all([publisher.connect(), subscriber.connect()]);
  } catch (error) {
    closing = true;
    publisher.disconnect();
    subscriber.disconnect();
    throw new Error(`Cannot connect to Redis at REDIS_URL: ${(error as Error).message}`);
  }

  return {
    kind: "redis",
    async publish(topic, payload) {
      tallies.published++;
      await publisher.publish(topic, JSON.stringify(payload));
    },
    async subscribe(topic, listener) {
      if (fanout.add(topic, listener)) {
        try {
          await subscriber.subscribe(topic);
        } catch (error) {
          fanout.remove(topic, listener);
          throw error;
        }
      }
      return () => {
        if (fanout.remove(topic, listener) && subscriber.status === "ready") {
          subscriber.unsubscribe(topic).catch(() => {});
        }
      };
    },
    onResync: (listener) => fanout.onResync(listener),
    async isReady() {
      if (publisher.status !== "ready" || subscriber.status !== "ready") return false;
      try {
        return (await publisher.ping()) === "PONG";
      } catch {
        return false;
      }
    },
    async close() {
      closing = true;
      publisher.disconnect();
      subscriber.disconnect();
    },
  };
}
