import { z } from "zod";
import { hasPermission } from "../auth/permissions.ts";
import type { Context } from "../context.ts";
import type { TransactionClient } from "../db/client.ts";
import { isUniqueViolation } from "../db/errors.ts";
import { badInput, conflict, forbidden, notFound } from "../errors.ts";
import type { Conversation, Member, Prisma } from "../generated/prisma/client.ts";
import { actingUserId, requireUserPrincipal, tenantOf } from "./access.ts";
import { discardAttachments, removeAttachmentFiles } from "./attachment-gc.ts";
import { audit } from "./audit.ts";
import { assertNotBlockedBy } from "./blocks.ts";
import { connectionOf, decodeCursor, encodeCursor } from "./cursors.ts";
import { appendEvents, insertEvents, type NewEvent, publishEvents } from "./events.ts";
import { publishMembership } from "./membership-events.ts";
import {
  literalLike,
  pageSize,
  parseId,
  parseIds,
  validate,
  zLine,
  zList,
  zOptionalText,
  zText,
} from "./validation.ts";
import { viaPrisma } from "./webhook-outbox.ts";

/** Most users one call adds to a group (createGroup, addMembers). */
export const MAX_ADDED_MEMBERS = 500;

export const createGroupInput = z.object({
  name: zText(200),
  description: zOptionalText(2000).nullish(),
  memberIds: zList(MAX_ADDED_MEMBERS, "ids").nullish(),
  externalId: zLine(200).nullish(),
});
export const updateGroupInput = z.object({
  name: createGroupInput.shape.name.nullish(),
  description: createGroupInput.shape.description,
  externalId: createGroupInput.shape.externalId,
});

const externalIdTaken = () => conflict("Another group has this external id", "input.externalId");

export interface ConversationAccess {
  conversation: Conversation;
  /** The acting user's membership; null for the service principal. */
  membership: Member | null;
}

/**
 * Conversations a request read knowing the viewer is a member (their own list): their
 * messages may be shown without asking storage again. Request-scoped objects only.
 */
const memberViews = new WeakSet<Conversation>();

/**
 * Whether the viewer may read a conversation's messages (lastMessage, pinnedMessages,
 * messages): its members and the API key. A holder of groups:read or groups:update who is
 * not a member sees a group's metadata and members, not what is said in it.
 */
export async function readsMessagesOf(ctx: Context, conversation: Conversation): Promise<boolean> {
  if (!actingUserId(ctx) || memberViews.has(conversation)) return true;
  return (await ctx.loaders.membership.load(conversation.id)) !== null;
}

/**
 * Loads a conversation the principal may read. Another tenant's id behaves exactly like
 * a missing one (NOT_FOUND); a conversation of the same tenant the user is not in is FORBIDDEN,
 * unless they hold `managedWith` (a tenant-wide group permission): then it comes without a
 * membership, for managing, and its messages stay hidden (readsMessagesOf).
 */
export async function requireConversation(
  ctx: Context,
  id: string,
  field = "id",
  managedWith?: "groups:update" | "groups:delete",
): Promise<ConversationAccess> {
  const conversationId = parseId(field, id);
  const userId = actingUserId(ctx);
  if (!userId) {
    const conversation = await ctx.prisma.conversation.findFirst({
      where: { id: conversationId, tenantId: tenantOf(ctx) },
    });
    if (!conversation) throw notFound("Conversation");
    return { conversation, membership: null };
  }
  // The conversation and the user's membership in one statement (a request's first read).
  const [row] = await ctx.deps.db.sql.query<Conversation & MembershipColumns>(
    `SELECT c.*, m."role" AS "memberRole", m."joinedAt" AS "memberJoinedAt",
            m."lastReadSeq" AS "memberLastReadSeq", m."lastReadAt" AS "memberLastReadAt",
            m."hiddenAtSeq" AS "memberHiddenAtSeq"
       FROM "Conversation" c
       LEFT JOIN "Member" m ON m."conversationId" = c."id" AND m."userId" = $3::uuid
      WHERE c."id" = $1::uuid AND c."tenantId" = $2::uuid`,
    [conversationId, tenantOf(ctx), userId],
    { name: "conversation-access" },
  );
  if (!row) throw notFound("Conversation");
  const { memberRole, memberJoinedAt, memberLastReadSeq, memberLastReadAt, memberHiddenAtSeq, ...conversation } = row;
  if (!memberRole) {
    if (managedWith && conversation.kind === "GROUP" && (await hasPermission(ctx, managedWith))) {
      ctx.loaders.membership.prime(conversation.id, null);
      return { conversation, membership: null };
    }
    throw forbidden("You are not a member of this conversation");
  }
  const membership: Member = {
    tenantId: conversation.tenantId,
    conversationId: conversation.id,
    userId,
    role: memberRole,
    joinedAt: memberJoinedAt as Date,
    lastReadSeq: memberLastReadSeq as number,
    lastReadAt: memberLastReadAt,
    hiddenAtSeq: memberHiddenAtSeq,
  };
  ctx.loaders.membership.prime(conversation.id, membership);
  return { conversation, membership };
}

