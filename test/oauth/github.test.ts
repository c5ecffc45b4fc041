import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { ok } from "../helpers/client.ts";
import { RefreshSessionBrief, Sessions } from "../operations/accounts.ts";
import {
  clientCredentials,
  GITHUB_CLIENT,
  type GithubEmail,
  githubAccount,
  s256,
  suffix,
  useOAuthServer,
} from "./helpers.ts";

/** GitHub (OAuth 2): the flow, users created or linked by verified primary email, API failures. */
describe.each(backends())("Google and GitHub sign-in on %s", (backend) => {
  const world = useOAuthServer(backend);
  const {
    githubTokenCalls,
    githubIssuedTokens,
    githubApiCalls,
    createAuthTenant,
    toProvider,
    toCallback,
    callback,
    expectTokens,
    signIn,
    denied,
    viewerOf,
    usersWith,
    createVerifiedUser,
  } = world;

  // -------------------------------------------------------------------------------------------
  // GitHub
  // -------------------------------------------------------------------------------------------

  describe("GitHub (OAuth 2)", () => {
    it("start redirects to the configured authorize URL with PKCE (S256) and state", async () => {
      const tenant = await createAuthTenant();
      const authorizeUrl = await toProvider("github", tenant);
      expect(`${authorizeUrl.origin}${authorizeUrl.pathname}`).toBe(`${world.githubIssuer}/authorize`);
      const params = authorizeUrl.searchParams;
      expect(params.get("response_type")).toBe("code");
      expect(params.get("client_id")).toBe(GITHUB_CLIENT.clientId);
      expect(params.get("redirect_uri")).toBe(`${world.base}/auth/github/callback`);
      expect(params.get("scope")?.split(" ")).toEqual(expect.arrayContaining(["read:user", "user:email"]));
      expect(params.get("code_challenge_method")).toBe("S256");
      expect(params.get("code_challenge")).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(params.get("state")).toMatch(/^[A-Za-z0-9_-]{22,}$/);
      expect(authorizeUrl.href).not.toContain(GITHUB_CLIENT.clientSecret);
    });

    it("the full flow creates the user from the verified primary email; the API gets the access token as Bearer", async () => {
      const tenant = await createAuthTenant();
      world.githubUser = githubAccount();
      const primary = world.githubUser.emails.find((e) => e.primary)?.email ?? "";
      const secondary = world.githubUser.emails.find((e) => !e.primary)?.email ?? "";
      const apiCallsBefore = githubApiCalls.length;

      const { authorizeUrl, callbackUrl } = await toCallback("github", tenant);
      const landing = await expectTokens(await callback(callbackUrl), tenant.redirectUri);

      const exchange = githubTokenCalls.at(-1);
      if (!exchange) expect.fail("the provider saw no token request");
      expect(exchange.body.grant_type).toBe("authorization_code");
      expect(exchange.body.code).toBe(callbackUrl.searchParams.get("code"));
      expect(exchange.body.redirect_uri).toBe(`${world.base}/auth/github/callback`);
      expect(s256(exchange.body.code_verifier ?? "")).toBe(authorizeUrl.searchParams.get("code_challenge"));
      expect(clientCredentials(exchange)).toEqual({ id: GITHUB_CLIENT.clientId, secret: GITHUB_CLIENT.clientSecret });

      const issued = githubIssuedTokens.at(-1);
      const apiCalls = githubApiCalls.slice(apiCallsBefore);
      expect(apiCalls.map((c) => c.path).sort()).toEqual(["/user", "/user/emails"]);
      for (const call of apiCalls) expect(call.authorization).toBe(`Bearer ${issued}`);

      const viewer = await viewerOf(landing.accessToken);
      expect(viewer.user.email).toBe(primary);
      expect(viewer.user.name).toBe(world.githubUser.user.name);
      expect(viewer.roles.map((r) => r.id)).toEqual([tenant.defaultRoleId]);
      expect(await usersWith(tenant, secondary)).toEqual([]);

      const { sessions } = await ok(world.url, Sessions, undefined, { token: landing.accessToken });
      expect(sessions.map((s) => s.method)).toEqual(["GITHUB"]);
      const { refreshSession } = await ok(world.url, RefreshSessionBrief, { refreshToken: landing.refreshToken });
      expect(refreshSession.session.method).toBe("GITHUB");
      expect((await viewerOf(refreshSession.accessToken)).user.id).toBe(viewer.user.id);
    });

    it("uses the login as the name when the profile has none", async () => {
      const tenant = await createAuthTenant();
      world.githubUser = githubAccount();
      world.githubUser.user.name = null;
      const { accessToken } = await signIn("github", tenant);
      expect((await viewerOf(accessToken)).user.name).toBe(world.githubUser.user.login);
    });

    it("links the existing user by verified primary email and keeps the link when the email changes", async () => {
      const tenant = await createAuthTenant({ selfSignUp: false });
      world.githubUser = githubAccount();
      const primary = world.githubUser.emails.find((e) => e.primary)?.email ?? "";
      const existing = await createVerifiedUser(tenant, primary, "Hub User");

      const first = await signIn("github", tenant);
      expect((await viewerOf(first.accessToken)).user.id).toBe(existing.id);
      expect((await usersWith(tenant, primary)).map((u) => u.id)).toEqual([existing.id]);

      const changed = `moved-${suffix()}@github.test`;
      world.githubUser = { ...world.githubUser, emails: [{ email: changed, primary: true, verified: true }] };
      const second = await signIn("github", tenant);
      expect((await viewerOf(second.accessToken)).user.id).toBe(existing.id);
      expect(await usersWith(tenant, changed)).toEqual([]);
    });

    it("no verified primary email: error redirect, nothing created or linked", async () => {
      const tenant = await createAuthTenant();
      const id = suffix();
      const unverifiedPrimary = `primary-${id}@github.test`;
      const verifiedSecondary = `secondary-${id}@github.test`;
      const existing = await createVerifiedUser(tenant, unverifiedPrimary);
      const account = githubAccount();

      const cases: GithubEmail[][] = [
        [
          { email: unverifiedPrimary, primary: true, verified: false },
          { email: verifiedSecondary, primary: false, verified: true },
        ],
        [{ email: verifiedSecondary, primary: false, verified: true }],
        [],
      ];
      for (const emails of cases) {
        world.githubUser = { ...account, emails };
        await denied("github", tenant);
      }
      expect(await usersWith(tenant, verifiedSecondary)).toEqual([]);

      // Nothing was linked: once GitHub verifies the address, the user with it is linked then.
      world.githubUser = { ...account, emails: [{ email: unverifiedPrimary, primary: true, verified: true }] };
      expect((await viewerOf((await signIn("github", tenant)).accessToken)).user.id).toBe(existing.id);
    });

    it("a failing GitHub API sends the browser back to the app with an error", async () => {
      const tenant = await createAuthTenant();
      world.githubUser = githubAccount();
      world.githubEmailsStatus = 500;
      try {
        await denied("github", tenant);
      } finally {
        world.githubEmailsStatus = 200;
      }
      const primary = world.githubUser.emails.find((e) => e.primary)?.email ?? "";
      expect(await usersWith(tenant, primary)).toEqual([]);
    });
  });
});
