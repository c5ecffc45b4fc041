import { z } from "zod";
import { hasPermission } from "../auth/permissions.ts";
import type { Context } from "../context.ts";
import { isUniqueViolation } from "../db/errors.ts";
import { badInput, conflict, forbidden, notFound } from "../errors.ts";
import type { Report } from "../generated/prisma/client.ts";
import { actingUserId, requireUserPrincipal, tenantOf } from "./access.ts";
import { audit } from "./audit.ts";
import { requireConversation } from "./conversations.ts";
import { connectionOf, decodeCursor, encodeCursor } from "./cursors.ts";
import { deleteLoadedMessage } from "./messages.ts";
import { updateUser } from "./users.ts";
import { pageSize, parseId, validate, zText } from "./validation.ts";

export type { Report };

export const REPORT_STATUSES = ["OPEN", "RESOLVED"] as const;
export type ReportStatus = (typeof REPORT_STATUSES)[number];
export const REPORT_ACTIONS = ["DISMISS", "DELETE_MESSAGE", "DEACTIVATE_USER"] as const;
export type ReportAction = (typeof REPORT_ACTIONS)[number];

const REASON_MAX = 1000;
export const reportInput = z.object({ reason: zText(REASON_MAX) });

/**
 * A member reports a message of their conversation that someone else sent (reporting
 * one's own message makes no sense, and a deleted one is gone already). Each member
 * reports a message once: reporting it again returns the first report.
 */
export async function reportMessage(ctx: Context, messageId: string, reason: string): Promise<Report> {
  const reporterId = requireUserPrincipal(ctx, "reportMessage");
  const input = validate(reportInput, { reason }, "");
  const tenantId = tenantOf(ctx);
  const message = await ctx.prisma.message.findFirst({ where: { id: parseId("messageId", messageId), tenantId } });
  if (!message) throw notFound("Message");
  // Reporting needs what reading does: membership of the conversation.
  await requireConversation(ctx, message.conversationId, "messageId");
  if (message.senderId === reporterId) throw badInput("messageId", "You cannot report your own message");
  if (message.deletedAt) throw badInput("messageId", "A deleted message cannot be reported");
  const key = { messageId_reporterId: { messageId: message.id, reporterId } };
  const earlier = await ctx.prisma.report.findUnique({ where: key });
  if (earlier) return earlier;
  try {
    return await ctx.prisma.$transaction(async (tx) => {
      const report = await tx.report.create({
        data: { tenantId, messageId: message.id, reporterId, reason: input.reason },
      });
      await audit(
        ctx,
        "message.reported",
        { type: "Message", id: message.id },
        { reportId: report.id, senderId: message.senderId },
        tx,
      );
      return report;
    });
  } catch (error) {
    if (isUniqueViolation(error)) return ctx.prisma.report.findUniqueOrThrow({ where: key });
    throw error;
  }
}

/** The report queue, newest first, optionally of one status. */
export async function listReports(
  ctx: Context,
  args: { first?: number | null; after?: string | null; status?: ReportStatus | null },
) {
  const first = pageSize("first", args.first, 20);
  let keyset = {};
  if (args.after) {
    const [date, id] = decodeCursor("after", args.after, "r1", ["time", "uuid"]);
    keyset = { OR: [{ createdAt: { lt: date } }, { createdAt: date, id: { lt: id } }] };
  }
  const rows = await ctx.prisma.report.findMany({
    where: { tenantId: tenantOf(ctx), ...(args.status ? { status: args.status } : {}), ...keyset },
    orderBy: [{ createdAt: "desc" }, { id: "desc" }],
    take: first + 1,
  });
  return connectionOf(rows.slice(0, first), (row) => encodeCursor("r1", [row.createdAt.getTime(), row.id]), {
    hasNextPage: rows.length > first,
    hasPreviousPage: !!args.after,
  });
}

/**
 * A moderator (chats:moderate) decides an open report: DISMISS it, DELETE_MESSAGE (the
 * message becomes a tombstone, as deleteMessage leaves it), or DEACTIVATE_USER (its sender,
 * as updateUser(active: false) does it: needs users:update, and never leaves the tenant
 * without an owner nor touches a user holding permissions the moderator lacks). The action
 * runs first; the report is marked resolved once it succeeded. A resolved report is final.
 */
export async function resolveReport(ctx: Context, id: string, action: ReportAction): Promise<Report> {
  const report = await ctx.prisma.report.findFirst({ where: { id: parseId("id", id), tenantId: tenantOf(ctx) } });
  if (!report) throw notFound("Report");
  if (report.status !== "OPEN") throw conflict("The report is already resolved", "id");
  if (action === "DELETE_MESSAGE") {
    const message = await ctx.prisma.message.findFirstOrThrow({ where: { id: report.messageId } });
    await deleteLoadedMessage(ctx, message);
  } else if (action === "DEACTIVATE_USER") {
    if (!(await hasPermission(ctx, "users:update"))) throw forbidden("Deactivating a user needs users:update");
    const message = await ctx.prisma.message.findFirstOrThrow({ where: { id: report.messageId } });
    if (!message.senderId) throw badInput("action", "The reported message has no sender to deactivate");
    await updateUser(ctx, message.senderId, { active: false });
  }
  return ctx.prisma.$transaction(async (tx) => {
    const { count } = await tx.report.updateMany({
      where: { id: report.id, status: "OPEN" },
      data: { status: "RESOLVED", action, resolvedById: actingUserId(ctx), resolvedAt: new Date() },
    });
    if (count === 0) throw conflict("The report is already resolved", "id");
    await audit(
      ctx,
      "report.resolved",
      { type: "Report", id: report.id },
      { action, messageId: report.messageId, reporterId: report.reporterId },
      tx,
    );
    return tx.report.findUniqueOrThrow({ where: { id: report.id } });
  });
}
