import { graphql } from "../generated/gql.ts";

export const MessageAdded = graphql(`
  subscription MessageAdded($conversationId: ID, $after: String) {
    messageAdded(conversationId: $conversationId, after: $after) {
      id
      seq
      body
      cursor
      conversation {
        id
      }
      sender {
        id
      }
    }
  }
`);

/** Only id, seq and body, for tests that compare the event whole. */
export const MessageAddedSeq = graphql(`
  subscription MessageAddedSeq($conversationId: ID) {
    messageAdded(conversationId: $conversationId) {
      id
      seq
      body
    }
  }
`);

/** With the sender's email, which needs users:read: what re-authorization must cut off. */
export const MessageAddedWithEmail = graphql(`
  subscription MessageAddedWithEmail($conversationId: ID) {
    messageAdded(conversationId: $conversationId) {
      body
      sender {
        id
        email
      }
    }
  }
`);

export const Typing = graphql(`
  subscription Typing($conversationId: ID!) {
    typing(conversationId: $conversationId) {
      isTyping
      user {
        id
      }
    }
  }
`);

/** With the conversation, which tests comparing events whole leave out. */
export const TypingInConversation = graphql(`
  subscription TypingInConversation($conversationId: ID!) {
    typing(conversationId: $conversationId) {
      isTyping
      user {
        id
      }
      conversation {
        id
      }
    }
  }
`);

export const ReadReceipt = graphql(`
  subscription ReadReceipt($conversationId: ID!) {
    readReceipt(conversationId: $conversationId) {
      lastReadSeq
      user {
        id
      }
      lastReadMessage {
        id
      }
    }
  }
`);

/** Members by id only, and messages by id, body and deletion, for tests that compare events whole. */
export const ConversationEventsBrief = graphql(`
  subscription ConversationEventsBrief($conversationId: ID, $after: String) {
    conversationEvents(conversationId: $conversationId, after: $after) {
      __typename
      ... on MessageAddedEvent {
        seq
        message {
          id
          body
          deletedAt
        }
      }
      ... on MessageEditedEvent {
        seq
        message {
          id
          body
          deletedAt
        }
      }
      ... on MessageDeletedEvent {
        seq
        message {
          id
          body
          deletedAt
        }
      }
      ... on ReactionChangedEvent {
        seq
        emoji
        message {
          id
          body
          deletedAt
        }
      }
      ... on MemberAddedEvent {
        seq
        user {
          id
        }
      }
    }
  }
`);

graphql(`
  fragment EventMessage on Message {
    id
    seq
    type
    customType
    data
    body
    editedAt
    deletedAt
    pinned
    sender {
      id
    }
    replyTo {
      id
    }
    deletedBy {
      id
    }
  }
`);

/** messageAdded with what a CUSTOM message carries. */
export const MessageAddedStructured = graphql(`
  subscription MessageAddedStructured($conversationId: ID, $after: String) {
    messageAdded(conversationId: $conversationId, after: $after) {
      id
      seq
      type
      customType
      data
      body
      sender {
        id
      }
    }
  }
`);

export const ConversationEvents = graphql(`
  subscription ConversationEvents($conversationId: ID, $after: String) {
    conversationEvents(conversationId: $conversationId, after: $after) {
      __typename
      ... on MessageAddedEvent {
        cursor
        seq
        conversationId
        actor {
          id
        }
        message {
          ...EventMessage
        }
      }
      ... on MessageEditedEvent {
        cursor
        seq
        conversationId
        actor {
          id
        }
        message {
          ...EventMessage
        }
      }
      ... on MessageDeletedEvent {
        cursor
        seq
        conversationId
        actor {
          id
        }
        message {
          ...EventMessage
        }
      }
      ... on MessagePinnedEvent {
        cursor
        seq
        conversationId
        actor {
          id
        }
        message {
          ...EventMessage
        }
      }
      ... on MessageUnpinnedEvent {
        cursor
        seq
        conversationId
        actor {
          id
        }
        message {
          ...EventMessage
        }
      }
      ... on ReactionChangedEvent {
        cursor
        seq
        conversationId
        actor {
          id
        }
        emoji
        added
        user {
          id
        }
        message {
          ...EventMessage
        }
        reactions {
          emoji
          count
          users {
            id
          }
        }
      }
      ... on MemberAddedEvent {
        cursor
        seq
        conversationId
        actor {
          id
        }
        user {
          id
          name
        }
        role
      }
      ... on MemberRemovedEvent {
        cursor
        seq
        conversationId
        actor {
          id
        }
        user {
          id
          name
        }
      }
      ... on MemberRoleChangedEvent {
        cursor
        seq
        conversationId
        actor {
          id
        }
        user {
          id
          name
        }
        role
      }
      ... on ConversationUpdatedEvent {
        cursor
        seq
        conversationId
        actor {
          id
        }
        name
        description
      }
      ... on ConversationDeletedEvent {
        conversationId
      }
    }
  }
`);

/** Viewer-dependent fields (mentionsViewer, email): viewers who see different things each get their own view. */
export const MessageAddedViewerView = graphql(`
  subscription MessageAddedViewerView($conversationId: ID!) {
    messageAdded(conversationId: $conversationId) {
      id
      body
      mentionsViewer
      sender {
        id
        email
      }
    }
  }
`);

/** Compared whole with toEqual: no viewer-dependent field, so every subscriber gets the same result. */
export const MessageAddedSenderName = graphql(`
  subscription MessageAddedSenderName($conversationId: ID!) {
    messageAdded(conversationId: $conversationId) {
      id
      body
      sender {
        id
        name
      }
    }
  }
`);

/** A live message with its sender and reactions: what its statements per event are measured on. */
export const MessageAddedWithReactions = graphql(`
  subscription MessageAddedWithReactions($conversationId: ID!) {
    messageAdded(conversationId: $conversationId) {
      id
      body
      sender {
        name
      }
      reactions {
        emoji
        count
      }
    }
  }
`);
