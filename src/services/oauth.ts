import { createHash } from "node:crypto";
import * as client from "openid-client";
import { safeEqual } from "../auth/secrets.ts";
import type { Context } from "../context.ts";
import { appError } from "../errors.ts";
import type { Tenant, User } from "../generated/prisma/client.ts";
import { type AuthPayload, startSession } from "./accounts.ts";
import { recordUserCreated } from "./users.ts";
import { parseId } from "./validation.ts";

export type Provider = "google" | "github";
const METHOD = { google: "GOOGLE", github: "GITHUB" } as const;
/** How long a started sign-in may take; the browser cookie that binds it lives as long. */
export const STATE_TTL_SECONDS = 10 * 60;

interface ProviderSetup {
  config: client.Configuration;
  scope: string;
  /** OpenID Connect providers return a signed ID token with a nonce to check. */
  oidc: boolean;
}

/** Provider configurations, discovered once per process (Google) or built from settings (GitHub). */
const setups = new Map<string, Promise<ProviderSetup>>();

function setupOf(ctx: Context, provider: Provider): Promise<ProviderSetup> {
  const { google, github } = ctx.deps.config;
  const settings = provider === "google" ? google : github;
  if (!settings.clientId || !settings.clientSecret) {
    throw appError("FORBIDDEN", `Sign-in with ${provider} is not configured on this server`);
  }
  const key = `${provider}:${settings.clientId}:${provider === "google" ? google.issuer : github.authorizeUrl}`;
  let setup = setups.get(key);
  if (!setup) {
    // Plain http is only for a provider on this machine (tests, local development).
    const local = (url: string) => /^http:\/\/(localhost|127\.0\.0\.1)(:|\/|$)/.test(url);
    setup =
      provider === "google"
        ? client
            .discovery(new URL(google.issuer), google.clientId as string, google.clientSecret, undefined, {
              execute: local(google.issuer) ? [client.allowInsecureRequests] : [],
            })
            .then((config) => ({ config, scope: "openid email profile", oidc: true }))
        : Promise.resolve().then(() => {
            const config = new client.Configuration(
              {
                issuer: new URL(github.authorizeUrl).origin,
                authorization_endpoint: github.authorizeUrl,
                token_endpoint: github.tokenUrl,
              },
              github.clientId as string,
              github.clientSecret,
            );
            if (local(github.tokenUrl)) client.allowInsecureRequests(config);
            return { config, scope: "read:user user:email", oidc: false };
          });
    setup.catch(() => setups.delete(key));
    setups.set(key, setup);
  }
  return setup;
}

function callbackUrl(ctx: Context, provider: Provider): string {
  const origin = ctx.deps.config.publicUrl ?? ctx.origin ?? "";
  return `${origin}/auth/${provider}/callback`;
}

/** The hash of a browser key, as stored with the attempt (and, for Google, sent as the nonce). */
const browserKeyHash = (key: string) => createHash("sha256").update(key).digest("base64url");

export interface StartedSignIn {
  /** The provider's authorization URL to redirect the browser to. */
  url: URL;
  /**
   * A secret for the browser that started the attempt only (the caller sets it as a
   * cookie): the callback is refused unless the same browser presents it, so nobody can
   * finish a sign-in of theirs in someone else's browser (login CSRF).
   */
  browserKey: string;
}

/**
 * Starts a sign-in with a provider: checks the tenant allows it and the app's return
 * address is registered, stores state, PKCE verifier and the browser key's hash, and
 * returns the provider's authorization URL with the key for the browser.
 */
