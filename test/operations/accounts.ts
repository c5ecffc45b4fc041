import { graphql } from "../generated/gql.ts";

graphql(`
  fragment AuthPayloadFields on AuthPayload {
    accessToken
    accessTokenExpiresAt
    refreshToken
    refreshTokenExpiresAt
    user {
      id
      name
      email
    }
    session {
      id
      method
      userAgent
      ipAddress
      createdAt
      lastUsedAt
      expiresAt
    }
  }
`);

export const SignUp = graphql(`
  mutation SignUp($input: SignUpInput!) {
    signUp(input: $input) {
      ...AuthPayloadFields
    }
  }
`);

export const SignIn = graphql(`
  mutation SignIn($input: SignInInput!) {
    signIn(input: $input) {
      ...AuthPayloadFields
    }
  }
`);

export const SignInWithEmailCode = graphql(`
  mutation SignInWithEmailCode($input: SignInWithEmailCodeInput!) {
    signInWithEmailCode(input: $input) {
      ...AuthPayloadFields
    }
  }
`);

export const RequestEmailCode = graphql(`
  mutation RequestEmailCode($input: RequestEmailCodeInput!) {
    requestEmailCode(input: $input)
  }
`);

export const RefreshSession = graphql(`
  mutation RefreshSession($refreshToken: String!) {
    refreshSession(refreshToken: $refreshToken) {
      ...AuthPayloadFields
    }
  }
`);

/** Session and user reduced to what tests compare whole: the session's id and method, the user's id and email. */
export const RefreshSessionBrief = graphql(`
  mutation RefreshSessionBrief($refreshToken: String!) {
    refreshSession(refreshToken: $refreshToken) {
      accessToken
      accessTokenExpiresAt
      refreshToken
      refreshTokenExpiresAt
      session {
        id
        method
      }
      user {
        id
        email
      }
    }
  }
`);

export const SignOut = graphql(`
  mutation SignOut {
    signOut
  }
`);

export const SignOutEverywhere = graphql(`
  mutation SignOutEverywhere {
    signOutEverywhere
  }
`);

export const Sessions = graphql(`
  query Sessions {
    sessions {
      id
      current
      method
      userAgent
      ipAddress
      createdAt
      lastUsedAt
      expiresAt
    }
  }
`);

export const RevokeSession = graphql(`
  mutation RevokeSession($id: ID!) {
    revokeSession(id: $id)
  }
`);

/** The user as compared whole after a verification: id and email. */
export const VerifyEmail = graphql(`
  mutation VerifyEmail($code: String!) {
    verifyEmail(code: $code) {
      id
      email
    }
  }
`);

export const VerifyEmailStatus = graphql(`
  mutation VerifyEmailStatus($code: String!) {
    verifyEmail(code: $code) {
      id
      emailVerified
    }
  }
`);

export const RequestEmailChange = graphql(`
  mutation RequestEmailChange($newEmail: String!) {
    requestEmailChange(newEmail: $newEmail)
  }
`);

export const ResetPassword = graphql(`
  mutation ResetPassword($input: ResetPasswordInput!) {
    resetPassword(input: $input)
  }
`);

export const ChangePassword = graphql(`
  mutation ChangePassword($input: ChangePasswordInput!) {
    changePassword(input: $input)
  }
`);

export const UpdateProfile = graphql(`
  mutation UpdateProfile($input: UpdateProfileInput!) {
    updateProfile(input: $input) {
      id
      name
      phone
      avatarUrl
      email
    }
  }
`);
