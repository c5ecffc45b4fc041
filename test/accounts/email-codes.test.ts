import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { expectClosed4403, fails, ok, request, sleep } from "../helpers/client.ts";
import {
  RefreshSession,
  RequestEmailCode,
  ResetPassword,
  Sessions,
  SignInWithEmailCode,
  VerifyEmail,
} from "../operations/accounts.ts";
import { CreateTenant, UpdateTenant } from "../operations/tenants.ts";
import {
  type Account,
  bearer,
  codeOf,
  expectRateLimited,
  freshIp,
  from,
  newEmail,
  newPassword,
  type Payload,
  useAccountsServer,
  wrongCode,
} from "./helpers.ts";

/** One-time email codes, and tenant-chosen text in the mails that carry them. */
describe.each(backends())("accounts on %s", (backend) => {
  const world = useAccountsServer(backend);
  const {
    extraServer,
    burst,
    authTenant,
    codeAfter,
    register,
    signIn,
    signInFails,
    requestCode,
    expectUnauthenticated,
    expectWorks,
    homeGroup,
    device,
  } = world;

  describe("email codes", () => {
    /** Signs in with a code from a fresh address (so the per-address limit stays out of the way). */
    const codeSignIn = async (account: Account, code: string): Promise<Payload> => {
      const input = { tenantId: account.tenant.id, email: account.email, code };
      return (await ok(world.server.url, SignInWithEmailCode, { input }, from())).signInWithEmailCode;
    };
    const codeSignInFails = (account: Account, code: string, errorCode: string) => {
      const input = { tenantId: account.tenant.id, email: account.email, code };
      return fails(world.server.url, SignInWithEmailCode, { input }, from(), errorCode);
    };

    it("refuses wrong, reused and superseded codes with BAD_USER_INPUT on field code", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);

      // A new code makes the previous one stop working.
      const old = await requestCode(account, "SIGN_IN");
      const current = await requestCode(account, "SIGN_IN");
      if (old !== current) {
        const error = await codeSignInFails(account, old, "BAD_USER_INPUT");
        expect(error.extensions?.field).toBe("code");
      }
      const wrong = await codeSignInFails(account, wrongCode(current), "BAD_USER_INPUT");
      expect(wrong.extensions?.field).toBe("code");
      const session = await codeSignIn(account, current);
      expect(session.user.id).toBe(account.userId);
      // Single use.
      const reused = await codeSignInFails(account, current, "BAD_USER_INPUT");
      expect(reused.extensions?.field).toBe("code");

      // A code works only for its own purpose and address.
      const verify = account.verifyCode;
      const crossPurpose = await codeSignInFails(account, verify, "BAD_USER_INPUT");
      expect(crossPurpose.extensions?.field).toBe("code");
      const other = await register(tenant);
      const otherCode = await requestCode(other, "SIGN_IN");
      await codeSignInFails(account, otherCode, "BAD_USER_INPUT");
      expect((await codeSignIn(other, otherCode)).user.id).toBe(other.userId);

      // verifyEmail: single use, and a wrong code is refused the same way.
      const token = account.signUp.accessToken;
      const wrongVerify = await fails(
        world.server.url,
        VerifyEmail,
        { code: wrongCode(verify) },
        bearer(token),
        "BAD_USER_INPUT",
      );
      expect(wrongVerify.extensions?.field).toBe("code");
      await ok(world.server.url, VerifyEmail, { code: verify }, bearer(token));
      const reusedVerify = await fails(
        world.server.url,
        VerifyEmail,
        { code: verify },
        bearer(token),
        "BAD_USER_INPUT",
      );
      expect(reusedVerify.extensions?.field).toBe("code");
    });

    it("refuses an expired code with BAD_USER_INPUT on field code", async () => {
      const quick = await extraServer({ emailCodeTtlSeconds: 2 });
      try {
        const tenant = await authTenant();
        const account = await register(tenant);
        const code = await requestCode(account, "SIGN_IN", quick.url);
        await sleep(2_500);
        const input = { tenantId: tenant.id, email: account.email, code };
        const error = await fails(quick.url, SignInWithEmailCode, { input }, from(), "BAD_USER_INPUT");
        expect(error.extensions?.field).toBe("code");
        // A fresh code, used in time, works.
        const fresh = await requestCode(account, "SIGN_IN", quick.url);
        const { signInWithEmailCode } = await ok(
          quick.url,
          SignInWithEmailCode,
          { input: { ...input, code: fresh } },
          from(),
        );
        expect(signInWithEmailCode.user.id).toBe(account.userId);
      } finally {
        await quick.stop();
      }
    });

    it("limits guesses: after 5 wrong codes even the right one is RATE_LIMITED, and a new code does not help", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const code = await requestCode(account, "SIGN_IN");
      for (let i = 0; i < 5; i++) {
        // A different wrong code each time, each from its own address.
        const guess = String((Number(code) + 1 + i) % 1_000_000).padStart(6, "0");
        await codeSignInFails(account, guess, "BAD_USER_INPUT");
      }
      expectRateLimited(await codeSignInFails(account, code, "RATE_LIMITED"), 600);
      const next = await requestCode(account, "SIGN_IN");
      expectRateLimited(await codeSignInFails(account, next, "RATE_LIMITED"), 600);

      // verifyEmail is limited the same way.
      const token = account.signUp.accessToken;
      for (let i = 0; i < 5; i++) {
        await fails(
          world.server.url,
          VerifyEmail,
          { code: wrongCode(account.verifyCode) },
          bearer(token),
          "BAD_USER_INPUT",
        );
      }
      const error = await fails(
        world.server.url,
        VerifyEmail,
        { code: account.verifyCode },
        bearer(token),
        "RATE_LIMITED",
      );
      expectRateLimited(error, 600);
    });

    it("takes each guess from the code before comparing it: 20 parallel wrong codes are at most 5 guesses", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const code = await requestCode(account, "SIGN_IN");
      const guesses = Array.from({ length: 20 }, (_, i) => String((Number(code) + 1 + i) % 1_000_000).padStart(6, "0"));
      const attempt = (guess: string) => () =>
        request(
          world.server.url,
          SignInWithEmailCode,
          { input: { tenantId: tenant.id, email: account.email, code: guess } },
          from(),
        );
      const [results, [right]] = await burst("EmailCode", guesses.map(attempt), [attempt(code)]);
      // The right code, sent while the wrong ones were in flight, got nothing.
      expect(right?.data?.signInWithEmailCode, JSON.stringify(right)).toBeFalsy();
      expect(right?.errors?.[0]?.extensions?.code).toBe("RATE_LIMITED");
      const codes = results.map((result) => result.errors?.[0]?.extensions?.code);
      const compared = codes.filter((c) => c === "BAD_USER_INPUT").length;
      expect(compared, JSON.stringify(codes)).toBeLessThanOrEqual(5);
      expect(
        codes.filter((c) => c === "RATE_LIMITED"),
        JSON.stringify(codes),
      ).toHaveLength(20 - compared);
      const row = await world.server.app.deps.db.prisma.emailCode.findFirstOrThrow({
        where: { tenantId: tenant.id, email: account.email, purpose: "SIGN_IN" },
        orderBy: { createdAt: "desc" },
      });
      expect(row.attempts).toBeLessThanOrEqual(5);
      // The right code afterwards gets nothing.
      expectRateLimited(await codeSignInFails(account, code, "RATE_LIMITED"), 600);
    });

    it("spends a code after 5 wrong guesses in the database, whichever instance counted them", async () => {
      // Two instances count guesses in process without Redis (and with it, when it is down):
      // the code's own attempts, counted by the database, still stop at 5.
      const second = await extraServer();
      try {
        const tenant = await authTenant();
        const account = await register(tenant);
        const code = await requestCode(account, "SIGN_IN");
        const refused = ["BAD_USER_INPUT", "RATE_LIMITED"];
        for (let i = 0; i < 6; i++) {
          const guess = String((Number(code) + 1 + i) % 1_000_000).padStart(6, "0");
          const input = { tenantId: tenant.id, email: account.email, code: guess };
          const result = await request(i % 2 ? second.url : world.server.url, SignInWithEmailCode, { input }, from());
          expect(refused, JSON.stringify(result)).toContain(result.errors?.[0]?.extensions?.code);
        }
        for (const url of [world.server.url, second.url]) {
          const input = { tenantId: tenant.id, email: account.email, code };
          const result = await request(url, SignInWithEmailCode, { input }, from());
          expect(result.data?.signInWithEmailCode, JSON.stringify(result)).toBeFalsy();
          expect(refused, JSON.stringify(result)).toContain(result.errors?.[0]?.extensions?.code);
        }
        const row = await world.server.app.deps.db.prisma.emailCode.findFirstOrThrow({
          where: { tenantId: tenant.id, email: account.email, purpose: "SIGN_IN" },
          orderBy: { createdAt: "desc" },
        });
        expect(row.attempts).toBe(5);
      } finally {
        await second.stop();
      }
    });

    it("answers requestEmailCode the same for every address, also when the mail server refuses the mail", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const unknown = newEmail("nobody");
      const unrefuse = world.mailbox.refuse(account.email);
      try {
        for (const purpose of ["SIGN_IN", "RESET_PASSWORD"] as const) {
          const ask = (email: string) =>
            request(world.server.url, RequestEmailCode, { input: { tenantId: tenant.id, email, purpose } }, from());
          const known = await ask(account.email);
          const missing = await ask(unknown);
          expect(known).toEqual({ status: 200, data: { requestEmailCode: true } });
          expect(missing).toEqual(known);
        }
        // The failed deliveries are the server's business (logged), not the client's.
        await world.server.app.deps.tasks.drain();
      } finally {
        unrefuse();
      }
      const code = await requestCode(account, "SIGN_IN");
      const input = { tenantId: tenant.id, email: account.email, code };
      expect((await ok(world.server.url, SignInWithEmailCode, { input }, from())).signInWithEmailCode.user.id).toBe(
        account.userId,
      );
    });

    it("answers requestEmailCode before the mail goes out; the code arrives afterwards and works", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const before = world.mailbox.to(account.email).length;
      const release = world.mailbox.hold(account.email);
      let answer: Awaited<ReturnType<typeof request>>;
      try {
        // The mail server does not acknowledge the mail until released: a server that
        // mailed before answering would never answer here.
        answer = await request(
          world.server.url,
          RequestEmailCode,
          { input: { tenantId: tenant.id, email: account.email, purpose: "SIGN_IN" } },
          from(),
        );
        expect(world.mailbox.to(account.email)).toHaveLength(before);
      } finally {
        release();
      }
      expect(answer).toEqual({ status: 200, data: { requestEmailCode: true } });
      const code = codeOf(await world.mailbox.mail(account.email, before));
      const input = { tenantId: tenant.id, email: account.email, code };
      expect((await ok(world.server.url, SignInWithEmailCode, { input }, from())).signInWithEmailCode.user.id).toBe(
        account.userId,
      );
    });

    it("answers true for unknown addresses and sends them nothing", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const unknown = newEmail("nobody");
      for (const purpose of ["VERIFY_EMAIL", "SIGN_IN", "RESET_PASSWORD"] as const) {
        const { requestEmailCode } = await ok(
          world.server.url,
          RequestEmailCode,
          { input: { tenantId: tenant.id, email: unknown, purpose } },
          from(),
        );
        expect(requestEmailCode).toBe(true);
      }
      // A request for a real account afterwards is delivered; by then the others would have been too.
      await requestCode(account, "RESET_PASSWORD");
      // Mail goes out after the answer: wait for all of it.
      await world.server.app.deps.tasks.drain();
      await sleep(200);
      expect(world.mailbox.to(unknown)).toEqual([]);
    });

    it("signs in with an emailed SIGN_IN code, which also proves the address", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const code = await codeAfter(account.email, () =>
        ok(
          world.server.url,
          RequestEmailCode,
          { input: { tenantId: tenant.id, email: account.email.toUpperCase(), purpose: "SIGN_IN" } },
          from(),
        ),
      );
      const ip = freshIp();
      const { signInWithEmailCode: session } = await ok(
        world.server.url,
        SignInWithEmailCode,
        { input: { tenantId: tenant.id, email: account.email, code } },
        from(ip, "AcctTest/code"),
      );
      expect(session.user).toMatchObject({ id: account.userId, email: account.email });
      expect(session.session).toMatchObject({ method: "EMAIL_CODE", userAgent: "AcctTest/code", ipAddress: ip });
      await expectWorks(session.accessToken, account.userId);
      const { sessions } = await ok(world.server.url, Sessions, {}, bearer(session.accessToken));
      expect(sessions.find((s) => s.current)).toMatchObject({ id: session.session.id, method: "EMAIL_CODE" });
      const { refreshSession } = await ok(
        world.server.url,
        RefreshSession,
        { refreshToken: session.refreshToken },
        from(),
      );
      await expectWorks(refreshSession.accessToken, account.userId);
      const user = await world.server.app.deps.db.prisma.user.findUniqueOrThrow({ where: { id: account.userId } });
      expect(user.emailVerifiedAt).toBeInstanceOf(Date);
    });

    it("resets the password with a RESET_PASSWORD code, ending every session; the old password fails", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const group = await homeGroup(account);
      const a = await signIn(account);
      const devA = await device(a.accessToken, account, group);
      const devSignUp = await device(account.signUp.accessToken, account, group);
      try {
        const code = await requestCode(account, "RESET_PASSWORD");
        const input = { tenantId: tenant.id, email: account.email, code, newPassword: "short" };
        const policy = await fails(world.server.url, ResetPassword, { input }, from(), "BAD_USER_INPUT");
        expect(policy.extensions?.field).toBe("input.newPassword");
        const wrong = await fails(
          world.server.url,
          ResetPassword,
          { input: { ...input, code: wrongCode(code), newPassword: newPassword() } },
          from(),
          "BAD_USER_INPUT",
        );
        expect(wrong.extensions?.field).toBe("code");

        const replacement = newPassword();
        const { resetPassword } = await ok(
          world.server.url,
          ResetPassword,
          { input: { ...input, newPassword: replacement } },
          from(),
        );
        expect(resetPassword).toBe(true);
        await expectClosed4403(devA.client, "a session's socket after the password reset");
        await expectClosed4403(devSignUp.client, "the sign-up session's socket after the password reset");
        for (const token of [a.accessToken, account.signUp.accessToken]) {
          await expectUnauthenticated(token, "an access token after the password reset");
        }
        for (const refreshToken of [a.refreshToken, account.signUp.refreshToken]) {
          await fails(world.server.url, RefreshSession, { refreshToken }, from(), "UNAUTHENTICATED");
        }
        await signInFails(account, account.password, "UNAUTHENTICATED");
        const session = await signIn({ ...account, password: replacement });
        expect(session.user.id).toBe(account.userId);
        // The code worked once.
        const again = await fails(
          world.server.url,
          ResetPassword,
          { input: { ...input, newPassword: newPassword() } },
          from(),
          "BAD_USER_INPUT",
        );
        expect(again.extensions?.field).toBe("code");
        await signIn({ ...account, password: replacement });
      } finally {
        await devA.client.dispose();
        await devSignUp.client.dispose();
      }
    });
  });

  describe("tenant names in mail", () => {
    const unsafeNames = [
      "Evil\r\nBcc: victim@evil.test",
      "Evil\nSecond line",
      "Evil\rReturn",
      "Tab\tbed",
      "Bell\u0007",
      "Next\u0085line",
      "Line\u2028separator",
      "Override\u202Eexe.txt",
    ];

    it("a tenant name must be one line without control or direction characters", async () => {
      for (const name of unsafeNames) {
        const error = await fails(world.server.url, CreateTenant, { input: { name } }, undefined, "BAD_USER_INPUT");
        expect(error.extensions?.field).toBe("input.name");
      }
      const tenant = await authTenant();
      for (const name of unsafeNames) {
        await fails(world.server.url, UpdateTenant, { input: { name } }, { apiKey: tenant.apiKey }, "BAD_USER_INPUT");
      }
      // Ordinary punctuation, accents and emoji remain welcome.
      const fine = 'Ærø & Co. <EU> "Chat" 💬';
      expect((await ok(world.server.url, CreateTenant, { input: { name: fine } })).createTenant.tenant.name).toBe(fine);
    });

    it("markup and links in a tenant name reach the mail as inert plain text", async () => {
      const name = '<a href="https://evil.test/reset">Reset your password</a><img src=x onerror=alert(1)> Acme & Co';
      const { createTenant: created } = await ok(world.server.url, CreateTenant, { input: { name } });
      const tenant = { id: created.tenant.id, apiKey: created.apiKey };
      await ok(
        world.server.url,
        UpdateTenant,
        { input: { auth: { selfSignUp: true, signInMethods: ["PASSWORD"] } } },
        { apiKey: tenant.apiKey },
      );
      const account = await register(tenant);
      const [mail] = world.mailbox.to(account.email);
      if (!mail) expect.fail("no mail arrived");
      for (const part of [mail.subject, mail.text]) {
        expect(part).not.toMatch(/[<>]/);
        expect(part).toContain("Acme & Co");
        expect(part).toContain(account.verifyCode);
      }
      expect(mail.raw).not.toMatch(/<a |<img /i);
      // One plain-text part: nothing in it is rendered as HTML.
      expect(mail.raw).toMatch(/^Content-Type: text\/plain/im);
      expect(mail.raw).not.toMatch(/text\/html/i);
    });

    it("even a stored name with CR/LF and controls gives a one-line subject and no injected header", async () => {
      const tenant = await authTenant();
      // As if stored before names were checked.
      const name = "Evil\r\nBcc: victim@evil.test\r\nX-Injected: yes\u0007\u202Etxt.exe";
      await world.server.app.deps.db.sql.query('UPDATE "Tenant" SET name = $1 WHERE id = $2', [name, tenant.id]);
      const account = await register(tenant);
      const [mail] = world.mailbox.to(account.email);
      if (!mail) expect.fail("no mail arrived");
      expect(mail.subject).toBe(
        `Evil Bcc: victim@evil.test X-Injected: yes txt.exe: your code is ${account.verifyCode}`,
      );
      expect(mail.headerNames.filter((header) => header === "subject")).toHaveLength(1);
      expect(mail.headerNames).not.toContain("bcc");
      expect(mail.headerNames).not.toContain("x-injected");
      expect(mail.to).toEqual([account.email]);
      expect(world.mailbox.to("victim@evil.test")).toEqual([]);
      // The body loses the controls and the name's CR/LF pairs too.
      expect(mail.text).not.toContain("\u0007");
      expect(mail.text).not.toContain("\u202E");
      expect(mail.text).not.toMatch(/^Bcc:/m);
    });
  });
});
