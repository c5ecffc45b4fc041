import { createHash, randomBytes, randomInt } from "node:crypto";
import argon2 from "argon2";
import { z } from "zod";
import { EMAIL_CODE_MAX_ATTEMPTS } from "../auth/limits.ts";
import { safeEqual } from "../auth/secrets.ts";
import type { Context } from "../context.ts";
import type { TransactionClient } from "../db/client.ts";
import { isUniqueViolation } from "../db/errors.ts";
import { appError, badInput, forbidden, notFound, unauthenticated } from "../errors.ts";
import type { EmailCode, Session, Tenant, User } from "../generated/prisma/client.ts";
import { requireUserPrincipal } from "./access.ts";
import { audit } from "./audit.ts";
import { externalJwtInput } from "./external-jwt.ts";
import { publishToUsersOf } from "./membership-events.ts";
import { recordUserCreated } from "./users.ts";
import { parseId, validate, zBounded, zEmail, zEmailLookup, zIntRange, zPhone, zText, zUrl } from "./validation.ts";

export type SignInMethod = "PASSWORD" | "EMAIL_CODE" | "GOOGLE" | "GITHUB";
export type CodePurpose = "VERIFY_EMAIL" | "SIGN_IN" | "RESET_PASSWORD";
/** Purposes of stored codes: the ones a client requests, and CHANGE_EMAIL (requestEmailChange). */
type StoredPurpose = CodePurpose | "CHANGE_EMAIL";

const PASSWORD_MIN = 10;
const PASSWORD_MAX = 256;
const zPassword = z
  .string()
  .min(PASSWORD_MIN, `must be at least ${PASSWORD_MIN} characters`)
  .max(PASSWORD_MAX, `must be at most ${PASSWORD_MAX} characters`)
  .describe(`${PASSWORD_MIN}-${PASSWORD_MAX} characters`);
/** A password to check: bounded (hashing is costly), but the policy applies only to new ones. */
const zPasswordGuess = zBounded(PASSWORD_MAX);
const zCode = zBounded(20);

export const signUpInput = z.object({
  tenantId: z.string(),
  email: zEmail,
  password: zPassword,
  name: zText(200),
});
export const signInInput = z.object({ tenantId: z.string(), email: zEmailLookup, password: zPasswordGuess });
export const codeRequestInput = z.object({
  tenantId: z.string(),
  email: zEmailLookup,
  purpose: z.enum(["VERIFY_EMAIL", "SIGN_IN", "RESET_PASSWORD"]),
});
export const codeSignInInput = z.object({ tenantId: z.string(), email: zEmailLookup, code: zCode });
export const resetInput = z.object({
  tenantId: z.string(),
  email: zEmailLookup,
  code: zCode,
  newPassword: zPassword,
});
export const changePasswordInput = z.object({ currentPassword: zPasswordGuess, newPassword: zPassword });
export const profileInput = z.object({
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

async function issueAccessToken(
  ctx: Context,
  tx: TransactionClient,
  tenant: Tenant,
  userId: string,
  sessionId: string,
) {
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
  // An attempt from this address is taken first and given back once the account exists:
  // refused sign-ups (CONFLICT: the email is registered) count like failed sign-ins, so
  // sign-up cannot be used to enumerate accounts quickly, even by parallel requests.
  const address = clientKey(ctx);
  await ctx.deps.limits.address.consume(address);
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
      await recordUserCreated(ctx.deps.webhooks, tx, created, null);
      return created;
    });
  } catch (error) {
    if (isUniqueViolation(error)) {
      throw appError("CONFLICT", "An account with this email already exists", { field: "input.email" });
    }
    await ctx.deps.limits.address.refund(address);
    throw error;
  }
  await ctx.deps.limits.address.refund(address);
  const email = input.email;
  ctx.deps.tasks.run("sign-up code mail", ctx.requestId, () => sendCode(ctx, tenant, email, "VERIFY_EMAIL"));
  return startSession(ctx, tenant, user, "PASSWORD");
}

const INVALID_CREDENTIALS = "Invalid email or password";

/**
 * Takes one sign-in attempt for an account (tenant and email) from the client's address,
 * before any password is checked. The account is taken first: attempts on a locked
 * account are refused without counting against the address, so one account's failures
 * (at most LOGIN_MAX_FAILURES) can never lock its address for other users.
 */
async function takeSignInAttempt(ctx: Context, account: string, address: string): Promise<void> {
  await ctx.deps.limits.account.consume(account);
  try {
    await ctx.deps.limits.address.consume(address);
  } catch (error) {
    // Refused by the address: nothing was tried against the account.
    await ctx.deps.limits.account.refund(account);
    throw error;
  }
}

