import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { type Auth, fails, ok, request, sleep } from "../helpers/client.ts";
import { SignUp, VerifyEmail } from "../operations/accounts.ts";
import { Viewer } from "../operations/users.ts";
import { bearer, freshIp, from, newEmail, newPassword, suffix, useAccountsServer } from "./helpers.ts";

/** Sign-up with email verification, and its limits. */
describe.each(backends())("accounts on %s", (backend) => {
  const world = useAccountsServer(backend);
  const { extraServer, burst, authTenant, register, signIn } = world;

  describe("sign-up", () => {
    it("returns access and refresh tokens, the user and the session, and mails a VERIFY_EMAIL code", async () => {
      const tenant = await authTenant();
      const mixedCase = `New.User-${suffix()}@Example.COM`;
      const ip = freshIp();
      const account = await register(tenant, {
        email: mixedCase,
        name: "Nora New",
        auth: from(ip, "AcctTest/signup"),
      });
      const payload = account.signUp;
      expect(payload.accessToken.split(".")).toHaveLength(3);
      expect(payload.refreshToken.length).toBeGreaterThanOrEqual(32);
      expect(payload.refreshToken).not.toBe(payload.accessToken);
      expect(payload.user).toMatchObject({ name: "Nora New", email: mixedCase.toLowerCase() });
      expect(payload.session).toMatchObject({ method: "PASSWORD", userAgent: "AcctTest/signup", ipAddress: ip });
      expect(new Date(payload.accessTokenExpiresAt).getTime()).toBeGreaterThan(Date.now());
      expect(new Date(payload.refreshTokenExpiresAt).getTime()).toBeGreaterThan(
        new Date(payload.accessTokenExpiresAt).getTime(),
      );

      // The access token works at once, over HTTP.
      const { viewer } = await ok(world.server.url, Viewer, {}, bearer(payload.accessToken));
      expect(viewer).toMatchObject({ isService: false, user: { id: account.userId, email: account.email } });

      // The code arrived by SMTP to the address; the account is not verified until it is used.
      expect(account.verifyCode).toMatch(/^\d{6}$/);
      const prisma = world.server.app.deps.db.prisma;
      const before = await prisma.user.findUniqueOrThrow({ where: { id: account.userId } });
      expect(before.emailVerifiedAt).toBeNull();
      const { verifyEmail } = await ok(
        world.server.url,
        VerifyEmail,
        { code: account.verifyCode },
        bearer(payload.accessToken),
      );
      expect(verifyEmail).toEqual({ id: account.userId, email: account.email });
      const after = await prisma.user.findUniqueOrThrow({ where: { id: account.userId } });
      expect(after.emailVerifiedAt).toBeInstanceOf(Date);

      // Signing in works with the address in any case.
      const session = await signIn({ ...account, email: mixedCase.toUpperCase() });
      expect(session.user.id).toBe(account.userId);
    });

    it("enforces the password length policy on BAD_USER_INPUT field input.password", async () => {
      const tenant = await authTenant();
      for (const password of ["123456789", "x".repeat(257)]) {
        const email = newEmail();
        const error = await fails(
          world.server.url,
          SignUp,
          { input: { tenantId: tenant.id, email, password, name: "Short" } },
          from(),
          "BAD_USER_INPUT",
        );
        expect(error.extensions?.field).toBe("input.password");
        await sleep(100);
        expect(world.mailbox.to(email)).toHaveLength(0);
        // No account was created: the address is still free.
        await register(tenant, { email });
      }
      const error = await fails(
        world.server.url,
        SignUp,
        { input: { tenantId: tenant.id, email: "not-an-email", password: newPassword(), name: "Bad" } },
        from(),
        "BAD_USER_INPUT",
      );
      expect(error.extensions?.field).toBe("input.email");
      // Exactly ten characters is enough.
      await register(tenant, { password: "0123456789" });
    });

    it("answers CONFLICT for an email already registered (in any case) and leaves the account alone", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      for (const email of [account.email, account.email.toUpperCase()]) {
        const error = await fails(
          world.server.url,
          SignUp,
          { input: { tenantId: tenant.id, email, password: newPassword(), name: "Copycat" } },
          from(),
          "CONFLICT",
        );
        expect(error.extensions?.field).toBe("input.email");
      }
      const session = await signIn(account);
      expect(session.user).toMatchObject({ id: account.userId, name: "New User" });
    });
  });

  describe("sign-up limits", () => {
    it("counts CONFLICTs per client address: beyond LOGIN_MAX_FAILURES_PER_ADDRESS, parallel or not, RATE_LIMITED", async () => {
      const strict = await extraServer({ loginMaxFailuresPerAddress: 6, databasePoolSize: 30 });
      try {
        const tenant = await authTenant();
        const account = await register(tenant);
        const ip = freshIp();
        const attempt = (email: string, auth: Auth = from(ip)) =>
          request(
            strict.url,
            SignUp,
            { input: { tenantId: tenant.id, email, password: newPassword(), name: "Prober" } },
            auth,
          );
        // Successful sign-ups from the address do not count.
        for (let i = 0; i < 3; i++) expect((await attempt(newEmail("fresh"))).data?.signUp.user.id).toBeTruthy();
        const [results, [late]] = await burst(
          "User",
          Array.from({ length: 12 }, () => () => attempt(account.email)),
          [() => attempt(newEmail("late"))],
        );
        // A new address sent while the probes were in flight is refused too: a sign-up going
        // through there would tell the prober which addresses are free.
        expect(late?.data?.signUp, JSON.stringify(late)).toBeFalsy();
        expect(late?.errors?.[0]?.extensions?.code).toBe("RATE_LIMITED");
        const codes = results.map((result) => result.errors?.[0]?.extensions?.code);
        const conflicts = codes.filter((code) => code === "CONFLICT").length;
        expect(conflicts, JSON.stringify(codes)).toBeGreaterThanOrEqual(1);
        expect(conflicts, JSON.stringify(codes)).toBeLessThanOrEqual(6);
        expect(
          codes.filter((code) => code === "RATE_LIMITED"),
          JSON.stringify(codes),
        ).toHaveLength(12 - conflicts);
        // Now even a new address is refused from there, and not elsewhere.
        const blocked = await attempt(newEmail("later"));
        expect(blocked.errors?.[0]?.extensions?.code, JSON.stringify(blocked)).toBe("RATE_LIMITED");
        expect((await attempt(newEmail("elsewhere"), from())).data?.signUp.user.id).toBeTruthy();
      } finally {
        await strict.stop();
      }
    });
  });
});
