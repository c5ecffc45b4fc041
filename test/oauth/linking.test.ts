import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { ok } from "../helpers/client.ts";
import { SignIn, SignUp } from "../operations/accounts.ts";
import { IssueUserToken } from "../operations/users.ts";
import { githubAccount, googleAccount, suffix, useOAuthServer } from "./helpers.ts";

/** Linking a provider account to an existing account with the same email. */
describe.each(backends())("Google and GitHub sign-in on %s", (backend) => {
  const world = useOAuthServer(backend);
  const { createAuthTenant, signIn, denied, viewerOf, usersWith, createUser, verifyAddress } = world;

  // -------------------------------------------------------------------------------------------
  // Linking to an existing account
  // -------------------------------------------------------------------------------------------

  describe("linking to an account that already has the email", () => {
    for (const provider of ["google", "github"] as const) {
      it(`${provider}: an account whose address is unverified is not linked, and its password keeps working`, async () => {
        const tenant = await createAuthTenant();
        const email = `squatted-${suffix()}@example.com`;
        // Someone registers the address first, without being able to receive its mail.
        const password = `squatter password ${suffix()}`;
        const { signUp } = await ok(world.url, SignUp, {
          input: { tenantId: tenant.id, email, name: "Squatter", password },
        });
        const squatter = (await viewerOf(signUp.accessToken)).user;

        // The address's owner signs in with a provider that has verified it.
        if (provider === "google") world.googleClaims = googleAccount({ email });
        else world.githubUser = githubAccount({ emails: [{ email, primary: true, verified: true }] });
        expect(await denied(provider, tenant)).toMatch(/not verified/i);
        // No link was stored: the next attempt is refused the same way.
        expect(await denied(provider, tenant)).toMatch(/not verified/i);
        expect((await usersWith(tenant, email)).map((u) => u.id)).toEqual([squatter.id]);
        // The account was not taken over either: its password still signs in.
        const { signIn: again } = await ok(world.url, SignIn, { input: { tenantId: tenant.id, email, password } });
        expect(again.user.id).toBe(squatter.id);

        // Once the address is proved (a code mailed to it), the provider account links to it.
        await verifyAddress(tenant, email, signUp.accessToken);
        const linked = await signIn(provider, tenant);
        expect((await viewerOf(linked.accessToken)).user.id).toBe(squatter.id);
      });
    }

    it("a user created by the tenant's backend links only once the address is verified", async () => {
      const tenant = await createAuthTenant({ selfSignUp: false });
      const email = `provisioned-${suffix()}@example.com`;
      const user = await createUser(tenant, email);
      world.googleClaims = googleAccount({ email });
      expect(await denied("google", tenant)).toMatch(/not verified/i);
      const { issueUserToken } = await ok(world.url, IssueUserToken, { userId: user.id }, { apiKey: tenant.apiKey });
      await verifyAddress(tenant, email, issueUserToken.token);
      expect((await viewerOf((await signIn("google", tenant)).accessToken)).user.id).toBe(user.id);
    });
  });
});
