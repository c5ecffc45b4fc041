import { graphql } from "../generated/gql.ts";

export const CreateUser = graphql(`
  mutation CreateUser($input: CreateUserInput!) {
    createUser(input: $input) {
      id
      name
      email
      emailVerified
    }
  }
`);

export const IssueUserToken = graphql(`
  mutation IssueUserToken($userId: ID!, $expiresInSeconds: Int) {
    issueUserToken(userId: $userId, expiresInSeconds: $expiresInSeconds) {
      token
      expiresAt
    }
  }
`);

export const Viewer = graphql(`
  query Viewer {
    viewer {
      isService
      permissions
      user {
        id
        name
        email
        emailVerified
        phone
        avatarUrl
      }
      roles {
        id
        name
      }
      tenant {
        id
        name
      }
    }
  }
`);

/** The viewer's address and whether it is verified, compared whole. */
export const ViewerEmail = graphql(`
  query ViewerEmail {
    viewer {
      user {
        id
        email
        emailVerified
      }
    }
  }
`);

export const User = graphql(`
  query User($id: ID!) {
    user(id: $id) {
      id
      name
      email
      active
    }
  }
`);

/** A user's roles, which need rbac:read besides users:read. */
export const UserRoles = graphql(`
  query UserRoles($id: ID!) {
    user(id: $id) {
      id
      active
      roles {
        name
      }
    }
  }
`);

export const Users = graphql(`
  query Users($first: Int, $after: String, $search: String) {
    users(first: $first, after: $after, search: $search) {
      edges {
        cursor
        node {
          id
          name
          email
          active
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

export const UpdateUser = graphql(`
  mutation UpdateUser($id: ID!, $input: UpdateUserInput!) {
    updateUser(id: $id, input: $input) {
      id
      name
      email
      emailVerified
      active
    }
  }
`);

export const DeleteUser = graphql(`
  mutation DeleteUser($id: ID!) {
    deleteUser(id: $id)
  }
`);

export const RevokeUserTokens = graphql(`
  mutation RevokeUserTokens($userId: ID!) {
    revokeUserTokens(userId: $userId)
  }
`);

/** A user administration page: what its statement count per request is measured on. */
export const UsersWithRoles = graphql(`
  query UsersWithRoles($first: Int) {
    users(first: $first) {
      edges {
        node {
          name
          roles {
            name
          }
        }
      }
    }
  }
`);

/** Only who the caller is: the request path's cheapest authenticated query (no read once credentials are cached). */
export const ViewerId = graphql(`
  query ViewerId {
    viewer {
      user {
        id
      }
    }
  }
`);
