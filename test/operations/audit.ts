import { graphql } from "../generated/gql.ts";

export const AuditLog = graphql(`
  query AuditLog($first: Int, $after: String) {
    auditLog(first: $first, after: $after) {
      edges {
        cursor
        node {
          id
          action
          details
          createdAt
          actor {
            kind
            id
          }
          target {
            type
            id
          }
        }
      }
      pageInfo {
        hasNextPage
        hasPreviousPage
        endCursor
      }
    }
  }
`);
