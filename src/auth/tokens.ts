import { randomUUID } from "node:crypto";
import { errors as joseErrors, jwtVerify, SignJWT } from "jose";
import type { ExternalJwtVerifier } from "./external-jwt.ts";

const ALG = "HS256";
/** The issuer of the tokens this server issues itself; no tenant's identity provider may claim it. */
export const OWN_ISSUER = "chat-api";

export interface UserTokenClaims {
  userId: string;
  tenantId: string;
  jti: string;
  issuedAt: Date;
  expiresAt: Date;
}

export class TokenService {
  private readonly key: Uint8Array;

  constructor(
    secret: string,
    /** Verifies tokens of tenants' own identity providers (any issuer but this server). */
    readonly external?: ExternalJwtVerifier,
  ) {
    this.key = new TextEncoder().encode(secret);
  }

  async issue(
    userId: string,
    tenantId: string,
    ttlSeconds: number,
  ): Promise<{ token: string; expiresAt: Date; jti: string }> {
    const now = Math.floor(Date.now() / 1000);
    const jti = randomUUID();
    const token = await new SignJWT({ tid: tenantId })
      .setProtectedHeader({ alg: ALG, typ: "JWT" })
      .setSubject(userId)
      .setIssuer(OWN_ISSUER)
      .setIssuedAt(now)
      .setExpirationTime(now + ttlSeconds)
      .setJti(jti)
      .sign(this.key);
    return { token, expiresAt: new Date((now + ttlSeconds) * 1000), jti };
  }

  /** Returns the claims of a valid token, or null for anything else (bad signature, expired, malformed). */
  async verify(token: string): Promise<UserTokenClaims | null> {
    try {
      const { payload } = await jwtVerify(token, this.key, {
        algorithms: [ALG],
        issuer: OWN_ISSUER,
        requiredClaims: ["sub", "tid", "exp", "iat", "jti"],
      });
      if (typeof payload.tid !== "string" || typeof payload.sub !== "string") return null;
      return {
        userId: payload.sub,
        tenantId: payload.tid,
        jti: String(payload.jti),
        issuedAt: new Date((payload.iat ?? 0) * 1000),
        expiresAt: new Date((payload.exp ?? 0) * 1000),
      };
    } catch (error) {
      if (error instanceof joseErrors.JOSEError) return null;
      throw error;
    }
  }
}
