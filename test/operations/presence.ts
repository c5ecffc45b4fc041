import { graphql } from "../generated/gql.ts";

export const UserPresence = graphql(`
  query UserPresence($id: ID!) {
    user(id: $id) {
      id
      online
      lastSeenAt
    }
  }
`);

export const ConversationPresence = graphql(`
  query ConversationPresence($id: ID!) {
    conversation(id: $id) {
      id
      onlineCount
      members {
        user {
          id
          online
          lastSeenAt
        }
      }
    }
  }
`);

export const PresenceChanged = graphql(`
  subscription PresenceChanged($conversationId: ID) {
    presenceChanged(conversationId: $conversationId) {
      user {
        id
        online
      }
      online
      lastSeenAt
      conversationId
    }
  }
`);

export const ConversationConnections = graphql(`
  query ConversationConnections($id: ID!) {
    conversation(id: $id) {
      id
      connectionCount
    }
  }
`);
