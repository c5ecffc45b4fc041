import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { fails, ok, sleep } from "../helpers/client.ts";
import { createTenant } from "../helpers/fixtures.ts";
import { RefreshSession, RequestEmailCode, SignIn, SignInWithEmailCode, SignUp } from "../operations/accounts.ts";
import { Tenant, UpdateTenant } from "../operations/tenants.ts";
import { expectAbout, from, jwtClaims, newEmail, newPassword, useAccountsServer } from "./helpers.ts";

/** A tenant's auth settings: self sign-up, sign-in methods and token lifetimes. */
describe.each(backends())("accounts on %s", (backend) => {
  const world = useAccountsServer(backend);
  const { authTenant, register, signIn, signInFails, requestCode } = world;

  describe("tenant auth settings", () => {
    it("refuses sign-up with FORBIDDEN until the tenant enables it (and again once disabled)", async () => {
      const tenant = await createTenant(world.server.url, []);
      const { tenant: settings } = await ok(world.server.url, Tenant, {}, { apiKey: tenant.apiKey });
      expect(settings.selfSignUp).toBe(false);
      expect(settings.signInMethods).toEqual(["PASSWORD"]);

      const email = newEmail();
      const input = { tenantId: tenant.id, email, password: newPassword(), name: "Early" };
      await fails(world.server.url, SignUp, { input }, from(), "FORBIDDEN");

      const { updateTenant } = await ok(
        world.server.url,
        UpdateTenant,
        { input: { auth: { selfSignUp: true } } },
        { apiKey: tenant.apiKey },
      );
      expect(updateTenant.selfSignUp).toBe(true);
      expect(updateTenant.signInMethods).toEqual(["PASSWORD"]);
      const { signUp } = await ok(world.server.url, SignUp, { input }, from());
      expect(signUp.user.email).toBe(email);

      await ok(world.server.url, UpdateTenant, { input: { auth: { selfSignUp: false } } }, { apiKey: tenant.apiKey });
      const again = { ...input, email: newEmail() };
      await fails(world.server.url, SignUp, { input: again }, from(), "FORBIDDEN");
      // The one mail is the VERIFY_EMAIL code of the accepted sign-up; refused ones send none.
      await sleep(200);
      expect(world.mailbox.to(email)).toHaveLength(1);
      expect(world.mailbox.to(again.email)).toHaveLength(0);
    });

    it("refuses EMAIL_CODE sign-in with FORBIDDEN unless the tenant lists it, and PASSWORD likewise", async () => {
      const tenant = await authTenant({ signInMethods: ["PASSWORD"] });
      const account = await register(tenant);
      const codeRequest = { tenantId: tenant.id, email: account.email, purpose: "SIGN_IN" as const };
      await fails(world.server.url, RequestEmailCode, { input: codeRequest }, from(), "FORBIDDEN");
      await fails(
        world.server.url,
        SignInWithEmailCode,
        { input: { tenantId: tenant.id, email: account.email, code: "123456" } },
        from(),
        "FORBIDDEN",
      );
      await sleep(200);
      expect(world.mailbox.to(account.email)).toHaveLength(1); // only the VERIFY_EMAIL mail of sign-up

      await ok(
        world.server.url,
        UpdateTenant,
        { input: { auth: { signInMethods: ["PASSWORD", "EMAIL_CODE"] } } },
        { apiKey: tenant.apiKey },
      );
      const code = await requestCode(account, "SIGN_IN");
      const { signInWithEmailCode } = await ok(
        world.server.url,
        SignInWithEmailCode,
        { input: { tenantId: tenant.id, email: account.email, code } },
        from(),
      );
      expect(signInWithEmailCode.user.id).toBe(account.userId);

      // Without PASSWORD in the list, password sign-in is refused even with the right password.
      const { updateTenant } = await ok(
        world.server.url,
        UpdateTenant,
        { input: { auth: { signInMethods: ["EMAIL_CODE"] } } },
        { apiKey: tenant.apiKey },
      );
      expect(updateTenant.signInMethods).toEqual(["EMAIL_CODE"]);
      await signInFails(account, account.password, "FORBIDDEN");

      // An unknown tenant looks like a closed one.
      await fails(
        world.server.url,
        SignIn,
        {
          input: { tenantId: "00000000-0000-4000-8000-000000000000", email: account.email, password: account.password },
        },
        from(),
        "FORBIDDEN",
      );
    });

    it("uses the tenant's token lifetimes for accessTokenExpiresAt and refreshTokenExpiresAt", async () => {
      const tenant = await authTenant();
      const { updateTenant } = await ok(
        world.server.url,
        UpdateTenant,
        { input: { auth: { accessTokenTtlSeconds: 120, refreshTokenTtlSeconds: 3600 } } },
        { apiKey: tenant.apiKey },
      );
      expect(updateTenant).toMatchObject({
        accessTokenTtlSeconds: 120,
        refreshTokenTtlSeconds: 3600,
        selfSignUp: true,
      });

      let now = Date.now();
      const account = await register(tenant);
      expectAbout(account.signUp.accessTokenExpiresAt, now + 120_000);
      expectAbout(account.signUp.refreshTokenExpiresAt, now + 3_600_000);

      now = Date.now();
      const session = await signIn(account);
      expectAbout(session.accessTokenExpiresAt, now + 120_000);
      expectAbout(session.refreshTokenExpiresAt, now + 3_600_000);
      expectAbout(session.session.expiresAt, now + 3_600_000);
      // The JWT itself carries the same expiry.
      expect((jwtClaims(session.accessToken).exp as number) * 1000).toBe(
        Math.floor(new Date(session.accessTokenExpiresAt).getTime() / 1000) * 1000,
      );

      now = Date.now();
      const { refreshSession } = await ok(
        world.server.url,
        RefreshSession,
        { refreshToken: session.refreshToken },
        from(),
      );
      expectAbout(refreshSession.accessTokenExpiresAt, now + 120_000);

      // Out-of-range lifetimes are refused, naming the field.
      const error = await fails(
        world.server.url,
        UpdateTenant,
        { input: { auth: { accessTokenTtlSeconds: 30 } } },
        { apiKey: tenant.apiKey },
        "BAD_USER_INPUT",
      );
      expect(error.extensions?.field).toBe("input.auth.accessTokenTtlSeconds");
    });
  });
});