/** The membership columns requireConversation reads beside the conversation (null: not a member). */
interface MembershipColumns {
  memberRole: Member["role"] | null;
  memberJoinedAt: Date | null;
  memberLastReadSeq: number | null;
  memberLastReadAt: Date | null;
  memberHiddenAtSeq: number | null;
}

/**
 * Group management. The tenant-wide permission (`groups:update`, or `groups:delete` for
 * deleting) manages any group, as does the API key. A group's owners (and admins, unless
 * ownerOnly) manage their own group only while their tenant role lets them run groups at
 * all (`groups:create`): a tenant role without it takes that power away inside groups too.
 */
async function assertCanManage(
  ctx: Context,
  access: ConversationAccess,
  permission: string,
  field: string,
  ownerOnly = false,
): Promise<void> {
  if (access.conversation.kind !== "GROUP") {
    throw badInput(field, "Direct conversations cannot be changed");
  }
  if (await hasPermission(ctx, permission)) return;
  const role = access.membership?.role;
  if (!(role === "OWNER" || (!ownerOnly && role === "ADMIN"))) {
    throw forbidden(`Only the group's ${ownerOnly ? "owners" : "owners or admins"} may do this`);
  }
  if (!(await hasPermission(ctx, "groups:create"))) {
    throw forbidden(`Managing a group as its ${role.toLowerCase()} needs the groups:create permission`);
  }
}

async function requireUsersInTenant(ctx: Context, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  const found = await ctx.prisma.user.findMany({
    where: { tenantId: tenantOf(ctx), id: { in: ids }, deletedAt: null },
    select: { id: true },
  });
  if (found.length !== ids.length) throw notFound("User");
}

/**
 * Creates a conversation with its first members and records a MEMBER_ADDED event for each,
 * in one transaction: a new member's conversationEvents stream over all conversations starts
 * at the conversation's first event, so the conversation appears there at once.
 */
async function createWithMembers(
  ctx: Context,
  data: Omit<Prisma.ConversationUncheckedCreateInput, "members" | "lastEventSeq">,
  members: { userId: string; role: "OWNER" | "MEMBER" }[],
) {
  const actorId = actingUserId(ctx);
  const added: NewEvent[] = members.map(({ userId, role }) => ({
    type: "MEMBER_ADDED",
    actorId,
    data: { userId, role },
  }));
  return ctx.prisma.$transaction(async (tx) => {
    const conversation = await tx.conversation.create({
      data: {
        ...data,
        lastEventSeq: added.length,
        members: { createMany: { data: members.map(({ userId, role }) => ({ userId, role })) } },
      },
    });
    await ctx.deps.webhooks.record(viaPrisma(tx), conversation.tenantId, [
      {
        event: "CONVERSATION_CREATED",
        data: {
          actorId,
          conversation: conversationData(conversation),
          members: members.map(({ userId, role }) => ({ userId, role })),
        },
      },
    ]);
    const events = await insertEvents(tx, ctx.deps.webhooks, conversation.tenantId, conversation.id, 1, added);
    return { conversation, events };
  });
}

