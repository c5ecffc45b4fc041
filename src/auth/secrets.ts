import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const API_KEY_PREFIX = "ck_";

export function generateApiKey(): { key: string; hash: string; prefix: string } {
  const key = `${API_KEY_PREFIX}${randomBytes(32).toString("base64url")}`;
  return { key, hash: hashApiKey(key), prefix: key.slice(0, 10) };
}

/** API keys are 256 random bits, so a fast hash is enough: nothing to brute-force. */
export function hashApiKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

export function looksLikeApiKey(key: string): boolean {
  return key.startsWith(API_KEY_PREFIX) && key.length > 20 && key.length < 100;
}

export function safeEqual(a: string, b: string): boolean {
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb);
}

/**
 * In embedded mode there may be no JWT_SECRET: generate one once and keep it beside
 * the data, so tokens survive restarts.
 */
export function loadOrCreateJwtSecret(dataDir: string, warn: (msg: string) => void): string {
  const file = join(dataDir, "jwt-secret");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(48).toString("base64url");
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  warn(`JWT_SECRET is not set: generated one in ${file}. Set JWT_SECRET in production and share it between instances.`);
  return secret;
}

const WEBHOOK_SECRET_PREFIX = "whsec_";

/** A webhook's signing secret: 256 random bits, shown to the tenant once. */
export function generateWebhookSecret(): string {
  return `${WEBHOOK_SECRET_PREFIX}${randomBytes(32).toString("base64url")}`;
}

/**
 * The key that encrypts secrets the server must be able to use again (webhook signing
 * secrets), derived from the server's JWT secret so that no extra secret is needed: a
 * database dump alone does not reveal them. Changing JWT_SECRET makes them unreadable
 * (rotate each webhook's secret then).
 */
export function deriveSealingKey(serverSecret: string): Buffer {
  return Buffer.from(hkdfSync("sha256", serverSecret, "chat-sealed-secrets", "webhook-signing-secrets", 32));
}

/** Encrypts with AES-256-GCM: `v1.<iv>.<tag>.<ciphertext>`, base64url parts. */
export function sealSecret(key: Buffer, plain: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  const encrypted = Buffer.concat([cipher.update(plain, "utf8"), cipher.final()]);
  return ["v1", iv, cipher.getAuthTag(), encrypted]
    .map((part) => (typeof part === "string" ? part : part.toString("base64url")))
    .join(".");
}

/** Decrypts what sealSecret made; throws when the key differs or the value was altered. */
export function openSecret(key: Buffer, sealed: string): string {
  const [version, iv, tag, encrypted] = sealed.split(".");
  if (version !== "v1" || !iv || !tag || encrypted === undefined) throw new Error("not a sealed secret");
  const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(iv, "base64url"));
  decipher.setAuthTag(Buffer.from(tag, "base64url"));
  return Buffer.concat([decipher.update(Buffer.from(encrypted, "base64url")), decipher.final()]).toString("utf8");
}
