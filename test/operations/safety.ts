import { graphql } from "../generated/gql.ts";

export const BlockUser = graphql(`
  mutation BlockUser($userId: ID!) {
    blockUser(userId: $userId)
  }
`);

export const UnblockUser = graphql(`
  mutation UnblockUser($userId: ID!) {
    unblockUser(userId: $userId)
  }
`);

export const BlockedUsers = graphql(`
  query BlockedUsers {
    blockedUsers {
      id
      name
    }
  }
`);

/** A conversation's messages with only what the blocking tests compare. */
export const MessagesSenderBlocked = graphql(`
  query MessagesSenderBlocked($conversationId: ID!) {
    messages(conversationId: $conversationId, last: 50) {
      edges {
        node {
          body
          senderBlockedByViewer
        }
      }
    }
  }
`);

/** messageAdded selecting the viewer-dependent senderBlockedByViewer. */
export const MessageAddedSenderBlocked = graphql(`
  subscription MessageAddedSenderBlocked($conversationId: ID) {
    messageAdded(conversationId: $conversationId) {
      body
      senderBlockedByViewer
    }
  }
`);

export const ReportFieldsFragment = graphql(`
  fragment ReportFields on Report {
    id
    reason
    status
    action
    createdAt
    resolvedAt
    message {
      id
      body
      deletedAt
    }
    reporter {
      id
    }
    resolvedBy {
      id
    }
  }
`);

export const ReportMessage = graphql(`
  mutation ReportMessage($messageId: ID!, $reason: String!) {
    reportMessage(messageId: $messageId, reason: $reason) {
      ...ReportFields
    }
  }
`);

export const Reports = graphql(`
  query Reports($first: Int, $after: String, $status: ReportStatus) {
    reports(first: $first, after: $after, status: $status) {
      edges {
        cursor
        node {
          ...ReportFields
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

export const ResolveReport = graphql(`
  mutation ResolveReport($id: ID!, $action: ReportAction!) {
    resolveReport(id: $id, action: $action) {
      ...ReportFields
    }
  }
`);

export const UpdateWordFilter = graphql(`
  mutation UpdateWordFilter($input: UpdateTenantInput!) {
    updateTenant(input: $input) {
      id
      wordFilter {
        words
        action
      }
    }
  }
`);

export const TenantWordFilter = graphql(`
  query TenantWordFilter {
    tenant {
      id
      wordFilter {
        words
        action
      }
    }
  }
`);
