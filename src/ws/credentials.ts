import type { Principal } from "../auth/principal.ts";
import type { AppDeps } from "../context.ts";

/** Ids checked per query when re-reading credentials from storage. */
const BATCH = 500;

interface Holder {
  principal: Principal;
  /** Ends the socket because its credentials are no longer valid. */
  close(reason: string): void;
}

const keyOf = (principal: Principal) =>
  principal.kind === "user" ? `token:${principal.tokenId}` : `key:${principal.apiKeyId}`;

function chunks<T>(items: T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += BATCH) out.push(items.slice(i, i + BATCH));
  return out;
}

/**
 * The credentials of every open socket on this instance, and which of them are known to
 * be revoked. Revocations arrive as pub/sub news (closing sockets at once); since news can
 * be lost, the state is also re-read from storage on a timer, whenever pub/sub reports it
 * may have dropped messages, and when this instance failed to publish a revocation. Every
 * operation a socket starts is checked against it.
 */
export class CredentialRegistry {
  private readonly holders = new Map<object, Holder>();
  private readonly revoked = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private readonly stopListening: (() => void)[] = [];

  constructor(private readonly deps: AppDeps) {}

  start(): void {
    const ms = this.deps.config.credentialResyncSeconds * 1000;
    this.timer = setInterval(() => void this.resync(), ms);
    this.timer.unref();
    this.stopListening.push(this.deps.pubsub.onResync(() => void this.resync()));
    this.stopListening.push(this.deps.credentialResync.listen(() => void this.resync()));
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    for (const stop of this.stopListening.splice(0)) stop();
  }

  /** Registers a socket's principal; returns the function that forgets it. */
  add(socket: object, holder: Holder): () => void {
    this.holders.set(socket, holder);
    return () => this.holders.delete(socket);
  }

  /** Marks a principal revoked (news from pub/sub), so no new operation starts with it. */
  markRevoked(principal: Principal): void {
    this.revoked.add(keyOf(principal));
  }

  /** Whether a principal may start an operation now: not revoked, not expired. */
  valid(principal: Principal): boolean {
    if (this.revoked.has(keyOf(principal))) return false;
    return principal.kind !== "user" || principal.expiresAt.getTime() > Date.now();
  }

  /** Re-reads every open socket's credentials from storage and closes those no longer valid. */
  resync(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          await this.check();
        } catch (error) {
          this.deps.log.warn({ err: (error as Error).message }, "credential resync failed; retried on the next tick");
        }
      } while (this.again);
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async check(): Promise<void> {
    const holders = [...this.holders.values()];
    if (holders.length === 0) return;
    const prisma = this.deps.db.prisma;
    const tokenIds = [
      ...new Set(
        holders.flatMap((h) => (h.principal.kind === "user" && !h.principal.external ? [h.principal.tokenId] : [])),
      ),
    ];
    const externalUserIds = [
      ...new Set(
        holders.flatMap((h) => (h.principal.kind === "user" && h.principal.external ? [h.principal.userId] : [])),
      ),
    ];
    const keyIds = [...new Set(holders.flatMap((h) => (h.principal.kind === "service" ? [h.principal.apiKeyId] : [])))];
    const validKeys = new Set<string>();
    const now = new Date();
    for (const ids of chunks(tokenIds)) {
      // The same conditions as resolvePrincipal, for many tokens at once.
      const rows = await prisma.userToken.findMany({
        where: {
          id: { in: ids },
          revokedAt: null,
          expiresAt: { gt: now },
          user: { active: true, deletedAt: null, tenant: { active: true } },
          OR: [{ sessionId: null }, { session: { revokedAt: null } }],
        },
        select: { id: true },
      });
      for (const row of rows) validKeys.add(`token:${row.id}`);
    }
    // Tokens of a tenant's identity provider have no row here: their user and tenant must still
    // be active, and the tenant's setting the same one they were verified under.
    const externalValid = new Map<string, number>();
    for (const ids of chunks(externalUserIds)) {
      const rows = await prisma.user.findMany({
        where: { id: { in: ids }, active: true, deletedAt: null, tenant: { active: true } },
        select: { id: true, tenant: { select: { externalJwt: { select: { updatedAt: true } } } } },
      });
      for (const row of rows) {
        const stamp = row.tenant.externalJwt?.updatedAt.getTime();
        if (stamp !== undefined) externalValid.set(row.id, stamp);
      }
    }
    for (const holder of holders) {
      const principal = holder.principal;
      if (principal.kind === "user" && principal.external) {
        if (externalValid.get(principal.userId) === principal.external.configStamp) validKeys.add(keyOf(principal));
      }
    }
    for (const ids of chunks(keyIds)) {
      const rows = await prisma.apiKey.findMany({
        where: { id: { in: ids }, revokedAt: null, tenant: { active: true } },
        select: { id: true },
      });
      for (const row of rows) validKeys.add(`key:${row.id}`);
    }
    for (const holder of holders) {
      const key = keyOf(holder.principal);
      if (validKeys.has(key)) continue;
      this.revoked.add(key);
      holder.close("Credentials revoked");
    }
    // Only what open sockets still hold needs remembering.
    const held = new Set(holders.map((h) => keyOf(h.principal)));
    for (const key of this.revoked) if (!held.has(key)) this.revoked.delete(key);
  }
}
