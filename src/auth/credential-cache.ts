import type { Principal } from "./principal.ts";

/**
 * A change that ends credentials or changes what they may do, as every instance hears it
 * (`topics.credentials`): revoked tokens (all of the users', or only their sessions'), changed
 * roles, rotated API keys.
 */
export type CredentialChange =
  | { type: "revoked"; tenantId: string; userIds: string[]; sessionIds?: string[] }
  | { type: "permissionsChanged"; tenantId: string; userIds: string[] }
  | { type: "apiKeysRevoked"; tenantId: string; keyIds: string[] }
  /** The tenant's identity provider setting changed: tokens verified under it are checked again. */
  | { type: "externalJwtChanged"; tenantId: string };

/** A user's effective permissions and the roles they come from. */
export interface Grants {
  permissions: readonly string[];
  roleIds: readonly string[];
}

interface Entry<T> {
  value: T;
  /** Time (ms) after which the entry is read from storage again. */
  until: number;
}

/** Most entries kept per kind; the oldest go first. */
const MAX_ENTRIES = 20_000;

/**
 * What a request needs to know who calls and what they may do, kept in memory so that an
 * authenticated request costs no query and no signature check: tokens that were verified and
 * found on record (kept until they expire), API keys, and users' grants. Entries are forgotten when a change is announced (on this instance at
 * once, on others through pub/sub), when pub/sub may have lost news (`clear`), and at the
 * latest after `ttlMs`, the same bound as the timed re-check of open sockets.
 *
 * A lookup that started before a change must not store what it read: every change bumps
 * `generation`, and `store` only keeps a value read under the current one.
 */
export class CredentialCache {
  private readonly tokens = new Map<string, Entry<Extract<Principal, { kind: "user" }>>>();
  private readonly keys = new Map<string, Entry<Extract<Principal, { kind: "service" }>>>();
  private readonly grants = new Map<string, Entry<Grants>>();
  private generation = 0;

  constructor(private readonly ttlMs: number) {}

  /** The current generation, to pass to the store call that follows a read from storage. */
  get version(): number {
    return this.generation;
  }

  /** The principal of a token seen valid before, until the token expires. */
  token(token: string): Extract<Principal, { kind: "user" }> | undefined {
    const principal = fresh(this.tokens, token);
    if (principal && principal.expiresAt.getTime() <= Date.now()) {
      this.tokens.delete(token);
      return undefined;
    }
    return principal;
  }

  /** Remembers a token whose signature was verified and whose record was read at `readAt`. */
  storeToken(token: string, principal: Extract<Principal, { kind: "user" }>, readAt: number): void {
    if (readAt === this.generation) put(this.tokens, token, principal, this.ttlMs);
  }

  apiKey(hash: string): Extract<Principal, { kind: "service" }> | undefined {
    return fresh(this.keys, hash);
  }

  storeApiKey(hash: string, principal: Extract<Principal, { kind: "service" }>, readAt: number): void {
    if (readAt === this.generation) put(this.keys, hash, principal, this.ttlMs);
  }

  grantsOf(tenantId: string, userId: string): Grants | undefined {
    return fresh(this.grants, `${tenantId}:${userId}`);
  }

  storeGrants(tenantId: string, userId: string, grants: Grants, readAt: number): void {
    if (readAt === this.generation) put(this.grants, `${tenantId}:${userId}`, grants, this.ttlMs);
  }

  /** Forgets what a change makes stale. */
  apply(change: CredentialChange): void {
    this.generation++;
    if (change.type === "apiKeysRevoked") {
      for (const [hash, entry] of this.keys) {
        if (entry.value.tenantId === change.tenantId && change.keyIds.includes(entry.value.apiKeyId)) {
          this.keys.delete(hash);
        }
      }
      return;
    }
    if (change.type === "externalJwtChanged") {
      for (const [token, entry] of this.tokens) {
        if (entry.value.tenantId === change.tenantId && entry.value.external) this.tokens.delete(token);
      }
      return;
    }
    const users = new Set(change.userIds);
    for (const userId of users) this.grants.delete(`${change.tenantId}:${userId}`);
    if (change.type !== "revoked") return;
    for (const [token, entry] of this.tokens) {
      const principal = entry.value;
      if (principal.tenantId !== change.tenantId || !users.has(principal.userId)) continue;
      if (change.sessionIds && !(principal.sessionId && change.sessionIds.includes(principal.sessionId))) continue;
      this.tokens.delete(token);
    }
  }

  /** Forgets everything (pub/sub may have lost changes). */
  clear(): void {
    this.generation++;
    this.tokens.clear();
    this.keys.clear();
    this.grants.clear();
  }
}

function fresh<T>(map: Map<string, Entry<T>>, key: string): T | undefined {
  const entry = map.get(key);
  if (!entry) return undefined;
  if (entry.until > Date.now()) return entry.value;
  map.delete(key);
  return undefined;
}

function put<T>(map: Map<string, Entry<T>>, key: string, value: T, ttlMs: number): void {
  map.delete(key);
  if (map.size >= MAX_ENTRIES) map.delete(map.keys().next().value as string);
  map.set(key, { value, until: Date.now() + ttlMs });
}
