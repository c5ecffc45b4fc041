import { z } from "zod";
import { hasPermission } from "../auth/permissions.ts";
import type { Context } from "../context.ts";
import { isUniqueViolation } from "../db/errors.ts";
import { badInput, conflict, forbidden, notFound } from "../errors.ts";
import type { Prisma, PrismaClient, User } from "../generated/prisma/client.ts";
import { actingUserId, tenantOf } from "./access.ts";
import { audit } from "./audit.ts";
import { connectionOf, decodeCursor, encodeCursor } from "./cursors.ts";
import { appendEvents, type ConversationEvent, publishEvents } from "./events.ts";
import { publishMembership, publishToUsers } from "./membership-events.ts";
import { assertCanActOn, assertNotLastOwner } from "./policies.ts";
import { literalLike, pageSize, parseId, validate, zEmail, zPhone, zText, zUrl } from "./validation.ts";
import { viaPrisma, type WebhookOutbox } from "./webhook-outbox.ts";

export const createUserInput = z.object({
  name: zText(200),
  email: zEmail.nullish(),
  emailVerified: z.boolean().nullish(),
  phone: zPhone.nullish(),
  avatarUrl: zUrl.nullish(),
});

export const updateUserInput = createUserInput.extend({
  name: createUserInput.shape.name.nullish(),
  active: z.boolean().nullish(),
});

const isService = (ctx: Context) => ctx.principal?.kind === "service";

/**
 * An email address signs its user in (codes, password resets, provider accounts with the
 * same verified address), so only the API key, the tenant's trusted backend, sets it or
 * vouches for it directly. Users move to another address with requestEmailChange, which
 * proves it; nobody else, whatever their permissions, can point an account at an inbox.
 */
function assertMaySetEmail(ctx: Context, self: boolean, changesEmail: boolean, setsVerified: boolean): void {
  if (isService(ctx)) return;
  if (changesEmail && self) {
    throw badInput(
      "input.email",
      "Your email address changes with requestEmailChange(newEmail), which mails a code to the new address",
    );
  }
  if (changesEmail) {
    throw forbidden(
      "Only the API key changes another user's email address; users change theirs with requestEmailChange",
    );
  }
  if (setsVerified) throw forbidden("Only the API key may set emailVerified");
}

interface FindUserOptions {
  /** The argument the id came in, for BAD_USER_INPUT on a malformed id. */
  field?: string;
  /** NOT_FOUND instead of null when there is no such user. */
  orThrow?: boolean;
}

/** A user of the caller's tenant who is not deleted: null when missing, or NOT_FOUND with `orThrow`. */
export async function findUser(ctx: Context, id: string, options: FindUserOptions & { orThrow: true }): Promise<User>;
export async function findUser(ctx: Context, id: string, options?: FindUserOptions): Promise<User | null>;
export async function findUser(ctx: Context, id: string, { field = "id", orThrow = false }: FindUserOptions = {}) {
  const user = await ctx.prisma.user.findFirst({
    where: { id: parseId(field, id), tenantId: tenantOf(ctx), deletedAt: null },
  });
  if (!user && orThrow) throw notFound("User");
  return user;
}

/**
 * Records USER_CREATED for the tenant's webhooks, with the transaction that created the user
 * (createUser, sign-up, provider sign-in, identity provider tokens). actorId: who created it, or null.
 */
export async function recordUserCreated(
  outbox: WebhookOutbox,
  tx: Pick<PrismaClient, "$queryRawUnsafe">,
  user: User,
  actorId: string | null,
): Promise<void> {
  await outbox.record(viaPrisma(tx), user.tenantId, [
    {
      event: "USER_CREATED",
      data: {
        actorId,
        user: {
          id: user.id,
          name: user.name,
          email: user.email,
          externalId: user.externalId,
          createdAt: user.createdAt.toISOString(),
        },
      },
    },
  ]);
}

export async function createUser(ctx: Context, input: unknown) {
  const { emailVerified, ...data } = validate(createUserInput, input, "input");
  const tenantId = tenantOf(ctx);
  assertMaySetEmail(ctx, false, false, emailVerified !== undefined && emailVerified !== null);
  if (emailVerified && !data.email) throw badInput("input.emailVerified", "input.emailVerified needs input.email");
  try {
    return await ctx.prisma.$transaction(async (tx) => {
      const user = await tx.user.create({
        data: { ...data, tenantId, emailVerifiedAt: emailVerified ? new Date() : null },
      });
      // New users get the tenant's default role (the `member` system role unless changed).
      const tenant = await tx.tenant.findUniqueOrThrow({ where: { id: tenantId }, select: { defaultRoleId: true } });
      if (tenant.defaultRoleId) {
        await tx.userRole.create({ data: { tenantId, userId: user.id, roleId: tenant.defaultRoleId } });
      }
      await recordUserCreated(ctx.deps.webhooks, tx, user, actingUserId(ctx));
      return user;
    });
  } catch (error) {
    if (isUniqueViolation(error, "email")) throw conflict("A user with this email already exists", "input.email");
    throw error;
  }
}

