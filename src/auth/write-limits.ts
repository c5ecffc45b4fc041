import type { Redis } from "ioredis";
import {
  BurstyRateLimiter,
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
  RLWrapperTimeouts,
} from "rate-limiter-flexible";
import type { RateBudget, RateLimitConfig } from "../env.ts";
import { appError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { countRateLimited } from "../metrics.ts";
import type { Principal } from "./principal.ts";

/** A Redis answer slower than this counts in process instead, so a stalled Redis cannot stall writes. */
const REDIS_TIMEOUT_MS = 500;

interface Budget {
  consume(key: string, points: number): Promise<unknown>;
}

/**
 * One fixed-window counter: in Redis when configured (shared by every instance), in
 * process otherwise. When Redis fails or is slow, the instance counts in process until it
 * is back: limits stay in force, per instance, and no request fails because of Redis.
 */
function counter(name: string, points: number, durationSeconds: number, redis?: Redis) {
  const options = { keyPrefix: `chat:limit:write:${name}`, points, duration: durationSeconds };
  if (!redis) return new RateLimiterMemory(options);
  const limiter = new RateLimiterRedis({
    ...options,
    storeClient: redis,
    rejectIfRedisNotReady: true,
    insuranceLimiter: new RateLimiterMemory(options),
  });
  return new RLWrapperTimeouts({ limiter, timeoutMs: REDIS_TIMEOUT_MS });
}

/**
 * A token-bucket-like budget: `perSecond` points every second, plus a reserve of `burst`
 * points spent only when the second's points are gone. The reserve refills completely
 * every burst/perSecond seconds, so on average it adds perSecond again: a sender can keep
 * up between perSecond and twice that, and can spend the whole reserve at once.
 */
function budget(name: string, settings: RateBudget, redis?: Redis): Budget {
  const steady = counter(name, settings.perSecond, 1, redis);
  if (settings.burst <= 0) return steady;
  const reserveSeconds = Math.max(1, Math.ceil(settings.burst / settings.perSecond));
  return new BurstyRateLimiter(steady, counter(`${name}:burst`, settings.burst, reserveSeconds, redis));
}

/** One turn of the event loop: I/O that has arrived meanwhile is read before it resolves. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
/** Turns without another write of the same user after which a held write goes ahead. */
const QUIET_TURNS = 8;
/** And as long, at least, since that user's last write arrived (a loaded machine reads sockets late). */
const QUIET_MS = 5;
/** The longest a write is held while a burst goes on. */
const HOLD_MAX_MS = 1000;

function limited(message: string, msBeforeNext: number) {
  countRateLimited("writes");
  const retryAfterSeconds = Math.max(1, Math.ceil(msBeforeNext / 1000));
  return appError("RATE_LIMITED", `${message}; try again in ${retryAfterSeconds} seconds`, { retryAfterSeconds });
}

/** Writes of one user on this instance: those in progress, and a count of every attempt. */
interface UserWrites {
  running: number;
  attempts: number;
  /** When the latest attempt arrived (ms since the epoch). */
  lastArrival: number;
}

/**
 * Limits writes per user and per tenant. Each user has a budget (see `budget`) and a cap
 * on writes in progress at once on this instance: a flood of parallel requests is refused
 * in part while a client sending one write after another keeps its full budget. Each
 * tenant has a larger budget shared by its users and its API key; the API key has no
 * per-user limits. A refused write throws RATE_LIMITED before it runs.
 */
export class WriteLimits {
  private readonly user: Budget;
  private readonly tenant: Budget;
  private readonly writes = new Map<string, UserWrites>();

  constructor(
    readonly config: RateLimitConfig,
    redis: Redis | undefined,
    private readonly log: Logger,
    /** Hold bursts together (see holdWhileArriving); for embedded mode. */
    private readonly holdBursts = false,
  ) {
    this.user = budget("user", config.user, redis);
    this.tenant = budget("tenant", config.tenant, redis);
  }

  /** Runs a write within the principal's limits; throws RATE_LIMITED (and runs nothing) when over them. */
  async run<T>(ctx: { principal: Principal | null }, write: () => Promise<T>): Promise<T> {
    const { principal } = ctx;
    if (!this.config.enabled || !principal) return write();
    const userId = principal.kind === "user" ? principal.userId : null;
    const mine = userId ? this.enter(userId) : null;
    try {
      if (mine && this.holdBursts) await this.holdWhileArriving(mine);
      // The user's budget first: a user over it does not spend the tenant's.
      if (userId) await this.consume(this.user, userId, "Too many writes");
      await this.consume(this.tenant, principal.tenantId, "Too many writes in this tenant");
      return await write();
    } finally {
      if (userId && mine) this.leave(userId, mine);
    }
  }

  /** Counts a write of the user in progress, or throws RATE_LIMITED when the user has too many. */
  private enter(userId: string): UserWrites {
    const mine = this.writes.get(userId) ?? { running: 0, attempts: 0, lastArrival: 0 };
    mine.attempts += 1;
    mine.lastArrival = Date.now();
    // Writes take milliseconds: a second is a generous hint.
    if (mine.running >= this.config.user.concurrency) throw limited("Too many writes at once", 1000);
    mine.running += 1;
    this.writes.set(userId, mine);
    return mine;
  }

  private leave(userId: string, mine: UserWrites): void {
    mine.running -= 1;
    if (mine.running === 0) this.writes.delete(userId);
  }

  /**
   * In embedded mode PGlite answers in this thread without yielding to the event loop, so
   * each request runs to its end before the next one is even read: a burst of parallel
   * writes would be served one by one and never show as parallel. Here a write first waits
   * until a few turns of the event loop pass without another write of the same user
   * arriving (or HOLD_MAX_MS), so that writes sent together are in progress together, and
   * those beyond the cap are refused while the burst lasts. A lone write waits a few
   * turns and QUIET_MS, milliseconds on an idle server.
   */
  private async holdWhileArriving(mine: UserWrites): Promise<void> {
    const deadline = Date.now() + HOLD_MAX_MS;
    let seen = mine.attempts;
    let quiet = 0;
    while ((quiet < QUIET_TURNS || Date.now() - mine.lastArrival < QUIET_MS) && Date.now() < deadline) {
      await turn();
      if (mine.attempts === seen) quiet += 1;
      else {
        seen = mine.attempts;
        quiet = 0;
      }
    }
  }

  private async consume(limiter: Budget, key: string, message: string): Promise<void> {
    try {
      await limiter.consume(key, 1);
    } catch (error) {
      if (error instanceof RateLimiterRes) throw limited(message, error.msBeforeNext);
      // Only a failing in-process fallback gets here; a limit must never break the write itself.
      this.log.warn({ err: error }, "write limit unavailable; write allowed");
    }
  }
}
