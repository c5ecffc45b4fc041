import type { PubSub, Unsubscribe } from "./pubsub.ts";
import type { Topic } from "./topics.ts";

/** A local subscriber of a live topic. */
export interface HubListener<T> {
  /**
   * Called as the event arrives, in arrival order: the listener takes its place in line for
   * it (so nothing that arrives later overtakes it) and returns a token handed back to deliver.
   */
  arrive(payload: T): unknown;
  /**
   * Work to finish before the event is handed over (executing a group's result once, for
   * every subscriber of the group); undefined when there is none. Listeners of one group
   * return the same promise, so it runs once.
   */
  prepare?(payload: T): Promise<unknown> | undefined;
  /** Takes the event, synchronously, with the token `arrive` returned. */
  deliver(payload: T, token: unknown): void;
}

interface Arrival {
  payload: unknown;
  listeners: HubListener<unknown>[];
  tokens: unknown[];
}

interface TopicState {
  topic: string;
  listeners: Set<HubListener<unknown>>;
  ready: Promise<Unsubscribe>;
  /** Events handed over in arrival order: each waits for its preparation and the one before it. */
  chain: Promise<void>;
  /** Events arrived and not yet handed over. */
  pending: number;
}

/**
 * One pub/sub subscription per topic for every local subscriber, with events handed over in
 * arrival order after what they need is prepared: a live message's result is executed once
 * per group of subscribers, then every subscriber takes it in one synchronous pass (see the
 * direct frames in graphql/shared-execution.ts), with no promise per subscriber and event.
 */
export class LiveHub {
  private readonly topics = new Map<string, TopicState>();
  /** Told of each event once every local subscriber has taken it (for metrics). */
  onDelivered: ((topic: string, payload: unknown) => void) | null = null;

  constructor(private readonly pubsub: PubSub) {}

  /** Resolves once the topic is live for this listener (as PubSub.subscribe). */
  async subscribe<T>(topic: Topic<T>, listener: HubListener<T>): Promise<Unsubscribe> {
    let state = this.topics.get(topic);
    if (!state) {
      const created: TopicState = {
        topic,
        listeners: new Set(),
        ready: Promise.resolve(() => {}),
        chain: Promise.resolve(),
        pending: 0,
      };
      created.ready = this.pubsub.subscribe(topic, (payload) => this.dispatch(created, payload));
      created.ready.catch(() => {
        if (this.topics.get(topic) === created) this.topics.delete(topic);
      });
      this.topics.set(topic, created);
      state = created;
    }
    const own = state;
    own.listeners.add(listener as HubListener<unknown>);
    try {
      await own.ready;
    } catch (error) {
      own.listeners.delete(listener as HubListener<unknown>);
      throw error;
    }
    return () => {
      if (!own.listeners.delete(listener as HubListener<unknown>) || own.listeners.size > 0) return;
      if (this.topics.get(topic) === own) this.topics.delete(topic);
      void own.ready.then((unsubscribe) => unsubscribe());
    };
  }

  private dispatch(state: TopicState, payload: unknown): void {
    const listeners = [...state.listeners];
    const arrival: Arrival = { payload, listeners, tokens: listeners.map((listener) => listener.arrive(payload)) };
    const waits = new Set<Promise<unknown>>();
    for (const listener of listeners) {
      const preparing = listener.prepare?.(payload);
      if (preparing) waits.add(preparing);
    }
    if (state.pending === 0 && waits.size === 0) {
      deliver(arrival);
      this.onDelivered?.(state.topic, payload);
      return;
    }
    state.pending += 1;
    state.chain = state.chain
      .then(() => (waits.size ? Promise.allSettled(waits) : undefined))
      .then(() => {
        state.pending -= 1;
        deliver(arrival);
        this.onDelivered?.(state.topic, payload);
      });
  }
}

// Listeners do not throw (the feeds queue what they cannot deliver at once).
function deliver({ payload, listeners, tokens }: Arrival): void {
  for (let i = 0; i < listeners.length; i++) listeners[i]?.deliver(payload, tokens[i]);
}

const hubs = new WeakMap<PubSub, LiveHub>();

/** The hub of a pub/sub instance. */
export function liveHub(pubsub: PubSub): LiveHub {
  let hub = hubs.get(pubsub);
  if (!hub) {
    hub = new LiveHub(pubsub);
    hubs.set(pubsub, hub);
  }
  return hub;
}
