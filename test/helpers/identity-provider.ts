import { randomBytes, randomUUID } from "node:crypto";
import { SignJWT } from "jose";

/** A tenant's identity provider signing HS256 tokens, as tests configure it. */
export const newSecret = () => randomBytes(32).toString("hex");
export const newIssuer = () => `https://idp-${randomBytes(4).toString("hex")}.example.com/`;

export interface Provider {
  issuer: string;
  secret: string;
  audience?: string;
}

export interface TokenOptions {
  sub?: string;
  name?: string;
  email?: string;
  groups?: string[];
  expiresIn?: number;
  notBefore?: number;
  issuer?: string;
  audience?: string;
  secret?: string;
  /** Leaves out `exp`. */
  noExpiry?: boolean;
}

/** An HS256 token as the tenant's identity provider would sign it. */
export async function providerToken(provider: Provider, options: TokenOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = {};
  if (options.name !== undefined) claims.name = options.name;
  if (options.email !== undefined) claims.email = options.email;
  if (options.groups !== undefined) claims.groups = options.groups;
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(options.sub ?? "user-1")
    .setIssuer(options.issuer ?? provider.issuer)
    .setIssuedAt(now)
    .setJti(randomUUID());
  if (!options.noExpiry) jwt.setExpirationTime(now + (options.expiresIn ?? 600));
  const audience = options.audience ?? provider.audience;
  if (audience) jwt.setAudience(audience);
  if (options.notBefore !== undefined) jwt.setNotBefore(now + options.notBefore);
  return jwt.sign(new TextEncoder().encode(options.secret ?? provider.secret));
}

/** A token with `alg: none` and no signature. */
export function unsignedToken(provider: Provider, sub = "user-1"): string {
  const now = Math.floor(Date.now() / 1000);
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "none", typ: "JWT" })}.${part({ sub, iss: provider.issuer, exp: now + 600, aud: provider.audience })}.`;
}
