import { graphql } from "../generated/gql.ts";

export const CreateGroup = graphql(`
  mutation CreateGroup($input: CreateGroupInput!) {
    createGroup(input: $input) {
      id
      kind
      name
      members {
        role
        user {
          id
        }
      }
    }
  }
`);

export const UpdateGroup = graphql(`
  mutation UpdateGroup($id: ID!, $input: UpdateGroupInput!) {
    updateGroup(id: $id, input: $input) {
      id
      name
    }
  }
`);

export const DeleteGroup = graphql(`
  mutation DeleteGroup($id: ID!) {
    deleteGroup(id: $id)
  }
`);

export const OpenDirect = graphql(`
  mutation OpenDirect($userId: ID!) {
    openDirectConversation(userId: $userId) {
      id
      kind
      members {
        user {
          id
        }
      }
    }
  }
`);

export const HideConversation = graphql(`
  mutation HideConversation($id: ID!) {
    hideConversation(id: $id)
  }
`);

export const AddMembers = graphql(`
  mutation AddMembers($conversationId: ID!, $userIds: [ID!]!) {
    addMembers(conversationId: $conversationId, userIds: $userIds) {
      id
      members {
        user {
          id
          name
        }
      }
    }
  }
`);

export const RemoveMember = graphql(`
  mutation RemoveMember($conversationId: ID!, $userId: ID!) {
    removeMember(conversationId: $conversationId, userId: $userId) {
      id
      memberCount
      members {
        user {
          id
          name
        }
      }
    }
  }
`);

export const SetMemberRole = graphql(`
  mutation SetMemberRole($conversationId: ID!, $userId: ID!, $role: MemberRole!) {
    setMemberRole(conversationId: $conversationId, userId: $userId, role: $role) {
      id
      members {
        role
        user {
          id
        }
      }
    }
  }
`);

export const MarkRead = graphql(`
  mutation MarkRead($conversationId: ID!, $upToMessageId: ID!) {
    markRead(conversationId: $conversationId, upToMessageId: $upToMessageId) {
      lastReadSeq
      readAt
      user {
        id
      }
      lastReadMessage {
        id
      }
    }
  }
`);

export const Conversation = graphql(`
  query Conversation($id: ID!) {
    conversation(id: $id) {
      id
      kind
      name
      description
      lastSeq
      unreadCount
      mentionCount
      lastMessage {
        id
        body
        editedAt
      }
      members {
        role
        user {
          id
          name
        }
      }
      pinnedMessages {
        id
        pinned
        pinnedBy {
          id
        }
      }
    }
  }
`);

export const Conversations = graphql(`
  query Conversations($first: Int, $after: String, $kind: ConversationKind) {
    conversations(first: $first, after: $after, kind: $kind) {
      edges {
        cursor
        node {
          id
          name
          kind
          unreadCount
          mentionCount
          lastMessage {
            id
            body
            seq
          }
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

/** The unread state of each conversation, compared with what Conversation says. */
export const ConversationSummaries = graphql(`
  query ConversationSummaries($first: Int) {
    conversations(first: $first) {
      edges {
        node {
          id
          unreadCount
          mentionCount
          lastMessage {
            id
            body
          }
        }
      }
    }
  }
`);

/** A conversation's history through Conversation.messages (the root messages query has its own). */
export const ConversationMessages = graphql(`
  query ConversationMessages($id: ID!, $after: String, $before: String, $last: Int) {
    conversation(id: $id) {
      messages(after: $after, before: $before, last: $last) {
        edges {
          node {
            id
          }
        }
      }
    }
  }
`);

/** The first members of a conversation, with the total: the members argument is what is tested. */
export const ConversationMembers = graphql(`
  query ConversationMembers($id: ID!, $first: Int) {
    conversation(id: $id) {
      memberCount
      members(first: $first) {
        role
        user {
          id
        }
      }
    }
  }
`);

/** The first pinned messages: the pinnedMessages argument is what is tested. */
export const PinnedMessages = graphql(`
  query PinnedMessages($id: ID!, $first: Int) {
    conversation(id: $id) {
      pinnedMessages(first: $first) {
        id
        body
      }
    }
  }
`);

/** What a client's chat screen loads at once; its cost is what is tested. */
export const ChatScreen = graphql(`
  query ChatScreen($id: ID!) {
    conversation(id: $id) {
      name
      unreadCount
      mentionCount
      memberCount
      pinnedMessages {
        id
        body
      }
      messages(last: 30) {
        pageInfo {
          hasPreviousPage
          startCursor
        }
        edges {
          node {
            id
            seq
            cursor
            body
            type
            editedAt
            deletedAt
            sender {
              name
            }
            replyTo {
              id
              body
            }
            replyCount
            mentionsViewer
            reactions {
              emoji
              count
              reactedByViewer
            }
            attachments {
              filename
              mimeType
              size
              url
            }
          }
        }
      }
    }
  }
`);

/** A conversation list screen: what its statement count per request is measured on. */
export const ConversationList = graphql(`
  query ConversationList($first: Int) {
    conversations(first: $first) {
      edges {
        node {
          id
          name
          unreadCount
          memberCount
          lastMessage {
            body
            sender {
              name
            }
          }
          members {
            role
            user {
              name
            }
          }
          pinnedMessages {
            body
            pinnedBy {
              name
            }
          }
        }
      }
    }
  }
`);

/** Two membership changes in one document: each field must show the members after its own change. */
export const AddMemberThenPromote = graphql(`
  mutation AddMemberThenPromote($conversationId: ID!, $userId: ID!) {
    added: addMembers(conversationId: $conversationId, userIds: [$userId]) {
      members {
        role
        user {
          id
        }
      }
    }
    promoted: setMemberRole(conversationId: $conversationId, userId: $userId, role: ADMIN) {
      members {
        role
        user {
          id
        }
      }
    }
  }
`);

export const Groups = graphql(`
  query Groups($first: Int, $after: String, $search: String) {
    groups(first: $first, after: $after, search: $search) {
      edges {
        cursor
        node {
          id
          name
          kind
          memberCount
          members(first: 10) {
            user {
              id
            }
            role
          }
          unreadCount
          lastMessage {
            id
            body
          }
          pinnedMessages(first: 5) {
            id
            body
          }
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

export const GroupMessages = graphql(`
  query GroupMessages($search: String) {
    groups(search: $search) {
      edges {
        node {
          id
          messages(last: 5) {
            edges {
              node {
                body
              }
            }
          }
        }
      }
    }
  }
`);

export const UpdateGroupWithMessages = graphql(`
  mutation UpdateGroupWithMessages($id: ID!, $input: UpdateGroupInput!) {
    updateGroup(id: $id, input: $input) {
      id
      name
      lastMessage {
        body
      }
      pinnedMessages {
        body
      }
    }
  }
`);
