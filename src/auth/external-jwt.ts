import { createHash } from "node:crypto";
import {
  createLocalJWKSet,
  decodeJwt,
  type FlattenedJWSInput,
  type JSONWebKeySet,
  type JWSHeaderParameters,
  type JWTPayload,
  errors as joseErrors,
  jwtVerify,
} from "jose";
import type { PrismaClient, TransactionClient } from "../db/client.ts";
import { isUniqueViolation } from "../db/errors.ts";
import type { User } from "../generated/prisma/client.ts";
import { type OutboundPolicy, outboundGetJson } from "../http/outbound.ts";
import type { Logger } from "../logger.ts";
import { zEmail } from "../services/validation.ts";
import type { Principal } from "./principal.ts";
import { OWN_ISSUER } from "./tokens.ts";

/** Algorithms accepted per kind of key: a shared secret only signs HS256, a key set never does. */
const HMAC_ALGORITHMS = ["HS256"];
const KEY_SET_ALGORITHMS = ["RS256", "ES256", "EdDSA"];
/** Clock skew tolerated between the identity provider and this server. */
const CLOCK_TOLERANCE_SECONDS = 5;
const EXTERNAL_ID_MAX = 200;
const NAME_MAX = 100;
const GROUPS_MAX = 500;

/** What a verified token of a tenant's identity provider says, read through the tenant's claim names. */
export interface ExternalIdentity {
  tenantId: string;
  externalId: string;
  name: string | null;
  email: string | null;
  /** External ids of the groups the user is in; an absent claim counts as none. */
  groups: string[];
  expiresAt: Date;
  /** The tenant's setting the token was verified under (its updatedAt), to notice a change. */
  configStamp: number;
}

/** Called once per token the first time it is seen on this instance, after its user is known. */
export type NewExternalTokenHook = (
  identity: ExternalIdentity,
  principal: Extract<Principal, { kind: "user" }>,
) => Promise<void>;

interface KeySetEntry {
  keys: ReturnType<typeof createLocalJWKSet> | null;
  fetchedAt: number;
  lastAttemptAt: number;
  pending: Promise<void> | null;
}

/**
 * Public keys of identity providers, per JWKS URL: fetched on first use under the outbound
 * URL rules, fetched again when a token names a key id not in the set (key rotation) or when
 * the set is old, but at most once per `minIntervalMs` per URL whatever tokens arrive.
 */
export class KeySetCache {
  private readonly entries = new Map<string, KeySetEntry>();

  constructor(
    private readonly policy: OutboundPolicy,
    private readonly log: Logger,
    private readonly minIntervalMs = 30_000,
    private readonly maxAgeMs = 10 * 60_000,
  ) {}

  /** The key for a token's header; throws when none matches even after a permitted refetch. */
  async key(url: string, header: JWSHeaderParameters, token: FlattenedJWSInput) {
    let entry = this.entries.get(url);
    if (!entry) {
      entry = { keys: null, fetchedAt: 0, lastAttemptAt: 0, pending: null };
      this.entries.set(url, entry);
      if (this.entries.size > 1000) this.entries.delete(this.entries.keys().next().value as string);
    }
    if (!entry.keys || Date.now() - entry.fetchedAt > this.maxAgeMs) await this.refresh(url, entry);
    if (!entry.keys) throw new joseErrors.JWKSNoMatchingKey();
    try {
      return await entry.keys(header, token);
    } catch (error) {
      if (!(error instanceof joseErrors.JWKSNoMatchingKey)) throw error;
      // An unknown key id: the provider may have rotated its keys.
      await this.refresh(url, entry);
      return entry.keys(header, token);
    }
  }

  private async refresh(url: string, entry: KeySetEntry): Promise<void> {
    if (entry.pending) return entry.pending;
    if (Date.now() - entry.lastAttemptAt < this.minIntervalMs) return;
    entry.lastAttemptAt = Date.now();
    entry.pending = (async () => {
      try {
        const body = (await outboundGetJson(url, this.policy)) as JSONWebKeySet;
        entry.keys = createLocalJWKSet(body);
        entry.fetchedAt = Date.now();
      } catch (error) {
        // Keeps the keys it had: a provider that is briefly down does not sign everyone out.
        this.log.warn({ err: (error as Error).message, url }, "JWKS fetch failed");
      } finally {
        entry.pending = null;
      }
    })();
    return entry.pending;
  }
}

function audiences(payload: JWTPayload): string[] {
  if (typeof payload.aud === "string") return [payload.aud];
  return Array.isArray(payload.aud) ? payload.aud.filter((a): a is string => typeof a === "string") : [];
}

function claimString(payload: JWTPayload, claim: string, max: number): string | null {
  const value = payload[claim];
  if (typeof value === "number" && Number.isSafeInteger(value)) return String(value);
  if (typeof value !== "string") return null;
  const trimmed = value.trim();
  return trimmed && trimmed.length <= max ? trimmed : null;
}

/** A short fingerprint of a token, to tell tokens apart without keeping them. */
export function tokenFingerprint(token: string): string {
  return createHash("sha256").update(token).digest("base64url").slice(0, 32);
}

/**
 * Verifies tokens of tenants' own identity providers: the token's issuer (and audience) names
 * the tenant; its signature is checked with that tenant's secret or key set, with an
 * algorithm allow-list that matches the kind of key (so `alg: none` and HS/RS confusion fail).
 */
export class ExternalJwtVerifier {
  /** Tokens already seen on this instance (fingerprint -> expiry ms), for the new-token hook. */
  private readonly seen = new Map<string, number>();
  onNewToken: NewExternalTokenHook | null = null;

