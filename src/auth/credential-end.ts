import type { PubSub, Unsubscribe } from "../realtime/pubsub.ts";
import { topics, type UserEvent } from "../realtime/topics.ts";
import type { Principal } from "./principal.ts";

/** Whether a user event ends these credentials: a revocation of all the user's, or of its session. */
export function revokesPrincipal(principal: Principal | null, event: UserEvent): boolean {
  if (event.type !== "revoked") return false;
  if (!event.sessionIds) return true;
  return principal?.kind === "user" && !!principal.sessionId && event.sessionIds.includes(principal.sessionId);
}

/**
 * The one rule for when credentials end: a user token at its expiry or when revoked (all
 * the user's tokens, or its session's), an API key when rotated away. Calls `end` once it
 * happens. Streams that already follow the user's events pass `userRevocations: false`
 * and check revokesPrincipal on those events themselves.
 */
export async function watchCredentialEnd(
  pubsub: PubSub,
  principal: Principal | null,
  end: (reason: string) => void,
  options: { userRevocations?: boolean } = {},
): Promise<Unsubscribe> {
  if (!principal) return () => {};
  if (principal.kind === "service") {
    return pubsub.subscribe(topics.apiKeys(principal.tenantId), (event) => {
      if (event.keyIds.includes(principal.apiKeyId)) end("API key revoked");
    });
  }
  const delay = Math.min(Math.max(0, principal.expiresAt.getTime() - Date.now()), 2_147_000_000);
  const timer = setTimeout(() => end("Token expired"), delay);
  if (!(options.userRevocations ?? true)) return () => clearTimeout(timer);
  const unsubscribe = await pubsub.subscribe(topics.user(principal.tenantId, principal.userId), (event) => {
    if (revokesPrincipal(principal, event)) end("Credentials revoked");
  });
  return () => {
    clearTimeout(timer);
    unsubscribe();
  };
}
