import { performance } from "node:perf_hooks";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/env.ts";
import { backends } from "../helpers/backends.ts";
import { fails, ok, request, sleep } from "../helpers/client.ts";
import { SignIn, SignUp } from "../operations/accounts.ts";
import { SendMessage } from "../operations/messages.ts";
import { bearer, expectRateLimited, freshIp, from, newEmail, newPassword, useAccountsServer } from "./helpers.ts";

/** Password sign-in, and the limits on failed attempts. */
describe.each(backends())("accounts on %s", (backend) => {
  const world = useAccountsServer(backend);
  const { extraServer, burst, authTenant, register, signIn, signInFails, expectWorks, homeGroup, device } = world;

  describe("sign-in", () => {
    it("gives an unknown email and a wrong password the same error, in similar time", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const attempt = async (email: string, password: string) => {
        const started = performance.now();
        const result = await request(
          world.server.url,
          SignIn,
          { input: { tenantId: tenant.id, email, password } },
          from(),
        );
        const ms = performance.now() - started;
        const error = result.errors?.[0];
        if (!error) expect.fail(`sign-in succeeded: ${JSON.stringify(result)}`);
        return { ms, code: error.extensions?.code, message: error.message };
      };
      // Warm-up (first use of each path), not measured.
      await attempt(newEmail("nobody"), newPassword());
      await attempt(account.email, newPassword());
      const unknown: number[] = [];
      const wrong: number[] = [];
      for (let i = 0; i < 3; i++) {
        const a = await attempt(newEmail("nobody"), account.password);
        const b = await attempt(account.email, `${account.password}x`);
        expect(a.code).toBe("UNAUTHENTICATED");
        expect(b.code).toBe("UNAUTHENTICATED");
        expect(a.message).toBe(b.message);
        unknown.push(a.ms);
        wrong.push(b.ms);
      }
      const median = (values: number[]) => [...values].sort((x, y) => x - y)[1] as number;
      const ratio = Math.max(median(unknown), median(wrong)) / Math.min(median(unknown), median(wrong));
      expect(ratio, `unknown email ${unknown.join("/")} ms, wrong password ${wrong.join("/")} ms`).toBeLessThan(3);
    });

    it("returns tokens that work over HTTP and over WebSocket", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const ip = freshIp();
      const session = await signIn(account, from(ip, "AcctTest/phone"));
      expect(session.user.id).toBe(account.userId);
      expect(session.session).toMatchObject({ method: "PASSWORD", userAgent: "AcctTest/phone", ipAddress: ip });
      expect(session.session.id).not.toBe(account.signUp.session.id);
      await expectWorks(session.accessToken, account.userId);

      const group = await homeGroup(account);
      const dev = await device(session.accessToken, account, group);
      try {
        // The user's own message, sent with the new token, arrives on the socket.
        await ok(
          world.server.url,
          SendMessage,
          { input: { conversationId: group, body: "from the new session" } },
          bearer(session.accessToken),
        );
        const event = await dev.sub.next(5_000);
        expect(event.data?.messageAdded.body).toBe("from the new session");
      } finally {
        await dev.client.dispose();
      }
    });
  });

  describe("login-attempt limits", () => {
    it("locks an account after 5 failures, even for the right password from another address", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const neighbour = await register(tenant);
      for (let i = 0; i < 5; i++) await signInFails(account, `wrong password ${i}`, "UNAUTHENTICATED");
      const lockedIp = freshIp();
      const error = await signInFails(account, account.password, "RATE_LIMITED", from(lockedIp));
      expectRateLimited(error, 600);
      // Only that account: another account signs in from the same address.
      await signIn(neighbour, from(lockedIp));

      // An email without an account is limited just the same.
      const ghost = { tenant, email: newEmail("ghost") };
      for (let i = 0; i < 5; i++) await signInFails(ghost, "whatever password", "UNAUTHENTICATED");
      expectRateLimited(await signInFails(ghost, "whatever password", "RATE_LIMITED"), 600);
    });

    it("locks the account, not the address: other users' sign-in and sign-up from that address still work", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const neighbour = await register(tenant);
      const ip = freshIp();
      for (let i = 0; i < 5; i++) await signInFails(account, `wrong password ${i}`, "UNAUTHENTICATED", from(ip));
      expectRateLimited(await signInFails(account, account.password, "RATE_LIMITED", from(ip)), 600);
      // Attempts on the locked account are refused before they count against the address.
      for (let i = 0; i < 10; i++) await signInFails(account, `still wrong ${i}`, "RATE_LIMITED", from(ip));

      const session = await signIn(neighbour, from(ip));
      expect(session.user.id).toBe(neighbour.userId);
      const newcomer = await register(tenant, { auth: from(ip) });
      expect(newcomer.userId).toBeTruthy();
      // The same email in another tenant is another account, also from that address.
      const otherTenant = await authTenant();
      const twin = await register(otherTenant, { email: account.email, password: account.password });
      expect((await signIn(twin, from(ip))).user.id).toBe(twin.userId);

      // Even where the per-address limit is low, one account's failures alone never reach it.
      const strict = await extraServer({ loginMaxFailuresPerAddress: 6 });
      try {
        const target = await register(tenant);
        const bystander = await register(tenant);
        const strictIp = freshIp();
        for (let i = 0; i < 5; i++) {
          await signInFails(target, `wrong ${i}`, "UNAUTHENTICATED", from(strictIp), strict.url);
        }
        for (let i = 0; i < 10; i++) {
          await signInFails(target, `wrong again ${i}`, "RATE_LIMITED", from(strictIp), strict.url);
        }
        expect((await signIn(bystander, from(strictIp), strict.url)).user.id).toBe(bystander.userId);
      } finally {
        await strict.stop();
      }
    });

    it("limits failures per client address across accounts at LOGIN_MAX_FAILURES_PER_ADDRESS", async () => {
      const strict = await extraServer({ loginMaxFailuresPerAddress: 8 });
      try {
        const tenant = await authTenant();
        const account = await register(tenant);
        const ip = freshIp();
        for (let i = 0; i < 8; i++) {
          const target =
            i % 2 ? { tenant, email: newEmail("guess") } : { tenant, email: (await register(tenant)).email };
          await signInFails(target, "not the password", "UNAUTHENTICATED", from(ip), strict.url);
        }
        const error = await signInFails(account, account.password, "RATE_LIMITED", from(ip), strict.url);
        expectRateLimited(error, 600);
        // Sign-up from that address is refused too.
        const signUpError = await fails(
          strict.url,
          SignUp,
          { input: { tenantId: tenant.id, email: newEmail(), password: newPassword(), name: "Blocked" } },
          from(ip),
          "RATE_LIMITED",
        );
        expectRateLimited(signUpError, 600);
        // The account itself is fine from elsewhere, and its own failure count was not touched.
        await signIn(account, from(freshIp()), strict.url);
      } finally {
        await strict.stop();
      }
      expect(loadConfig({}).loginMaxFailuresPerAddress).toBe(100);
      expect(loadConfig({ LOGIN_MAX_FAILURES: "10" }).loginMaxFailuresPerAddress).toBe(200);
      expect(loadConfig({ LOGIN_MAX_FAILURES_PER_ADDRESS: "30" }).loginMaxFailuresPerAddress).toBe(30);
      expect(() => loadConfig({ LOGIN_MAX_FAILURES: "10", LOGIN_MAX_FAILURES_PER_ADDRESS: "10" })).toThrow(
        /LOGIN_MAX_FAILURES_PER_ADDRESS/,
      );
    });

    it("counts each attempt before checking the password: in a burst, the right one past 5 is refused", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const attempt = (password: string) => () =>
        request(world.server.url, SignIn, { input: { tenantId: tenant.id, email: account.email, password } }, from());
      // Each from its own address: only the account's limit is in play.
      const [wrong, [right]] = await burst(
        "User",
        Array.from({ length: 20 }, (_, i) => attempt(`wrong password ${i}`)),
        [attempt(account.password)],
      );
      const codes = wrong.map((result) => result.errors?.[0]?.extensions?.code);
      const checked = codes.filter((code) => code === "UNAUTHENTICATED").length;
      expect(checked, JSON.stringify(codes)).toBeGreaterThanOrEqual(1);
      expect(checked, JSON.stringify(codes)).toBeLessThanOrEqual(5);
      expect(
        codes.filter((code) => code === "RATE_LIMITED"),
        JSON.stringify(codes),
      ).toHaveLength(20 - checked);
      // The right password, sent while the wrong ones were in flight, was never checked.
      expect(right?.data?.signIn, JSON.stringify(right)).toBeFalsy();
      expect(right?.errors?.[0]?.extensions?.code).toBe("RATE_LIMITED");
      expectRateLimited(await signInFails(account, account.password, "RATE_LIMITED"), 600);
    });

    it("resets an account's failure count on a successful sign-in", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      for (let i = 0; i < 4; i++) await signInFails(account, `wrong ${i}`, "UNAUTHENTICATED");
      await signIn(account);
      for (let i = 0; i < 4; i++) await signInFails(account, `wrong again ${i}`, "UNAUTHENTICATED");
      const session = await signIn(account);
      expect(session.user.id).toBe(account.userId);
    });

    it("lets the account and the address in again once the window has passed", async () => {
      const quick = await extraServer({ loginWindowSeconds: 2 });
      try {
        const tenant = await authTenant();
        const account = await register(tenant);
        const ip = freshIp();
        for (let i = 0; i < 5; i++) {
          await signInFails(account, `wrong ${i}`, "UNAUTHENTICATED", from(ip), quick.url);
        }
        const error = await signInFails(account, account.password, "RATE_LIMITED", from(ip), quick.url);
        const retry = expectRateLimited(error, 2);
        await sleep(retry * 1000 + 500);
        const session = await signIn(account, from(ip), quick.url);
        expect(session.user.id).toBe(account.userId);
      } finally {
        await quick.stop();
      }
    });

    // Counters live in Redis when there is one: every instance sees the same counts.
    if (backend === "postgres+redis") {
      it("shares the counts between server instances (3 failures on one + 2 on another lock)", async () => {
        const second = await extraServer();
        try {
          const tenant = await authTenant();
          const account = await register(tenant);
          for (let i = 0; i < 3; i++) await signInFails(account, `wrong ${i}`, "UNAUTHENTICATED");
          for (let i = 0; i < 2; i++) {
            await signInFails(account, `wrong ${i + 3}`, "UNAUTHENTICATED", from(), second.url);
          }
          expectRateLimited(await signInFails(account, account.password, "RATE_LIMITED"), 600);
          expectRateLimited(await signInFails(account, account.password, "RATE_LIMITED", from(), second.url), 600);

          // The per-address count too: one address, different accounts, across two instances.
          const ip = freshIp();
          const neighbour = await register(tenant);
          const strictA = await extraServer({ loginMaxFailuresPerAddress: 6 });
          const strictB = await extraServer({ loginMaxFailuresPerAddress: 6 });
          try {
            for (let i = 0; i < 6; i++) {
              const target = { tenant, email: newEmail("guess") };
              await signInFails(
                target,
                "not the password",
                "UNAUTHENTICATED",
                from(ip),
                (i < 3 ? strictA : strictB).url,
              );
            }
            for (const instance of [strictA, strictB]) {
              const error = await signInFails(neighbour, neighbour.password, "RATE_LIMITED", from(ip), instance.url);
              expectRateLimited(error, 600);
            }
            await signIn(neighbour, from(), strictB.url);
          } finally {
            await strictA.stop();
            await strictB.stop();
          }
        } finally {
          await second.stop();
        }
      });
    }
  });
});
