import type { Context } from "../context.ts";
import { badInput, forbidden, notFound } from "../errors.ts";
import { topics } from "../realtime/topics.ts";
import { requireUserPrincipal, tenantOf } from "./access.ts";
import type { SafetyChange } from "./safety-cache.ts";
import { parseId } from "./validation.ts";

/** Makes every instance's safety cache see a committed change: this one at once, the others through pub/sub. */
export async function announceSafetyChange(ctx: Context, change: SafetyChange): Promise<void> {
  ctx.deps.safety.apply(change);
  await ctx.deps.pubsub.publish(topics.safety, change).catch((error: unknown) => {
    // Other instances read it again within CREDENTIAL_RESYNC_SECONDS at the latest.
    ctx.deps.log.warn({ err: error, requestId: ctx.requestId }, "safety change publish failed");
  });
}

async function requireOtherUser(ctx: Context, userId: string, viewerId: string): Promise<string> {
  const id = parseId("userId", userId);
  if (id === viewerId) throw badInput("userId", "You cannot block yourself");
  const user = await ctx.prisma.user.findFirst({
    where: { id, tenantId: tenantOf(ctx), deletedAt: null },
    select: { id: true },
  });
  if (!user) throw notFound("User");
  return id;
}

/** The viewer blocks a user of their tenant; blocking twice changes nothing. */
export async function blockUser(ctx: Context, userId: string): Promise<boolean> {
  const viewerId = requireUserPrincipal(ctx, "blockUser");
  const blockedId = await requireOtherUser(ctx, userId, viewerId);
  const tenantId = tenantOf(ctx);
  await ctx.prisma.block.createMany({ data: [{ tenantId, blockerId: viewerId, blockedId }], skipDuplicates: true });
  await announceSafetyChange(ctx, { type: "blocked", tenantId, blockerId: viewerId, blockedId });
  return true;
}

/** The viewer stops blocking a user of their tenant; unblocking someone not blocked changes nothing. */
export async function unblockUser(ctx: Context, userId: string): Promise<boolean> {
  const viewerId = requireUserPrincipal(ctx, "unblockUser");
  const blockedId = parseId("userId", userId);
  const tenantId = tenantOf(ctx);
  // Deleted users too: a block of a user deleted since can still be lifted.
  const user = await ctx.prisma.user.findFirst({ where: { id: blockedId, tenantId }, select: { id: true } });
  if (!user) throw notFound("User");
  await ctx.prisma.block.deleteMany({ where: { tenantId, blockerId: viewerId, blockedId } });
  await announceSafetyChange(ctx, { type: "unblocked", tenantId, blockerId: viewerId, blockedId });
  return true;
}

/** The users the viewer blocks, most recently blocked first (deleted users left out). */
export async function blockedUsers(ctx: Context) {
  const viewerId = requireUserPrincipal(ctx, "blockedUsers");
  const rows = await ctx.prisma.block.findMany({
    where: { tenantId: tenantOf(ctx), blockerId: viewerId, blocked: { deletedAt: null } },
    orderBy: [{ createdAt: "desc" }, { blockedId: "asc" }],
    include: { blocked: true },
  });
  return rows.map((row) => row.blocked);
}

/** Whether `blockerId` blocks `userId` (from the cache: no query once the blocker's blocks are known). */
export async function blocks(ctx: Context, blockerId: string, userId: string): Promise<boolean> {
  return (await ctx.deps.safety.blockedBy(tenantOf(ctx), blockerId)).has(userId);
}

/** A blocked user may not open a direct conversation with the one who blocked them; the refusal gives no reason. */
export async function assertNotBlockedBy(ctx: Context, otherId: string, userId: string): Promise<void> {
  if (await blocks(ctx, otherId, userId)) throw forbidden("You cannot message this user");
}

/**
 * The users the viewer blocks, for a live stream that decides synchronously per event:
 * current from the cache whenever it knows them, else the last set seen while it reads
 * them again.
 */
export async function viewerBlockList(ctx: Context): Promise<() => ReadonlySet<string>> {
  const principal = ctx.principal;
  if (principal?.kind !== "user") return () => new Set();
  const { tenantId, userId } = principal;
  let last = await ctx.deps.safety.blockedBy(tenantId, userId);
  return () => {
    const known = ctx.deps.safety.peekBlockedBy(tenantId, userId);
    if (known) {
      last = known;
    } else {
      ctx.deps.safety.blockedBy(tenantId, userId).then(
        (set) => {
          last = set;
        },
        () => {},
      );
    }
    return last;
  };
}
