import { createHash, randomBytes, randomInt } from "node:crypto";
import argon2 from "argon2";
import { z } from "zod";
import type { Context } from "../context.ts";
import { appError, badInput, forbidden, notFound, unauthenticated } from "../errors.ts";
import type { PrismaClient, Session, Tenant, User } from "../generated/prisma/client.ts";
import { topics, type UserEvent } from "../realtime/topics.ts";
import { requireUserPrincipal } from "./access.ts";
import { audit } from "./audit.ts";
import { parseId, validate, zEmail, zPhone, zText, zUrl } from "./validation.ts";

export type SignInMethod = "PASSWORD" | "EMAIL_CODE" | "GOOGLE" | "GITHUB";
export type CodePurpose = "VERIFY_EMAIL" | "SIGN_IN" | "RESET_PASSWORD";

const zPassword = z.string().min(10, "must be at least 10 characters").max(256, "must be at most 256 characters");

const signUpInput = z.object({
  tenantId: z.string(),
  email: zEmail,
  password: zPassword,
  name: zText(200),
});
const signInInput = z.object({ tenantId: z.string(), email: z.string().max(254), password: z.string().max(256) });
const codeRequestInput = z.object({
  tenantId: z.string(),
  email: z.string().max(254),
  purpose: z.enum(["VERIFY_EMAIL", "SIGN_IN", "RESET_PASSWORD"]),
});
const codeSignInInput = z.object({ tenantId: z.string(), email: z.string().max(254), code: z.string().max(20) });
const resetInput = z.object({
  tenantId: z.string(),
  email: z.string().max(254),
  code: z.string().max(20),
  newPassword: zPassword,
});
const changePasswordInput = z.object({ currentPassword: z.string().max(256), newPassword: zPassword });
const profileInput = z.object({
  name: zText(200).nullish(),
  phone: zPhone.nullish(),
  avatarUrl: zUrl.nullish(),
});

