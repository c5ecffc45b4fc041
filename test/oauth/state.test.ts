import { randomBytes } from "node:crypto";
import type { MutableRedirectUri } from "oauth2-mock-server";
import { describe, expect, it, vi } from "vitest";
import { backends } from "../helpers/backends.ts";
import { Browser, googleAccount, useOAuthServer } from "./helpers.ts";

/** The state of an attempt: single use, expiring, bound to its provider, tamper-proof. */
describe.each(backends())("Google and GitHub sign-in on %s", (backend) => {
  const world = useOAuthServer(backend);
  const { createAuthTenant, toCallback, callback, expectTokens, expectDenied, expectRefused, signIn, usersWith } =
    world;

  // -------------------------------------------------------------------------------------------
  // State
  // -------------------------------------------------------------------------------------------

  describe("state", () => {
    it("is single use: replaying the callback URL answers 400", async () => {
      const tenant = await createAuthTenant();
      world.googleClaims = googleAccount();
      const { callbackUrl } = await signIn("google", tenant);
      const message = await expectRefused(await callback(callbackUrl), 400, "BAD_USER_INPUT");
      expect(message).toMatch(/start again/i);
    });

    it("expires", async () => {
      const tenant = await createAuthTenant();
      world.googleClaims = googleAccount();
      const { callbackUrl } = await toCallback("google", tenant);
      vi.useFakeTimers({ toFake: ["Date"] });
      try {
        vi.setSystemTime(Date.now() + 11 * 60 * 1000);
        await expectRefused(await callback(callbackUrl), 400, "BAD_USER_INPUT");
      } finally {
        vi.useRealTimers();
      }
      expect(await usersWith(tenant, world.googleClaims.email ?? "")).toEqual([]);
    });

    it("must belong to the provider whose callback receives it", async () => {
      const tenant = await createAuthTenant();
      world.googleClaims = googleAccount();
      const { callbackUrl } = await toCallback("google", tenant);
      const elsewhere = new URL(callbackUrl);
      elsewhere.pathname = "/auth/github/callback";
      await expectRefused(await callback(elsewhere), 400, "BAD_USER_INPUT");
      expect(await usersWith(tenant, world.googleClaims.email ?? "")).toEqual([]);
    });

    it("a tampered or missing state answers 400 and leaves the real attempt usable", async () => {
      const tenant = await createAuthTenant();
      world.googleClaims = googleAccount();
      const { callbackUrl } = await toCallback("google", tenant);

      const tampered = new URL(callbackUrl);
      tampered.searchParams.set("state", `${callbackUrl.searchParams.get("state")}x`);
      await expectRefused(await callback(tampered), 400, "BAD_USER_INPUT");

      const missing = new URL(callbackUrl);
      missing.searchParams.delete("state");
      await expectRefused(await callback(missing), 400, "BAD_USER_INPUT");

      // A state changed on the way to the provider comes back unknown too (another browser's
      // attempt: a new start in this browser would replace the attempt under test).
      const other = new Browser();
      const { callbackUrl: forged } = await toCallback(
        "google",
        tenant,
        (authorizeUrl) => authorizeUrl.searchParams.set("state", randomBytes(32).toString("base64url")),
        other,
      );
      await expectRefused(await callback(forged, other), 400, "BAD_USER_INPUT");

      await expectTokens(await callback(callbackUrl), tenant.redirectUri);
    });

    it("a provider error (access_denied) sends the browser back to the app with the error", async () => {
      const tenant = await createAuthTenant();
      world.googleClaims = googleAccount();
      world.google.service.once("beforeAuthorizeRedirect", (redirect: MutableRedirectUri) => {
        redirect.url.searchParams.delete("code");
        redirect.url.searchParams.set("error", "access_denied");
        redirect.url.searchParams.set("error_description", "The user cancelled");
      });
      const { callbackUrl } = await toCallback("google", tenant);
      expect(callbackUrl.searchParams.get("error")).toBe("access_denied");
      expect(callbackUrl.searchParams.has("code")).toBe(false);
      await expectDenied(await callback(callbackUrl), tenant.redirectUri);
      // The attempt is over.
      await expectRefused(await callback(callbackUrl), 400, "BAD_USER_INPUT");
      expect(await usersWith(tenant, world.googleClaims.email ?? "")).toEqual([]);
    });
  });
});
