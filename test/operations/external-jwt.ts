import { graphql } from "../generated/gql.ts";

export const UpdateTenantExternalJwt = graphql(`
  mutation UpdateTenantExternalJwt($input: UpdateTenantInput!) {
    updateTenant(input: $input) {
      id
      externalJwt {
        issuer
        audience
        jwksUrl
        hasHmacSecret
        userIdClaim
        nameClaim
        emailClaim
        groupsClaim
      }
    }
  }
`);

export const TenantExternalJwt = graphql(`
  query TenantExternalJwt {
    tenant {
      id
      externalJwt {
        issuer
        audience
        jwksUrl
        hasHmacSecret
        userIdClaim
        nameClaim
        emailClaim
        groupsClaim
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
