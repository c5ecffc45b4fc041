/** Every topic is namespaced by tenant, so one Redis serves all tenants without crosstalk. */
export const topics = {
  messages: (tenantId: string, conversationId: string) => `chat:${tenantId}:conversation:${conversationId}:messages`,
  typing: (tenantId: string, conversationId: string) => `chat:${tenantId}:conversation:${conversationId}:typing`,
  events: (tenantId: string, conversationId: string) => `chat:${tenantId}:conversation:${conversationId}:events`,
  reads: (tenantId: string, conversationId: string) => `chat:${tenantId}:conversation:${conversationId}:reads`,
  /** Conversations created or deleted in the tenant: the API key's all-conversations stream. */
  conversations: (tenantId: string) => `chat:${tenantId}:conversations`,
  /** Changes that concern one user: memberships, permissions, revoked credentials. */
  user: (tenantId: string, userId: string) => `chat:${tenantId}:user:${userId}`,
  /** Changes to the tenant's API keys. */
  apiKeys: (tenantId: string) => `chat:${tenantId}:api-keys`,
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
