import type { Context } from "../context.ts";
import { badInput } from "../errors.ts";
import { type SequencedSource, sequencedFeed } from "../realtime/feeds.ts";
import { requireConversation } from "./conversations.ts";

/** The id of a conversation the viewer may follow (NOT_FOUND otherwise). */
export async function requireSubscribable(ctx: Context, conversationId: string): Promise<string> {
  return (await requireConversation(ctx, conversationId, "conversationId")).conversation.id;
}

/**
 * Opens a gap-free feed for a subscription's `conversationId` and `after` arguments:
 * `after` needs a conversation, the conversation must be visible to the viewer, and the
 * cursor must belong to it.
 */
export async function subscribeSequenced<T, W>(
  ctx: Context,
  args: { conversationId?: string | null; after?: string | null },
  source: SequencedSource<T, W>,
  seqFromCursor: (field: string, cursor: string, conversationId: string) => number,
): Promise<AsyncGenerator<T>> {
  if (args.after && !args.conversationId) throw badInput("after", "after needs conversationId");
  const conversationId = args.conversationId ? await requireSubscribable(ctx, args.conversationId) : null;
  const afterSeq = conversationId && args.after ? seqFromCursor("after", args.after, conversationId) : null;
  return sequencedFeed(ctx, { conversationId, afterSeq }, source);
}
