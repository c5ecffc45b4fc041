import type { CredentialChange } from "../auth/credential-cache.ts";
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
  await publishToUsersOf(ctx, tenantId, userIds, event);
}

/** publishToUsers for a tenant given explicitly (the caller may be anonymous, e.g. a password reset). */
export async function publishToUsersOf(
  ctx: Context,
  tenantId: string,
  userIds: string[],
  event: UserEvent,
): Promise<void> {
  if (userIds.length === 0) return;
  // Caches first: once a socket hears of the change, no request may still pass on old state.
  if (event.type === "revoked") {
    await announceCredentialChange(ctx, { type: "revoked", tenantId, userIds, sessionIds: event.sessionIds });
  } else if (event.type === "permissionsChanged") {
    await announceCredentialChange(ctx, { type: "permissionsChanged", tenantId, userIds });
  }
  await Promise.all(userIds.map((userId) => announce(ctx, topics.user(tenantId, userId), event)));
}

/**
 * Makes every instance's credential cache forget what a committed change made stale: this
 * one at once, the others through pub/sub. If the news cannot be published, this instance
 * re-checks its sockets now; other instances notice within CREDENTIAL_RESYNC_SECONDS.
 */
export async function announceCredentialChange(ctx: Context, change: CredentialChange): Promise<void> {
  ctx.deps.credentialCache.apply(change);
  await ctx.deps.pubsub.publish(topics.credentials, change).catch((error: unknown) => {
    ctx.deps.log.warn({ err: error, requestId: ctx.requestId }, "credential change publish failed");
    ctx.deps.credentialResync.request();
  });
}

/** News only: a failed publish is logged, never fatal (storage is the source of truth). */
async function announce<T extends UserEvent>(ctx: Context, topic: Topic<T>, event: NoInfer<T>): Promise<void> {
  await ctx.deps.pubsub.publish(topic, event).catch((error: unknown) => {
    ctx.deps.log.warn({ err: error, requestId: ctx.requestId }, "user event publish failed");
    // Sockets here must not keep revoked credentials until the next timed resync.
    if (event.type === "revoked") ctx.deps.credentialResync.request();
  });
}