const ARGON2 = { type: argon2.argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

export function hashPassword(password: string): Promise<string> {
  return argon2.hash(password, ARGON2);
}

/** A hash of a random password: verifying against it takes as long as a real check. */
let dummyHash: Promise<string> | null = null;

async function verifyPassword(hash: string | null | undefined, password: string): Promise<boolean> {
  dummyHash ??= hashPassword(randomBytes(16).toString("hex"));
  const target = hash ?? (await dummyHash);
  const ok = await argon2.verify(target, password).catch(() => false);
  return ok && !!hash;
}

const sha256 = (value: string) => createHash("sha256").update(value).digest("hex");

export interface AuthPayload {
  accessToken: string;
  accessTokenExpiresAt: Date;
  refreshToken: string;
  refreshTokenExpiresAt: Date;
  user: User;
  session: Session;
}

/** The tenant an anonymous caller names, or FORBIDDEN (unknown and closed tenants look alike). */
async function openTenant(ctx: Context, tenantId: string, method: SignInMethod): Promise<Tenant> {
  const id = parseId("input.tenantId", tenantId);
  const tenant = await ctx.deps.db.prisma.tenant.findUnique({ where: { id } });
  if (!tenant?.active || !tenant.signInMethods.includes(method)) {
    throw forbidden(`Signing in with ${method.toLowerCase().replace("_", " ")} is not enabled for this tenant`);
  }
  return tenant;
}

function newRefreshToken(): { token: string; hash: string } {
  const token = `rt_${randomBytes(32).toString("base64url")}`;
  return { token, hash: sha256(token) };
}

type Tx = Parameters<Parameters<PrismaClient["$transaction"]>[0]>[0];

async function issueAccessToken(ctx: Context, tx: Tx, tenant: Tenant, userId: string, sessionId: string) {
  const { token, expiresAt, jti } = await ctx.deps.tokens.issue(userId, tenant.id, tenant.accessTokenTtlSeconds);
  await tx.userToken.create({ data: { id: jti, tenantId: tenant.id, userId, sessionId, expiresAt } });
  return { token, expiresAt };
}

/** Opens a session: an access token (JWT) and a refresh token (opaque, stored hashed). */
export async function startSession(
  ctx: Context,
  tenant: Tenant,
  user: User,
  method: SignInMethod,
): Promise<AuthPayload> {
  const refresh = newRefreshToken();
  const refreshTokenExpiresAt = new Date(Date.now() + tenant.refreshTokenTtlSeconds * 1000);
  ctx.signedInUserId = user.id;
  return ctx.deps.db.prisma.$transaction(async (tx) => {
    const session = await tx.session.create({
      data: {
        tenantId: tenant.id,
        userId: user.id,
        method,
        userAgent: ctx.client?.userAgent?.slice(0, 500) ?? null,
        ipAddress: ctx.client?.address ?? null,
        expiresAt: refreshTokenExpiresAt,
      },
    });
    await tx.refreshToken.create({ data: { tenantId: tenant.id, sessionId: session.id, hash: refresh.hash } });
    const access = await issueAccessToken(ctx, tx, tenant, user.id, session.id);
    return {
      accessToken: access.token,
      accessTokenExpiresAt: access.expiresAt,
      refreshToken: refresh.token,
      refreshTokenExpiresAt,
      user,
      session,
    };
  });
}

const clientKey = (ctx: Context) => ctx.client?.address ?? "unknown";
const accountKey = (tenantId: string, email: string) => `${tenantId}:${email.trim().toLowerCase()}`;

/** Self-service registration, where the tenant allows it. */
export async function signUp(ctx: Context, rawInput: unknown): Promise<AuthPayload> {
  const input = validate(signUpInput, rawInput, "input");
  const tenant = await openTenant(ctx, input.tenantId, "PASSWORD");
  if (!tenant.selfSignUp) throw forbidden("Sign-up is not enabled for this tenant");
  await ctx.deps.limits.address.check(clientKey(ctx));
  const passwordHash = await hashPassword(input.password);
  const db = ctx.deps.db.prisma;
  let user: User;
  try {
    user = await db.$transaction(async (tx) => {
      const created = await tx.user.create({
        data: { tenantId: tenant.id, email: input.email, name: input.name, passwordHash },
      });
      if (tenant.defaultRoleId) {
        await tx.userRole.create({ data: { tenantId: tenant.id, userId: created.id, roleId: tenant.defaultRoleId } });
      }
      return created;
    });
  } catch (error) {
    if ((error as { code?: string }).code === "P2002") {
      // Counted like a failed sign-in, so sign-up cannot be used to enumerate accounts quickly.
      await ctx.deps.limits.address.fail(clientKey(ctx));
      throw appError("CONFLICT", "An account with this email already exists", { field: "input.email" });
    }
    throw error;
  }
  await sendCode(ctx, tenant, input.email, "VERIFY_EMAIL");
  return startSession(ctx, tenant, user, "PASSWORD");
}

const INVALID_CREDENTIALS = "Invalid email or password";

/**
 * Password sign-in. An unknown email and a wrong password get the same error after the
 * same work; failures are limited per account and per client address.
 */
export async function signIn(ctx: Context, rawInput: unknown): Promise<AuthPayload> {
  const input = validate(signInInput, rawInput, "input");
  const tenant = await openTenant(ctx, input.tenantId, "PASSWORD");
  const email = input.email.trim().toLowerCase();
  const account = accountKey(tenant.id, email);
  await Promise.all([ctx.deps.limits.account.check(account), ctx.deps.limits.address.check(clientKey(ctx))]);
  const user = await ctx.deps.db.prisma.user.findFirst({
    where: { tenantId: tenant.id, email, deletedAt: null },
  });
  const valid = await verifyPassword(user?.passwordHash, input.password);
  if (!valid || !user?.active) {
    await Promise.all([ctx.deps.limits.account.fail(account), ctx.deps.limits.address.fail(clientKey(ctx))]);
    throw unauthenticated(INVALID_CREDENTIALS);
  }
  await ctx.deps.limits.account.reset(account);
  return startSession(ctx, tenant, user, "PASSWORD");
}

/**
 * Trades a refresh token for a new pair. The presented token is spent; presenting a spent
 * token again means it was copied, so the whole session ends (and its sockets close).
 */
export async function refreshSession(ctx: Context, refreshToken: string): Promise<AuthPayload> {
  if (typeof refreshToken !== "string" || refreshToken.length > 200) throw unauthenticated("Invalid refresh token");
  const db = ctx.deps.db.prisma;
  const record = await db.refreshToken.findUnique({
    where: { hash: sha256(refreshToken) },
    include: { session: { include: { user: true } } },
  });
  if (!record) throw unauthenticated("Invalid refresh token");
  const { session } = record;
  const tenant = await db.tenant.findUniqueOrThrow({ where: { id: record.tenantId } });
  if (record.usedAt) {
    await revokeSessions(ctx, record.tenantId, session.userId, [session.id], "refresh token reused");
    throw unauthenticated("Refresh token already used; the session has been ended");
  }
  if (session.revokedAt || session.expiresAt <= new Date() || !session.user.active || session.user.deletedAt) {
    throw unauthenticated("Session has ended");
  }
  const refresh = newRefreshToken();
  const outcome = await db.$transaction(async (tx) => {
    // Only one of two concurrent refreshes with the same token can spend it.
    const spent = await tx.refreshToken.updateMany({
      where: { id: record.id, usedAt: null },
      data: { usedAt: new Date() },
    });
    if (spent.count === 0) return null;
    await tx.refreshToken.create({ data: { tenantId: tenant.id, sessionId: session.id, hash: refresh.hash } });
    await tx.session.update({ where: { id: session.id }, data: { lastUsedAt: new Date() } });
    return issueAccessToken(ctx, tx, tenant, session.userId, session.id);
  });
  if (!outcome) {
    await revokeSessions(ctx, record.tenantId, session.userId, [session.id], "refresh token reused");
    throw unauthenticated("Refresh token already used; the session has been ended");
  }
  ctx.signedInUserId = session.userId;
  return {
    accessToken: outcome.token,
    accessTokenExpiresAt: outcome.expiresAt,
    refreshToken: refresh.token,
    refreshTokenExpiresAt: session.expiresAt,
    user: session.user,
    session,
  };
}

/** Ends sessions: their refresh and access tokens stop working and their sockets close. */
export async function revokeSessions(
  ctx: Context,
  tenantId: string,
  userId: string,
  sessionIds: string[] | "all",
  reason: string,
): Promise<void> {
  const db = ctx.deps.db.prisma;
  const now = new Date();
  const sessionFilter = sessionIds === "all" ? {} : { id: { in: sessionIds } };
  const ended = await db.session.findMany({
    where: { tenantId, userId, revokedAt: null, ...sessionFilter },
    select: { id: true },
  });
  const ids = ended.map((row) => row.id);
  if (ids.length === 0) return;
  await db.$transaction([
    db.session.updateMany({ where: { id: { in: ids } }, data: { revokedAt: now, revokedReason: reason } }),
    db.userToken.updateMany({ where: { sessionId: { in: ids }, revokedAt: null }, data: { revokedAt: now } }),
  ]);
  const event: UserEvent = { type: "revoked", sessionIds: ids };
  await ctx.deps.pubsub.publish(topics.user(tenantId, userId), event).catch((error: unknown) => {
    ctx.deps.log.warn({ err: error, requestId: ctx.requestId }, "session revocation publish failed");
  });
}

function currentSession(ctx: Context): { userId: string; tenantId: string; sessionId: string | null } {
  const userId = requireUserPrincipal(ctx, "This");
  const principal = ctx.principal as { tenantId: string; sessionId: string | null };
  return { userId, tenantId: principal.tenantId, sessionId: principal.sessionId };
}

export async function signOut(ctx: Context): Promise<boolean> {
  const { userId, tenantId, sessionId } = currentSession(ctx);
  if (!sessionId) throw badInput("authorization", "This token does not belong to a session (issued by the API key)");
  await revokeSessions(ctx, tenantId, userId, [sessionId], "signed out");
  return true;
}

export async function signOutEverywhere(ctx: Context): Promise<boolean> {
  const { userId, tenantId } = currentSession(ctx);
  await revokeSessions(ctx, tenantId, userId, "all", "signed out everywhere");
  // Tokens minted by the API key for this user end too: "everywhere" means everywhere.
  await ctx.prisma.userToken.updateMany({ where: { userId, revokedAt: null }, data: { revokedAt: new Date() } });
  await ctx.deps.pubsub.publish(topics.user(tenantId, userId), { type: "revoked" } satisfies UserEvent);
  return true;
}

export async function revokeSession(ctx: Context, id: string): Promise<boolean> {
  const { userId, tenantId } = currentSession(ctx);
  const session = await ctx.prisma.session.findFirst({ where: { id: parseId("id", id), userId } });
  if (!session) throw notFound("Session");
  await revokeSessions(ctx, tenantId, userId, [session.id], "revoked");
  return true;
}

export function listSessions(ctx: Context) {
  const { userId } = currentSession(ctx);
  return ctx.prisma.session.findMany({
    where: { userId, revokedAt: null, expiresAt: { gt: new Date() } },
    orderBy: { lastUsedAt: "desc" },
  });
}

/** Sends a fresh one-time code; earlier unused codes for the same purpose stop working. */
async function sendCode(ctx: Context, tenant: Tenant, email: string, purpose: CodePurpose): Promise<void> {
  const db = ctx.deps.db.prisma;
  const code = String(randomInt(0, 1_000_000)).padStart(6, "0");
  const ttl = ctx.deps.config.emailCodeTtlSeconds;
  await db.$transaction([
    db.emailCode.updateMany({
      where: { tenantId: tenant.id, email, purpose, usedAt: null },
      data: { usedAt: new Date() },
    }),
    db.emailCode.create({
      data: {
        tenantId: tenant.id,
        email,
        purpose,
        codeHash: sha256(`${tenant.id}:${email}:${purpose}:${code}`),
        expiresAt: new Date(Date.now() + ttl * 1000),
      },
    }),
  ]);
  const what = {
    VERIFY_EMAIL: "confirm your email address",
    SIGN_IN: "sign in",
    RESET_PASSWORD: "reset your password",
  }[purpose];
  await ctx.deps.mailer.send({
    to: email,
    subject: `${tenant.name}: your code is ${code}`,
    text: `Use ${code} to ${what} at ${tenant.name}. It expires in ${Math.round(ttl / 60)} minutes and works once.\n`,
  });
}

/**
 * Asks for a code by email. Always answers true, whether or not the address has an
 * account, so it cannot be used to find out who is registered.
 */
export async function requestEmailCode(ctx: Context, rawInput: unknown): Promise<boolean> {
  const input = validate(codeRequestInput, rawInput, "input");
  const purpose = input.purpose;
  const method: SignInMethod = purpose === "SIGN_IN" ? "EMAIL_CODE" : "PASSWORD";
  const tenant = await openTenant(ctx, input.tenantId, purpose === "VERIFY_EMAIL" ? "PASSWORD" : method);
  const email = input.email.trim().toLowerCase();
  await ctx.deps.limits.mails.fail(`${tenant.id}:${email}`);
  const user = await ctx.deps.db.prisma.user.findFirst({
    where: { tenantId: tenant.id, email, deletedAt: null, active: true },
  });
  if (user && !(purpose === "VERIFY_EMAIL" && user.emailVerifiedAt)) await sendCode(ctx, tenant, email, purpose);
  return true;
}

/** Spends a code: single use, expiring, and limited in wrong guesses. */
async function redeemCode(ctx: Context, tenantId: string, email: string, purpose: CodePurpose, code: string) {
  const db = ctx.deps.db.prisma;
  const key = `${tenantId}:${email}:${purpose}`;
  await ctx.deps.limits.codes.check(key);
  const record = await db.emailCode.findFirst({
    where: { tenantId, email, purpose, usedAt: null, expiresAt: { gt: new Date() } },
    orderBy: { createdAt: "desc" },
  });
  const matches = record && record.codeHash === sha256(`${tenantId}:${email}:${purpose}:${code.trim()}`);
  if (!record || !matches) {
    if (record) await db.emailCode.update({ where: { id: record.id }, data: { attempts: { increment: 1 } } });
    await ctx.deps.limits.codes.fail(key);
    throw badInput("code", "The code is wrong, expired or already used");
  }
  const spent = await db.emailCode.updateMany({ where: { id: record.id, usedAt: null }, data: { usedAt: new Date() } });
  if (spent.count === 0) throw badInput("code", "The code is wrong, expired or already used");
  await ctx.deps.limits.codes.reset(key);
}

export async function verifyEmail(ctx: Context, code: string): Promise<User> {
  const userId = requireUserPrincipal(ctx, "verifyEmail");
  const user = await ctx.prisma.user.findFirstOrThrow({ where: { id: userId } });
  if (!user.email) throw badInput("code", "The account has no email address");
  await redeemCode(ctx, user.tenantId, user.email, "VERIFY_EMAIL", code);
  return ctx.prisma.user.update({ where: { id: user.id }, data: { emailVerifiedAt: new Date() } });
}

export async function signInWithEmailCode(ctx: Context, rawInput: unknown): Promise<AuthPayload> {
  const input = validate(codeSignInInput, rawInput, "input");
  const tenant = await openTenant(ctx, input.tenantId, "EMAIL_CODE");
  const email = input.email.trim().toLowerCase();
  await ctx.deps.limits.address.check(clientKey(ctx));
  await redeemCode(ctx, tenant.id, email, "SIGN_IN", input.code).catch(async (error: unknown) => {
    await ctx.deps.limits.address.fail(clientKey(ctx)).catch(() => {});
    throw error;
  });
  const user = await ctx.deps.db.prisma.user.findFirst({
    where: { tenantId: tenant.id, email, deletedAt: null, active: true },
  });
  if (!user) throw badInput("code", "The code is wrong, expired or already used");
  // Receiving the code proves the address.
  const verified = user.emailVerifiedAt
    ? user
    : await ctx.deps.db.prisma.user.update({ where: { id: user.id }, data: { emailVerifiedAt: new Date() } });
  return startSession(ctx, tenant, verified, "EMAIL_CODE");
}

/** "Forgot password": a code by email sets a new password and ends every session. */
export async function resetPassword(ctx: Context, rawInput: unknown): Promise<boolean> {
  const input = validate(resetInput, rawInput, "input");
  const tenant = await openTenant(ctx, input.tenantId, "PASSWORD");
  const email = input.email.trim().toLowerCase();
  await redeemCode(ctx, tenant.id, email, "RESET_PASSWORD", input.code);
  const user = await ctx.deps.db.prisma.user.findFirst({ where: { tenantId: tenant.id, email, deletedAt: null } });
  if (!user) throw badInput("code", "The code is wrong, expired or already used");
  await ctx.deps.db.prisma.user.update({
    where: { id: user.id },
    data: { passwordHash: await hashPassword(input.newPassword), emailVerifiedAt: user.emailVerifiedAt ?? new Date() },
  });
  await revokeSessions(ctx, tenant.id, user.id, "all", "password reset");
  await ctx.deps.limits.account.reset(accountKey(tenant.id, email));
  return true;
}

/** Changes the viewer's password; every other session of theirs ends. */
export async function changePassword(ctx: Context, rawInput: unknown): Promise<boolean> {
  const input = validate(changePasswordInput, rawInput, "input");
  const { userId, tenantId, sessionId } = currentSession(ctx);
  const user = await ctx.prisma.user.findFirstOrThrow({ where: { id: userId } });
  const account = accountKey(tenantId, user.email ?? user.id);
  await ctx.deps.limits.account.check(account);
  if (!(await verifyPassword(user.passwordHash, input.currentPassword))) {
    await ctx.deps.limits.account.fail(account);
    throw badInput("input.currentPassword", "The current password is wrong");
  }
  await ctx.prisma.user.update({
    where: { id: userId },
    data: { passwordHash: await hashPassword(input.newPassword) },
  });
  const others = await ctx.prisma.session.findMany({
    where: { userId, revokedAt: null, ...(sessionId ? { id: { not: sessionId } } : {}) },
    select: { id: true },
  });
  await revokeSessions(
    ctx,
    tenantId,
    userId,
    others.map((row) => row.id),
    "password changed",
  );
  await audit(ctx, "user.passwordChanged", { type: "User", id: userId });
  return true;
}

export async function updateProfile(ctx: Context, rawInput: unknown): Promise<User> {
  const userId = requireUserPrincipal(ctx, "updateProfile");
  const data = validate(profileInput, rawInput, "input");
  if (data.name === null) throw badInput("input.name", "input.name must not be null");
  return ctx.prisma.user.update({
    where: { id: userId },
    data: { ...data, name: data.name ?? undefined },
  });
}

const settingsInput = z.object({
  selfSignUp: z.boolean().nullish(),
  signInMethods: z
    .array(z.enum(["PASSWORD", "EMAIL_CODE", "GOOGLE", "GITHUB"]))
    .min(1, "needs at least one method")
    .nullish(),
  accessTokenTtlSeconds: z.number().int().min(60).max(86_400).nullish(),
  refreshTokenTtlSeconds: z.number().int().min(300).max(31_536_000).nullish(),
  oauthRedirectUris: z
    .array(
      z
        .string()
        .max(2048)
        .url("must be a URL")
        .refine(
          (value) => /^https?:\/\//i.test(value) && !value.includes("#"),
          "must be an http(s) URL without fragment",
        ),
    )
    .max(20, "accepts at most 20 URLs")
    .nullish(),
});

export function parseAuthSettings(raw: unknown) {
  return validate(settingsInput, raw ?? {}, "input.auth");
}