/** A conversation as webhook deliveries describe it. */
function conversationData(conversation: Conversation) {
  return {
    id: conversation.id,
    kind: conversation.kind,
    name: conversation.name,
    description: conversation.description,
    externalId: conversation.externalId,
    createdAt: conversation.createdAt.toISOString(),
  };
}

export async function createGroup(ctx: Context, input: unknown) {
  const data = validate(createGroupInput, input, "input");
  const tenantId = tenantOf(ctx);
  const creatorId = actingUserId(ctx);
  const memberIds = parseIds("input.memberIds", data.memberIds ?? [], MAX_ADDED_MEMBERS).filter(
    (id) => id !== creatorId,
  );
  await requireUsersInTenant(ctx, memberIds);
  const members = [
    ...(creatorId ? [{ tenantId, userId: creatorId, role: "OWNER" as const }] : []),
    ...memberIds.map((userId) => ({ tenantId, userId, role: "MEMBER" as const })),
  ];
  const { conversation, events } = await createWithMembers(
    ctx,
    {
      tenantId,
      kind: "GROUP",
      name: data.name,
      description: data.description ?? null,
      externalId: data.externalId ?? null,
    },
    members,
  ).catch((error: unknown) => {
    if (isUniqueViolation(error, "externalId")) throw externalIdTaken();
    throw error;
  });
  await publishEvents(ctx, events);
  await publishMembership(
    ctx,
    members.map((m) => m.userId),
    { type: "joined", conversationId: conversation.id, seq: 0 },
    { conversationLifecycle: true },
  );
  return conversation;
}

export async function updateGroup(ctx: Context, id: string, input: unknown) {
  const access = await requireConversation(ctx, id, "id", "groups:update");
  await assertCanManage(ctx, access, "groups:update", "id");
  const data = validate(updateGroupInput, input, "input");
  const [updated, events] = await ctx.prisma.$transaction(async (tx) => {
    const next = await tx.conversation
      .update({
        where: { id: access.conversation.id },
        data: {
          ...(data.name ? { name: data.name } : {}),
          ...(data.description !== undefined ? { description: data.description } : {}),
          ...(data.externalId !== undefined ? { externalId: data.externalId } : {}),
        },
      })
      .catch((error: unknown) => {
        if (isUniqueViolation(error, "externalId")) throw externalIdTaken();
        throw error;
      });
    const recorded = await appendEvents(tx, ctx.deps.webhooks, next.tenantId, next.id, [
      {
        type: "CONVERSATION_UPDATED",
        actorId: actingUserId(ctx),
        data: { name: next.name, description: next.description },
      },
    ]);
    return [next, recorded] as const;
  });
  await publishEvents(ctx, events);
  return updated;
}

export async function deleteGroup(ctx: Context, id: string): Promise<string> {
  const access = await requireConversation(ctx, id, "id", "groups:delete");
  await assertCanManage(ctx, access, "groups:delete", "id", true);
  const members = await ctx.prisma.member.findMany({
    where: { conversationId: access.conversation.id },
    select: { userId: true },
  });
  const discarded = await ctx.prisma.$transaction(async (tx) => {
    // Locked first, so no upload can add a file to the group between the two deletes.
    await tx.$queryRaw`SELECT "id" FROM "Conversation" WHERE "id" = ${access.conversation.id}::uuid FOR UPDATE`;
    const storageKeys = await discardAttachments(tx, {
      tenantId: access.conversation.tenantId,
      conversationId: access.conversation.id,
    });
    await tx.conversation.delete({ where: { id: access.conversation.id } });
    await ctx.deps.webhooks.record(viaPrisma(tx), access.conversation.tenantId, [
      {
        event: "CONVERSATION_DELETED",
        data: { actorId: actingUserId(ctx), conversationId: access.conversation.id, name: access.conversation.name },
      },
    ]);
    await audit(
      ctx,
      "group.deleted",
      { type: "Conversation", id: access.conversation.id },
      { name: access.conversation.name },
      tx,
    );
    return storageKeys;
  });
  await publishMembership(
    ctx,
    members.map((m) => m.userId),
    { type: "left", conversationId: access.conversation.id, deleted: true },
    { conversationLifecycle: true },
  );
  // Files go only once the deletion is committed.
  await removeAttachmentFiles(ctx.deps, discarded, ctx.requestId);
  return access.conversation.id;
}

