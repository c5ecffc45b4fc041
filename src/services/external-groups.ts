import type { Context } from "../context.ts";
import { audit } from "./audit.ts";
import { appendEvents, publishEvents } from "./events.ts";
import { publishMembership } from "./membership-events.ts";

/**
 * Makes the viewer's membership in the tenant's groups that have an external id follow a
 * token's groups claim: joined where listed, removed where no longer listed. Groups without
 * an external id are left alone. Each change is recorded and published like addMembers and
 * removeMember (MEMBER_ADDED / MEMBER_REMOVED events, the membership topic), so live
 * streams follow. The identity provider decides: an owner may be removed, as by an admin.
 */
export async function syncExternalGroups(ctx: Context, userId: string, groups: readonly string[]): Promise<void> {
  const principal = ctx.principal;
  if (!principal) return;
  const tenantId = principal.tenantId;
  const [toJoin, toLeave] = await Promise.all([
    groups.length
      ? ctx.prisma.conversation.findMany({
          where: { kind: "GROUP", externalId: { in: [...groups] }, members: { none: { userId } } },
          select: { id: true },
        })
      : [],
    ctx.prisma.conversation.findMany({
      where: {
        kind: "GROUP",
        externalId: groups.length ? { not: null, notIn: [...groups] } : { not: null },
        members: { some: { userId } },
      },
      select: { id: true },
    }),
  ]);
  for (const { id: conversationId } of toJoin) {
    const joined = await ctx.prisma.$transaction(async (tx) => {
      const inserted = await tx.member.createManyAndReturn({
        data: [{ tenantId, conversationId, userId }],
        skipDuplicates: true,
        select: { userId: true },
      });
      // A concurrent token of the same user joined first: that one records it.
      if (inserted.length === 0) return null;
      const conversation = await tx.conversation.findUniqueOrThrow({
        where: { id: conversationId },
        select: { lastSeq: true, lastEventSeq: true },
      });
      await audit(
        ctx,
        "member.added",
        { type: "Conversation", id: conversationId },
        { userIds: [userId], source: "groups claim" },
        tx,
      );
      const events = await appendEvents(tx, ctx.deps.webhooks, tenantId, conversationId, [
        { type: "MEMBER_ADDED", actorId: null, data: { userId, role: "MEMBER" } },
      ]);
      return { seq: conversation.lastSeq, eventSeq: conversation.lastEventSeq, events };
    });
    if (!joined) continue;
    await publishEvents(ctx, joined.events);
    await publishMembership(ctx, [userId], {
      type: "joined",
      conversationId,
      seq: joined.seq,
      eventSeq: joined.eventSeq,
    });
  }
  for (const { id: conversationId } of toLeave) {
    const events = await ctx.prisma.$transaction(async (tx) => {
      const removed = await tx.member.deleteMany({ where: { conversationId, userId } });
      if (removed.count === 0) return null;
      await audit(
        ctx,
        "member.removed",
        { type: "Conversation", id: conversationId },
        { userId, source: "groups claim" },
        tx,
      );
      return appendEvents(tx, ctx.deps.webhooks, tenantId, conversationId, [
        { type: "MEMBER_REMOVED", actorId: null, data: { userId } },
      ]);
    });
    if (!events) continue;
    await publishEvents(ctx, events);
    await publishMembership(ctx, [userId], { type: "left", conversationId });
  }
}
