import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { ok } from "../helpers/client.ts";
import { UpdateTenantWithDefaultRole } from "../operations/tenants.ts";
import { googleAccount, suffix, useOAuthServer } from "./helpers.ts";

/** Tenant settings changed while a sign-in is under way. */
describe.each(backends())("Google and GitHub sign-in on %s", (backend) => {
  const world = useOAuthServer(backend);
  const { createAuthTenant, toCallback, callback, expectDenied, expectRefused, usersWith } = world;

  // -------------------------------------------------------------------------------------------
  // Tenant settings changed while a sign-in is under way
  // -------------------------------------------------------------------------------------------

  describe("settings changed between start and callback", () => {
    it("a redirect URI unregistered meanwhile receives nothing: 400 BAD_USER_INPUT", async () => {
      const tenant = await createAuthTenant();
      world.googleClaims = googleAccount();
      const { callbackUrl } = await toCallback("google", tenant);
      const replacement = `http://app-${suffix()}.test/auth/done`;
      await ok(
        world.url,
        UpdateTenantWithDefaultRole,
        { input: { auth: { oauthRedirectUris: [replacement] } } },
        { apiKey: tenant.apiKey },
      );
      await expectRefused(await callback(callbackUrl), 400, "BAD_USER_INPUT");
      expect(await usersWith(tenant, world.googleClaims.email ?? "")).toEqual([]);
    });

    it("a provider the tenant turned off meanwhile signs nobody in", async () => {
      const tenant = await createAuthTenant();
      world.googleClaims = googleAccount();
      const { callbackUrl } = await toCallback("google", tenant);
      await ok(
        world.url,
        UpdateTenantWithDefaultRole,
        { input: { auth: { signInMethods: ["PASSWORD", "GITHUB"] } } },
        { apiKey: tenant.apiKey },
      );
      await expectDenied(await callback(callbackUrl), tenant.redirectUri);
      expect(await usersWith(tenant, world.googleClaims.email ?? "")).toEqual([]);
    });
  });
});
