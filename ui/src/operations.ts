import { graphql } from "./generated/index.ts";

// The operations of the embeddable pages, typed from the committed schema by codegen.

export const UiMessageFields = graphql(`
  fragment UiMessage on Message {
    id
    cursor
    seq
    type
    body
    createdAt
    editedAt
    deletedAt
    sender {
      id
      name
    }
    reactions {
      emoji
      count
      reactedByViewer
    }
  }
`);

export const UiViewer = graphql(`
  query UiViewer {
    viewer {
      isService
      permissions
      tenant {
        id
        name
      }
      user {
        id
        name
        email
      }
    }
  }
`);

export const UiSignIn = graphql(`
  mutation UiSignIn($input: SignInInput!) {
    signIn(input: $input) {
      accessToken
      accessTokenExpiresAt
      refreshToken
    }
  }
`);

export const UiOpenDirect = graphql(`
  mutation UiOpenDirect($userId: ID!) {
    openDirectConversation(userId: $userId) {
      id
    }
  }
`);

export const UiConversation = graphql(`
  query UiConversation($id: ID!) {
    conversation(id: $id) {
      id
      kind
      name
      memberCount
      members(first: 500) {
        role
        lastReadSeq
        user {
          id
          name
          email
          online
        }
      }
    }
  }
`);

export const UiMessages = graphql(`
  query UiMessages($conversationId: ID!, $last: Int, $before: String) {
    messages(conversationId: $conversationId, last: $last, before: $before) {
      edges {
        node {
          ...UiMessage
        }
      }
      pageInfo {
        hasPreviousPage
        startCursor
      }
    }
  }
`);

export const UiSendMessage = graphql(`
  mutation UiSendMessage($input: SendMessageInput!) {
    sendMessage(input: $input) {
      ...UiMessage
    }
  }
`);

export const UiEditMessage = graphql(`
  mutation UiEditMessage($id: ID!, $body: String!) {
    editMessage(id: $id, body: $body) {
      ...UiMessage
    }
  }
`);

export const UiDeleteMessage = graphql(`
  mutation UiDeleteMessage($id: ID!) {
    deleteMessage(id: $id) {
      ...UiMessage
    }
  }
`);

export const UiAddReaction = graphql(`
  mutation UiAddReaction($messageId: ID!, $emoji: String!) {
    addReaction(messageId: $messageId, emoji: $emoji) {
      ...UiMessage
    }
  }
`);

export const UiRemoveReaction = graphql(`
  mutation UiRemoveReaction($messageId: ID!, $emoji: String!) {
    removeReaction(messageId: $messageId, emoji: $emoji) {
      ...UiMessage
    }
  }
`);

export const UiMarkRead = graphql(`
  mutation UiMarkRead($conversationId: ID!, $upToMessageId: ID!) {
    markRead(conversationId: $conversationId, upToMessageId: $upToMessageId) {
      lastReadSeq
    }
  }
`);

export const UiSetTyping = graphql(`
  mutation UiSetTyping($conversationId: ID!, $isTyping: Boolean!) {
    setTyping(conversationId: $conversationId, isTyping: $isTyping)
  }
`);

export const UiMessageAdded = graphql(`
  subscription UiMessageAdded($conversationId: ID, $after: String) {
    messageAdded(conversationId: $conversationId, after: $after) {
      ...UiMessage
    }
  }
`);

export const UiConversationEvents = graphql(`
  subscription UiConversationEvents($conversationId: ID, $after: String) {
    conversationEvents(conversationId: $conversationId, after: $after) {
      __typename
      ... on MessageEditedEvent {
        cursor
        message {
          ...UiMessage
        }
      }
      ... on MessageDeletedEvent {
        cursor
        message {
          ...UiMessage
        }
      }
      ... on ReactionChangedEvent {
        cursor
        message {
          ...UiMessage
        }
      }
      ... on MemberAddedEvent {
        cursor
        role
        user {
          id
          name
          email
          online
        }
      }
      ... on MemberRemovedEvent {
        cursor
        user {
          id
        }
      }
      ... on MemberRoleChangedEvent {
        cursor
        role
        user {
          id
        }
      }
      ... on ConversationUpdatedEvent {
        cursor
        name
      }
      ... on MessageAddedEvent {
        cursor
      }
      ... on MessagePinnedEvent {
        cursor
      }
      ... on MessageUnpinnedEvent {
        cursor
      }
      ... on ConversationDeletedEvent {
        conversationId
      }
    }
  }
`);

export const UiTyping = graphql(`
  subscription UiTyping($conversationId: ID!) {
    typing(conversationId: $conversationId) {
      isTyping
      user {
        id
        name
      }
    }
  }
`);

export const UiReadReceipt = graphql(`
  subscription UiReadReceipt($conversationId: ID!) {
    readReceipt(conversationId: $conversationId) {
      lastReadSeq
      user {
        id
      }
    }
  }
`);

export const UiPresence = graphql(`
  subscription UiPresence($conversationId: ID) {
    presenceChanged(conversationId: $conversationId) {
      online
      user {
        id
      }
    }
  }
`);

export const UiRoster = graphql(`
  query UiRoster($search: String) {
    users(first: 100, search: $search) {
      edges {
        node {
          id
          name
          online
          active
        }
      }
    }
    conversations(first: 100, kind: GROUP) {
      edges {
        node {
          id
          name
          memberCount
          unreadCount
        }
      }
    }
  }
`);

export const UiDemoCreateUser = graphql(`
  mutation UiDemoCreateUser($input: CreateUserInput!) {
    createUser(input: $input) {
      id
      name
    }
  }
`);

export const UiDemoIssueToken = graphql(`
  mutation UiDemoIssueToken($userId: ID!) {
    issueUserToken(userId: $userId, expiresInSeconds: 86400) {
      token
    }
  }
`);

export const UiDemoCreateGroup = graphql(`
  mutation UiDemoCreateGroup($input: CreateGroupInput!) {
    createGroup(input: $input) {
      id
      name
    }
  }
`);

export const UiDemoAddMembers = graphql(`
  mutation UiDemoAddMembers($conversationId: ID!, $userIds: [ID!]!) {
    addMembers(conversationId: $conversationId, userIds: $userIds) {
      id
      memberCount
    }
  }
`);
