import { createHmac } from "node:crypto";
import { openSecret } from "../auth/secrets.ts";
import type { AppDeps } from "../context.ts";
import { type OutboundAnswer, outboundPost } from "../http/outbound.ts";
import { topics } from "../realtime/topics.ts";

/** A claimed delivery with what sending it needs. */
interface Claimed {
  id: string;
  tenantId: string;
  webhookId: string;
  event: string;
  payload: unknown;
  attempts: number;
  createdAt: Date | string;
  url: string;
  secret: string;
}

/** The signature header's value: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. */
export function webhookSignature(secret: string, body: string, unixSeconds: number): string {
  const mac = createHmac("sha256", secret).update(`${unixSeconds}.${body}`).digest("hex");
  return `t=${unixSeconds},v1=${mac}`;
}

/** The wait before the next attempt after `failures` failed ones: base x factor^(failures-1), +-20% jitter, capped. */
export function retryDelayMs(
  failures: number,
  config: { retryBaseMs: number; retryFactor: number; retryMaxDelayMs: number },
  random: () => number = Math.random,
): number {
  const plain = config.retryBaseMs * config.retryFactor ** Math.max(0, failures - 1);
  const jittered = plain * (0.8 + 0.4 * random());
  return Math.round(Math.min(config.retryMaxDelayMs, jittered));
}

/** How often an instance removes old deliveries and fails expired ones. */
const HOUSEKEEPING_MS = 10 * 60_000;
/** After deliveries were recorded here, look for them this often until they show (their transaction commits). */
const FRESH_POLL_MS = 50;
const FRESH_WINDOW_MS = 1000;

/**
 * Sends webhook deliveries: one loop per instance claims due ones (`FOR UPDATE SKIP LOCKED`,
 * so each is claimed by one instance at a time) and sends them, at most `concurrency` at once.
 *
 * Claiming moves a delivery's `nextAttemptAt` past the attempt's time limit (a lease): an
 * instance that dies mid-attempt leaves it due again once the lease ends, so nothing is lost.
 * The loop wakes when this instance records deliveries, when one of its retries is due, and
 * otherwise every `pollMs` (other instances' retries, a dead instance's leases).
 */
export class WebhookDispatcher {
  private stopped = false;
  private running: Promise<void> | null = null;
  private readonly inFlight = new Set<Promise<void>>();
  private wakeUp: (() => void) | null = null;
  private woken = false;
  private lastRecordedAt = 0;
  private lastHousekeeping = 0;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(private readonly deps: AppDeps) {}

  start(): void {
    this.deps.webhooks.onRecorded = () => {
      this.lastRecordedAt = Date.now();
      this.wake();
    };
    this.running = this.loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.deps.webhooks.onRecorded = () => {};
    for (const timer of this.timers) clearTimeout(timer);
    this.wake();
    await this.running;
    await Promise.allSettled([...this.inFlight]);
  }

  wake(): void {
    this.woken = true;
    const wakeUp = this.wakeUp;
    this.wakeUp = null;
    wakeUp?.();
  }

