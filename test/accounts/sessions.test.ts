import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/env.ts";
import { backends } from "../helpers/backends.ts";
import { type Auth, expectClosed4403, fails, ok, request, sleep, subscribe, wsClient } from "../helpers/client.ts";
import { RefreshSession, RevokeSession, Sessions, SignOut, SignOutEverywhere } from "../operations/accounts.ts";
import { MessageAdded } from "../operations/events.ts";
import { IssueUserToken, RevokeUserTokens } from "../operations/users.ts";
import { bearer, expectAbout, freshIp, from, type Payload, useAccountsServer } from "./helpers.ts";

/** Sessions: refresh with rotation and reuse detection, sign-out, revocation. */
describe.each(backends())("accounts on %s", (backend) => {
  const world = useAccountsServer(backend);
  const {
    extraServer,
    authTenant,
    register,
    signIn,
    expectUnauthenticated,
    expectWorks,
    homeGroup,
    device,
    expectSurvives,
  } = world;

  describe("sessions", () => {
    it("lists the viewer's sessions with creation, last use, user agent, address and which is current", async () => {
      const tenant = await authTenant();
      const laptopIp = freshIp();
      const phoneIp = freshIp();
      const account = await register(tenant, { auth: from(laptopIp, "AcctTest/laptop") });
      const phone = await signIn(account, from(phoneIp, "AcctTest/phone"));
      const other = await register(tenant); // another user's sessions never show

      const { sessions } = await ok(world.server.url, Sessions, {}, bearer(phone.accessToken));
      expect(sessions).toHaveLength(2);
      const byId = new Map(sessions.map((s) => [s.id, s]));
      const laptopRow = byId.get(account.signUp.session.id);
      const phoneRow = byId.get(phone.session.id);
      expect(laptopRow).toMatchObject({ current: false, userAgent: "AcctTest/laptop", ipAddress: laptopIp });
      expect(phoneRow).toMatchObject({ current: true, userAgent: "AcctTest/phone", ipAddress: phoneIp });
      expect(byId.has(other.signUp.session.id)).toBe(false);
      for (const row of sessions) {
        expect(row.method).toBe("PASSWORD");
        expectAbout(row.createdAt, Date.now(), 60_000);
        expect(new Date(row.lastUsedAt).getTime()).toBeGreaterThanOrEqual(new Date(row.createdAt).getTime());
        expect(new Date(row.expiresAt).getTime()).toBeGreaterThan(Date.now());
      }
      // Most recently used first.
      expect(sessions[0]?.id).toBe(phone.session.id);

      const { sessions: fromLaptop } = await ok(world.server.url, Sessions, {}, bearer(account.signUp.accessToken));
      expect(fromLaptop.find((s) => s.current)?.id).toBe(account.signUp.session.id);

      // Refreshing the laptop session marks it used (and it moves to the front).
      await sleep(20);
      const refreshed = await ok(
        world.server.url,
        RefreshSession,
        { refreshToken: account.signUp.refreshToken },
        from(),
      );
      expect(refreshed.refreshSession.session.id).toBe(account.signUp.session.id);
      const { sessions: later } = await ok(world.server.url, Sessions, {}, bearer(phone.accessToken));
      const laptopLater = later.find((s) => s.id === account.signUp.session.id);
      expect(new Date(laptopLater?.lastUsedAt ?? 0).getTime()).toBeGreaterThan(
        new Date(laptopRow?.lastUsedAt ?? 0).getTime(),
      );
      expect(laptopLater?.createdAt).toBe(laptopRow?.createdAt);
      expect(later[0]?.id).toBe(account.signUp.session.id);
    });

    it("rotates refresh tokens; presenting a rotated one ends the whole session, sockets included", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const group = await homeGroup(account);
      const other = await signIn(account);
      const first = await signIn(account);

      const { refreshSession: second } = await ok(
        world.server.url,
        RefreshSession,
        { refreshToken: first.refreshToken },
        from(),
      );
      expect(second.session.id).toBe(first.session.id);
      expect(second.refreshToken).not.toBe(first.refreshToken);
      expect(second.accessToken).not.toBe(first.accessToken);
      expect(second.user.id).toBe(account.userId);
      const { refreshSession: newest } = await ok(
        world.server.url,
        RefreshSession,
        { refreshToken: second.refreshToken },
        from(),
      );
      await expectWorks(newest.accessToken, account.userId);

      const dev = await device(newest.accessToken, account, group);
      const otherDev = await device(other.accessToken, account, group);
      try {
        // The first refresh token was already rotated: refused, and the session ends.
        await fails(world.server.url, RefreshSession, { refreshToken: first.refreshToken }, from(), "UNAUTHENTICATED");
        await expectClosed4403(dev.client, "the socket of the session with a reused refresh token");
        await expectUnauthenticated(newest.accessToken, "the newest access token of the ended session");
        await expectUnauthenticated(second.accessToken, "an earlier access token of the ended session");
        await fails(world.server.url, RefreshSession, { refreshToken: newest.refreshToken }, from(), "UNAUTHENTICATED");

        // The user's other session is untouched.
        await expectSurvives(otherDev, account, group, "the other session's socket");
        await expectWorks(other.accessToken, account.userId);
        const { sessions } = await ok(world.server.url, Sessions, {}, bearer(other.accessToken));
        expect(sessions.map((s) => s.id)).not.toContain(first.session.id);
        expect(sessions.map((s) => s.id)).toContain(other.session.id);
        const { refreshSession } = await ok(
          world.server.url,
          RefreshSession,
          { refreshToken: other.refreshToken },
          from(),
        );
        await expectWorks(refreshSession.accessToken, account.userId);
      } finally {
        await dev.client.dispose();
        await otherDev.client.dispose();
      }
      await fails(world.server.url, RefreshSession, { refreshToken: "rt_not-a-real-token" }, from(), "UNAUTHENTICATED");
    });

    it("lets only one of two concurrent refreshes with the same token win, and then ends the session", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const session = await signIn(account);
      const results = await Promise.all(
        [0, 1].map(() => request(world.server.url, RefreshSession, { refreshToken: session.refreshToken }, from())),
      );
      const winners = results.filter((r) => r.data?.refreshSession);
      const losers = results.filter((r) => r.errors?.length);
      expect(winners, JSON.stringify(results)).toHaveLength(1);
      expect(losers[0]?.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
      const winner = winners[0]?.data?.refreshSession as Payload;
      await expectUnauthenticated(winner.accessToken, "the access token of a session whose refresh token was raced");
      await fails(world.server.url, RefreshSession, { refreshToken: winner.refreshToken }, from(), "UNAUTHENTICATED");
    });

    it("signOut ends only the current session; its socket closes with 4403 while the other stays open", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const group = await homeGroup(account);
      const a = await signIn(account);
      const b = await signIn(account);
      const devA = await device(a.accessToken, account, group);
      const devB = await device(b.accessToken, account, group);
      try {
        const { signOut } = await ok(world.server.url, SignOut, {}, bearer(a.accessToken));
        expect(signOut).toBe(true);
        await expectClosed4403(devA.client, "the signed-out session's socket");
        await expectUnauthenticated(a.accessToken, "the signed-out access token");
        await fails(world.server.url, RefreshSession, { refreshToken: a.refreshToken }, from(), "UNAUTHENTICATED");

        await expectSurvives(devB, account, group, "the other session's socket");
        await expectWorks(b.accessToken, account.userId);
        const { sessions } = await ok(world.server.url, Sessions, {}, bearer(b.accessToken));
        const ids = sessions.map((s) => s.id);
        expect(ids).not.toContain(a.session.id);
        expect(ids).toEqual(expect.arrayContaining([b.session.id, account.signUp.session.id]));
        // A new socket with the signed-out token is refused.
        const late = wsClient(world.server.wsUrl, { token: a.accessToken });
        try {
          subscribe(late, MessageAdded);
          await expectClosed4403(late, "a new socket with the signed-out token");
        } finally {
          await late.dispose();
        }
      } finally {
        await devA.client.dispose();
        await devB.client.dispose();
      }
    });

    it("revokeSession(id) ends another session of the viewer; its socket closes with 4403 mid-subscription", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const stranger = await register(tenant);
      const group = await homeGroup(account);
      const a = await signIn(account);
      const b = await signIn(account);
      const devA = await device(a.accessToken, account, group);
      const devB = await device(b.accessToken, account, group);
      try {
        // Only the viewer's own sessions can be revoked.
        await fails(
          world.server.url,
          RevokeSession,
          { id: stranger.signUp.session.id },
          bearer(b.accessToken),
          "NOT_FOUND",
        );
        await fails(
          world.server.url,
          RevokeSession,
          { id: "00000000-0000-4000-8000-000000000000" },
          bearer(b.accessToken),
          "NOT_FOUND",
        );
        await expectWorks(stranger.signUp.accessToken, stranger.userId);
        // Used once, so that the instance holds it as valid when it is revoked.
        await expectWorks(a.accessToken, account.userId);

        const { revokeSession } = await ok(
          world.server.url,
          RevokeSession,
          { id: a.session.id },
          bearer(b.accessToken),
        );
        expect(revokeSession).toBe(true);
        await expectClosed4403(devA.client, "the revoked session's socket");
        await expectUnauthenticated(a.accessToken, "the revoked session's access token");
        await fails(world.server.url, RefreshSession, { refreshToken: a.refreshToken }, from(), "UNAUTHENTICATED");

        await expectSurvives(devB, account, group, "the revoking session's socket");
        await expectWorks(b.accessToken, account.userId);
        await expectWorks(account.signUp.accessToken, account.userId);
      } finally {
        await devA.client.dispose();
        await devB.client.dispose();
      }
    });

    it("signOutEverywhere ends every session and token of the viewer and closes all their sockets", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const bystander = await register(tenant);
      const group = await homeGroup(account);
      const a = await signIn(account);
      const b = await signIn(account);
      const { issueUserToken } = await ok(
        world.server.url,
        IssueUserToken,
        { userId: account.userId },
        { apiKey: tenant.apiKey },
      );
      const devA = await device(a.accessToken, account, group);
      const devB = await device(b.accessToken, account, group);
      const devKey = await device(issueUserToken.token, account, group);
      const bystanderGroup = await homeGroup(bystander);
      const devBystander = await device(bystander.signUp.accessToken, bystander, bystanderGroup);
      try {
        const { signOutEverywhere } = await ok(world.server.url, SignOutEverywhere, {}, bearer(a.accessToken));
        expect(signOutEverywhere).toBe(true);
        await expectClosed4403(devA.client, "the current session's socket");
        await expectClosed4403(devB.client, "another session's socket");
        await expectClosed4403(devKey.client, "the socket of a token issued by the API key");
        for (const token of [a.accessToken, b.accessToken, account.signUp.accessToken, issueUserToken.token]) {
          await expectUnauthenticated(token, "a token after signOutEverywhere");
        }
        for (const refreshToken of [a.refreshToken, b.refreshToken, account.signUp.refreshToken]) {
          await fails(world.server.url, RefreshSession, { refreshToken }, from(), "UNAUTHENTICATED");
        }
        // Other users are untouched, and the user can sign in again.
        await expectSurvives(devBystander, bystander, bystanderGroup, "another user's socket");
        await expectWorks(bystander.signUp.accessToken, bystander.userId);
        const fresh = await signIn(account);
        const { sessions } = await ok(world.server.url, Sessions, {}, bearer(fresh.accessToken));
        expect(sessions.map((s) => s.id)).toEqual([fresh.session.id]);
      } finally {
        for (const dev of [devA, devB, devKey, devBystander]) await dev.client.dispose();
      }
    });
    it("TRUST_PROXY counts hops from the right: an entry the client wrote is never its address", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const spoofed = (ip: string): Auth => ({
        headers: { "x-forwarded-for": `6.6.6.6, ${ip}`, "user-agent": "AcctTest/proxy" },
      });
      const oneHop = freshIp();
      const behindOne = await signIn(account, spoofed(oneHop));
      expect(behindOne.session.ipAddress).toBe(oneHop);
      const twoHops = await extraServer({ trustProxy: 2 });
      const none = await extraServer({ trustProxy: 0 });
      try {
        const behindTwo = await signIn(account, spoofed(freshIp()), twoHops.url);
        expect(behindTwo.session.ipAddress).toBe("6.6.6.6");
        const direct = await signIn(account, spoofed(freshIp()), none.url);
        expect(direct.session.ipAddress).toBe("127.0.0.1");
      } finally {
        await twoHops.stop();
        await none.stop();
      }
      expect(loadConfig({ TRUST_PROXY: "true" }).trustProxy).toBe(1);
      expect(loadConfig({ TRUST_PROXY: "false" }).trustProxy).toBe(0);
      expect(loadConfig({ TRUST_PROXY: "3" }).trustProxy).toBe(3);
      expect(() => loadConfig({ TRUST_PROXY: "yes" })).toThrow(/TRUST_PROXY/);
    });

    it("revokeUserTokens ends every session and refresh token of the user, not only access tokens", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const bystander = await register(tenant);
      const group = await homeGroup(account);
      const a = await signIn(account);
      const devA = await device(a.accessToken, account, group);
      try {
        const { revokeUserTokens } = await ok(
          world.server.url,
          RevokeUserTokens,
          { userId: account.userId },
          { apiKey: tenant.apiKey },
        );
        expect(revokeUserTokens).toBe(true);
        await expectClosed4403(devA.client, "the user's socket");
        for (const refreshToken of [a.refreshToken, account.signUp.refreshToken]) {
          await fails(world.server.url, RefreshSession, { refreshToken }, from(), "UNAUTHENTICATED");
        }
        await expectUnauthenticated(a.accessToken, "an access token after revokeUserTokens");
        await expectWorks(bystander.signUp.accessToken, bystander.userId);
        // Another user's session goes on.
        await ok(world.server.url, RefreshSession, { refreshToken: bystander.signUp.refreshToken }, from());
        const fresh = await signIn(account);
        const { sessions } = await ok(world.server.url, Sessions, {}, bearer(fresh.accessToken));
        expect(sessions.map((s) => s.id)).toEqual([fresh.session.id]);
      } finally {
        await devA.client.dispose();
      }
    });
  });
});