/** Users may edit their own profile; editing others needs users:update. Only users:update toggles `active`. */
export async function updateUser(ctx: Context, id: string, input: unknown) {
  const user = await findUser(ctx, id, { orThrow: true });
  const data = validate(updateUserInput, input, "input");
  const self = actingUserId(ctx) === user.id;
  const canManage = await hasPermission(ctx, "users:update");
  if (!self && !canManage) throw forbidden("You may only update your own profile");
  if (!self) await assertCanActOn(ctx, user.id);
  const { active, emailVerified, ...rest } = data;
  const changesActive = active !== undefined && active !== null && active !== user.active;
  if (changesActive && !canManage) throw forbidden("Changing `active` needs the users:update permission");
  if (data.name === null) throw badInput("input.name", "input.name must not be null");
  const changesEmail = rest.email !== undefined && rest.email !== user.email;
  assertMaySetEmail(ctx, self, changesEmail, emailVerified !== undefined && emailVerified !== null);
  const email = rest.email === undefined ? user.email : rest.email;
  if (emailVerified && !email) throw badInput("input.emailVerified", "input.emailVerified needs an email address");
  // A new address is unproven unless the API key vouches for it; emailVerified sets it either way.
  let emailVerifiedAt: Date | null | undefined;
  if (emailVerified === true) emailVerifiedAt = changesEmail || !user.emailVerifiedAt ? new Date() : undefined;
  else if (emailVerified === false || changesEmail) emailVerifiedAt = null;
  let updated: User;
  try {
    updated = await ctx.prisma.$transaction(async (tx) => {
      if (changesActive && !active) {
        await assertNotLastOwner(ctx, tx, user.id, "The last owner cannot be deactivated");
      }
      const next = await tx.user.update({
        where: { id: user.id },
        data: {
          ...rest,
          name: rest.name ?? undefined,
          emailVerifiedAt,
          ...(changesActive ? { active: !!active } : {}),
        },
      });
      if (changesEmail && user.email) {
        // Codes mailed to the old address stop working.
        await tx.emailCode.updateMany({
          where: { email: user.email, userId: null, usedAt: null },
          data: { usedAt: new Date() },
        });
      }
      if (changesActive && !active) {
        // Deactivation ends every token and session: reactivating does not bring them back.
        const now = new Date();
        await tx.userToken.updateMany({ where: { userId: user.id, revokedAt: null }, data: { revokedAt: now } });
        await tx.session.updateMany({
          where: { userId: user.id, revokedAt: null },
          data: { revokedAt: now, revokedReason: "deactivated" },
        });
      }
      if (changesActive) {
        await audit(
          ctx,
          active ? "user.reactivated" : "user.deactivated",
          { type: "User", id: user.id },
          undefined,
          tx,
        );
      }
      return next;
    });
  } catch (error) {
    if (isUniqueViolation(error, "email")) throw conflict("A user with this email already exists", "input.email");
    throw error;
  }
  // A deactivated user's sockets close at once; their tokens are refused from now on.
  if (changesActive && !active) await publishToUsers(ctx, [user.id], { type: "revoked" });
  return updated;
}

/**
 * Soft delete: messages keep their sender for history, personal data is erased,
 * memberships, roles and tokens end, and the email becomes free again.
 */
export async function deleteUser(ctx: Context, id: string): Promise<string> {
  const user = await findUser(ctx, id, { orThrow: true });
  await assertCanActOn(ctx, user.id);
  const { memberships, events } = await ctx.prisma.$transaction(async (tx) => {
    await assertNotLastOwner(ctx, tx, user.id, "The last owner cannot be deleted");
    const rows = await tx.member.findMany({ where: { tenantId: user.tenantId, userId: user.id } });
    await tx.member.deleteMany({ where: { tenantId: user.tenantId, userId: user.id } });
    const removed: ConversationEvent[] = [];
    for (const row of rows) {
      removed.push(
        ...(await appendEvents(tx, ctx.deps.webhooks, user.tenantId, row.conversationId, [
          { type: "MEMBER_REMOVED", actorId: actingUserId(ctx), data: { userId: user.id } },
        ])),
      );
    }
    await tx.userRole.deleteMany({ where: { tenantId: user.tenantId, userId: user.id } });
    await tx.userToken.updateMany({ where: { userId: user.id, revokedAt: null }, data: { revokedAt: new Date() } });
    await tx.user.update({
      where: { id: user.id },
      data: { deletedAt: new Date(), active: false, email: null, phone: null, avatarUrl: null, name: "Deleted user" },
    });
    await audit(ctx, "user.deleted", { type: "User", id: user.id }, { conversations: rows.length }, tx);
    await ctx.deps.webhooks.record(viaPrisma(tx), user.tenantId, [
      { event: "USER_DELETED", data: { actorId: actingUserId(ctx), userId: user.id } },
    ]);
    return { memberships: rows, events: removed };
  });
  await publishEvents(ctx, events);
  await Promise.all(
    memberships.map((m) => publishMembership(ctx, [user.id], { type: "left", conversationId: m.conversationId })),
  );
  await publishToUsers(ctx, [user.id], { type: "revoked" });
  return user.id;
}

