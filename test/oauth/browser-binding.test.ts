import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { backends, startServer } from "../helpers/backends.ts";
import { Browser, cookieAttributes, freshIp, githubAccount, googleAccount, useOAuthServer } from "./helpers.ts";

/** Login CSRF: an attempt is bound by a cookie to the browser that started it. */
describe.each(backends())("Google and GitHub sign-in on %s", (backend) => {
  const world = useOAuthServer(backend);
  const {
    providerSettings,
    createAuthTenant,
    get,
    startUrl,
    toProvider,
    toCallback,
    callback,
    expectTokens,
    expectDenied,
    expectRefused,
    signIn,
    usersWith,
  } = world;

  // -------------------------------------------------------------------------------------------
  // Browser binding (login CSRF)
  // -------------------------------------------------------------------------------------------

  describe("the attempt is bound to the browser that started it", () => {
    it("start sets a short-lived HttpOnly, SameSite=Lax cookie for the provider's path", async () => {
      const tenant = await createAuthTenant();
      for (const provider of ["google", "github"] as const) {
        const response = await get(startUrl(provider, { tenantId: tenant.id, redirectUri: tenant.redirectUri }));
        expect(response.status).toBe(302);
        const lines = response.headers.getSetCookie();
        expect(lines).toHaveLength(1);
        const cookie = cookieAttributes(lines[0] ?? "");
        expect(cookie.value).toMatch(/^[A-Za-z0-9_-]{43,}$/);
        expect(cookie.attributes.get("path")).toBe(`/auth/${provider}`);
        expect(cookie.attributes.has("httponly")).toBe(true);
        expect(cookie.attributes.get("samesite")?.toLowerCase()).toBe("lax");
        const maxAge = Number(cookie.attributes.get("max-age"));
        expect(maxAge).toBeGreaterThan(0);
        expect(maxAge).toBeLessThanOrEqual(600);
        // Plain http here: a Secure cookie would never come back.
        expect(cookie.attributes.has("secure")).toBe(false);
        // The value travels nowhere but in the cookie.
        const location = response.headers.get("location") ?? "";
        expect(location).not.toContain(cookie.value);
      }
    });

    it("the cookie is Secure when the request came over https", async () => {
      const tenant = await createAuthTenant();
      const behindProxy = await startServer(world.database, { ...providerSettings(), trustProxy: 1 });
      try {
        const origin = new URL(behindProxy.url).origin;
        const response = await get(
          startUrl("google", { tenantId: tenant.id, redirectUri: tenant.redirectUri }, origin),
          {
            "x-forwarded-proto": "https",
            "x-forwarded-for": freshIp(),
          },
        );
        expect(response.status).toBe(302);
        const cookie = cookieAttributes(response.headers.getSetCookie()[0] ?? "");
        expect(cookie.attributes.has("secure")).toBe(true);
        expect(cookie.attributes.has("httponly")).toBe(true);
      } finally {
        await behindProxy.stop();
      }
    });

    it("a callback opened in a browser without the cookie is refused: nobody is signed in, nothing created", async () => {
      const tenant = await createAuthTenant();
      for (const provider of ["google", "github"] as const) {
        world.googleClaims = googleAccount();
        world.githubUser = githubAccount();
        const email =
          provider === "google"
            ? (world.googleClaims.email ?? "")
            : (world.githubUser.emails.find((e) => e.primary)?.email ?? "");
        // The attacker signs in with their own provider account, stops at the callback URL...
        const attacker = new Browser();
        const { callbackUrl } = await toCallback(provider, tenant, undefined, attacker);
        // ...and has the victim's browser open it.
        const victim = new Browser();
        const description = await expectDenied(await callback(callbackUrl, victim), tenant.redirectUri);
        expect(description).toMatch(/browser/i);
        // Sign-up is open, so a completed callback would have created the attacker's user.
        expect(await usersWith(tenant, email)).toEqual([]);
        // The attempt is spent: it cannot be finished afterwards, not even by its own browser.
        await expectRefused(await callback(callbackUrl, attacker), 400, "BAD_USER_INPUT");
      }
    });

    it("a callback carrying another attempt's cookie is refused, and the cookie is cleared", async () => {
      const tenant = await createAuthTenant();
      world.googleClaims = googleAccount();
      const attacker = new Browser();
      const { callbackUrl } = await toCallback("google", tenant, undefined, attacker);
      // The victim's browser holds a cookie of its own, from a sign-in it started.
      const victim = new Browser();
      await toProvider("google", tenant, tenant.redirectUri, victim);
      expect(victim.cookiesFor(callbackUrl)).toHaveLength(1);

      const response = await callback(callbackUrl, victim);
      const cleared = cookieAttributes(response.headers.getSetCookie()[0] ?? "");
      expect(cleared.attributes.get("max-age")).toBe("0");
      expect(cleared.attributes.get("path")).toBe("/auth/google");
      await expectDenied(response, tenant.redirectUri);
      expect(victim.cookiesFor(callbackUrl)).toEqual([]);
      expect(await usersWith(tenant, world.googleClaims.email ?? "")).toEqual([]);
    });

    it("a forged or foreign cookie value does not match either", async () => {
      const tenant = await createAuthTenant();
      world.googleClaims = googleAccount();
      const { callbackUrl } = await toCallback("google", tenant);
      const [cookie] = world.browser.cookiesFor(callbackUrl);
      if (!cookie) expect.fail("the start set no cookie");
      for (const value of ["", "x", `${cookie.value}x`, randomBytes(32).toString("base64url")]) {
        const response = await fetch(callbackUrl, {
          redirect: "manual",
          headers: { cookie: `${cookie.name}=${value}` },
        });
        await expectDenied(response, tenant.redirectUri);
        // Each refusal spent the attempt: run a new one for the next value.
        const next = await toCallback("google", tenant);
        callbackUrl.search = next.callbackUrl.search;
      }
      // The genuine cookie of the last attempt still works.
      await expectTokens(await callback(callbackUrl), tenant.redirectUri);
    });

    it("a newer start in the same browser replaces the older attempt", async () => {
      const tenant = await createAuthTenant();
      world.googleClaims = googleAccount();
      const older = await toCallback("google", tenant);
      const newer = await toCallback("google", tenant);
      await expectDenied(await callback(older.callbackUrl), tenant.redirectUri);
      // Refusing the older one cleared the cookie: the newer one needs a fresh start too.
      await expectDenied(await callback(newer.callbackUrl), tenant.redirectUri);
      await signIn("google", tenant);
    });
  });
});
