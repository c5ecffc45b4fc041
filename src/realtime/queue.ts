import { appError } from "../errors.ts";
import { tallies } from "../metrics.ts";

/**
 * A bounded single-consumer queue. When a consumer falls more than `limit` items
 * behind, the queue fails with SLOW_CONSUMER instead of growing without bound.
 * With `keyOf`, the queue holds states rather than events: an item whose key is already
 * waiting replaces it in place, so a slow consumer gets the latest state per key (one
 * typing state, one read horizon per user) and the queue never outgrows the keys.
 */
/** A place in a queue taken when an item arrives, filled (or given up) once it is ready. */
export class Slot<T> {
  filled = false;
  value: T | undefined;
}

export class BoundedQueue<T> {
  private items: (T | Slot<T>)[] = [];
  private waiting: ((value: IteratorResult<T>) => void) | null = null;
  private failWaiting: ((error: unknown) => void) | null = null;
  private done = false;
  private failure: unknown = null;
  /** Called once when the queue ends, fails or is cancelled. */
  private onClose: (() => void) | null = null;

  constructor(
    private readonly limit: number,
    private readonly keyOf?: (item: T) => string,
  ) {}

  get closed(): boolean {
    return this.done;
  }

  /**
   * Takes the next place in the queue for an item that is not ready yet: the consumer gets
   * what comes after it only once it is filled or given up. Null once the queue is over.
   */
  reserve(): Slot<T> | null {
    if (this.done) return null;
    if (this.items.length >= this.limit) {
      this.overflow();
      return null;
    }
    const slot = new Slot<T>();
    this.items.push(slot);
    return slot;
  }

  /** True when the slot is first in line and the consumer waits for it: nothing is before it. */
  isNext(slot: Slot<T>): boolean {
    return this.waiting !== null && this.items[0] === slot;
  }

  /** Puts an item in its reserved place. */
  fill(slot: Slot<T>, item: T): void {
    slot.value = item;
    slot.filled = true;
    this.wake();
  }

  /** Gives a reserved place up (its item went another way). */
  drop(slot: Slot<T>): void {
    const index = this.items.indexOf(slot);
    if (index >= 0) this.items.splice(index, 1);
    this.wake();
  }

  /** Hands the first item to a waiting consumer if it is ready. */
  private wake(): void {
    if (!this.waiting) return;
    const head = this.items[0];
    if (head === undefined) {
      if (this.done) this.finish();
      return;
    }
    if (head instanceof Slot && !head.filled) return;
    this.items.shift();
    const resolve = this.waiting;
    this.waiting = null;
    this.failWaiting = null;
    resolve({ value: head instanceof Slot ? (head.value as T) : head, done: false });
  }

  private finish(): void {
    const resolve = this.waiting;
    this.waiting = null;
    this.failWaiting = null;
    resolve?.({ value: undefined, done: true });
  }

  private overflow(): void {
    tallies.queueOverflows++;
    this.fail(
      appError("SLOW_CONSUMER", "Subscription closed: the client did not keep up with its events", {
        limit: this.limit,
      }),
    );
  }

  /** Runs `listener` once the queue is over (at once if it is). */
  whenClosed(listener: () => void): void {
    if (this.done) listener();
    else this.onClose = listener;
  }

  private closing(): void {
    const listener = this.onClose;
    this.onClose = null;
    listener?.();
  }

  push(item: T): void {
    if (this.done) return;
    if (this.waiting && this.items.length === 0) {
      const resolve = this.waiting;
      this.waiting = null;
      this.failWaiting = null;
      resolve({ value: item, done: false });
      return;
    }
    if (this.keyOf && this.items.length > 0) {
      const key = this.keyOf(item);
      const pending = this.items.findIndex((waiting) => !(waiting instanceof Slot) && this.keyOf?.(waiting) === key);
      if (pending >= 0) {
        this.items[pending] = item;
        return;
      }
    }
    if (this.items.length >= this.limit) {
      this.overflow();
      return;
    }
    this.items.push(item);
  }

  /** Ends the queue; pending items are still delivered unless an error is given. */
  end(): void {
    this.done = true;
    this.closing();
    if (this.waiting && this.items.length === 0) {
      const resolve = this.waiting;
      this.waiting = null;
      resolve({ value: undefined, done: true });
    }
  }

  /** Drops pending items and ends: the consumer went away. */
  cancel(): void {
    this.items = [];
    this.end();
  }

  fail(error: unknown): void {
    if (this.done && this.failure) return;
    this.done = true;
    this.failure = error;
    this.closing();
    this.items = [];
    if (this.failWaiting) {
      const reject = this.failWaiting;
      this.waiting = null;
      this.failWaiting = null;
      reject(error);
    }
  }

  async next(): Promise<IteratorResult<T>> {
    if (this.failure) throw this.failure;
    const head = this.items[0];
    if (head !== undefined && !(head instanceof Slot && !head.filled)) {
      this.items.shift();
      return { value: head instanceof Slot ? (head.value as T) : head, done: false };
    }
    if (this.done && head === undefined) return { value: undefined, done: true };
    return new Promise((resolve, reject) => {
      this.waiting = resolve;
      this.failWaiting = reject;
    });
  }
}

/**
 * Wraps a generator that waits on `queue`: an async generator cannot run its `finally`
 * while suspended on an await, so return() first cancels the queue to wake it up. With
 * `streams`, the queue also ends when its socket cannot keep up.
 */
export function cancellable<T>(
  gen: AsyncGenerator<T>,
  queue: BoundedQueue<unknown>,
  streams?: SocketStreams,
): AsyncGenerator<T> {
  // The generator ends its queue when it ends (feeds do so in their finally): that untracks it.
  if (streams) queue.whenClosed(streams.track(queue));
  const wrapper: AsyncGenerator<T> = {
    next: (...args) => gen.next(...args),
    return: (value) => {
      queue.cancel();
      return gen.return(value);
    },
    throw: (error) => {
      queue.cancel();
      return gen.throw(error);
    },
    [Symbol.asyncIterator]() {
      return wrapper;
    },
  };
  return wrapper;
}

/**
 * The live streams of one socket: when the socket's send buffer passes its bound, every
 * stream on it ends with SLOW_CONSUMER after what is already buffered. Streams resume by
 * cursor, so nothing is lost.
 */
export class SocketStreams {
  private readonly queues = new Set<BoundedQueue<unknown>>();

  /** Live streams tracked now. */
  get size(): number {
    return this.queues.size;
  }

  track(queue: BoundedQueue<unknown>): () => void {
    this.queues.add(queue);
    return () => this.queues.delete(queue);
  }

  /** Fails every tracked stream with SLOW_CONSUMER. */
  overflow(bufferedBytes: number, limit: number): void {
    if (this.queues.size === 0) return;
    tallies.socketOverflows++;
    const error = appError("SLOW_CONSUMER", "Subscription closed: the client did not read its socket fast enough", {
      bufferedBytes,
      limit,
    });
    for (const queue of this.queues) queue.fail(error);
    this.queues.clear();
  }
}
