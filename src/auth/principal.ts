import type { PrismaClient } from "../db/client.ts";
import { unauthenticated } from "../errors.ts";
import type { CredentialCache } from "./credential-cache.ts";
import { ExternalJwtVerifier, tokenFingerprint } from "./external-jwt.ts";
import { hashApiKey, looksLikeApiKey } from "./secrets.ts";
import type { TokenService } from "./tokens.ts";

export type Principal =
  | { kind: "service"; tenantId: string; apiKeyId: string }
  | {
      kind: "user";
      tenantId: string;
      userId: string;
      tokenId: string;
      /** The sign-in session of the token, for tokens from signIn/signUp/refreshSession. */
      sessionId: string | null;
      expiresAt: Date;
      /**
       * For a token of the tenant's own identity provider (no token row here): when the tenant's
       * setting it was verified under last changed; a later change ends it.
       */
      external?: { configStamp: number };
    };

/** Credentials as presented: HTTP headers or the graphql-ws connection_init payload. */
export interface Credentials {
  authorization?: string | null;
  apiKey?: string | null;
}

/**
 * Resolves verified credentials to a principal. No credentials: null (anonymous).
 * Presented but invalid credentials: an UNAUTHENTICATED error, never a fallback.
 * With a cache, a token verified and found on record before is taken as is until it expires
 * or a change ends it (see CredentialCache).
 */
export async function resolvePrincipal(
  prisma: PrismaClient,
  tokens: TokenService,
  credentials: Credentials,
  cache?: CredentialCache,
): Promise<Principal | null> {
  const apiKey = credentials.apiKey?.trim();
  const authorization = credentials.authorization?.trim();
  if (apiKey && authorization) {
    throw unauthenticated("Send either an API key or a bearer token, not both");
  }
  if (apiKey) {
    if (!looksLikeApiKey(apiKey)) throw unauthenticated("Invalid API key");
    const hash = hashApiKey(apiKey);
    const cached = cache?.apiKey(hash);
    if (cached) return cached;
    const readAt = cache?.version ?? 0;
    const key = await prisma.apiKey.findUnique({
      where: { hash },
      select: { id: true, tenantId: true, revokedAt: true, tenant: { select: { active: true } } },
    });
    if (!key || key.revokedAt || !key.tenant.active) throw unauthenticated("Invalid API key");
    const principal = { kind: "service", tenantId: key.tenantId, apiKeyId: key.id } as const;
    cache?.storeApiKey(hash, principal, readAt);
    return principal;
  }
  if (authorization) {
    const match = /^Bearer\s+(\S+)$/i.exec(authorization);
    if (!match?.[1]) throw unauthenticated("Authorization must be 'Bearer <token>'");
    const token = match[1];
    const cached = cache?.token(token);
    if (cached) return cached;
    const readAt = cache?.version ?? 0;
    if (tokens.external && ExternalJwtVerifier.isForeign(token)) {
      const principal = await resolveExternal(tokens.external, token);
      cache?.storeToken(token, principal, readAt);
      return principal;
    }
    const claims = await tokens.verify(token);
    if (!claims) throw unauthenticated("Invalid or expired token");
    // One query: the token is on record, not revoked, and its user and tenant are active.
    const record = await prisma.userToken.findFirst({
      where: {
        id: claims.jti,
        tenantId: claims.tenantId,
        userId: claims.userId,
        revokedAt: null,
        expiresAt: { gt: new Date() },
        user: { active: true, deletedAt: null, tenant: { active: true } },
        OR: [{ sessionId: null }, { session: { revokedAt: null } }],
      },
      select: { id: true, sessionId: true },
    });
    if (!record) throw unauthenticated("Invalid or expired token");
    const principal = {
      kind: "user",
      tenantId: claims.tenantId,
      userId: claims.userId,
      tokenId: claims.jti,
      sessionId: record.sessionId,
      expiresAt: claims.expiresAt,
    } as const;
    cache?.storeToken(token, principal, readAt);
    return principal;
  }
  return null;
}

/** A token of a tenant's identity provider: verified, then its user found or provisioned. */
async function resolveExternal(
  verifier: ExternalJwtVerifier,
  token: string,
): Promise<Extract<Principal, { kind: "user" }>> {
  const identity = await verifier.verify(token);
  if (!identity) throw unauthenticated("Invalid or expired token");
  const userId = await verifier.userOf(identity);
  if (!userId) throw unauthenticated("Invalid or expired token");
  const principal = {
    kind: "user",
    tenantId: identity.tenantId,
    userId,
    // No row of ours: the id names the token itself, so sockets can tell tokens apart.
    tokenId: `ext:${tokenFingerprint(token)}`,
    sessionId: null,
    expiresAt: identity.expiresAt,
    external: { configStamp: identity.configStamp },
  } as const;
  // Group memberships follow the token's groups claim, once per token.
  await verifier.firstSeen(token, identity, principal);
  return principal;
}
