import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { githubAccount, googleAccount, useOAuthServer } from "./helpers.ts";

/** Tenant isolation: provider accounts and redirect URIs belong to one tenant. */
describe.each(backends())("Google and GitHub sign-in on %s", (backend) => {
  const world = useOAuthServer(backend);
  const { createAuthTenant, get, startUrl, expectRefused, signIn, denied, viewerOf, usersWith } = world;

  // -------------------------------------------------------------------------------------------
  // Tenant isolation
  // -------------------------------------------------------------------------------------------

  describe("tenant isolation", () => {
    it("the same provider account signing in to two tenants gives two separate users", async () => {
      const tenantA = await createAuthTenant();
      const tenantB = await createAuthTenant();
      const closed = await createAuthTenant({ selfSignUp: false });

      world.googleClaims = googleAccount();
      const inA = await viewerOf((await signIn("google", tenantA)).accessToken);
      const inB = await viewerOf((await signIn("google", tenantB)).accessToken);
      expect(inA.tenant.id).toBe(tenantA.id);
      expect(inB.tenant.id).toBe(tenantB.id);
      expect(inA.user.id).not.toBe(inB.user.id);
      expect(inA.user.email).toBe(inB.user.email);
      // Signing in again to A finds A's user, not B's.
      expect((await viewerOf((await signIn("google", tenantA)).accessToken)).user.id).toBe(inA.user.id);
      // A link in other tenants opens no door in a tenant with sign-up closed.
      await denied("google", closed);
      expect(await usersWith(closed, world.googleClaims.email ?? "")).toEqual([]);

      world.githubUser = githubAccount();
      const hubA = await viewerOf((await signIn("github", tenantA)).accessToken);
      const hubB = await viewerOf((await signIn("github", tenantB)).accessToken);
      expect(hubA.tenant.id).toBe(tenantA.id);
      expect(hubB.tenant.id).toBe(tenantB.id);
      expect(hubA.user.id).not.toBe(hubB.user.id);
      await denied("github", closed);
    });

    it("a redirect URI registered for tenant A cannot be used with tenant B", async () => {
      const tenantA = await createAuthTenant();
      const tenantB = await createAuthTenant();
      for (const provider of ["google", "github"] as const) {
        const response = await get(startUrl(provider, { tenantId: tenantB.id, redirectUri: tenantA.redirectUri }));
        await expectRefused(response, 400, "BAD_USER_INPUT");
      }
      // B's own address works, and A's still works for A.
      world.googleClaims = googleAccount();
      await signIn("google", tenantB);
      await signIn("google", tenantA);
    });
  });
});
