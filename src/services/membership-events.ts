import type { Context } from "../context.ts";
import { type MembershipEvent, topics } from "../realtime/topics.ts";

/** Tells each user's live streams that a membership changed (follow a new conversation, or stop). */
export async function publishMembership(ctx: Context, userIds: string[], event: MembershipEvent): Promise<void> {
  const tenantId = ctx.principal?.tenantId;
  if (!tenantId) return;
  await Promise.all(
    userIds.map((userId) =>
      ctx.deps.pubsub.publish(topics.user(tenantId, userId), event).catch((error: unknown) => {
        ctx.deps.log.warn({ err: error, requestId: ctx.requestId }, "membership publish failed");
      }),
    ),
  );
}
