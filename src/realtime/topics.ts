/** Every topic is namespaced by tenant, so one Redis serves all tenants without crosstalk. */
export const topics = {
  messages: (tenantId: string, conversationId: string) => `chat:${tenantId}:conversation:${conversationId}:messages`,
  typing: (tenantId: string, conversationId: string) => `chat:${tenantId}:conversation:${conversationId}:typing`,
  reads: (tenantId: string, conversationId: string) => `chat:${tenantId}:conversation:${conversationId}:reads`,
  /** Conversations created or deleted in the tenant: the API key's all-conversations stream. */
  conversations: (tenantId: string) => `chat:${tenantId}:conversations`,
  /** Membership changes of one user: drives the all-conversations stream and re-authorization. */
  user: (tenantId: string, userId: string) => `chat:${tenantId}:user:${userId}`,
};

export type MembershipEvent =
  | { type: "joined"; conversationId: string; seq: number }
  | { type: "left"; conversationId: string };

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
