import type { Redis } from "ioredis";
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import { appError } from "../errors.ts";
import { countRateLimited } from "../metrics.ts";

export interface LimitSettings {
  points: number;
  durationSeconds: number;
}

/** Wrong guesses one emailed code survives; the code is spent after that many. */
export const EMAIL_CODE_MAX_ATTEMPTS = 5;

/**
 * Counts attempts (sign-ins, code guesses, mails sent) per key within a window: in Redis
 * when configured, so every instance shares the counts; in process otherwise.
 *
 * An attempt is taken (`consume`) before the work it guards, in one atomic increment, and
 * given back (`refund`, `reset`) once the work turned out not to be a failure. Reading
 * the count first and recording the failure after the slow work would let every request
 * of a parallel burst pass the read before any of them is recorded.
 */
export class FailureLimiter {
  private readonly limiter: RateLimiterMemory | RateLimiterRedis;

  constructor(
    readonly name: string,
    readonly settings: LimitSettings,
    private readonly redis?: Redis,
  ) {
    const options = { keyPrefix: `chat:limit:${name}`, points: settings.points, duration: settings.durationSeconds };
    // If Redis is unreachable, count in process rather than fail every sign-in.
    this.limiter = redis
      ? new RateLimiterRedis({ storeClient: redis, insuranceLimiter: new RateLimiterMemory(options), ...options })
      : new RateLimiterMemory(options);
  }

  /**
   * Throws RATE_LIMITED when a key has used up its attempts. Only for a guard in front of
   * work that is not itself counted here (a read, then no increment): it is not atomic.
   */
  async check(key: string): Promise<void> {
    const state = await this.limiter.get(key);
    if (state && state.consumedPoints >= this.settings.points) {
      throw limited(this.name, state.msBeforeNext);
    }
  }

  /** Takes one attempt, atomically; throws RATE_LIMITED when none was left. */
  async consume(key: string): Promise<void> {
    try {
      await this.limiter.consume(key, 1);
    } catch (error) {
      if (error instanceof RateLimiterRes) throw limited(this.name, error.msBeforeNext);
      throw error;
    }
  }

  /** Gives back one attempt taken by `consume` (the attempt succeeded, or was never evaluated). */
  async refund(key: string): Promise<void> {
    // A window that ended meanwhile has nothing to give back (a reward would open the next one below zero).
    const state = await this.limiter.get(key);
    if (state && state.consumedPoints > 0) await this.limiter.reward(key, 1);
  }

  /** Forgets every attempt of the key. */
  async reset(key: string): Promise<void> {
    await this.limiter.delete(key);
  }

  /** Another counter with its own name and settings, kept in the same store as this one. */
  sibling(name: string, settings: LimitSettings): FailureLimiter {
    return new FailureLimiter(name, settings, this.redis);
  }
}

function limited(limit: string, msBeforeNext: number) {
  countRateLimited(limit);
  const retryAfterSeconds = Math.max(1, Math.ceil(msBeforeNext / 1000));
  return appError("RATE_LIMITED", `Too many attempts; try again in ${retryAfterSeconds} seconds`, {
    retryAfterSeconds,
  });
}