export async function startProviderSignIn(
  ctx: Context,
  provider: Provider,
  tenantId: string | null,
  redirectUri: string | null,
): Promise<StartedSignIn> {
  const tenant = await ctx.deps.db.prisma.tenant.findUnique({ where: { id: parseId("tenantId", tenantId ?? "") } });
  if (!tenant?.active || !tenant.signInMethods.includes(METHOD[provider])) {
    throw appError("FORBIDDEN", `Sign-in with ${provider} is not enabled for this tenant`);
  }
  if (!redirectUri || !tenant.oauthRedirectUris.includes(redirectUri)) {
    throw appError("BAD_USER_INPUT", "redirectUri is not registered for this tenant", { field: "redirectUri" });
  }
  const setup = await setupOf(ctx, provider);
  // Abandoned attempts are removed as new ones start, so the table cannot grow without bound.
  await ctx.deps.db.prisma.oAuthState.deleteMany({ where: { expiresAt: { lt: new Date() } } });
  await ctx.deps.limits.address.check(ctx.client?.address ?? "unknown");
  const state = client.randomState();
  const browserKey = client.randomState();
  // The nonce is the hash of the browser's key (OpenID Connect Core 15.5.2): the row keeps
  // only the hash, and Google's ID token must carry the same value back.
  const nonce = browserKeyHash(browserKey);
  const codeVerifier = client.randomPKCECodeVerifier();
  await ctx.deps.db.prisma.oAuthState.create({
    data: {
      id: state,
      tenantId: tenant.id,
      provider,
      codeVerifier,
      nonce,
      redirectUri,
      expiresAt: new Date(Date.now() + STATE_TTL_SECONDS * 1000),
    },
  });
  const url = client.buildAuthorizationUrl(setup.config, {
    redirect_uri: callbackUrl(ctx, provider),
    scope: setup.scope,
    state,
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: "S256",
    ...(setup.oidc ? { nonce } : {}),
  });
  return { url, browserKey };
}

interface ProviderAccount {
  subject: string;
  email: string;
  name: string | null;
}

async function githubAccount(ctx: Context, accessToken: string): Promise<ProviderAccount> {
  const api = ctx.deps.config.github.apiUrl;
  const headers = { authorization: `Bearer ${accessToken}`, accept: "application/vnd.github+json" };
  const [user, emails] = await Promise.all([
    fetch(`${api}/user`, { headers }).then((r) =>
      r.ok ? r.json() : Promise.reject(new Error(`GitHub user: ${r.status}`)),
    ),
    fetch(`${api}/user/emails`, { headers }).then((r) =>
      r.ok ? r.json() : Promise.reject(new Error(`GitHub emails: ${r.status}`)),
    ),
  ]);
  const primary = (emails as { email: string; primary: boolean; verified: boolean }[]).find(
    (entry) => entry.primary && entry.verified,
  );
  if (!primary) throw appError("FORBIDDEN", "The GitHub account has no verified primary email");
  const profile = user as { id: number | string; name?: string | null; login?: string };
  return {
    subject: String(profile.id),
    email: primary.email.toLowerCase(),
    name: profile.name ?? profile.login ?? null,
  };
}

/**
 * What a failed callback tells the route: where to send the browser with the error (when
 * the attempt named a registered address), and whether an attempt was found and so ended
 * (the browser's cookie for it is then cleared; an unknown state leaves it alone).
 */
export interface CallbackFailure {
  redirectUri?: string;
  attemptEnded?: boolean;
}

function failure(error: unknown, details: CallbackFailure): Error & CallbackFailure {
  return Object.assign(error instanceof Error ? error : new Error(String(error)), details);
}

/**
 * Completes a provider sign-in: checks the attempt was started by this browser
 * (`browserKey`, from its cookie), exchanges the code (checking state, PKCE and nonce),
 * then signs in the user linked to that provider account, or links the tenant's user
 * with the same address where both the provider and this server have verified it, or
 * creates one where the tenant allows sign-up.
 */
