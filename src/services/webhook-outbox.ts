import type { SqlConnection } from "../db/sql.ts";
import type { PrismaClient } from "../generated/prisma/client.ts";

/** What a webhook can be told about: named after the events of the API. */
export const WEBHOOK_EVENTS = [
  "MESSAGE_ADDED",
  "MESSAGE_EDITED",
  "MESSAGE_DELETED",
  "REACTION_CHANGED",
  "MEMBER_ADDED",
  "MEMBER_REMOVED",
  "CONVERSATION_CREATED",
  "CONVERSATION_DELETED",
  "USER_CREATED",
  "USER_DELETED",
] as const;

export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

/** One event to record: its name and the `data` its deliveries carry (JSON). */
export interface WebhookItem {
  event: WebhookEvent;
  data: Record<string, unknown>;
}

/** Runs one statement on the caller's connection or transaction, whichever driver it is. */
export type SqlExec = (sql: string, params: unknown[]) => Promise<unknown[]>;

export const viaSql =
  (conn: SqlConnection): SqlExec =>
  (sql, params) =>
    conn.query(sql, params);

export const viaPrisma =
  (tx: Pick<PrismaClient, "$queryRawUnsafe">): SqlExec =>
  (sql, params) =>
    tx.$queryRawUnsafe(sql, ...params);

interface Entry {
  events: ReadonlySet<string>;
  until: number;
}

/** Most tenants whose wanted events are kept; the oldest go first. */
const MAX_TENANTS = 20_000;

/**
 * Records webhook deliveries (the outbox) in the transaction of the change they announce, so
 * a delivery exists exactly when its change committed. Which events a tenant's enabled
 * webhooks want is kept in memory per tenant (read lazily on the caller's connection,
 * forgotten when the tenant's webhooks change, on every instance through pub/sub, and after
 * `ttlMs` at the latest): a change nobody wants costs no statement at all.
 *
 * The cache only decides whether to write: the insert itself selects the webhooks that want
 * the event as the transaction sees them, so a stale entry records nothing wrong.
 */
export class WebhookOutbox {
  private readonly wanted = new Map<string, Entry>();
  private generation = 0;
  /** Called after deliveries were recorded (they are due once their transaction commits). */
  onRecorded: () => void = () => {};

  constructor(private readonly ttlMs: number) {}

  /** Whether an enabled webhook of the tenant wants the event; reads storage only when not known. */
  async wants(exec: SqlExec, tenantId: string, event: WebhookEvent): Promise<boolean> {
    const entry = this.wanted.get(tenantId);
    if (entry && entry.until > Date.now()) return entry.events.has(event);
    const readAt = this.generation;
    const rows = (await exec(
      `SELECT DISTINCT unnest("events") AS "event" FROM "Webhook" WHERE "tenantId" = $1::uuid AND "enabled"`,
      [tenantId],
    )) as { event: string }[];
    const events = new Set(rows.map((row) => row.event));
    // A change announced while reading may not be in what was read: use it, but do not keep it.
    if (readAt === this.generation) {
      this.wanted.delete(tenantId);
      if (this.wanted.size >= MAX_TENANTS) this.wanted.delete(this.wanted.keys().next().value as string);
      this.wanted.set(tenantId, { events, until: Date.now() + this.ttlMs });
    }
    return events.has(event);
  }

  /**
   * Records one delivery per (item, enabled webhook of the tenant that wants its event), with
   * the caller's transaction. Returns how many were recorded.
   */
  async record(exec: SqlExec, tenantId: string, items: readonly WebhookItem[]): Promise<number> {
    const wanted: WebhookItem[] = [];
    for (const item of items) if (await this.wants(exec, tenantId, item.event)) wanted.push(item);
    if (wanted.length === 0) return 0;
    const rows = await exec(
      `INSERT INTO "WebhookDelivery" ("id", "tenantId", "webhookId", "event", "payload", "messageId")
       SELECT gen_random_uuid(), w."tenantId", w."id", i."event", i."data", (i."data"->'message'->>'id')::uuid
         FROM "Webhook" w, jsonb_to_recordset($2::text::jsonb) AS i("event" text, "data" jsonb)
        WHERE w."tenantId" = $1::uuid AND w."enabled" AND i."event" = ANY(w."events")
       RETURNING "id"`,
      [tenantId, JSON.stringify(wanted)],
    );
    if (rows.length > 0) this.onRecorded();
    return rows.length;
  }

  /** Forgets what a tenant's webhooks want (all tenants' without an id). */
  invalidate(tenantId?: string): void {
    this.generation += 1;
    if (tenantId) this.wanted.delete(tenantId);
    else this.wanted.clear();
  }
}