export async function addMembers(ctx: Context, conversationId: string, userIds: readonly string[]) {
  const access = await requireConversation(ctx, conversationId, "conversationId", "groups:update");
  await assertCanManage(ctx, access, "groups:update", "conversationId");
  const ids = parseIds("userIds", userIds, MAX_ADDED_MEMBERS);
  await requireUsersInTenant(ctx, ids);
  const tenantId = access.conversation.tenantId;
  const { added, seq, eventSeq, events } = await ctx.prisma.$transaction(async (tx) => {
    // Only rows this transaction inserted count: a concurrent addMembers of the same user
    // inserts it once, and only that one records the join (event, audit, stream start).
    const inserted = await tx.member.createManyAndReturn({
      data: ids.map((userId) => ({ tenantId, conversationId: access.conversation.id, userId })),
      skipDuplicates: true,
      select: { userId: true },
    });
    const insertedIds = new Set(inserted.map((m) => m.userId));
    const fresh = ids.filter((id) => insertedIds.has(id));
    const conversation = await tx.conversation.findUniqueOrThrow({
      where: { id: access.conversation.id },
      select: { lastSeq: true, lastEventSeq: true },
    });
    if (fresh.length) {
      await audit(ctx, "member.added", { type: "Conversation", id: access.conversation.id }, { userIds: fresh }, tx);
    }
    const recorded = await appendEvents(
      tx,
      ctx.deps.webhooks,
      tenantId,
      access.conversation.id,
      fresh.map((userId) => ({ type: "MEMBER_ADDED", actorId: actingUserId(ctx), data: { userId, role: "MEMBER" } })),
    );
    // New members' event streams start just before their own "added" events.
    return { added: fresh, seq: conversation.lastSeq, eventSeq: conversation.lastEventSeq, events: recorded };
  });
  await publishEvents(ctx, events);
  await publishMembership(ctx, added, { type: "joined", conversationId: access.conversation.id, seq, eventSeq });
  // A manager may have added themselves.
  ctx.loaders.membership.clear(access.conversation.id);
  return access.conversation;
}

export async function removeMember(ctx: Context, conversationId: string, userId: string) {
  const access = await requireConversation(ctx, conversationId, "conversationId", "groups:update");
  const targetId = parseId("userId", userId);
  const leaving = actingUserId(ctx) === targetId;
  if (!leaving) await assertCanManage(ctx, access, "groups:update", "conversationId");
  else if (access.conversation.kind !== "GROUP")
    throw badInput("conversationId", "Direct conversations cannot be left");
  const key = { conversationId: access.conversation.id, userId: targetId };
  // Tenant-level group managers (and the API key) may leave a group ownerless; members may not.
  const managesGroups = await hasPermission(ctx, "groups:update");
  const events = await ctx.prisma.$transaction(async (tx) => {
    const target = await tx.member.findUnique({ where: { conversationId_userId: key } });
    if (!target) throw notFound("Member");
    if (!leaving && target.role === "OWNER" && access.membership?.role === "ADMIN" && !managesGroups) {
      throw forbidden("Admins cannot remove an owner");
    }
    if (target.role === "OWNER" && !managesGroups) await assertGroupKeepsOwner(tx, access.conversation.id, targetId);
    await tx.member.delete({ where: { conversationId_userId: key } });
    await audit(ctx, "member.removed", { type: "Conversation", id: access.conversation.id }, { userId: targetId }, tx);
    return appendEvents(tx, ctx.deps.webhooks, access.conversation.tenantId, access.conversation.id, [
      { type: "MEMBER_REMOVED", actorId: actingUserId(ctx), data: { userId: targetId } },
    ]);
  });
  await publishEvents(ctx, events);
  ctx.loaders.membership.clear(access.conversation.id);
  await publishMembership(ctx, [targetId], { type: "left", conversationId: access.conversation.id });
  return access.conversation;
}

