import { z } from "zod";
import { grants } from "../auth/permissions.ts";
import type { Context } from "../context.ts";
import { badInput, conflict, forbidden, notFound } from "../errors.ts";
import { Prisma } from "../generated/prisma/client.ts";
import { actingUserId, tenantOf } from "./access.ts";
import { connectionOf, decodeCursor, encodeCursor } from "./cursors.ts";
import { publishMembership } from "./membership-events.ts";
import { pageSize, parseId, validate, zEmail, zPhone, zText, zUrl } from "./validation.ts";

const createUserInput = z.object({
  name: zText(200),
  email: zEmail.nullish(),
  phone: zPhone.nullish(),
  avatarUrl: zUrl.nullish(),
});

const updateUserInput = z.object({
  name: zText(200).nullish(),
  email: zEmail.nullish(),
  phone: zPhone.nullish(),
  avatarUrl: zUrl.nullish(),
  active: z.boolean().nullish(),
});

function isUniqueViolation(error: unknown): boolean {
  return error instanceof Prisma.PrismaClientKnownRequestError && error.code === "P2002";
}

export async function findUser(ctx: Context, id: string) {
  return ctx.prisma.user.findFirst({
    where: { id: parseId("id", id), tenantId: tenantOf(ctx), deletedAt: null },
  });
}

export async function requireUser(ctx: Context, id: string, field = "id") {
  const user = await ctx.prisma.user.findFirst({
    where: { id: parseId(field, id), tenantId: tenantOf(ctx), deletedAt: null },
  });
  if (!user) throw notFound("User");
  return user;
}

export async function createUser(ctx: Context, input: unknown) {
  const data = validate(createUserInput, input, "input");
  try {
    return await ctx.prisma.user.create({ data: { ...data, tenantId: tenantOf(ctx) } });
  } catch (error) {
    if (isUniqueViolation(error)) throw conflict("A user with this email already exists", "input.email");
    throw error;
  }
}

/** Users may edit their own profile; editing others needs users:update. Only users:update toggles `active`. */
export async function updateUser(ctx: Context, id: string, input: unknown) {
  const user = await requireUser(ctx, id);
  const data = validate(updateUserInput, input, "input");
  const self = actingUserId(ctx) === user.id;
  const canManage = grants(ctx.permissions, "users:update");
  if (!self && !canManage) throw forbidden("You may only update your own profile");
  if (data.active !== undefined && data.active !== null && !canManage) {
    throw forbidden("Changing `active` needs the users:update permission");
  }
  if (data.name === null) throw badInput("input.name", "input.name must not be null");
  const { active, ...rest } = data;
  try {
    return await ctx.prisma.user.update({
      where: { id: user.id },
      data: {
        ...rest,
        name: rest.name ?? undefined,
        ...(active === null || active === undefined ? {} : { active }),
      },
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw conflict("A user with this email already exists", "input.email");
    throw error;
  }
}

/**
 * Soft delete: messages keep their sender for history, personal data is erased,
 * memberships end, and the email becomes free again.
 */
export async function deleteUser(ctx: Context, id: string) {
  const user = await requireUser(ctx, id);
  const memberships = await ctx.prisma.$transaction(async (tx) => {
    const rows = await tx.member.findMany({ where: { tenantId: user.tenantId, userId: user.id } });
    await tx.member.deleteMany({ where: { tenantId: user.tenantId, userId: user.id } });
    await tx.user.update({
      where: { id: user.id },
      data: {
        deletedAt: new Date(),
        active: false,
        email: null,
        phone: null,
        avatarUrl: null,
        name: "Deleted user",
        tokensValidAfter: new Date(),
      },
    });
    return rows;
  });
  await Promise.all(
    memberships.map((m) => publishMembership(ctx, [user.id], { type: "left", conversationId: m.conversationId })),
  );
  return user.id;
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
      OR: [{ name: { contains: search, mode: "insensitive" } }, { email: { contains: search.toLowerCase() } }],
    });
  }
  if (args.after) {
    const [createdAt, afterId] = decodeCursor("after", args.after, "u1", 2);
    const at = new Date(Number(createdAt));
    if (Number.isNaN(at.getTime()) || typeof afterId !== "string")
      throw badInput("after", "after is not a valid cursor");
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
