import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { expectClosed4403, expectOpen, fails, ok, request } from "../helpers/client.ts";
import {
  ChangePassword,
  RefreshSession,
  RequestEmailChange,
  Sessions,
  SignInWithEmailCode,
  UpdateProfile,
  VerifyEmail,
} from "../operations/accounts.ts";
import { AssignRole, Roles } from "../operations/roles.ts";
import { CreateUser, UpdateUser, Viewer, ViewerEmail } from "../operations/users.ts";
import {
  type Account,
  bearer,
  expectRateLimited,
  from,
  newEmail,
  newPassword,
  useAccountsServer,
  wrongCode,
} from "./helpers.ts";

/** Profile and password changes, and changing the email address. */
describe.each(backends())("accounts on %s", (backend) => {
  const world = useAccountsServer(backend);
  const {
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
    expectSurvives,
  } = world;

  describe("profile and password", () => {
    it("updateProfile changes the viewer's own name, phone and avatar; bad values are BAD_USER_INPUT", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const other = await register(tenant);
      const token = account.signUp.accessToken;
      const { updateProfile } = await ok(
        world.server.url,
        UpdateProfile,
        { input: { name: "Renamed", phone: "+1 (555) 010-0000", avatarUrl: "https://cdn.example.com/a.png" } },
        bearer(token),
      );
      expect(updateProfile).toEqual({
        id: account.userId,
        name: "Renamed",
        phone: "+1 (555) 010-0000",
        avatarUrl: "https://cdn.example.com/a.png",
        email: account.email,
      });
      const { viewer } = await ok(world.server.url, Viewer, {}, bearer(token));
      expect(viewer.user).toMatchObject({ name: "Renamed", phone: "+1 (555) 010-0000" });

      // Omitted fields stay, null clears.
      const cleared = await ok(world.server.url, UpdateProfile, { input: { phone: null } }, bearer(token));
      expect(cleared.updateProfile).toMatchObject({
        name: "Renamed",
        phone: null,
        avatarUrl: "https://cdn.example.com/a.png",
      });

      for (const [input, field] of [
        [{ avatarUrl: "not a url" }, "input.avatarUrl"],
        [{ avatarUrl: "javascript:alert(1)" }, "input.avatarUrl"],
        [{ phone: "call me" }, "input.phone"],
        [{ name: "   " }, "input.name"],
      ] as const) {
        const error = await fails(world.server.url, UpdateProfile, { input }, bearer(token), "BAD_USER_INPUT");
        expect(error.extensions?.field, JSON.stringify(input)).toBe(field);
      }
      const { viewer: unchanged } = await ok(world.server.url, Viewer, {}, bearer(token));
      expect(unchanged.user).toMatchObject({ name: "Renamed", avatarUrl: "https://cdn.example.com/a.png" });
      // Another user's profile is not touched.
      const { viewer: otherViewer } = await ok(world.server.url, Viewer, {}, bearer(other.signUp.accessToken));
      expect(otherViewer.user?.name).toBe("New User");
    });

    it("changePassword refuses a wrong current password and ends the user's other sessions only", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const group = await homeGroup(account);
      const current = await signIn(account);
      const other = await signIn(account);
      const devCurrent = await device(current.accessToken, account, group);
      const devOther = await device(other.accessToken, account, group);
      try {
        const wrong = await fails(
          world.server.url,
          ChangePassword,
          { input: { currentPassword: "not my password", newPassword: newPassword() } },
          bearer(current.accessToken),
          "BAD_USER_INPUT",
        );
        expect(wrong.extensions?.field).toBe("input.currentPassword");
        const short = await fails(
          world.server.url,
          ChangePassword,
          { input: { currentPassword: account.password, newPassword: "tiny" } },
          bearer(current.accessToken),
          "BAD_USER_INPUT",
        );
        expect(short.extensions?.field).toBe("input.newPassword");
        await expectOpen(devOther.client, "the other socket after refused changes", 200);

        const replacement = newPassword();
        const { changePassword } = await ok(
          world.server.url,
          ChangePassword,
          { input: { currentPassword: account.password, newPassword: replacement } },
          bearer(current.accessToken),
        );
        expect(changePassword).toBe(true);
        await expectClosed4403(devOther.client, "another session's socket after changePassword");
        await expectUnauthenticated(other.accessToken, "another session's token after changePassword");
        await expectUnauthenticated(account.signUp.accessToken, "the sign-up session's token after changePassword");
        await fails(world.server.url, RefreshSession, { refreshToken: other.refreshToken }, from(), "UNAUTHENTICATED");

        await expectSurvives(devCurrent, account, group, "the current session's socket");
        await expectWorks(current.accessToken, account.userId);
        const { sessions } = await ok(world.server.url, Sessions, {}, bearer(current.accessToken));
        expect(sessions.map((s) => s.id)).toEqual([current.session.id]);
        const { refreshSession } = await ok(
          world.server.url,
          RefreshSession,
          { refreshToken: current.refreshToken },
          from(),
        );
        await expectWorks(refreshSession.accessToken, account.userId);

        await signInFails(account, account.password, "UNAUTHENTICATED");
        await signIn({ ...account, password: replacement });
      } finally {
        await devCurrent.client.dispose();
        await devOther.client.dispose();
      }
    });
  });

  describe("email change", () => {
    async function verified(account: Account, token = account.signUp.accessToken) {
      return (await ok(world.server.url, ViewerEmail, {}, bearer(token))).viewer.user;
    }

    /** Asks to move `account` to `newAddress`; returns the code mailed there and the notice to the old address. */
    async function changeCode(account: Account, newAddress: string, token = account.signUp.accessToken) {
      const noticesBefore = world.mailbox.to(account.email).length;
      const code = await codeAfter(newAddress.toLowerCase(), async () => {
        const { requestEmailChange } = await ok(
          world.server.url,
          RequestEmailChange,
          { newEmail: newAddress },
          bearer(token),
        );
        expect(requestEmailChange).toBe(true);
      });
      const notice = await world.mailbox.mail(account.email, noticesBefore);
      return { code, notice };
    }

    it("keeps a user's own updateUser from changing their email (BAD_USER_INPUT naming requestEmailChange)", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const token = account.signUp.accessToken;
      await ok(world.server.url, VerifyEmail, { code: account.verifyCode }, bearer(token));
      const target = newEmail("takeover");
      const error = await fails(
        world.server.url,
        UpdateUser,
        { id: account.userId, input: { email: target } },
        bearer(token),
        "BAD_USER_INPUT",
      );
      expect(error.extensions?.field).toBe("input.email");
      expect(error.message).toContain("requestEmailChange");
      await fails(
        world.server.url,
        UpdateUser,
        { id: account.userId, input: { email: null } },
        bearer(token),
        "BAD_USER_INPUT",
      );
      await fails(
        world.server.url,
        UpdateUser,
        { id: account.userId, input: { emailVerified: true } },
        bearer(token),
        "FORBIDDEN",
      );
      // updateProfile has no email to set at all.
      const profile = await request(
        world.server.url,
        `mutation { updateProfile(input: { email: "${target}" }) { id } }`,
        undefined,
        bearer(token),
      );
      expect(profile.errors?.[0]?.extensions?.code, JSON.stringify(profile)).toBe("GRAPHQL_VALIDATION_FAILED");
      expect(await verified(account)).toEqual({ id: account.userId, email: account.email, emailVerified: true });
      // The same address (in any case) with other changes is no change of email.
      const { updateUser } = await ok(
        world.server.url,
        UpdateUser,
        { id: account.userId, input: { email: account.email.toUpperCase(), name: "Same Mail" } },
        bearer(token),
      );
      expect(updateUser).toMatchObject({ name: "Same Mail", email: account.email, emailVerified: true });
    });

    it("mails a code to the new address and a notice to the old one; verifyEmail moves the account there", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const stranger = await register(tenant);
      const token = account.signUp.accessToken;
      await ok(world.server.url, VerifyEmail, { code: account.verifyCode }, bearer(token));
      const oldSignInCode = await requestCode(account, "SIGN_IN");
      const target = newEmail("moved");
      const { code, notice } = await changeCode(account, target.toUpperCase());
      expect(notice.text).toContain(target);
      expect(`${notice.subject} ${notice.text}`).not.toContain(code);

      // Nothing changes until the code comes back.
      expect(await verified(account)).toEqual({ id: account.userId, email: account.email, emailVerified: true });
      await signIn(account);
      // Only the user who asked can redeem it.
      const theirs = await fails(
        world.server.url,
        VerifyEmail,
        { code },
        bearer(stranger.signUp.accessToken),
        "BAD_USER_INPUT",
      );
      expect(theirs.extensions?.field).toBe("code");
      const wrong = await fails(
        world.server.url,
        VerifyEmail,
        { code: wrongCode(code) },
        bearer(token),
        "BAD_USER_INPUT",
      );
      expect(wrong.extensions?.field).toBe("code");

      const { verifyEmail } = await ok(world.server.url, VerifyEmail, { code }, bearer(token));
      expect(verifyEmail).toEqual({ id: account.userId, email: target });
      expect(await verified(account)).toEqual({ id: account.userId, email: target, emailVerified: true });
      await fails(world.server.url, VerifyEmail, { code }, bearer(token), "BAD_USER_INPUT");
      await signInFails(account, account.password, "UNAUTHENTICATED");
      expect((await signIn({ ...account, email: target })).user.id).toBe(account.userId);
      // Codes mailed to the old address went with it: they do not open an account registered there later.
      const successor = await register(tenant, { email: account.email });
      const input = { tenantId: tenant.id, email: successor.email, code: oldSignInCode };
      const stale = await fails(world.server.url, SignInWithEmailCode, { input }, from(), "BAD_USER_INPUT");
      expect(stale.extensions?.field).toBe("code");
    });

    it("binds the code to the address it was sent to: a later request supersedes it", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const first = newEmail("first");
      const second = newEmail("second");
      const { code: firstCode } = await changeCode(account, first);
      const { code: secondCode } = await changeCode(account, second);
      if (firstCode !== secondCode) {
        await fails(
          world.server.url,
          VerifyEmail,
          { code: firstCode },
          bearer(account.signUp.accessToken),
          "BAD_USER_INPUT",
        );
      }
      const { verifyEmail } = await ok(
        world.server.url,
        VerifyEmail,
        { code: secondCode },
        bearer(account.signUp.accessToken),
      );
      expect(verifyEmail.email).toBe(second);
      // The unverified sign-up address's own code still verifies nothing now: it was for the old address.
      await fails(
        world.server.url,
        VerifyEmail,
        { code: account.verifyCode },
        bearer(account.signUp.accessToken),
        "BAD_USER_INPUT",
      );
      expect(await verified(account)).toEqual({ id: account.userId, email: second, emailVerified: true });
    });

    it("answers the same for an address another user has, sends it no code and changes nothing", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const owner = await register(tenant);
      const ownerMailsBefore = world.mailbox.to(owner.email).length;
      const noticesBefore = world.mailbox.to(account.email).length;
      const { requestEmailChange } = await ok(
        world.server.url,
        RequestEmailChange,
        { newEmail: owner.email },
        bearer(account.signUp.accessToken),
      );
      expect(requestEmailChange).toBe(true);
      // The inbox of that address learns someone tried, without a code; the requester learns nothing.
      const told = await world.mailbox.mail(owner.email, ownerMailsBefore);
      expect(`${told.subject}\n${told.text}`).not.toMatch(/\b\d{6}\b/);
      expect(told.text).toContain("already exists");
      await world.mailbox.mail(account.email, noticesBefore);
      await world.server.app.deps.tasks.drain();
      const row = await world.server.app.deps.db.prisma.emailCode.findFirst({
        where: { tenantId: tenant.id, userId: account.userId, purpose: "CHANGE_EMAIL" },
      });
      expect(row).toBeNull();
      expect(await verified(account)).toMatchObject({ email: account.email });
      expect(await verified(owner, owner.signUp.accessToken)).toMatchObject({ email: owner.email });
    });

    it("refuses with CONFLICT when another user took the address between the request and the code", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const target = newEmail("contested");
      const { code } = await changeCode(account, target);
      await register(tenant, { email: target });
      await fails(world.server.url, VerifyEmail, { code }, bearer(account.signUp.accessToken), "CONFLICT");
      expect(await verified(account)).toMatchObject({ email: account.email, emailVerified: false });
    });

    it("lets only the API key set another user's email and emailVerified; users:update is not enough", async () => {
      const tenant = await authTenant();
      const admin = await register(tenant);
      const account = await register(tenant);
      await ok(world.server.url, VerifyEmail, { code: account.verifyCode }, bearer(account.signUp.accessToken));
      const { roles } = await ok(world.server.url, Roles, {}, { apiKey: tenant.apiKey });
      const adminRole = roles.find((role) => role.name === "admin");
      if (!adminRole) expect.fail("no admin role");
      await ok(world.server.url, AssignRole, { userId: admin.userId, roleId: adminRole.id }, { apiKey: tenant.apiKey });
      const adminAuth = bearer(admin.signUp.accessToken);

      const forbiddenChange = await fails(
        world.server.url,
        UpdateUser,
        { id: account.userId, input: { email: newEmail("hijack") } },
        adminAuth,
        "FORBIDDEN",
      );
      expect(forbiddenChange.message).toContain("requestEmailChange");
      await fails(world.server.url, UpdateUser, { id: account.userId, input: { email: null } }, adminAuth, "FORBIDDEN");
      await fails(
        world.server.url,
        UpdateUser,
        { id: account.userId, input: { emailVerified: false } },
        adminAuth,
        "FORBIDDEN",
      );
      await fails(
        world.server.url,
        CreateUser,
        { input: { name: "Pre-verified", email: newEmail("pre"), emailVerified: true } },
        adminAuth,
        "FORBIDDEN",
      );
      // Other fields are still theirs to change.
      const { updateUser: renamed } = await ok(
        world.server.url,
        UpdateUser,
        { id: account.userId, input: { name: "Renamed by admin" } },
        adminAuth,
      );
      expect(renamed).toMatchObject({ name: "Renamed by admin", email: account.email, emailVerified: true });

      // The API key: a new address is unverified unless it vouches for it.
      const apiKey = { apiKey: tenant.apiKey };
      const backendSet = newEmail("backend");
      const { updateUser: moved } = await ok(
        world.server.url,
        UpdateUser,
        { id: account.userId, input: { email: backendSet } },
        apiKey,
      );
      expect(moved).toMatchObject({ email: backendSet, emailVerified: false });
      const { updateUser: vouched } = await ok(
        world.server.url,
        UpdateUser,
        { id: account.userId, input: { emailVerified: true } },
        apiKey,
      );
      expect(vouched).toMatchObject({ email: backendSet, emailVerified: true });
      const alsoVerified = newEmail("vouched");
      const { updateUser: both } = await ok(
        world.server.url,
        UpdateUser,
        { id: account.userId, input: { email: alsoVerified, emailVerified: true } },
        apiKey,
      );
      expect(both).toMatchObject({ email: alsoVerified, emailVerified: true });
      const { createUser } = await ok(
        world.server.url,
        CreateUser,
        { input: { name: "Imported", email: newEmail("imported"), emailVerified: true } },
        apiKey,
      );
      expect(createUser.emailVerified).toBe(true);
      const noEmail = await fails(
        world.server.url,
        CreateUser,
        { input: { name: "No mail", emailVerified: true } },
        apiKey,
        "BAD_USER_INPUT",
      );
      expect(noEmail.extensions?.field).toBe("input.emailVerified");
    });

    it("limits requestEmailChange per new address and per user; an API key cannot use it", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const token = account.signUp.accessToken;
      await fails(
        world.server.url,
        RequestEmailChange,
        { newEmail: newEmail() },
        { apiKey: tenant.apiKey },
        "FORBIDDEN",
      );
      const bad = await fails(
        world.server.url,
        RequestEmailChange,
        { newEmail: "not an address" },
        bearer(token),
        "BAD_USER_INPUT",
      );
      expect(bad.extensions?.field).toBe("newEmail");
      const same = await fails(
        world.server.url,
        RequestEmailChange,
        { newEmail: account.email },
        bearer(token),
        "BAD_USER_INPUT",
      );
      expect(same.extensions?.field).toBe("newEmail");
      for (let i = 0; i < 5; i++)
        await ok(world.server.url, RequestEmailChange, { newEmail: newEmail("many") }, bearer(token));
      expectRateLimited(
        await fails(
          world.server.url,
          RequestEmailChange,
          { newEmail: newEmail("more") },
          bearer(token),
          "RATE_LIMITED",
        ),
        600,
      );
      await world.server.app.deps.tasks.drain();
    });
  });
});
