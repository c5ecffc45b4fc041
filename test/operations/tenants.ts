import { graphql } from "../generated/gql.ts";

export const CreateTenant = graphql(`
  mutation CreateTenant($input: CreateTenantInput!) {
    createTenant(input: $input) {
      apiKey
      tenant {
        id
        name
      }
    }
  }
`);

export const Tenant = graphql(`
  query Tenant {
    tenant {
      id
      name
      selfSignUp
      signInMethods
      accessTokenTtlSeconds
      refreshTokenTtlSeconds
    }
  }
`);

/** With the default role, which needs rbac:read. */
export const TenantWithDefaultRole = graphql(`
  query TenantWithDefaultRole {
    tenant {
      id
      name
      defaultRole {
        id
        name
      }
    }
  }
`);

export const UpdateTenant = graphql(`
  mutation UpdateTenant($input: UpdateTenantInput!) {
    updateTenant(input: $input) {
      id
      name
      selfSignUp
      signInMethods
      accessTokenTtlSeconds
      refreshTokenTtlSeconds
    }
  }
`);

/** With the OAuth redirect URIs and the default role, which need more than tenant:update. */
export const UpdateTenantWithDefaultRole = graphql(`
  mutation UpdateTenantWithDefaultRole($input: UpdateTenantInput!) {
    updateTenant(input: $input) {
      id
      name
      selfSignUp
      signInMethods
      oauthRedirectUris
      accessTokenTtlSeconds
      refreshTokenTtlSeconds
      defaultRole {
        id
        name
        permissions
      }
    }
  }
`);

export const RotateApiKey = graphql(`
  mutation RotateApiKey {
    rotateApiKey {
      apiKey
    }
  }
`);

/** Everything a call from another tenant could damage, read in one go with the tenant's own API key. */
export const TenantSnapshot = graphql(`
  query TenantSnapshot($role: ID!, $ownerRole: ID!, $member: ID!, $outsider: ID!, $group: ID!, $direct: ID!) {
    tenant {
      id
      name
      defaultRole {
        id
      }
    }
    webhooks {
      id
      url
      description
      events
      enabled
    }
    role(id: $role) {
      name
      description
      permissions
    }
    ownerRole: role(id: $ownerRole) {
      name
      permissions
    }
    member: user(id: $member) {
      name
      active
      roles {
        id
      }
    }
    outsider: user(id: $outsider) {
      name
      active
      roles {
        id
      }
    }
    conversation(id: $group) {
      name
      description
      lastSeq
      members {
        role
        user {
          id
        }
      }
      pinnedMessages {
        id
      }
    }
    direct: conversation(id: $direct) {
      lastSeq
      members {
        user {
          id
        }
      }
    }
    messages(conversationId: $group, first: 10) {
      edges {
        node {
          id
          body
          type
          customType
          data
          editedAt
          deletedAt
          pinned
          pinnedBy {
            id
          }
          reactions {
            emoji
            count
            users {
              id
            }
          }
          attachments {
            id
            filename
            mimeType
            size
          }
        }
      }
    }
  }
`);

export const DeleteTenant = graphql(`
  mutation DeleteTenant($confirmName: String!, $tenantId: ID) {
    deleteTenant(confirmName: $confirmName, tenantId: $tenantId)
  }
`);

export const UpdateEmbedOrigins = graphql(`
  mutation UpdateEmbedOrigins($input: UpdateTenantInput!) {
    updateTenant(input: $input) {
      id
      embedOrigins
    }
  }
`);

export const TenantEmbedOrigins = graphql(`
  query TenantEmbedOrigins {
    tenant {
      id
      embedOrigins
    }
  }
`);
