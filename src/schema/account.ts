import type { Session } from "../generated/prisma/client.ts";
import { viewerDependent } from "../graphql/audience.ts";
import * as accounts from "../services/accounts.ts";
import { externalJwtInput } from "../services/external-jwt.ts";
import { rule, zEmail } from "../services/validation.ts";
import { builder } from "./builder.ts";

const SignInMethod = builder.enumType("SignInMethod", {
  description: "Ways end users may sign in to a tenant.",
  values: {
    PASSWORD: { description: "Email and password (signUp, signIn)." },
    EMAIL_CODE: { description: "A one-time code sent by email (requestEmailCode + signInWithEmailCode)." },
    GOOGLE: { description: "Sign in with Google." },
    GITHUB: { description: "Sign in with GitHub." },
  } as const,
});

const CodePurpose = builder.enumType("EmailCodePurpose", {
  description: "What a one-time email code is for.",
  values: {
    VERIFY_EMAIL: { description: "Confirm the account's email address (verifyEmail)." },
    SIGN_IN: { description: "Sign in without a password (signInWithEmailCode)." },
    RESET_PASSWORD: { description: "Set a new password (resetPassword)." },
  } as const,
});

export const SessionRef = builder.prismaObject("Session", {
  description: "A signed-in device or browser: a refresh-token family.",
  authScopes: (session) => ({ self: session.userId }),
  extensions: viewerDependent,
  fields: (t) => ({
    id: t.exposeID("id", { description: "Session id; revokeSession(id) ends it." }),
    method: t.field({
      type: SignInMethod,
      description: "How the user signed in.",
      resolve: (session) => session.method as "PASSWORD" | "EMAIL_CODE" | "GOOGLE" | "GITHUB",
    }),
    userAgent: t.exposeString("userAgent", { nullable: true, description: "The client's User-Agent at sign-in." }),
    ipAddress: t.exposeString("ipAddress", { nullable: true, description: "The client address at sign-in." }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When the user signed in." }),
    lastUsedAt: t.expose("lastUsedAt", { type: "DateTime", description: "When its refresh token was last used." }),
    expiresAt: t.expose("expiresAt", { type: "DateTime", description: "When it ends unless refreshed before." }),
    current: t.boolean({
      description: "Whether the request was made with this session's token.",
      extensions: viewerDependent,
      resolve: (session, _args, ctx) => ctx.principal?.kind === "user" && ctx.principal.sessionId === session.id,
    }),
  }),
});

const AuthPayloadRef = builder.objectRef<accounts.AuthPayload>("AuthPayload").implement({
  description:
    "A signed-in session: a short-lived access token for `Authorization: Bearer`, and a refresh token for refreshSession.",
  authScopes: { public: true },
  fields: (t) => ({
    accessToken: t.exposeString("accessToken", { description: "JWT; send it as `Authorization: Bearer <token>`." }),
    accessTokenExpiresAt: t.expose("accessTokenExpiresAt", { type: "DateTime", description: "When it expires." }),
    refreshToken: t.exposeString("refreshToken", {
      description: "Opaque, single use: refreshSession returns a new one. Keep it secret.",
    }),
    refreshTokenExpiresAt: t.expose("refreshTokenExpiresAt", {
      type: "DateTime",
      description: "When the session ends unless refreshed before.",
    }),
    user: t.prismaField({
      type: "User",
      description: "The signed-in user.",
      skipTypeScopes: true,
      resolve: (_query, payload) => payload.user,
    }),
    session: t.field({
      type: SessionRef,
      description: "The session.",
      skipTypeScopes: true,
      resolve: (payload) => payload.session as Session,
    }),
  }),
});

const signUp = accounts.signUpInput.shape;
const SignUpInput = builder.inputType("SignUpInput", {
  description: "Self-service registration (where the tenant enables it).",
  fields: (t) => ({
    tenantId: t.id({ required: true, description: "The tenant to join." }),
    email: t.string({
      required: true,
      description: `Email address, ${rule(signUp.email)}; a code to confirm it is sent.`,
    }),
    password: t.string({ required: true, description: `The password, ${rule(signUp.password)}.` }),
    name: t.string({ required: true, description: `Display name, ${rule(signUp.name)}.` }),
  }),
});

const SignInInput = builder.inputType("SignInInput", {
  description: "Email and password.",
  fields: (t) => ({
    tenantId: t.id({ required: true, description: "The tenant." }),
    email: t.string({ required: true, description: "Email address." }),
    password: t.string({ required: true, description: "Password." }),
  }),
});

const RequestEmailCodeInput = builder.inputType("RequestEmailCodeInput", {
  description: "Where to send a one-time code, and what for.",
  fields: (t) => ({
    tenantId: t.id({ required: true, description: "The tenant." }),
    email: t.string({ required: true, description: "The account's email address." }),
    purpose: t.field({ type: CodePurpose, required: true, description: "What the code is for." }),
  }),
});

const SignInWithEmailCodeInput = builder.inputType("SignInWithEmailCodeInput", {
  description: "A SIGN_IN code received by email.",
  fields: (t) => ({
    tenantId: t.id({ required: true, description: "The tenant." }),
    email: t.string({ required: true, description: "The account's email address." }),
    code: t.string({ required: true, description: "The 6-digit code." }),
  }),
});

const ResetPasswordInput = builder.inputType("ResetPasswordInput", {
  description: "A RESET_PASSWORD code and the new password.",
  fields: (t) => ({
    tenantId: t.id({ required: true, description: "The tenant." }),
    email: t.string({ required: true, description: "The account's email address." }),
    code: t.string({ required: true, description: "The 6-digit code." }),
    newPassword: t.string({
      required: true,
      description: `The new password, ${rule(accounts.resetInput.shape.newPassword)}.`,
    }),
  }),
});

const ChangePasswordInput = builder.inputType("ChangePasswordInput", {
  description: "The current password and the new one.",
  fields: (t) => ({
    currentPassword: t.string({ required: true, description: "The current password." }),
    newPassword: t.string({
      required: true,
      description: `The new password, ${rule(accounts.changePasswordInput.shape.newPassword)}.`,
    }),
  }),
});

const profile = accounts.profileInput.shape;
const UpdateProfileInput = builder.inputType("UpdateProfileInput", {
  description: "Changes to the viewer's own profile; omitted fields stay as they are.",
  fields: (t) => ({
    name: t.string({ description: `Display name, ${rule(profile.name)}.` }),
    phone: t.string({ description: `Phone number, ${rule(profile.phone)}; null clears it.` }),
    avatarUrl: t.string({ description: `The avatar, ${rule(profile.avatarUrl)}; null clears it.` }),
  }),
});

const ext = externalJwtInput.shape;
const ExternalJwtInput = builder.inputType("ExternalJwtInput", {
  description:
    "The tenant's own identity provider: its tokens are accepted as `Authorization: Bearer` (and in connection_init), and their users provisioned on first use. Give either hmacSecret or jwksUrl.",
  fields: (t) => ({
    issuer: t.string({
      required: true,
      description: `The tokens' \`iss\`, ${rule(ext.issuer)}. With the audience, it names this tenant: no other tenant may use it.`,
    }),
    audience: t.string({
      description: `The \`aud\` tokens must carry, ${rule(ext.audience)}; null accepts any (and then no other tenant may use the issuer).`,
    }),
    hmacSecret: t.string({
      description: `Shared secret of HS256-signed tokens, ${rule(ext.hmacSecret)}. Never readable afterwards.`,
    }),
    jwksUrl: t.string({
      description:
        "Where the provider publishes its public keys (RS256, ES256, EdDSA): https (plain http only to a loopback host, outside production mode).",
    }),
    userIdClaim: t.string({ description: "Claim holding the user's id in the provider; default `sub`." }),
    nameClaim: t.string({ description: "Claim holding the display name; default `name`." }),
    emailClaim: t.string({
      description: "Claim holding the email address (stored, never used to match users); default `email`.",
    }),
    groupsClaim: t.string({
      description: "Claim listing the external ids of the user's groups; default `groups`.",
    }),
  }),
});

const settings = accounts.settingsInput.shape;
export const TenantAuthSettingsInput = builder.inputType("TenantAuthSettingsInput", {
  description: "How end users sign in to the tenant; omitted fields stay as they are.",
  fields: (t) => ({
    selfSignUp: t.boolean({ description: "Whether anyone may register with signUp." }),
    signInMethods: t.field({
      type: [SignInMethod],
      description: `Methods end users may use, ${rule(settings.signInMethods)}.`,
    }),
    accessTokenTtlSeconds: t.int({
      description: `Access token lifetime, ${rule(settings.accessTokenTtlSeconds)} seconds.`,
    }),
    refreshTokenTtlSeconds: t.int({
      description: `Session lifetime without refresh, ${rule(settings.refreshTokenTtlSeconds)} seconds.`,
    }),
    oauthRedirectUris: t.stringList({
      description: `Exact URLs Google/GitHub sign-in may return users to (with tokens in the fragment), ${rule(settings.oauthRedirectUris)}; replaces the list.`,
    }),
    externalJwt: t.field({
      type: ExternalJwtInput,
      description: "Accept tokens of the tenant's own identity provider; replaces the whole setting, null removes it.",
    }),
  }),
});

const ExternalJwtRef = builder.prismaObject("TenantExternalJwt", {
  name: "ExternalJwt",
  description: "The tenant's own identity provider, whose tokens the API accepts. The HMAC secret is never readable.",
  authScopes: { permission: "tenant:read" },
  fields: (t) => ({
    issuer: t.exposeString("issuer", { description: "The tokens' `iss`." }),
    audience: t.string({
      nullable: true,
      description: "The `aud` tokens must carry; null when any is accepted.",
      resolve: (row) => row.audience || null,
    }),
    jwksUrl: t.exposeString("jwksUrl", { nullable: true, description: "Where the provider's public keys are read." }),
    hasHmacSecret: t.boolean({
      description: "Whether tokens are checked with a shared HS256 secret.",
      resolve: (row) => !!row.hmacSecret,
    }),
    userIdClaim: t.exposeString("userIdClaim", { description: "Claim holding the user's id in the provider." }),
    nameClaim: t.exposeString("nameClaim", { description: "Claim holding the display name." }),
    emailClaim: t.exposeString("emailClaim", { description: "Claim holding the email address." }),
    groupsClaim: t.exposeString("groupsClaim", { description: "Claim listing the user's groups (external ids)." }),
  }),
});

builder.prismaObjectFields("Tenant", (t) => ({
  selfSignUp: t.exposeBoolean("selfSignUp", { description: "Whether end users may register with signUp." }),
  signInMethods: t.field({
    type: [SignInMethod],
    description: "How end users may sign in.",
    resolve: (tenant) => tenant.signInMethods as ("PASSWORD" | "EMAIL_CODE" | "GOOGLE" | "GITHUB")[],
  }),
  accessTokenTtlSeconds: t.exposeInt("accessTokenTtlSeconds", { description: "Access token lifetime in seconds." }),
  oauthRedirectUris: t.exposeStringList("oauthRedirectUris", {
    description: "Where Google/GitHub sign-in may return users to.",
    authScopes: { permission: "tenant:read" },
  }),
  refreshTokenTtlSeconds: t.exposeInt("refreshTokenTtlSeconds", {
    description: "Session lifetime without refresh, in seconds.",
  }),
  externalJwt: t.field({
    type: ExternalJwtRef,
    nullable: true,
    description: "The tenant's own identity provider, if its tokens are accepted.",
    authScopes: { permission: "tenant:read" },
    resolve: (tenant, _args, ctx) => ctx.prisma.tenantExternalJwt.findUnique({ where: { tenantId: tenant.id } }),
  }),
}));

builder.queryField("sessions", (t) =>
  t.field({
    type: [SessionRef],
    description: "The viewer's active sessions, most recently used first.",
    authScopes: { user: true },
    resolve: (_root, _args, ctx) => accounts.listSessions(ctx),
  }),
);

builder.mutationFields((t) => ({
  signUp: t.field({
    type: AuthPayloadRef,
    description: "Registers an end user and signs them in. FORBIDDEN unless the tenant enables self sign-up.",
    authScopes: { public: true },
    args: { input: t.arg({ type: SignUpInput, required: true, description: "The new account." }) },
    resolve: (_root, { input }, ctx) => accounts.signUp(ctx, input),
  }),
  signIn: t.field({
    type: AuthPayloadRef,
    description:
      "Signs in with email and password. Wrong credentials: UNAUTHENTICATED; repeated failures: RATE_LIMITED with extensions.retryAfterSeconds.",
    authScopes: { public: true },
    args: { input: t.arg({ type: SignInInput, required: true, description: "The credentials." }) },
    resolve: (_root, { input }, ctx) => accounts.signIn(ctx, input),
  }),
  signInWithEmailCode: t.field({
    type: AuthPayloadRef,
    description: "Signs in with a SIGN_IN code from requestEmailCode (where the tenant enables EMAIL_CODE).",
    authScopes: { public: true },
    args: { input: t.arg({ type: SignInWithEmailCodeInput, required: true, description: "The code." }) },
    resolve: (_root, { input }, ctx) => accounts.signInWithEmailCode(ctx, input),
  }),
  refreshSession: t.field({
    type: AuthPayloadRef,
    description:
      "Trades a refresh token for a new access and refresh token. A refresh token works once; presenting a used one ends the whole session.",
    authScopes: { public: true },
    args: { refreshToken: t.arg.string({ required: true, description: "The current refresh token." }) },
    resolve: (_root, args, ctx) => accounts.refreshSession(ctx, args.refreshToken),
  }),
  signOut: t.boolean({
    description: "Ends the current session: its tokens stop working and its sockets close with 4403.",
    authScopes: { user: true },
    resolve: (_root, _args, ctx) => accounts.signOut(ctx),
  }),
  revokeSession: t.boolean({
    description: "Ends one of the viewer's sessions (see `sessions`).",
    authScopes: { user: true },
    args: { id: t.arg.id({ required: true, description: "Session id." }) },
    resolve: (_root, args, ctx) => accounts.revokeSession(ctx, args.id),
  }),
  signOutEverywhere: t.boolean({
    description: "Ends every session and token of the viewer, on every device.",
    authScopes: { user: true },
    resolve: (_root, _args, ctx) => accounts.signOutEverywhere(ctx),
  }),
  requestEmailCode: t.boolean({
    description:
      "Emails a one-time code. Always true, after the same work, whether or not the address has an account (the mail is sent after answering). Codes expire after EMAIL_CODE_TTL_SECONDS, work once and allow 5 wrong guesses.",
    authScopes: { public: true },
    args: { input: t.arg({ type: RequestEmailCodeInput, required: true, description: "Address and purpose." }) },
    resolve: (_root, { input }, ctx) => accounts.requestEmailCode(ctx, input),
  }),
  requestEmailChange: t.boolean({
    description:
      "Starts changing the viewer's email address: mails a code to the new address (verifyEmail applies it) and a notice to the current one. Always true, also when another account has the address (that inbox then gets a notice, no code). RATE_LIMITED after a few requests per address or per user.",
    authScopes: { user: true },
    args: { newEmail: t.arg.string({ required: true, description: `The new email address, ${rule(zEmail)}.` }) },
    resolve: (_root, args, ctx) => accounts.requestEmailChange(ctx, args.newEmail),
  }),
  verifyEmail: t.prismaField({
    type: "User",
    description:
      "Redeems a code mailed to the viewer: the code of a pending requestEmailChange moves the account to the new address; a VERIFY_EMAIL code confirms the current one. Either way the address is then verified. CONFLICT when another account took the new address meanwhile.",
    authScopes: { user: true },
    args: { code: t.arg.string({ required: true, description: "The 6-digit code." }) },
    resolve: (_query, _root, args, ctx) => accounts.verifyEmail(ctx, args.code),
  }),
  resetPassword: t.boolean({
    description: "Sets a new password with a RESET_PASSWORD code; every session of the account ends.",
    authScopes: { public: true },
    args: { input: t.arg({ type: ResetPasswordInput, required: true, description: "Code and new password." }) },
    resolve: (_root, { input }, ctx) => accounts.resetPassword(ctx, input),
  }),
  changePassword: t.boolean({
    description: "Changes the viewer's password; their other sessions end.",
    authScopes: { user: true },
    args: { input: t.arg({ type: ChangePasswordInput, required: true, description: "Old and new password." }) },
    resolve: (_root, { input }, ctx) => accounts.changePassword(ctx, input),
  }),
  updateProfile: t.prismaField({
    type: "User",
    description: "Updates the viewer's own name, phone and avatar.",
    authScopes: { user: true },
    args: { input: t.arg({ type: UpdateProfileInput, required: true, description: "The changes." }) },
    resolve: (_query, _root, { input }, ctx) => accounts.updateProfile(ctx, input),
  }),
}));
