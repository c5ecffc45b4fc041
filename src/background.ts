import type { Logger } from "./logger.ts";

/**
 * Work a request starts but does not wait for, such as account mail: the answer must not
 * depend on (or take the time of) whether there was anything to send. A failure is logged
 * with the request id, never thrown; `drain` waits for what is pending, on shutdown.
 */
export class BackgroundTasks {
  private readonly pending = new Set<Promise<void>>();

  constructor(private readonly log: Logger) {}

  /** Starts `work` once the current request has had its turn (after the response is written). */
  run(what: string, requestId: string | undefined, work: () => Promise<void>): void {
    const task = new Promise<void>((resolve) => setImmediate(resolve))
      .then(work)
      .catch((error: unknown) => this.log.error({ err: error, requestId }, `${what} failed`))
      .finally(() => this.pending.delete(task));
    this.pending.add(task);
  }

  async drain(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }
}
