import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { fails, ok, subscribe, wsClient } from "../helpers/client.ts";
import { RefreshSessionBrief, RevokeSession, Sessions, SignUp } from "../operations/accounts.ts";
import { MessageAdded } from "../operations/events.ts";
import { CreateRole } from "../operations/roles.ts";
import { UpdateTenantWithDefaultRole } from "../operations/tenants.ts";
import { UpdateUser, Viewer } from "../operations/users.ts";
import {
  clientCredentials,
  decodeJwt,
  GOOGLE_CLIENT,
  googleAccount,
  s256,
  suffix,
  USER_AGENT,
  useOAuthServer,
} from "./helpers.ts";

/** Google (OpenID Connect): the flow, its tokens and sessions, users created or linked, refused tokens. */
describe.each(backends())("Google and GitHub sign-in on %s", (backend) => {
  const world = useOAuthServer(backend);
  const {
    googleTokenCalls,
    createAuthTenant,
    toProvider,
    toCallback,
    callback,
    expectTokens,
    expectDenied,
    signIn,
    denied,
    viewerOf,
    usersWith,
    createVerifiedUser,
  } = world;

  // -------------------------------------------------------------------------------------------
  // Google
  // -------------------------------------------------------------------------------------------

  describe("Google (OpenID Connect)", () => {
    it("start redirects to the discovered authorize endpoint with PKCE (S256), state and nonce", async () => {
      const tenant = await createAuthTenant();
      const authorizeUrl = await toProvider("google", tenant);
      expect(`${authorizeUrl.origin}${authorizeUrl.pathname}`).toBe(`${world.googleIssuer}/authorize`);
      const params = authorizeUrl.searchParams;
      expect(params.get("response_type")).toBe("code");
      expect(params.get("client_id")).toBe(GOOGLE_CLIENT.clientId);
      expect(params.get("redirect_uri")).toBe(`${world.base}/auth/google/callback`);
      expect(params.get("scope")?.split(" ")).toEqual(expect.arrayContaining(["openid", "email"]));
      expect(params.get("code_challenge_method")).toBe("S256");
      expect(params.get("code_challenge")).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(params.get("state")).toMatch(/^[A-Za-z0-9_-]{22,}$/);
      expect(params.get("nonce")).toMatch(/^[A-Za-z0-9_-]{22,}$/);
      expect(params.get("nonce")).not.toBe(params.get("state"));
      // The client secret never travels through the browser.
      expect(authorizeUrl.href).not.toContain(GOOGLE_CLIENT.clientSecret);

      // Every attempt has its own state, nonce and verifier.
      const again = (await toProvider("google", tenant)).searchParams;
      expect(again.get("state")).not.toBe(params.get("state"));
      expect(again.get("nonce")).not.toBe(params.get("nonce"));
      expect(again.get("code_challenge")).not.toBe(params.get("code_challenge"));
    });

    it("the full flow lands on the app with tokens; the code exchange carries the PKCE verifier and secret", async () => {
      const tenant = await createAuthTenant();
      world.googleClaims = googleAccount();
      const before = Date.now();
      const { authorizeUrl, callbackUrl } = await toCallback("google", tenant);
      expect(callbackUrl.searchParams.get("state")).toBe(authorizeUrl.searchParams.get("state"));
      const landing = await expectTokens(await callback(callbackUrl), tenant.redirectUri);
      const after = Date.now();

      // Lifetimes are the tenant's, as for a password sign-in.
      expect(landing.expiresAt.getTime()).toBeGreaterThanOrEqual(before + tenant.accessTokenTtlSeconds * 1000 - 2000);
      expect(landing.expiresAt.getTime()).toBeLessThanOrEqual(after + tenant.accessTokenTtlSeconds * 1000 + 2000);
      expect(landing.refreshExpiresAt.getTime()).toBeGreaterThanOrEqual(
        before + tenant.refreshTokenTtlSeconds * 1000 - 2000,
      );
      expect(landing.refreshExpiresAt.getTime()).toBeLessThanOrEqual(
        after + tenant.refreshTokenTtlSeconds * 1000 + 2000,
      );

      // The provider saw one code exchange: this code, the callback URL, the verifier of the challenge.
      const exchange = googleTokenCalls.at(-1);
      if (!exchange) expect.fail("the provider saw no token request");
      expect(exchange.body.grant_type).toBe("authorization_code");
      expect(exchange.body.code).toBe(callbackUrl.searchParams.get("code"));
      expect(exchange.body.redirect_uri).toBe(`${world.base}/auth/google/callback`);
      expect(exchange.body.code_verifier).toMatch(/^[A-Za-z0-9._~-]{43,128}$/);
      expect(s256(exchange.body.code_verifier ?? "")).toBe(authorizeUrl.searchParams.get("code_challenge"));
      expect(clientCredentials(exchange)).toEqual({ id: GOOGLE_CLIENT.clientId, secret: GOOGLE_CLIENT.clientSecret });

      // The access token works over HTTP.
      const viewer = await viewerOf(landing.accessToken);
      expect(viewer.user.email).toBe(world.googleClaims.email);
      expect(viewer.user.name).toBe(world.googleClaims.name);
      expect(viewer.tenant.id).toBe(tenant.id);
    });

    it("the access token works on a graphql-ws WebSocket", async () => {
      const tenant = await createAuthTenant();
      world.googleClaims = googleAccount();
      const { accessToken } = await signIn("google", tenant);
      const client = wsClient(world.wsUrl, { token: accessToken });
      try {
        const result = await subscribe(client, Viewer).next();
        expect(result.errors).toBeUndefined();
        expect(result.data?.viewer.user?.email).toBe(world.googleClaims.email);
        expect(result.data?.viewer.tenant.id).toBe(tenant.id);
      } finally {
        await client.dispose();
      }
    });

    it("sessions show method GOOGLE; refreshSession rotates the tokens and detects reuse", async () => {
      const tenant = await createAuthTenant();
      world.googleClaims = googleAccount();
      const landing = await signIn("google", tenant);

      const { sessions } = await ok(world.url, Sessions, undefined, { token: landing.accessToken });
      expect(sessions).toHaveLength(1);
      expect(sessions[0]).toMatchObject({ method: "GOOGLE", current: true, userAgent: USER_AGENT });
      const sessionId = sessions[0]?.id;

      const { refreshSession: refreshed } = await ok(world.url, RefreshSessionBrief, {
        refreshToken: landing.refreshToken,
      });
      expect(refreshed.session).toEqual({ id: sessionId, method: "GOOGLE" });
      expect(refreshed.user.email).toBe(world.googleClaims.email);
      expect(refreshed.accessToken).not.toBe(landing.accessToken);
      expect(refreshed.refreshToken).not.toBe(landing.refreshToken);
      expect((await viewerOf(refreshed.accessToken)).user.email).toBe(world.googleClaims.email);

      // Presenting the spent refresh token again ends the whole session.
      await fails(world.url, RefreshSessionBrief, { refreshToken: landing.refreshToken }, undefined, "UNAUTHENTICATED");
      await fails(world.url, Viewer, undefined, { token: refreshed.accessToken }, "UNAUTHENTICATED");
      await fails(
        world.url,
        RefreshSessionBrief,
        { refreshToken: refreshed.refreshToken },
        undefined,
        "UNAUTHENTICATED",
      );
    });

    it("issues the same kind of tokens as a password sign-in", async () => {
      const tenant = await createAuthTenant();
      world.googleClaims = googleAccount();
      const viaGoogle = await signIn("google", tenant);
      const { signUp } = await ok(world.url, SignUp, {
        input: {
          tenantId: tenant.id,
          email: `pw-${suffix()}@example.com`,
          name: "Pat Password",
          password: "a long password 123",
        },
      });
      expect(signUp.session.method).toBe("PASSWORD");
      const google = decodeJwt(viaGoogle.accessToken);
      const password = decodeJwt(signUp.accessToken);
      expect(google.header).toEqual(password.header);
      expect(Object.keys(google.payload).sort()).toEqual(Object.keys(password.payload).sort());
      expect(viaGoogle.refreshToken.split("_")[0]).toBe(signUp.refreshToken.split("_")[0]);
      expect(viaGoogle.refreshToken.length).toBe(signUp.refreshToken.length);
    });

    it("revoking the Google session closes its WebSocket with 4403", async () => {
      const tenant = await createAuthTenant();
      world.googleClaims = googleAccount();
      const { accessToken } = await signIn("google", tenant);
      const { sessions } = await ok(world.url, Sessions, undefined, { token: accessToken });
      const client = wsClient(world.wsUrl, { token: accessToken });
      try {
        const subscription = subscribe(client, MessageAdded);
        await subscription.expectSilence(300);
        await ok(world.url, RevokeSession, { id: sessions[0]?.id ?? "" }, { token: accessToken });
        const closed = await Promise.race([
          client.closed,
          new Promise<null>((resolve) => setTimeout(() => resolve(null), 5000)),
        ]);
        expect(closed?.code).toBe(4403);
        await fails(world.url, Viewer, undefined, { token: accessToken }, "UNAUTHENTICATED");
      } finally {
        await client.dispose();
      }
    });

    it("creates a new user with the tenant's default role when self sign-up is on", async () => {
      const tenant = await createAuthTenant();
      const { createRole: role } = await ok(
        world.url,
        CreateRole,
        { input: { name: `oauth-default-${suffix()}`, permissions: ["chats:read", "users:read"] } },
        { apiKey: tenant.apiKey },
      );
      const { updateTenant } = await ok(
        world.url,
        UpdateTenantWithDefaultRole,
        { input: { defaultRoleId: role.id } },
        { apiKey: tenant.apiKey },
      );
      expect(updateTenant.defaultRole?.id).toBe(role.id);

      world.googleClaims = googleAccount({ email: `New.Person-${suffix()}@Gmail.test` });
      const { accessToken } = await signIn("google", tenant);
      const viewer = await viewerOf(accessToken);
      const email = (world.googleClaims.email ?? "").toLowerCase();
      expect(viewer.user.email).toBe(email);
      expect(viewer.roles.map((r) => r.id)).toEqual([role.id]);
      const found = await usersWith(tenant, email);
      expect(found.map((u) => u.id)).toEqual([viewer.user.id]);
    });

    it("with self sign-up off and no user with that email: error redirect, nothing created", async () => {
      const tenant = await createAuthTenant({ selfSignUp: false });
      world.googleClaims = googleAccount();
      const description = await denied("google", tenant);
      expect(description).toMatch(/sign-up|account/i);
      expect(await usersWith(tenant, world.googleClaims.email ?? "")).toEqual([]);
    });

    it("links the existing user with the same email instead of creating another, and keeps the link when the email changes", async () => {
      // Sign-up closed: linking an existing account does not need it.
      const tenant = await createAuthTenant({ selfSignUp: false });
      const email = `linked-${suffix()}@example.com`;
      const existing = await createVerifiedUser(tenant, email, "Lin Ked");

      const account = googleAccount({ email: email.toUpperCase(), name: "Someone Else" });
      world.googleClaims = account;
      const first = await signIn("google", tenant);
      const viewer = await viewerOf(first.accessToken);
      expect(viewer.user.id).toBe(existing.id);
      expect(viewer.user.name).toBe("Lin Ked");
      expect((await usersWith(tenant, email)).map((u) => u.id)).toEqual([existing.id]);

      // The same Google account later reports another address: still the same user, nobody new.
      const changed = `changed-${suffix()}@gmail.test`;
      world.googleClaims = { ...account, email: changed };
      const second = await signIn("google", tenant);
      expect((await viewerOf(second.accessToken)).user.id).toBe(existing.id);
      expect(await usersWith(tenant, changed)).toEqual([]);

      // With sign-up open the link still wins over creating a user for the new address.
      await ok(
        world.url,
        UpdateTenantWithDefaultRole,
        { input: { auth: { selfSignUp: true } } },
        { apiKey: tenant.apiKey },
      );
      const third = await signIn("google", tenant);
      expect((await viewerOf(third.accessToken)).user.id).toBe(existing.id);
      expect(await usersWith(tenant, changed)).toEqual([]);
    });

    it("an unverified email at the provider is refused and links nothing", async () => {
      const tenant = await createAuthTenant({ selfSignUp: false });
      const email = `victim-${suffix()}@example.com`;
      const existing = await createVerifiedUser(tenant, email);

      const account = googleAccount({ email, email_verified: false });
      world.googleClaims = account;
      await denied("google", tenant);

      // A missing email_verified claim is not a verified email either.
      world.googleClaims = { ...account, email_verified: undefined };
      await denied("google", tenant);

      // No identity was stored: the same account with another (verified) address is a stranger.
      world.googleClaims = { ...account, email: `other-${suffix()}@gmail.test`, email_verified: true };
      await denied("google", tenant);

      // With sign-up open an unverified address still does not create a user.
      await ok(
        world.url,
        UpdateTenantWithDefaultRole,
        { input: { auth: { selfSignUp: true } } },
        { apiKey: tenant.apiKey },
      );
      const fresh = `fresh-${suffix()}@gmail.test`;
      world.googleClaims = googleAccount({ email: fresh, email_verified: false });
      await denied("google", tenant);
      expect(await usersWith(tenant, fresh)).toEqual([]);
      expect((await usersWith(tenant, email)).map((u) => u.id)).toEqual([existing.id]);
    });

    it("a deactivated user is refused, whether found by email or by a stored link", async () => {
      const tenant = await createAuthTenant();

      // Found by email.
      const email = `inactive-${suffix()}@example.com`;
      const user = await createVerifiedUser(tenant, email);
      await ok(world.url, UpdateUser, { id: user.id, input: { active: false } }, { apiKey: tenant.apiKey });
      world.googleClaims = googleAccount({ email });
      expect(await denied("google", tenant)).toMatch(/deactivated/i);
      expect((await usersWith(tenant, email)).map((u) => u.id)).toEqual([user.id]);

      // Found by a link made while it was active.
      const linkedEmail = `linked-${suffix()}@example.com`;
      const linked = await createVerifiedUser(tenant, linkedEmail);
      const account = googleAccount({ email: linkedEmail });
      world.googleClaims = account;
      expect((await viewerOf((await signIn("google", tenant)).accessToken)).user.id).toBe(linked.id);
      await ok(world.url, UpdateUser, { id: linked.id, input: { active: false } }, { apiKey: tenant.apiKey });
      await denied("google", tenant);
      await ok(world.url, UpdateUser, { id: linked.id, input: { active: true } }, { apiKey: tenant.apiKey });
      expect((await viewerOf((await signIn("google", tenant)).accessToken)).user.id).toBe(linked.id);
    });

    it("an ID token with the wrong nonce, or for another client, is refused", async () => {
      const tenant = await createAuthTenant();
      world.googleClaims = googleAccount();
      // The provider signs whatever nonce the authorize request carried: change it on the way.
      const { callbackUrl } = await toCallback("google", tenant, (authorizeUrl) =>
        authorizeUrl.searchParams.set("nonce", `forged-${suffix()}`),
      );
      await expectDenied(await callback(callbackUrl), tenant.redirectUri);

      world.googleClaims = googleAccount({ aud: "someone-elses-client" });
      await denied("google", tenant);
      expect(await usersWith(tenant, "gmail.test")).toEqual([]);
    });

    it("a code bound to another PKCE challenge fails the exchange", async () => {
      const tenant = await createAuthTenant();
      world.googleClaims = googleAccount();
      const forged = s256(randomBytes(32).toString("base64url"));
      const { callbackUrl } = await toCallback("google", tenant, (authorizeUrl) =>
        authorizeUrl.searchParams.set("code_challenge", forged),
      );
      await expectDenied(await callback(callbackUrl), tenant.redirectUri);
      expect(await usersWith(tenant, world.googleClaims.email ?? "")).toEqual([]);
    });
  });
});