/**
 * Password sign-in. An unknown email and a wrong password get the same error after the
 * same work. Failures are limited per account (LOGIN_MAX_FAILURES) and, much higher,
 * per client address (LOGIN_MAX_FAILURES_PER_ADDRESS); each attempt is counted before
 * the password is checked, so a parallel burst gets no more guesses than a sequence.
 */
export async function signIn(ctx: Context, rawInput: unknown): Promise<AuthPayload> {
  const input = validate(signInInput, rawInput, "input");
  const tenant = await openTenant(ctx, input.tenantId, "PASSWORD");
  const email = input.email.trim().toLowerCase();
  const account = accountKey(tenant.id, email);
  const address = clientKey(ctx);
  await takeSignInAttempt(ctx, account, address);
  const user = await ctx.deps.db.prisma.user.findFirst({
    where: { tenantId: tenant.id, email, deletedAt: null },
  });
  const valid = await verifyPassword(user?.passwordHash, input.password);
  if (!valid || !user?.active) throw unauthenticated(INVALID_CREDENTIALS);
  // The account's earlier failures are forgotten; the address only gets this attempt back
  // (a success of one account must not wipe failures against others).
  await Promise.all([ctx.deps.limits.account.reset(account), ctx.deps.limits.address.refund(address)]);
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
  await publishToUsersOf(ctx, tenantId, [userId], { type: "revoked", sessionIds: ids });
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
  await publishToUsersOf(ctx, tenantId, [userId], { type: "revoked" });
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

const codeHash = (tenantId: string, email: string, purpose: StoredPurpose, code: string) =>
  sha256(`${tenantId}:${email}:${purpose}:${code}`);

/**
 * Sends a fresh one-time code to `email`; earlier unused codes for the same purpose stop
 * working. A CHANGE_EMAIL code belongs to the account moving to `email` (`userId`), and
 * supersedes that account's earlier requests, whatever address they named.
 */
async function sendCode(
  ctx: Context,
  tenant: Tenant,
  email: string,
  purpose: StoredPurpose,
  userId: string | null = null,
): Promise<void> {
  const db = ctx.deps.db.prisma;
  const code = String(randomInt(0, 1_000_000)).padStart(6, "0");
  const ttl = ctx.deps.config.emailCodeTtlSeconds;
  const superseded = userId ? { userId } : { email, userId: null };
  await db.$transaction([
    db.emailCode.updateMany({
      where: { tenantId: tenant.id, purpose, usedAt: null, ...superseded },
      data: { usedAt: new Date() },
    }),
    db.emailCode.create({
      data: {
        tenantId: tenant.id,
        email,
        purpose,
        userId,
        codeHash: codeHash(tenant.id, email, purpose, code),
        expiresAt: new Date(Date.now() + ttl * 1000),
      },
    }),
  ]);
  const what = {
    VERIFY_EMAIL: "confirm your email address",
    SIGN_IN: "sign in",
    RESET_PASSWORD: "reset your password",
    CHANGE_EMAIL: `make ${email} the email address of your account`,
  }[purpose];
  await ctx.deps.mailer.send({
    to: email,
    subject: `${tenant.name}: your code is ${code}`,
    text: `Use ${code} to ${what} at ${tenant.name}. It expires in ${Math.round(ttl / 60)} minutes and works once.\n`,
  });
}

/**
 * Asks for a code by email. The answer is true whatever the address, and takes the same
 * work: whether it has an account is looked up after answering, where the code is stored
 * and mailed (a failure is logged). So neither the answer, nor its timing, nor a failing
 * mail server tells who is registered.
 */
export async function requestEmailCode(ctx: Context, rawInput: unknown): Promise<boolean> {
  const input = validate(codeRequestInput, rawInput, "input");
  const purpose = input.purpose;
  const method: SignInMethod = purpose === "SIGN_IN" ? "EMAIL_CODE" : "PASSWORD";
  const tenant = await openTenant(ctx, input.tenantId, purpose === "VERIFY_EMAIL" ? "PASSWORD" : method);
  const email = input.email.trim().toLowerCase();
  // Per address, account or not: at most a few mails to one inbox per window.
  await ctx.deps.limits.mails.consume(`${tenant.id}:${email}`);
  ctx.deps.tasks.run("email code mail", ctx.requestId, async () => {
    const user = await ctx.deps.db.prisma.user.findFirst({
      where: { tenantId: tenant.id, email, deletedAt: null, active: true },
    });
    if (user && !(purpose === "VERIFY_EMAIL" && user.emailVerifiedAt)) await sendCode(ctx, tenant, email, purpose);
  });
  return true;
}

/**
 * Starts moving the viewer to another email address. The answer is true whatever the
 * address; the rest happens after answering. The current address (if any) gets a notice.
 * The new address gets a CHANGE_EMAIL code bound to it and to the viewer, which
 * verifyEmail redeems, or, when another user of the tenant already has that address,
 * a notice saying so and no code: the requester learns nothing about other accounts,
 * only the owner of the inbox does.
 */
export async function requestEmailChange(ctx: Context, rawNewEmail: string): Promise<boolean> {
  const userId = requireUserPrincipal(ctx, "requestEmailChange");
  const newEmail = validate(zEmail, rawNewEmail, "newEmail");
  const user = await ctx.prisma.user.findFirstOrThrow({ where: { id: userId } });
  if (user.email === newEmail) throw badInput("newEmail", "newEmail is already the account's email address");
  const db = ctx.deps.db.prisma;
  const tenant = await db.tenant.findUniqueOrThrow({ where: { id: user.tenantId } });
  // At most a few mails to one inbox, and a few requests per user, per window.
  await ctx.deps.limits.mails.consume(`${tenant.id}:${newEmail}`);
  await ctx.deps.limits.mails.consume(`${tenant.id}:change:${userId}`);
  const oldEmail = user.email;
  if (oldEmail) {
    ctx.deps.tasks.run("email change notice", ctx.requestId, () =>
      ctx.deps.mailer.send({
        to: oldEmail,
        subject: `${tenant.name}: a change of your email address was requested`,
        text:
          `Someone signed in to your account at ${tenant.name} asked to change its email address to ${newEmail}.\n` +
          "Nothing changes unless the code sent to that address is entered. If this was not you, change your " +
          "password and sign out everywhere.\n",
      }),
    );
  }
  ctx.deps.tasks.run("email change code mail", ctx.requestId, async () => {
    const owner = await db.user.findFirst({ where: { tenantId: tenant.id, email: newEmail, deletedAt: null } });
    if (!owner) return sendCode(ctx, tenant, newEmail, "CHANGE_EMAIL", userId);
    await ctx.deps.mailer.send({
      to: newEmail,
      subject: `${tenant.name}: this address already has an account`,
      text:
        `Someone asked to move an account at ${tenant.name} to this email address, but an account with this ` +
        "address already exists, so nothing was changed. If that was you, sign in to that account instead " +
        "(or reset its password).\n",
    });
  });
  return true;
}

const WRONG_CODE = "The code is wrong, expired or already used";

/** Which live code a guess is compared with: the newest one of a purpose, for an address or an account. */
type CodeTarget = { purpose: StoredPurpose } & ({ email: string; userId: null } | { userId: string });

/**
 * Spends a code: single use, expiring, and limited in wrong guesses twice over. Each
 * guess first takes an attempt from the limiter under `limitKey` (shared by every code of
 * that key, and every instance when Redis is there), then one of the code's own
 * EMAIL_CODE_MAX_ATTEMPTS in the database, by a conditional update; only then is it
 * compared. Parallel guesses cannot go past either count, and the database count holds
 * whatever the limiter saw (another instance counting in process, a new window).
 */
async function redeemCode(
  ctx: Context,
  tenantId: string,
  limitKey: string,
  targets: CodeTarget[],
  code: string,
): Promise<EmailCode> {
  const db = ctx.deps.db.prisma;
  await ctx.deps.limits.codes.consume(limitKey);
  const guess = code.trim();
  for (const target of targets) {
    const live = { usedAt: null, expiresAt: { gt: new Date() }, attempts: { lt: EMAIL_CODE_MAX_ATTEMPTS } };
    const record = await db.emailCode.findFirst({
      where: { tenantId, ...target, ...live },
      orderBy: { createdAt: "desc" },
    });
    if (!record) continue;
    const claimed = await db.emailCode.updateMany({
      where: { id: record.id, ...live },
      data: { attempts: { increment: 1 } },
    });
    if (claimed.count === 0) continue;
    if (!safeEqual(record.codeHash, codeHash(tenantId, record.email, target.purpose, guess))) continue;
    const spent = await db.emailCode.updateMany({
      where: { id: record.id, usedAt: null },
      data: { usedAt: new Date() },
    });
    if (spent.count === 0) continue;
    await ctx.deps.limits.codes.reset(limitKey);
    return record;
  }
  throw badInput("code", WRONG_CODE);
}

/**
 * Redeems a code mailed to the viewer: a CHANGE_EMAIL code moves the account to the
 * address it was sent to; a VERIFY_EMAIL code confirms the current address. Either way
 * the address is then verified.
 */
export async function verifyEmail(ctx: Context, code: string): Promise<User> {
  const userId = requireUserPrincipal(ctx, "verifyEmail");
  const user = await ctx.prisma.user.findFirstOrThrow({ where: { id: userId } });
  const targets: CodeTarget[] = [{ purpose: "CHANGE_EMAIL", userId }];
  if (user.email) targets.push({ purpose: "VERIFY_EMAIL", email: user.email, userId: null });
  const record = await redeemCode(ctx, user.tenantId, `${user.tenantId}:${userId}:verify`, targets, code);
  if (record.purpose !== "CHANGE_EMAIL") {
    return ctx.prisma.user.update({ where: { id: user.id }, data: { emailVerifiedAt: new Date() } });
  }
  try {
    return await ctx.prisma.$transaction(async (tx) => {
      const moved = await tx.user.update({
        where: { id: user.id },
        data: { email: record.email, emailVerifiedAt: new Date() },
      });
      // Codes mailed to the old address, and other pending changes, stop working.
      const stale = [
        ...(user.email ? [{ email: user.email, userId: null }] : []),
        { userId: user.id, purpose: "CHANGE_EMAIL" },
      ];
      await tx.emailCode.updateMany({ where: { usedAt: null, OR: stale }, data: { usedAt: new Date() } });
      await audit(ctx, "user.emailChanged", { type: "User", id: user.id }, undefined, tx);
      return moved;
    });
  } catch (error) {
    // Another user took the address between the request and now.
    if (isUniqueViolation(error)) {
      throw appError("CONFLICT", "Another account has this email address now; nothing was changed", {
        field: "code",
      });
    }
    throw error;
  }
}

export async function signInWithEmailCode(ctx: Context, rawInput: unknown): Promise<AuthPayload> {
  const input = validate(codeSignInInput, rawInput, "input");
  const tenant = await openTenant(ctx, input.tenantId, "EMAIL_CODE");
  const email = input.email.trim().toLowerCase();
  // Wrong codes count against the client address like wrong passwords (taken first, given back on success).
  const address = clientKey(ctx);
  await ctx.deps.limits.address.consume(address);
  await redeemCode(
    ctx,
    tenant.id,
    `${tenant.id}:${email}:SIGN_IN`,
    [{ purpose: "SIGN_IN", email, userId: null }],
    input.code,
  );
  const user = await ctx.deps.db.prisma.user.findFirst({
    where: { tenantId: tenant.id, email, deletedAt: null, active: true },
  });
  if (!user) throw badInput("code", WRONG_CODE);
  await ctx.deps.limits.address.refund(address);
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
  await redeemCode(
    ctx,
    tenant.id,
    `${tenant.id}:${email}:RESET_PASSWORD`,
    [{ purpose: "RESET_PASSWORD", email, userId: null }],
    input.code,
  );
  const user = await ctx.deps.db.prisma.user.findFirst({ where: { tenantId: tenant.id, email, deletedAt: null } });
  if (!user) throw badInput("code", WRONG_CODE);
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
  // Taken before the check (so parallel guesses get no more tries), forgotten on success.
  await ctx.deps.limits.account.consume(account);
  if (!(await verifyPassword(user.passwordHash, input.currentPassword))) {
    throw badInput("input.currentPassword", "The current password is wrong");
  }
  await ctx.deps.limits.account.reset(account);
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

const REDIRECT_URIS_MAX = 20;
export const settingsInput = z.object({
  selfSignUp: z.boolean().nullish(),
  signInMethods: z
    .array(z.enum(["PASSWORD", "EMAIL_CODE", "GOOGLE", "GITHUB"]))
    .min(1, "needs at least one method")
    .describe("at least one")
    .nullish(),
  accessTokenTtlSeconds: zIntRange(60, 86_400).nullish(),
  refreshTokenTtlSeconds: zIntRange(300, 31_536_000).nullish(),
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
    .max(REDIRECT_URIS_MAX, `accepts at most ${REDIRECT_URIS_MAX} URLs`)
    .describe(`up to ${REDIRECT_URIS_MAX} http(s) URLs without fragment`)
    .nullish(),
  /** Checked in full (key source, URL rules, issuer clash) by services/external-jwt.ts. */
  externalJwt: externalJwtInput.nullish(),
});

export function parseAuthSettings(raw: unknown) {
  return validate(settingsInput, raw ?? {}, "input.auth");
}