  private wakeIn(ms: number): void {
    if (this.stopped) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.wake();
    }, ms);
    timer.unref();
    this.timers.add(timer);
  }

  private sleep(ms: number): Promise<void> {
    if (this.woken) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wakeUp = null;
        resolve();
      }, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private async loop(): Promise<void> {
    const { config, log } = this.deps;
    while (!this.stopped) {
      this.woken = false;
      let full = false;
      try {
        const room = config.webhooks.concurrency - this.inFlight.size;
        if (room > 0) {
          const claimed = await this.claim(room);
          full = claimed.length === room;
          for (const row of claimed) {
            const attempt: Promise<void> = this.attempt(row)
              .catch((error: unknown) => log.error({ err: error, deliveryId: row.id }, "webhook delivery failed"))
              .finally(() => {
                this.inFlight.delete(attempt);
                this.wake();
              });
            this.inFlight.add(attempt);
          }
        }
        if (Date.now() - this.lastHousekeeping > HOUSEKEEPING_MS) {
          this.lastHousekeeping = Date.now();
          await this.housekeeping();
        }
      } catch (error) {
        if (this.stopped) break;
        log.warn({ err: error }, "webhook dispatch failed");
      }
      if (this.stopped) break;
      if (full && this.inFlight.size < config.webhooks.concurrency) continue;
      const fresh = Date.now() - this.lastRecordedAt < FRESH_WINDOW_MS;
      await this.sleep(fresh ? FRESH_POLL_MS : config.webhooks.pollMs);
    }
  }

  private async claim(limit: number): Promise<Claimed[]> {
    const leaseMs = this.deps.config.webhooks.timeoutMs * 2 + 10_000;
    return this.deps.db.sql.query<Claimed>(
      `UPDATE "WebhookDelivery" AS d
          SET "attempts" = d."attempts" + 1, "lastAttemptAt" = now(),
              "nextAttemptAt" = now() + $2::int * interval '1 millisecond'
         FROM "Webhook" AS w
        WHERE w."tenantId" = d."tenantId" AND w."id" = d."webhookId"
          AND d."id" IN (
            SELECT q."id" FROM "WebhookDelivery" q
              JOIN "Webhook" qw ON qw."tenantId" = q."tenantId" AND qw."id" = q."webhookId" AND qw."enabled"
             WHERE q."status" = 'PENDING' AND q."nextAttemptAt" <= now()
             ORDER BY q."nextAttemptAt"
             LIMIT $1
               FOR UPDATE OF q SKIP LOCKED)
      RETURNING d."id", d."tenantId", d."webhookId", d."event", d."payload", d."attempts", d."createdAt",
                w."url", w."secret"`,
      [limit, leaseMs],
    );
  }

  private async attempt(row: Claimed): Promise<void> {
    const { config, db, sealingKey } = this.deps;
    const body = JSON.stringify({
      id: row.id,
      event: row.event,
      createdAt: new Date(row.createdAt).toISOString(),
      tenantId: row.tenantId,
      webhookId: row.webhookId,
      data: typeof row.payload === "string" ? JSON.parse(row.payload) : row.payload,
    });
    let answer: OutboundAnswer | null = null;
    let problem: string | null = null;
    try {
      const secret = openSecret(sealingKey, row.secret);
      answer = await outboundPost(
        row.url,
        { production: config.production },
        {
          headers: {
            "content-type": "application/json",
            "user-agent": "chat-api-webhooks/1",
            "x-webhook-id": row.id,
            "x-webhook-event": row.event,
            "x-webhook-attempt": String(row.attempts),
            "x-webhook-signature": webhookSignature(secret, body, Math.floor(Date.now() / 1000)),
          },
          body,
          timeoutMs: config.webhooks.timeoutMs,
        },
      );
      if (answer.status < 200 || answer.status > 299) problem = `answered ${answer.status}`;
    } catch (error) {
      problem = error instanceof Error ? error.message : String(error);
      if ((error as Error).name === "TimeoutError" || (error as Error).name === "AbortError") {
        problem = `no answer within ${config.webhooks.timeoutMs} ms`;
      }
    }
    this.deps.log.debug(
      { deliveryId: row.id, webhookId: row.webhookId, attempt: row.attempts, status: answer?.status, error: problem },
      "webhook delivery attempted",
    );
    if (!problem) {
      await db.sql.query(
        `UPDATE "WebhookDelivery"
            SET "status" = 'DELIVERED', "deliveredAt" = now(), "responseStatus" = $2::int, "error" = NULL
          WHERE "id" = $1::uuid AND "status" = 'PENDING'`,
        [row.id, answer?.status ?? null],
      );
      await db.sql.query(
        `UPDATE "Webhook" SET "failingSince" = NULL WHERE "id" = $1::uuid AND "failingSince" IS NOT NULL`,
        [row.webhookId],
      );
      return;
    }
    const delayMs = retryDelayMs(row.attempts, config.webhooks);
    const [after] = await db.sql.query<{ status: string }>(
      `UPDATE "WebhookDelivery"
          SET "status" = CASE WHEN "createdAt" + $3::bigint * interval '1 millisecond' < now() + $2::int * interval '1 millisecond'
                              THEN 'FAILED' ELSE 'PENDING' END,
              "nextAttemptAt" = now() + $2::int * interval '1 millisecond',
              "responseStatus" = $4::int, "error" = $5::text
        WHERE "id" = $1::uuid AND "status" = 'PENDING' AND "attempts" = $6::int
      RETURNING "status"`,
      [row.id, delayMs, config.webhooks.maxAgeMs, answer?.status ?? null, problem.slice(0, 500), row.attempts],
    );
    if (after?.status === "PENDING") this.wakeIn(delayMs + 10);
    const [webhook] = await db.sql.query<{ failingFor: number }>(
      `UPDATE "Webhook" SET "failingSince" = COALESCE("failingSince", now())
        WHERE "id" = $1::uuid AND "enabled"
      RETURNING (extract(epoch FROM now() - "failingSince") * 1000)::float8 AS "failingFor"`,
      [row.webhookId],
    );
    if (webhook && webhook.failingFor >= config.webhooks.disableAfterMs) await this.disable(row, problem);
  }

  /** Disables a webhook that has failed for too long, fails what it still had pending, and says so in the audit log. */
  private async disable(row: Claimed, problem: string): Promise<void> {
    const { db, config } = this.deps;
    const reason = `every attempt failed for more than ${Math.round(config.webhooks.disableAfterMs / 1000)} s (last: ${problem.slice(0, 200)})`;
    const disabled = await db.sql.transaction(async (conn) => {
      const rows = await conn.query(
        `UPDATE "Webhook" SET "enabled" = false, "disabledReason" = $2::text, "updatedAt" = now()
          WHERE "id" = $1::uuid AND "enabled" RETURNING "id"`,
        [row.webhookId, reason],
      );
      if (rows.length === 0) return false;
      await conn.query(
        `UPDATE "WebhookDelivery" SET "status" = 'FAILED', "error" = 'webhook disabled'
          WHERE "webhookId" = $1::uuid AND "status" = 'PENDING'`,
        [row.webhookId],
      );
      await conn.query(
        `INSERT INTO "AuditEntry" ("id", "tenantId", "action", "actorType", "actorId", "targetType", "targetId", "details")
         VALUES (gen_random_uuid(), $1::uuid, 'webhook.disabled', 'SYSTEM', NULL, 'Webhook', $2::uuid, $3::text)`,
        [row.tenantId, row.webhookId, JSON.stringify({ reason })],
      );
      return true;
    });
    if (!disabled) return;
    this.deps.log.warn({ webhookId: row.webhookId, tenantId: row.tenantId }, "webhook disabled: failing for too long");
    this.deps.webhooks.invalidate(row.tenantId);
    await this.deps.pubsub.publish(topics.webhooks, { tenantId: row.tenantId }).catch(() => {});
  }

  /** Fails deliveries past their age (e.g. of a webhook disabled meanwhile) and removes finished ones past retention. */
  private async housekeeping(): Promise<void> {
    const { db, config } = this.deps;
    await db.sql.query(
      `UPDATE "WebhookDelivery" SET "status" = 'FAILED', "error" = COALESCE("error", 'expired')
        WHERE "status" = 'PENDING' AND "createdAt" < now() - $1::bigint * interval '1 millisecond'
          AND "nextAttemptAt" <= now()`,
      [config.webhooks.maxAgeMs],
    );
    await db.sql.query(
      `DELETE FROM "WebhookDelivery"
        WHERE "status" <> 'PENDING' AND "createdAt" < now() - $1::bigint * interval '1 millisecond'`,
      [config.webhooks.retentionMs],
    );
  }
}
