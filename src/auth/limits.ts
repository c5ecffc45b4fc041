import type { Redis } from "ioredis";
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import { appError } from "../errors.ts";

export interface LimitSettings {
  points: number;
  durationSeconds: number;
}

/**
 * Counts failures (sign-in attempts, code guesses, mails sent) per key within a window:
 * in Redis when configured, so every instance shares the counts; in process otherwise.
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

  /** Throws RATE_LIMITED with a retry hint when a key has used up its failures. */
  async check(key: string): Promise<void> {
    const state = await this.limiter.get(key);
    if (state && state.consumedPoints >= this.settings.points) {
      throw limited(state.msBeforeNext);
    }
  }

  /** Records one failure; throws RATE_LIMITED when it was one too many. */
  async fail(key: string): Promise<void> {
    try {
      await this.limiter.consume(key, 1);
    } catch (error) {
      if (error instanceof RateLimiterRes) throw limited(error.msBeforeNext);
      throw error;
    }
  }

  async reset(key: string): Promise<void> {
    await this.limiter.delete(key);
  }

  /** Another counter with its own name and settings, kept in the same store as this one. */
  sibling(name: string, settings: LimitSettings): FailureLimiter {
    return new FailureLimiter(name, settings, this.redis);
  }
}

function limited(msBeforeNext: number) {
  const retryAfterSeconds = Math.max(1, Math.ceil(msBeforeNext / 1000));
  return appError("RATE_LIMITED", `Too many attempts; try again in ${retryAfterSeconds} seconds`, {
    retryAfterSeconds,
  });
}