/** A group with other members keeps at least one owner; the last member may still leave. */
async function assertGroupKeepsOwner(tx: TransactionClient, conversationId: string, userId: string): Promise<void> {
  // Lock the conversation row so two owners cannot step down at the same moment.
  await tx.$queryRaw`SELECT "id" FROM "Conversation" WHERE "id" = ${conversationId}::uuid FOR UPDATE`;
  const others = await tx.member.findMany({
    where: { conversationId, userId: { not: userId } },
    select: { role: true },
  });
  if (others.length > 0 && !others.some((m) => m.role === "OWNER")) {
    throw conflict("The group's last owner must make someone else owner first");
  }
}

/**
 * Changes a member's role. Owners set any role; admins promote and demote between
 * member and admin; holders of groups:update act as owners.
 */
export async function setMemberRole(
  ctx: Context,
  conversationId: string,
  userId: string,
  role: "OWNER" | "ADMIN" | "MEMBER",
) {
  const access = await requireConversation(ctx, conversationId, "conversationId", "groups:update");
  await assertCanManage(ctx, access, "groups:update", "conversationId");
  const targetId = parseId("userId", userId);
  const managesGroups = await hasPermission(ctx, "groups:update");
  const actsAsOwner = access.membership?.role === "OWNER" || managesGroups;
  const key = { conversationId: access.conversation.id, userId: targetId };
  const events = await ctx.prisma.$transaction(async (tx) => {
    const target = await tx.member.findUnique({ where: { conversationId_userId: key } });
    if (!target) throw notFound("Member");
    if (!actsAsOwner && (target.role === "OWNER" || role === "OWNER")) {
      throw forbidden("Only owners may make or unmake owners");
    }
    if (target.role === role) return [];
    if (target.role === "OWNER" && !managesGroups) await assertGroupKeepsOwner(tx, access.conversation.id, targetId);
    await tx.member.update({ where: { conversationId_userId: key }, data: { role } });
    await audit(
      ctx,
      "member.roleChanged",
      { type: "Conversation", id: access.conversation.id },
      { userId: targetId, from: target.role, to: role },
      tx,
    );
    return appendEvents(tx, ctx.deps.webhooks, access.conversation.tenantId, access.conversation.id, [
      { type: "MEMBER_ROLE_CHANGED", actorId: actingUserId(ctx), data: { userId: targetId, role } },
    ]);
  });
  await publishEvents(ctx, events);
  return access.conversation;
}

export const directKeyOf = (a: string, b: string) => [a, b].sort().join(":");

/** Idempotent: both users get the same conversation, whoever opens it and however often. */
export async function openDirect(ctx: Context, fromUserId: string, toUserId: string, field = "userId") {
  const tenantId = tenantOf(ctx);
  const otherId = parseId(field, toUserId);
  if (otherId === fromUserId) throw badInput(field, "A direct conversation needs two different users");
  await requireUsersInTenant(ctx, [otherId]);
  await assertNotBlockedBy(ctx, otherId, fromUserId);
  const directKey = directKeyOf(fromUserId, otherId);
  const existing = await ctx.prisma.conversation.findUnique({
    where: { tenantId_directKey: { tenantId, directKey } },
  });
  if (existing) return existing;
  try {
    const { conversation: created, events } = await createWithMembers(ctx, { tenantId, kind: "DIRECT", directKey }, [
      { userId: fromUserId, role: "MEMBER" },
      { userId: otherId, role: "MEMBER" },
    ]);
    await publishEvents(ctx, events);
    await publishMembership(
      ctx,
      [fromUserId, otherId],
      { type: "joined", conversationId: created.id, seq: 0 },
      { conversationLifecycle: true },
    );
    return created;
  } catch (error) {
    // Both users opened it at the same moment: the other request won, return its row.
    if (isUniqueViolation(error)) {
      return ctx.prisma.conversation.findUniqueOrThrow({ where: { tenantId_directKey: { tenantId, directKey } } });
    }
    throw error;
  }
}

/** Opening a direct conversation also shows it again in the viewer's list if they had hidden it. */
export async function openDirectConversation(ctx: Context, userId: string) {
  const viewerId = requireUserPrincipal(ctx, "openDirectConversation");
  const conversation = await openDirect(ctx, viewerId, userId);
  await ctx.prisma.member.updateMany({
    where: { conversationId: conversation.id, userId: viewerId, hiddenAtSeq: { not: null } },
    data: { hiddenAtSeq: null },
  });
  return conversation;
}