export async function finishProviderSignIn(
  ctx: Context,
  provider: Provider,
  currentUrl: URL,
  browserKey: string | null,
): Promise<{ redirectUri: string; payload: AuthPayload }> {
  const db = ctx.deps.db.prisma;
  const stateId = currentUrl.searchParams.get("state") ?? "";
  // Single use: the state row is deleted as it is read.
  const state = await db.oAuthState.delete({ where: { id: stateId } }).catch(() => null);
  if (!state) {
    throw appError("BAD_USER_INPUT", "Unknown or expired sign-in attempt; start again", { field: "state" });
  }
  if (state.provider !== provider || state.expiresAt < new Date()) {
    throw failure(appError("BAD_USER_INPUT", "Unknown or expired sign-in attempt; start again", { field: "state" }), {
      attemptEnded: true,
    });
  }
  const tenant = await db.tenant.findUniqueOrThrow({ where: { id: state.tenantId } });
  // The tenant may have changed its mind since the start: check again before any token.
  if (!tenant.oauthRedirectUris.includes(state.redirectUri)) {
    throw failure(
      appError("BAD_USER_INPUT", "redirectUri is no longer registered for this tenant", { field: "redirectUri" }),
      { attemptEnded: true },
    );
  }
  try {
    // Before anything reaches the provider: a callback opened in another browser than the
    // one that started the attempt is someone else's sign-in (login CSRF).
    if (!browserKey || !safeEqual(browserKeyHash(browserKey), state.nonce)) {
      throw appError("FORBIDDEN", "This sign-in was started in another browser; start again from this one");
    }
    if (!tenant.active || !tenant.signInMethods.includes(METHOD[provider])) {
      throw appError("FORBIDDEN", `Sign-in with ${provider} is not enabled for this tenant`);
    }
    const setup = await setupOf(ctx, provider);
    const callback = new URL(callbackUrl(ctx, provider));
    for (const [key, value] of currentUrl.searchParams) callback.searchParams.set(key, value);
    const tokens = await client.authorizationCodeGrant(setup.config, callback, {
      pkceCodeVerifier: state.codeVerifier,
      expectedState: state.id,
      ...(setup.oidc ? { expectedNonce: state.nonce } : {}),
    });
    let account: ProviderAccount;
    if (setup.oidc) {
      const claims = tokens.claims();
      if (!claims?.sub || typeof claims.email !== "string" || claims.email_verified !== true) {
        throw appError("FORBIDDEN", "The Google account has no verified email");
      }
      account = {
        subject: claims.sub,
        email: claims.email.toLowerCase(),
        name: typeof claims.name === "string" ? claims.name : null,
      };
    } else {
      account = await githubAccount(ctx, tokens.access_token);
    }
    const user = await linkUser(ctx, tenant, provider, account);
    return { redirectUri: state.redirectUri, payload: await startSession(ctx, tenant, user, METHOD[provider]) };
  } catch (error) {
    throw failure(error, { redirectUri: state.redirectUri, attemptEnded: true });
  }
}

async function linkUser(ctx: Context, tenant: Tenant, provider: Provider, account: ProviderAccount): Promise<User> {
  const db = ctx.deps.db.prisma;
  const identity = await db.identity.findUnique({
    where: { tenantId_provider_subject: { tenantId: tenant.id, provider, subject: account.subject } },
    include: { user: true },
  });
  if (identity) {
    if (!identity.user.active || identity.user.deletedAt) throw appError("FORBIDDEN", "This account is deactivated");
    return identity.user;
  }
  return db.$transaction(async (tx) => {
    let user = await tx.user.findFirst({ where: { tenantId: tenant.id, email: account.email, deletedAt: null } });
    if (user && !user.active) throw appError("FORBIDDEN", "This account is deactivated");
    // Anyone may register an address they cannot read (sign-up mails a code, but does not
    // wait for it). Linking such an account would hand the address's owner an account
    // whose password someone else set, or let that someone keep a way in: link only an
    // account that has proved the address itself; the provider's word is not enough.
    if (user && !user.emailVerifiedAt) {
      throw appError(
        "FORBIDDEN",
        "An account with this email exists but its address is not verified: sign in to it and verify the address first",
      );
    }
    if (!user) {
      if (!tenant.selfSignUp) throw appError("FORBIDDEN", "No account with this email, and sign-up is closed");
      user = await tx.user.create({
        data: {
          tenantId: tenant.id,
          email: account.email,
          name: account.name ?? account.email.split("@")[0] ?? "User",
          emailVerifiedAt: new Date(),
        },
      });
      if (tenant.defaultRoleId) {
        await tx.userRole.create({ data: { tenantId: tenant.id, userId: user.id, roleId: tenant.defaultRoleId } });
      }
      await recordUserCreated(ctx.deps.webhooks, tx, user, null);
    }
    await tx.identity.create({
      data: { tenantId: tenant.id, provider, subject: account.subject, userId: user.id, email: account.email },
    });
    return user;
  });
}