  /** Called in the transaction that created a user for a new identity (webhooks record USER_CREATED there). */
  onUserCreated: (tx: TransactionClient, user: User) => Promise<void> = async () => {};

  constructor(
    private readonly prisma: PrismaClient,
    private readonly keySets: KeySetCache,
    private readonly log: Logger,
  ) {}

  /** Whether a token claims an issuer other than this server (without verifying anything). */
  static isForeign(token: string): boolean {
    try {
      const { iss } = decodeJwt(token);
      return typeof iss === "string" && iss !== OWN_ISSUER;
    } catch {
      return false;
    }
  }

  /** The identity of a valid token, or null for anything else. */
  async verify(token: string): Promise<ExternalIdentity | null> {
    let claimed: JWTPayload;
    try {
      claimed = decodeJwt(token);
    } catch {
      return null;
    }
    if (typeof claimed.iss !== "string") return null;
    const candidates = await this.prisma.tenantExternalJwt.findMany({
      where: { issuer: claimed.iss, tenant: { active: true } },
    });
    const tokenAudiences = audiences(claimed);
    const matching = candidates.filter((c) => c.audience === "" || tokenAudiences.includes(c.audience));
    // Settings keep issuers unambiguous; should two still match, the token names no tenant.
    const config = matching.length === 1 ? matching[0] : undefined;
    if (!config) return null;
    const options = {
      issuer: config.issuer,
      ...(config.audience ? { audience: config.audience } : {}),
      requiredClaims: ["exp"],
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
    };
    let payload: JWTPayload;
    try {
      if (config.hmacSecret) {
        const key = new TextEncoder().encode(config.hmacSecret);
        ({ payload } = await jwtVerify(token, key, { ...options, algorithms: HMAC_ALGORITHMS }));
      } else if (config.jwksUrl) {
        const url = config.jwksUrl;
        ({ payload } = await jwtVerify(token, (header, input) => this.keySets.key(url, header, input), {
          ...options,
          algorithms: KEY_SET_ALGORITHMS,
        }));
      } else {
        return null;
      }
    } catch (error) {
      if (error instanceof joseErrors.JOSEError || error instanceof TypeError) return null;
      this.log.warn({ err: (error as Error).message }, "external token verification failed");
      return null;
    }
    const externalId = claimString(payload, config.userIdClaim, EXTERNAL_ID_MAX);
    if (!externalId || typeof payload.exp !== "number") return null;
    const rawEmail = claimString(payload, config.emailClaim, 320);
    const email = rawEmail && zEmail.safeParse(rawEmail).success ? rawEmail.toLowerCase() : null;
    const rawGroups = payload[config.groupsClaim];
    const groups = Array.isArray(rawGroups)
      ? [
          ...new Set(
            rawGroups
              .filter((g): g is string => typeof g === "string" && g.length > 0 && g.length <= EXTERNAL_ID_MAX)
              .slice(0, GROUPS_MAX),
          ),
        ]
      : [];
    return {
      tenantId: config.tenantId,
      externalId,
      name: claimString(payload, config.nameClaim, NAME_MAX),
      email,
      groups,
      expiresAt: new Date(payload.exp * 1000),
      configStamp: config.updatedAt.getTime(),
    };
  }

  /**
   * The user of an identity: found by external id, or created on first use (never matched to
   * an existing user by email; an email another user has is not stored). Null when the user
   * was deactivated or deleted.
   */
  async userOf(identity: ExternalIdentity): Promise<string | null> {
    const { tenantId, externalId } = identity;
    for (let attempt = 0; attempt < 2; attempt++) {
      const existing = await this.prisma.user.findUnique({
        where: { tenantId_externalId: { tenantId, externalId } },
        select: { id: true, active: true, deletedAt: true },
      });
      if (existing) return existing.active && !existing.deletedAt ? existing.id : null;
      try {
        return await this.prisma.$transaction(async (tx) => {
          const emailTaken = identity.email
            ? await tx.user.findUnique({
                where: { tenantId_email: { tenantId, email: identity.email } },
                select: { id: true },
              })
            : null;
          const user = await tx.user.create({
            data: {
              tenantId,
              externalId,
              name: identity.name ?? identity.email ?? externalId.slice(0, NAME_MAX),
              email: emailTaken ? null : identity.email,
            },
          });
          await this.onUserCreated(tx, user);
          const tenant = await tx.tenant.findUniqueOrThrow({
            where: { id: tenantId },
            select: { defaultRoleId: true },
          });
          if (tenant.defaultRoleId) {
            await tx.userRole.create({ data: { tenantId, userId: user.id, roleId: tenant.defaultRoleId } });
          }
          return user.id;
        });
      } catch (error) {
        // A concurrent first use created the user (or took the email): look again.
        if (!isUniqueViolation(error)) throw error;
      }
    }
    return null;
  }

  /** Runs the new-token hook the first time this instance sees a token. */
  async firstSeen(
    token: string,
    identity: ExternalIdentity,
    principal: Extract<Principal, { kind: "user" }>,
  ): Promise<void> {
    const now = Date.now();
    const fingerprint = tokenFingerprint(token);
    if ((this.seen.get(fingerprint) ?? 0) > now) return;
    this.seen.set(fingerprint, identity.expiresAt.getTime());
    if (this.seen.size > 20_000) {
      for (const [key, until] of this.seen) if (until <= now || this.seen.size > 20_000) this.seen.delete(key);
    }
    if (!this.onNewToken) return;
    try {
      await this.onNewToken(identity, principal);
    } catch (error) {
      this.log.warn({ err: (error as Error).message, tenantId: identity.tenantId }, "external token hook failed");
    }
  }
}