/**
 * Hides a direct conversation from the viewer's `conversations` list until it has new
 * activity: a new message from either member (its seq passes the one recorded here) or
 * the viewer's own openDirectConversation. The other member's list, the history and
 * `conversation(id)` are untouched. Sends need no change: the list compares seqs when read.
 */
export async function hideConversation(ctx: Context, id: string): Promise<boolean> {
  const viewerId = requireUserPrincipal(ctx, "hideConversation");
  const { conversation } = await requireConversation(ctx, id);
  if (conversation.kind !== "DIRECT") {
    throw badInput("id", "Only direct conversations can be hidden; leave a group with removeMember");
  }
  // The seq read above: a message sent meanwhile has a higher one and keeps the conversation listed.
  await ctx.prisma.member.update({
    where: { conversationId_userId: { conversationId: conversation.id, userId: viewerId } },
    data: { hiddenAtSeq: conversation.lastSeq },
  });
  return true;
}

/**
 * The viewer's conversations (the API key: the tenant's), newest activity first. A direct
 * conversation the viewer hid is left out while its lastSeq has not passed the hidden seq.
 */
export async function listConversations(
  ctx: Context,
  args: { first?: number | null; after?: string | null; kind?: "DIRECT" | "GROUP" | null },
) {
  const userId = actingUserId(ctx);
  const page = await conversationPage(ctx, args, (param) => [
    ...(userId
      ? [
          `EXISTS (SELECT 1 FROM "Member" m
             WHERE m."conversationId" = c."id" AND m."userId" = ${param(userId)}::uuid
               AND (m."hiddenAtSeq" IS NULL OR c."lastSeq" > m."hiddenAtSeq"))`,
        ]
      : []),
    ...(args.kind ? [`c."kind" = ${param(args.kind)}::"ConversationKind"`] : []),
  ]);
  for (const edge of page.edges) memberViews.add(edge.node);
  return page;
}

const groupSearch = z.string().trim().max(200, "At most 200 characters").nullish();

/**
 * Every group of the tenant, for holders of groups:read (checked by the schema), most recent
 * activity first; `search` matches names, case-insensitively, as literal text. Groups the
 * viewer is not in show their metadata and members, not their messages (readsMessagesOf).
 */
export async function listGroups(
  ctx: Context,
  args: { first?: number | null; after?: string | null; search?: string | null },
) {
  const search = validate(groupSearch, args.search, "search");
  return conversationPage(ctx, args, (param) => [
    `c."kind" = 'GROUP'`,
    ...(search ? [`c."name" ILIKE '%' || ${param(literalLike(search))} || '%'`] : []),
  ]);
}

/**
 * A page of the tenant's conversations, most recent activity first, with the conditions
 * `filters` writes (each a SQL condition on `c`, its values passed through `param`).
 */
async function conversationPage(
  ctx: Context,
  args: { first?: number | null; after?: string | null },
  filters: (param: (value: unknown) => string) => string[],
) {
  const first = pageSize("first", args.first, 20);
  const params: unknown[] = [tenantOf(ctx)];
  const param = (value: unknown) => `$${params.push(value)}`;
  const where = [`c."tenantId" = $1::uuid`, ...filters(param)];
  if (args.after) {
    const [date, afterId] = decodeCursor("after", args.after, "c1", ["time", "uuid"]);
    where.push(`(c."lastActivityAt", c."id") < (${param(date)}::timestamptz, ${param(afterId)}::uuid)`);
  }
  const rows = await ctx.deps.db.sql.query<Conversation>(
    `SELECT c.* FROM "Conversation" c
      WHERE ${where.join(" AND ")}
      ORDER BY c."lastActivityAt" DESC, c."id" DESC
      LIMIT ${param(first + 1)}`,
    params,
  );
  return connectionOf(rows.slice(0, first), (c) => encodeCursor("c1", [c.lastActivityAt.getTime(), c.id]), {
    hasNextPage: rows.length > first,
    hasPreviousPage: !!args.after,
  });
}
