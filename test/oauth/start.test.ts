import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { backends, startServer } from "../helpers/backends.ts";
import { type AuthTenant, freshIp, type Provider, useOAuthServer } from "./helpers.ts";

/** The start endpoint: what it refuses, and its per-address rate limit. */
describe.each(backends())("Google and GitHub sign-in on %s", (backend) => {
  const world = useOAuthServer(backend);
  const { providerSettings, createAuthTenant, get, startUrl, toProvider, expectRefused } = world;

  // -------------------------------------------------------------------------------------------
  // Start checks
  // -------------------------------------------------------------------------------------------

  describe("start", () => {
    it("refuses a redirectUri the tenant has not registered with 400 BAD_USER_INPUT, never redirecting", async () => {
      const tenant = await createAuthTenant();
      const registered = new URL(tenant.redirectUri);
      const unregistered = [
        "https://evil.test/steal",
        `${tenant.redirectUri}/more`,
        `${tenant.redirectUri}?next=https://evil.test`,
        `https://${registered.host}${registered.pathname}`,
        `${registered.origin}/`,
        tenant.redirectUri.toUpperCase(),
        "",
      ];
      for (const provider of ["google", "github"] as const) {
        for (const redirectUri of unregistered) {
          const response = await get(startUrl(provider, { tenantId: tenant.id, redirectUri }));
          await expectRefused(response, 400, "BAD_USER_INPUT");
        }
        await expectRefused(await get(startUrl(provider, { tenantId: tenant.id })), 400, "BAD_USER_INPUT");
      }
    });

    it("answers 403 when the tenant does not allow the provider", async () => {
      const passwordOnly = await createAuthTenant({ signInMethods: ["PASSWORD"] });
      const githubOnly = await createAuthTenant({ signInMethods: ["GITHUB"] });
      const googleOnly = await createAuthTenant({ signInMethods: ["GOOGLE"] });
      const cases: [Provider, AuthTenant][] = [
        ["google", passwordOnly],
        ["github", passwordOnly],
        ["google", githubOnly],
        ["github", googleOnly],
      ];
      for (const [provider, tenant] of cases) {
        const response = await get(startUrl(provider, { tenantId: tenant.id, redirectUri: tenant.redirectUri }));
        await expectRefused(response, 403, "FORBIDDEN");
      }
      // The allowed ones do start.
      await toProvider("google", googleOnly);
      await toProvider("github", githubOnly);
    });

    it("answers 403 for an unknown tenant and 400 for a malformed tenant id", async () => {
      const tenant = await createAuthTenant();
      const unknown = await get(startUrl("google", { tenantId: randomUUID(), redirectUri: tenant.redirectUri }));
      await expectRefused(unknown, 403, "FORBIDDEN");
      const malformed = await get(startUrl("google", { tenantId: "not-a-uuid", redirectUri: tenant.redirectUri }));
      await expectRefused(malformed, 400, "BAD_USER_INPUT");
      const missing = await get(startUrl("google", { redirectUri: tenant.redirectUri }));
      await expectRefused(missing, 400, "BAD_USER_INPUT");
    });

    it("answers 403 when the provider is not configured on the server", async () => {
      const tenant = await createAuthTenant();
      // Same database, no provider credentials.
      const bare = await startServer(world.database, { dataDir: world.dataDir, oauthStartsPerMinute: 100_000 });
      try {
        const origin = new URL(bare.url).origin;
        for (const provider of ["google", "github"] as const) {
          const response = await get(
            startUrl(provider, { tenantId: tenant.id, redirectUri: tenant.redirectUri }, origin),
          );
          const message = await expectRefused(response, 403, "FORBIDDEN");
          expect(message).toMatch(/not configured/i);
        }
      } finally {
        await bare.stop();
      }
    });
  });

  // -------------------------------------------------------------------------------------------
  // Start rate limit
  // -------------------------------------------------------------------------------------------

  describe("start rate limit", () => {
    it("answers 429 RATE_LIMITED with Retry-After once a client address has used up its starts", async () => {
      const tenant = await createAuthTenant();
      const limited = await startServer(world.database, {
        ...providerSettings(),
        trustProxy: 1,
        oauthStartsPerMinute: 3,
      });
      try {
        const origin = new URL(limited.url).origin;
        const start = (provider: Provider, ip: string) =>
          fetch(startUrl(provider, { tenantId: tenant.id, redirectUri: tenant.redirectUri }, origin), {
            redirect: "manual",
            headers: { "x-forwarded-for": ip },
          });
        const ip = freshIp();
        for (let i = 0; i < 3; i++) expect((await start(i % 2 ? "github" : "google", ip)).status).toBe(302);
        for (const provider of ["google", "github"] as const) {
          const response = await start(provider, ip);
          const retryAfter = Number(response.headers.get("retry-after"));
          await expectRefused(response, 429, "RATE_LIMITED");
          expect(Number.isInteger(retryAfter)).toBe(true);
          expect(retryAfter).toBeGreaterThan(0);
          expect(retryAfter).toBeLessThanOrEqual(60);
        }
        // Other addresses are not affected.
        expect((await start("google", freshIp())).status).toBe(302);
      } finally {
        await limited.stop();
      }
    });
  });
});
