import { graphql } from "../generated/gql.ts";

graphql(`
  fragment MessageFields on Message {
    id
    seq
    cursor
    type
    customType
    data
    body
    clientMessageId
    createdAt
    editedAt
    deletedAt
    pinned
    pinnedAt
    conversation {
      id
      kind
    }
    sender {
      id
    }
    deletedBy {
      id
    }
    pinnedBy {
      id
    }
    replyTo {
      id
      body
    }
    replyCount
    mentions {
      id
    }
    mentionsViewer
    reactions {
      emoji
      count
      reactedByViewer
      users {
        id
      }
    }
    attachments {
      id
      filename
      mimeType
      size
      url
    }
  }
`);

/** The fields of a sent message most tests read: light enough for bursts of hundreds of sends. */
export const SendMessage = graphql(`
  mutation SendMessage($input: SendMessageInput!) {
    sendMessage(input: $input) {
      id
      seq
      cursor
      body
      type
      clientMessageId
      sender {
        id
      }
      replyTo {
        id
        body
      }
      conversation {
        id
        kind
      }
      attachments {
        id
      }
    }
  }
`);

/** Every field of the sent message, for tests that compare messages whole. */
export const SendFullMessage = graphql(`
  mutation SendFullMessage($input: SendMessageInput!) {
    sendMessage(input: $input) {
      ...MessageFields
    }
  }
`);

export const EditMessage = graphql(`
  mutation EditMessage($id: ID!, $body: String!) {
    editMessage(id: $id, body: $body) {
      ...MessageFields
    }
  }
`);

/** editMessage with new data for a CUSTOM message. */
export const EditMessageData = graphql(`
  mutation EditMessageData($id: ID!, $body: String!, $data: JSON) {
    editMessage(id: $id, body: $body, data: $data) {
      ...MessageFields
    }
  }
`);

export const DeleteMessage = graphql(`
  mutation DeleteMessage($id: ID!) {
    deleteMessage(id: $id) {
      ...MessageFields
    }
  }
`);

export const PinMessage = graphql(`
  mutation PinMessage($id: ID!) {
    pinMessage(id: $id) {
      ...MessageFields
    }
  }
`);

export const UnpinMessage = graphql(`
  mutation UnpinMessage($id: ID!) {
    unpinMessage(id: $id) {
      ...MessageFields
    }
  }
`);

export const AddReaction = graphql(`
  mutation AddReaction($messageId: ID!, $emoji: String!) {
    addReaction(messageId: $messageId, emoji: $emoji) {
      ...MessageFields
    }
  }
`);

export const RemoveReaction = graphql(`
  mutation RemoveReaction($messageId: ID!, $emoji: String!) {
    removeReaction(messageId: $messageId, emoji: $emoji) {
      ...MessageFields
    }
  }
`);

export const SetTyping = graphql(`
  mutation SetTyping($conversationId: ID!, $isTyping: Boolean!) {
    setTyping(conversationId: $conversationId, isTyping: $isTyping)
  }
`);

export const Messages = graphql(`
  query Messages($conversationId: ID!, $first: Int, $after: String, $last: Int, $before: String) {
    messages(conversationId: $conversationId, first: $first, after: $after, last: $last, before: $before) {
      edges {
        cursor
        node {
          ...MessageFields
        }
      }
      pageInfo {
        hasNextPage
        hasPreviousPage
        startCursor
        endCursor
      }
    }
  }
`);

/** The first 100 messages of a conversation, each with a page of its replies. */
export const Threads = graphql(`
  query Threads($conversationId: ID!, $first: Int, $after: String) {
    messages(conversationId: $conversationId, first: 100) {
      edges {
        node {
          id
          replyCount
          replies(first: $first, after: $after) {
            edges {
              cursor
              node {
                id
                body
                deletedAt
                replyTo {
                  id
                }
              }
            }
            pageInfo {
              hasNextPage
              endCursor
            }
          }
        }
      }
    }
  }
`);

/** Replies to the latest message of a conversation, five at a time. */
export const LatestMessageReplies = graphql(`
  query LatestMessageReplies($conversationId: ID!, $after: String) {
    messages(conversationId: $conversationId, last: 1) {
      edges {
        node {
          id
          replies(first: 5, after: $after) {
            edges {
              node {
                id
              }
            }
          }
        }
      }
    }
  }
`);

export const SearchMessages = graphql(`
  query SearchMessages($query: String!, $conversationId: ID, $first: Int, $after: String) {
    searchMessages(query: $query, conversationId: $conversationId, first: $first, after: $after) {
      edges {
        cursor
        node {
          id
          body
          deletedAt
          conversation {
            id
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

/** A chat screen's history page: what its statement count per request is measured on. */
export const HistoryPage = graphql(`
  query HistoryPage($id: ID!, $last: Int) {
    conversation(id: $id) {
      messages(last: $last) {
        edges {
          node {
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
      }
    }
  }
`);

/** The history page with replies and attachments as well. */
export const HistoryPageWithThreads = graphql(`
  query HistoryPageWithThreads($id: ID!, $last: Int) {
    conversation(id: $id) {
      messages(last: $last) {
        edges {
          node {
            id
            body
            sender {
              name
            }
            reactions {
              emoji
              count
            }
            replyTo {
              id
              body
              sender {
                name
              }
            }
            attachments {
              id
              filename
              url
            }
          }
        }
      }
    }
  }
`);
