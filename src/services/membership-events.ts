import type { Context } from "../context.ts";
import { type MembershipEvent, type Topic, topics, type UserEvent } from "../realtime/topics.ts";

/**
 * Tells each user's live streams that a membership changed (follow a new conversation,
 * or stop). `conversationLifecycle` marks a conversation created or deleted, which the
 * tenant-wide streams of the API key follow too.
 */
export async function publishMembership(
  ctx: Context,
  userIds: string[],
  event: MembershipEvent,
  options: { conversationLifecycle?: boolean } = {},
): Promise<void> {
  const tenantId = ctx.principal?.tenantId;
  if (!tenantId) return;
  await Promise.all([
    ...userIds.map((userId) => announce(ctx, topics.user(tenantId, userId), event)),
    ...(options.conversationLifecycle ? [announce(ctx, topics.conversations(tenantId), event)] : []),
  ]);
}

/** Tells users' sockets and streams that their permissions or credentials changed. */
export async function publishToUsers(ctx: Context, userIds: string[], event: UserEvent): Promise<void> {
  const tenantId = ctx.principal?.tenantId;
  if (!tenantId) return;
  await Promise.all(userIds.map((userId) => announce(ctx, topics.user(tenantId, userId), event)));
}

/** News only: a failed publish is logged, never fatal (storage is the source of truth). */
async function announce<T extends UserEvent>(ctx: Context, topic: Topic<T>, event: NoInfer<T>): Promise<void> {
  await ctx.deps.pubsub.publish(topic, event).catch((error: unknown) => {
    ctx.deps.log.warn({ err: error, requestId: ctx.requestId }, "user event publish failed");
    // Sockets here must not keep revoked credentials until the next timed resync.
    if (event.type === "revoked") ctx.deps.credentialResync.request();
  });
}
