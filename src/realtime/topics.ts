import type { CredentialChange } from "../auth/credential-cache.ts";
import type { ConversationEvent, Message } from "../generated/prisma/client.ts";

declare const carries: unique symbol;

/**
 * A pub/sub topic name that carries payloads of type T, exactly as a subscriber receives
 * them. Publishing checks the payload against T and listeners receive T, on either
 * backend. The type is invariant in T: a topic is written and read with the same type.
 */
export type Topic<T> = string & { readonly [carries]: (payload: T) => T };

/** The one place a topic name is given its payload type. */
const topic = <T>(name: string) => name as Topic<T>;

/**
 * A row as it crosses pub/sub: JSON, so its dates are ISO strings. Publishers send
 * `toWire(row)` so both backends deliver the same shape, and subscribers revive it.
 */
export type Wire<T> = {
  [K in keyof T]: T[K] extends Date ? string : T[K] extends Date | null ? string | null : T[K];
};

/** A row's wire form: its dates as ISO strings, what JSON.stringify makes of them. */
export function toWire<T extends object>(row: T): Wire<T> {
  const wire: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(row)) wire[key] = value instanceof Date ? value.toISOString() : value;
  return wire as Wire<T>;
}

export type WireMessage = Wire<Message>;
export type WireConversationEvent = Wire<ConversationEvent>;

/** Every topic is namespaced by tenant, so one Redis serves all tenants without crosstalk. */
export const topics = {
  messages: (tenantId: string, conversationId: string) =>
    topic<WireMessage>(`chat:${tenantId}:conversation:${conversationId}:messages`),
  typing: (tenantId: string, conversationId: string) =>
    topic<TypingPayload>(`chat:${tenantId}:conversation:${conversationId}:typing`),
  events: (tenantId: string, conversationId: string) =>
    topic<WireConversationEvent>(`chat:${tenantId}:conversation:${conversationId}:events`),
  reads: (tenantId: string, conversationId: string) =>
    topic<ReadPayload>(`chat:${tenantId}:conversation:${conversationId}:reads`),
  /** Conversations created or deleted in the tenant: the API key's all-conversations stream. */
  conversations: (tenantId: string) => topic<MembershipEvent>(`chat:${tenantId}:conversations`),
  /** Changes that concern one user: memberships, permissions, revoked credentials. */
  user: (tenantId: string, userId: string) => topic<UserEvent>(`chat:${tenantId}:user:${userId}`),
  /** Users of the tenant coming online (first open socket on any instance) or going offline (last one closed). */
  presence: (tenantId: string) => topic<PresenceChange>(`chat:${tenantId}:presence`),
  /** Changes to the tenant's API keys. */
  apiKeys: (tenantId: string) => topic<ApiKeyEvent>(`chat:${tenantId}:api-keys`),
  /**
   * Every instance's credential cache listens here, for all tenants (each change names its
   * tenant and carries ids only): one subscription per instance instead of one per user.
   */
  credentials: topic<CredentialChange>("chat:credentials"),
  /** A tenant's webhooks changed: every instance forgets which events that tenant's webhooks want. */
  webhooks: topic<{ tenantId: string }>("chat:webhooks"),
  /** Every instance's safety cache listens here: changed word filters and blocks, for all tenants. */
  safety: topic<SafetyChange>("chat:safety"),
};

export type MembershipEvent =
  /** seq and eventSeq: where the new member's message and event streams start. */
  | { type: "joined"; conversationId: string; seq: number; eventSeq?: number }
  /** deleted: the conversation itself is gone. */
  | { type: "left"; conversationId: string; deleted?: boolean };

/** Everything published on a user's topic. */
export type UserEvent =
  | MembershipEvent
  /** Roles changed: re-read permissions before the next event. */
  | { type: "permissionsChanged" }
  /** Tokens revoked, or the user deactivated or deleted: close their sockets (only those of these sessions, if given). */
  | { type: "revoked"; sessionIds?: string[] };

export type ApiKeyEvent = { type: "revoked"; keyIds: string[] };

/** A change to what the safety cache holds (services/safety-cache.ts): a tenant's word filter, or a block. */
export type SafetyChange =
  | { type: "wordFilterChanged"; tenantId: string }
  | { type: "blocked" | "unblocked"; tenantId: string; blockerId: string; blockedId: string };

export interface TypingPayload {
  conversationId: string;
  userId: string;
  isTyping: boolean;
}

export interface ReadPayload {
  conversationId: string;
  userId: string;
  lastReadSeq: number;
  lastReadMessageId: string;
  readAt: string;
}

/** A user came online or went offline (see realtime/presence.ts). */
export interface PresenceChange {
  userId: string;
  online: boolean;
  /** When they went offline (ISO); null when they came online. */
  lastSeenAt: string | null;
}
