import type { Context } from "../context.ts";
import { badInput } from "../errors.ts";
import { type FeedItem, type SequencedSource, sequencedFeed } from "../realtime/feeds.ts";
import { decodeStreamCursor, isStreamCursor } from "../realtime/positions.ts";
import { requireConversation } from "./conversations.ts";

/** The id of a conversation the viewer may follow (NOT_FOUND otherwise). */
export async function requireSubscribable(ctx: Context, conversationId: string): Promise<string> {
  return (await requireConversation(ctx, conversationId, "conversationId")).conversation.id;
}

/**
 * Opens a gap-free feed for a subscription's `conversationId` and `after` arguments. With a
 * conversation, it must be visible to the viewer and the cursor must belong to it. Without,
 * `after` is a cursor the same subscription handed out without a conversation id (a stream
 * cursor): the stream resumes from it in the conversations the viewer is a member of now.
 */
export async function subscribeSequenced<T, W>(
  ctx: Context,
  args: { conversationId?: string | null; after?: string | null },
  source: SequencedSource<T, W>,
  seqFromCursor: (field: string, cursor: string, conversationId: string) => number,
): Promise<AsyncGenerator<FeedItem<T>>> {
  if (args.after && !args.conversationId) {
    if (!isStreamCursor(args.after)) {
      throw badInput(
        "after",
        "after without conversationId takes a cursor this subscription handed out without conversationId; a cursor of one conversation needs its conversationId",
      );
    }
    const resume = decodeStreamCursor("after", args.after, source.store.kind, { checkAge: true });
    return sequencedFeed(ctx, { conversationId: null, afterSeq: null, resume }, source);
  }
  const conversationId = args.conversationId ? await requireSubscribable(ctx, args.conversationId) : null;
  const afterSeq = conversationId && args.after ? seqFromCursor("after", args.after, conversationId) : null;
  return sequencedFeed(ctx, { conversationId, afterSeq }, source);
}
