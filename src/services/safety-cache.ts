import type { SqlConnection } from "../db/sql.ts";
import type { SafetyChange } from "../realtime/topics.ts";
import { WordFilter, type WordFilterAction } from "./word-filter.ts";

export type { SafetyChange };

interface Entry<T> {
  value: Promise<T>;
  /** Set once the value is read; a block change updates it in place. */
  settled?: T;
  until: number;
}

/** Most entries kept per kind; the oldest go first. */
const MAX_ENTRIES = 20_000;

/**
 * What sends and live events need of the safety tools, kept in memory so that they cost no
 * query: each tenant's compiled word filter, and per user the set of users they block.
 * Changes are applied on this instance at once and on the others through pub/sub; when
 * pub/sub may have lost news everything is forgotten, and entries are read again after
 * `ttlMs` at the latest.
 */
export class SafetyCache {
  private readonly filters = new Map<string, Entry<WordFilter | null>>();
  private readonly blocks = new Map<string, Entry<Set<string>>>();

  constructor(
    private readonly sql: SqlConnection,
    private readonly ttlMs: number,
  ) {}

  /** The tenant's word filter, or null when it has no rules. */
  wordFilter(tenantId: string): Promise<WordFilter | null> {
    return this.read(this.filters, tenantId, async () => {
      const [row] = await this.sql.query<{ rules: string[] | null; action: string }>(
        `SELECT "wordFilterRules" AS "rules", "wordFilterAction" AS "action" FROM "Tenant" WHERE "id" = $1::uuid`,
        [tenantId],
        { name: "tenant-word-filter" },
      );
      const rules = row?.rules ?? [];
      return rules.length ? new WordFilter(rules, row?.action as WordFilterAction) : null;
    });
  }

  /** The ids of the users `userId` blocks. */
  blockedBy(tenantId: string, userId: string): Promise<ReadonlySet<string>> {
    return this.read(this.blocks, `${tenantId}:${userId}`, async () => {
      const rows = await this.sql.query<{ blockedId: string }>(
        `SELECT "blockedId" FROM "Block" WHERE "tenantId" = $1::uuid AND "blockerId" = $2::uuid`,
        [tenantId, userId],
        { name: "user-blocks" },
      );
      return new Set(rows.map((row) => row.blockedId));
    });
  }

  /** The users `userId` blocks if they are known now (no waiting); else undefined. */
  peekBlockedBy(tenantId: string, userId: string): ReadonlySet<string> | undefined {
    const key = `${tenantId}:${userId}`;
    const entry = this.blocks.get(key);
    if (!entry || entry.until <= Date.now()) return undefined;
    return entry.settled;
  }

  apply(change: SafetyChange): void {
    if (change.type === "wordFilterChanged") {
      this.filters.delete(change.tenantId);
      return;
    }
    const key = `${change.tenantId}:${change.blockerId}`;
    const entry = this.blocks.get(key);
    if (!entry?.settled) {
      // Still being read (maybe from before the change): read it again next time.
      this.blocks.delete(key);
      return;
    }
    if (change.type === "blocked") entry.settled.add(change.blockedId);
    else entry.settled.delete(change.blockedId);
  }

  clear(): void {
    this.filters.clear();
    this.blocks.clear();
  }

  private read<T>(map: Map<string, Entry<T>>, key: string, load: () => Promise<T>): Promise<T> {
    const cached = map.get(key);
    if (cached && cached.until > Date.now()) return cached.value;
    map.delete(key);
    if (map.size >= MAX_ENTRIES) map.delete(map.keys().next().value as string);
    const entry: Entry<T> = { value: load(), until: Date.now() + this.ttlMs };
    map.set(key, entry);
    entry.value.then(
      (value) => {
        if (map.get(key) === entry) entry.settled = value;
      },
      () => {
        if (map.get(key) === entry) map.delete(key);
      },
    );
    return entry.value;
  }
}
