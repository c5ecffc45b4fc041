import { graphql } from "../generated/gql.ts";

export const ExternalJwtFields = graphql(`
  fragment ExternalJwtFields on ExternalJwt {
    issuer
    audience
    jwksUrl
    hasHmacSecret
    userIdClaim
    nameClaim
    emailClaim
    groupsClaim
  }
`);

export const UpdateTenantExternalJwt = graphql(`
  mutation UpdateTenantExternalJwt($input: UpdateTenantInput!) {
    updateTenant(input: $input) {
      id
      externalJwt {
        ...ExternalJwtFields
      }
    }
  }
`);

export const TenantExternalJwt = graphql(`
  query TenantExternalJwt {
    tenant {
      id
      externalJwt {
        ...ExternalJwtFields
      }
    }
  }
`);

/** The viewer with the external id: who a token of the tenant's identity provider stands for. */
export const ExternalViewer = graphql(`
  query ExternalViewer {
    viewer {
      isService
      user {
        id
        name
        email
        externalId
      }
    }
  }
`);

/** A group with its external id and members: what the groups claim changes. */
export const ExternalGroup = graphql(`
  query ExternalGroup($id: ID!) {
    conversation(id: $id) {
      id
      externalId
      members {
        user {
          id
        }
      }
    }
  }
`);

export const CreateExternalGroup = graphql(`
  mutation CreateExternalGroup($input: CreateGroupInput!) {
    createGroup(input: $input) {
      id
      externalId
    }
  }
`);

export const UpdateExternalGroup = graphql(`
  mutation UpdateExternalGroup($id: ID!, $input: UpdateGroupInput!) {
    updateGroup(id: $id, input: $input) {
      id
      externalId
    }
  }
`);