/** Lifetimes issueUserToken accepts, in seconds: a minute to 30 days. */
export const USER_TOKEN_TTL = { min: 60, max: 2_592_000 } as const;

/** Mints a token for a user and records its id, so it can be revoked. */
export async function issueUserToken(ctx: Context, userId: string, expiresInSeconds: number | null | undefined) {
  const ttl = expiresInSeconds ?? ctx.deps.config.userTokenTtlSeconds;
  if (!Number.isInteger(ttl) || ttl < USER_TOKEN_TTL.min || ttl > USER_TOKEN_TTL.max) {
    throw badInput(
      "expiresInSeconds",
      `expiresInSeconds must be between ${USER_TOKEN_TTL.min} and ${USER_TOKEN_TTL.max}`,
    );
  }
  const user = await findUser(ctx, userId, { field: "userId", orThrow: true });
  if (!user.active) throw forbidden("The user is deactivated");
  const { token, expiresAt, jti } = await ctx.deps.tokens.issue(user.id, user.tenantId, ttl);
  await ctx.prisma.userToken.create({ data: { id: jti, tenantId: user.tenantId, userId: user.id, expiresAt } });
  return { token, expiresAt };
}

/**
 * Revokes every credential of a user (the user themselves, or users:update): access
 * tokens, and every sign-in session with its refresh tokens, so nothing can mint a new
 * access token; their sockets close.
 */
export async function revokeUserTokens(ctx: Context, userId: string): Promise<boolean> {
  const user = await findUser(ctx, userId, { field: "userId", orThrow: true });
  if (actingUserId(ctx) !== user.id && !(await hasPermission(ctx, "users:update"))) {
    throw forbidden("Revoking another user's tokens needs the users:update permission");
  }
  await assertCanActOn(ctx, user.id);
  await ctx.prisma.$transaction(async (tx) => {
    const now = new Date();
    const sessions = await tx.session.updateMany({
      where: { userId: user.id, revokedAt: null },
      data: { revokedAt: now, revokedReason: "tokens revoked" },
    });
    const { count } = await tx.userToken.updateMany({
      where: { userId: user.id, revokedAt: null },
      data: { revokedAt: now },
    });
    await audit(
      ctx,
      "user.tokensRevoked",
      { type: "User", id: user.id },
      { tokens: count, sessions: sessions.count },
      tx,
    );
  });
  await publishToUsers(ctx, [user.id], { type: "revoked" });
  return true;
}

export async function listUsers(
  ctx: Context,
  args: { first?: number | null; after?: string | null; search?: string | null },
) {
  const tenantId = tenantOf(ctx);
  const first = pageSize("first", args.first, 20);
  const search = args.search?.trim();
  if (search && search.length > 200) throw badInput("search", "search must be at most 200 characters");
  const where: Prisma.UserWhereInput = { tenantId, deletedAt: null };
  const and: Prisma.UserWhereInput[] = [];
  if (search) {
    and.push({
      OR: [
        { name: { contains: literalLike(search), mode: "insensitive" } },
        { email: { contains: literalLike(search.toLowerCase()) } },
      ],
    });
  }
  if (args.after) {
    const [at, afterId] = decodeCursor("after", args.after, "u1", ["time", "uuid"]);
    and.push({ OR: [{ createdAt: { gt: at } }, { createdAt: at, id: { gt: afterId } }] });
  }
  const rows = await ctx.prisma.user.findMany({
    where: and.length ? { ...where, AND: and } : where,
    orderBy: [{ createdAt: "asc" }, { id: "asc" }],
    take: first + 1,
  });
  const nodes = rows.slice(0, first);
  return connectionOf(nodes, (u) => encodeCursor("u1", [u.createdAt.getTime(), u.id]), {
    hasNextPage: rows.length > first,
    hasPreviousPage: !!args.after,
  });
}
