import { randomBytes, randomInt } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { GraphQLFormattedError } from "graphql";
import pg from "pg";
import { SMTPServer } from "smtp-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/env.ts";
import type { AuthPayloadFieldsFragment, MessageAddedSubscription } from "./generated/graphql.ts";
import { backends, createTestDatabase, startServer, type TestDatabase, type TestServer } from "./helpers/backends.ts";
import {
  type Auth,
  drain,
  expectClosed4403,
  expectOpen,
  fails,
  ok,
  request,
  type Subscription,
  sleep,
  subscribe,
  type WsClient,
  whenLive,
  wsClient,
} from "./helpers/client.ts";
import { createTenant } from "./helpers/fixtures.ts";
import {
  ChangePassword,
  RefreshSession,
  RequestEmailChange,
  RequestEmailCode,
  ResetPassword,
  RevokeSession,
  Sessions,
  SignIn,
  SignInWithEmailCode,
  SignOut,
  SignOutEverywhere,
  SignUp,
  UpdateProfile,
  VerifyEmail,
} from "./operations/accounts.ts";
import { CreateGroup } from "./operations/conversations.ts";
import { MessageAdded } from "./operations/events.ts";
import { SendMessage } from "./operations/messages.ts";
import { AssignRole, Roles } from "./operations/roles.ts";
import { CreateTenant, Tenant, UpdateTenant } from "./operations/tenants.ts";
import { CreateUser, IssueUserToken, RevokeUserTokens, UpdateUser, Viewer, ViewerEmail } from "./operations/users.ts";

type Payload = AuthPayloadFieldsFragment;

// ---------------------------------------------------------------------------------------------
// A real SMTP server that keeps every mail it receives
// ---------------------------------------------------------------------------------------------

interface ReceivedMail {
  to: string[];
  subject: string;
  text: string;
  /** The names of its header fields, lower-cased, in order (folded lines joined). */
  headerNames: string[];
  raw: string;
}

function decodeHeader(value: string): string {
  // Whitespace between two encoded words is folding, not text (RFC 2047, 6.2).
  return value
    .replace(/\?=\s+=\?/g, "?==?")
    .replace(/=\?([^?]+)\?([BQ])\?([^?]*)\?=/gi, (_all, _charset, encoding: string, data: string) =>
      encoding.toUpperCase() === "B"
        ? Buffer.from(data, "base64").toString("utf8")
        : Buffer.from(
            data
              .replace(/_/g, " ")
              .replace(/=([0-9A-F]{2})/gi, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16))),
            "latin1",
          ).toString("utf8"),
    );
}

function parseMail(raw: string, to: string[]): ReceivedMail {
  const split = raw.indexOf("\r\n\r\n");
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, " ");
  const header = (name: string) =>
    head
      .split("\r\n")
      .find((line) => line.toLowerCase().startsWith(`${name.toLowerCase()}:`))
      ?.slice(name.length + 1)
      .trim() ?? "";
  let text = raw.slice(split + 4);
  const encoding = header("Content-Transfer-Encoding").toLowerCase();
  if (encoding === "quoted-printable") {
    text = Buffer.from(
      text
        .replace(/=\r\n/g, "")
        .replace(/=([0-9A-F]{2})/gi, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16))),
      "latin1",
    ).toString("utf8");
  } else if (encoding === "base64") {
    text = Buffer.from(text.replace(/\s+/g, ""), "base64").toString("utf8");
  }
  const headerNames = head.split("\r\n").map((line) => line.slice(0, line.indexOf(":")).toLowerCase());
  return { to, subject: decodeHeader(header("Subject")), text, headerNames, raw };
}

class Mailbox {
  readonly mails: ReceivedMail[] = [];
  private wake: (() => void)[] = [];
  private smtp: SMTPServer | null = null;
  /** Recipients refused with 550, as by a failing mail server. */
  private readonly refused = new Set<string>();
  /** Recipients whose mail is taken in but not acknowledged until released. */
  private readonly holds = new Map<string, Promise<void>>();
  port = 0;

  async start(): Promise<void> {
    this.smtp = new SMTPServer({
      authOptional: true,
      disabledCommands: ["STARTTLS"],
      logger: false,
      onRcptTo: (address, _session, callback) => {
        if (!this.refused.has(address.address.toLowerCase())) return callback();
        callback(Object.assign(new Error("Mailbox unavailable"), { responseCode: 550 }));
      },
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = [];
        stream.on("data", (chunk: Buffer) => chunks.push(chunk));
        stream.on("end", () => {
          const to = session.envelope.rcptTo.map((address) => address.address.toLowerCase());
          void Promise.all(to.map((address) => this.holds.get(address))).then(() => {
            this.mails.push(parseMail(Buffer.concat(chunks).toString("utf8"), to));
            for (const wake of this.wake.splice(0)) wake();
            callback();
          });
        });
      },
    });
    const smtp = this.smtp;
    this.port = await new Promise<number>((resolve, reject) => {
      const listener = smtp.listen(0, "127.0.0.1", () => resolve((listener.address() as AddressInfo).port));
      listener.once("error", reject);
    });
  }

  get url(): string {
    return `smtp://127.0.0.1:${this.port}`;
  }

  /** Refuses mail to `address` until the returned function is called. */
  refuse(address: string): () => void {
    const key = address.toLowerCase();
    this.refused.add(key);
    return () => this.refused.delete(key);
  }

  /** Takes mail to `address` in without acknowledging it (the sender waits) until released. */
  hold(address: string): () => void {
    const key = address.toLowerCase();
    let release = () => {};
    this.holds.set(key, new Promise<void>((resolve) => (release = resolve)));
    return () => {
      this.holds.delete(key);
      release();
    };
  }

  to(address: string): ReceivedMail[] {
    return this.mails.filter((mail) => mail.to.includes(address.toLowerCase()));
  }

  /** The mail with this index among those sent to `address`, waiting for it to arrive. */
  async mail(address: string, index: number, timeoutMs = 10_000): Promise<ReceivedMail> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const mail = this.to(address)[index];
      if (mail) return mail;
      const left = deadline - Date.now();
      if (left <= 0) expect.fail(`no mail #${index + 1} to ${address} within ${timeoutMs} ms`);
      await Promise.race([new Promise<void>((resolve) => this.wake.push(resolve)), sleep(Math.min(left, 200))]);
    }
  }

  async close(): Promise<void> {
    const smtp = this.smtp;
    if (smtp) await new Promise<void>((resolve) => smtp.close(() => resolve()));
  }
}

/** The 6-digit code of a mail: in its subject, and the same one in its text. */
function codeOf(mail: { subject: string; text: string }): string {
  const inSubject = /\b(\d{6})\b/.exec(mail.subject)?.[1];
  const inText = /\b(\d{6})\b/.exec(mail.text)?.[1];
  if (!inSubject || inSubject !== inText) {
    expect.fail(`no single 6-digit code in the mail: ${JSON.stringify(mail)}`);
  }
  return inSubject;
}

/** A code that differs from `code` in its last digit. */
const wrongCode = (code: string) => `${code.slice(0, 5)}${(Number(code[5]) + 1) % 10}`;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const suffix = () => randomBytes(4).toString("hex");
const newEmail = (name = "user") => `${name}-${suffix()}@example.com`;
const newPassword = () => `correct horse ${suffix()} battery`;

const usedIps = new Set<string>();
/**
 * A client address nobody else uses (the server trusts X-Forwarded-For here), so the
 * per-address failure limit of one test never locks out another, nor another run that
 * shares the same Redis.
 */
function freshIp(): string {
  while (true) {
    const ip = `10.${randomInt(256)}.${randomInt(256)}.${randomInt(1, 255)}`;
    if (!usedIps.has(ip)) {
      usedIps.add(ip);
      return ip;
    }
  }
}

/** Request options of an anonymous client at `ip` with a User-Agent. */
function from(ip = freshIp(), userAgent = "AcctTest/1.0"): Auth {
  return { headers: { "x-forwarded-for": ip, "user-agent": userAgent } };
}

/** Request options with a bearer token (from a fresh address). */
function bearer(token: string, ip = freshIp()): Auth {
  return { token, ...from(ip) };
}

function expectRateLimited(error: GraphQLFormattedError, maxSeconds: number): number {
  const retry = error.extensions?.retryAfterSeconds;
  expect(typeof retry, `retryAfterSeconds missing in ${JSON.stringify(error)}`).toBe("number");
  expect(retry as number).toBeGreaterThan(0);
  expect(retry as number).toBeLessThanOrEqual(maxSeconds);
  return retry as number;
}

function expectAbout(iso: string, expectedMs: number, toleranceMs = 10_000): void {
  const actual = new Date(iso).getTime();
  expect(Number.isNaN(actual), `${iso} is not a date`).toBe(false);
  expect(Math.abs(actual - expectedMs), `${iso} is not about ${new Date(expectedMs).toISOString()}`).toBeLessThan(
    toleranceMs,
  );
}

function jwtClaims(token: string): Record<string, unknown> {
  const part = token.split(".")[1];
  if (!part) expect.fail(`not a JWT: ${token}`);
  return JSON.parse(Buffer.from(part, "base64url").toString("utf8")) as Record<string, unknown>;
}

interface AuthTenant {
  id: string;
  apiKey: string;
}

interface Account {
  tenant: AuthTenant;
  email: string;
  password: string;
  userId: string;
  /** The sign-up's own session. */
  signUp: Payload;
  /** The VERIFY_EMAIL code mailed at sign-up. */
  verifyCode: string;
}

/** A live socket of one session (kept open by the client), subscribed to the user's messages. */
interface Device {
  client: WsClient;
  sub: Subscription<MessageAddedSubscription>;
}

// ---------------------------------------------------------------------------------------------

describe.each(backends())("accounts on %s", (backend) => {
  let database: TestDatabase;
  let server: TestServer;
  const mailbox = new Mailbox();

  beforeAll(async () => {
    await mailbox.start();
    database = await createTestDatabase(backend);
    // A pool larger than the bursts below, so a burst's requests never wait for a connection.
    server = await startServer(database, { smtpUrl: mailbox.url, trustProxy: 1, databasePoolSize: 30 });
  });
  afterAll(async () => {
    await server?.stop();
    await database?.drop();
    await mailbox.close();
  });

  /** A server of its own on the same database (and Redis), e.g. with other limits. */
  function extraServer(overrides: Parameters<typeof startServer>[1] = {}): Promise<TestServer> {
    return startServer(database, { smtpUrl: mailbox.url, trustProxy: 1, ...overrides });
  }

  /**
   * Sends a burst of requests at once, then (once the burst is in) the `late` ones, and
   * returns the results of each. On PostgreSQL this happens while `table` is locked: the
   * late requests go once every request of the burst is answered or waiting for the lock,
   * and the lock is released once the late ones are too. So every request that got past the checks in front of
   * that table is in before any of them does the work behind it: a limit that reads a
   * count first and records failures after the work lets them all through. On PGlite (no
   * second connection) each wave simply runs to its end.
   */
  async function burst<T>(
    table: "User" | "EmailCode",
    first: (() => Promise<T>)[],
    late: (() => Promise<T>)[],
  ): Promise<[T[], T[]]> {
    const waves = [first, late];
    if (!database.url) {
      return [await Promise.all(first.map((send) => send())), await Promise.all(late.map((send) => send()))];
    }
    const lock = new pg.Client({ connectionString: database.url });
    await lock.connect();
    try {
      await lock.query("BEGIN");
      await lock.query(`LOCK TABLE "${table}" IN ACCESS EXCLUSIVE MODE`);
      let answered = 0;
      let sent = 0;
      const pending: Promise<T>[][] = [];
      for (const wave of waves) {
        pending.push(wave.map((send) => send().finally(() => answered++)));
        sent += wave.length;
        const deadline = Date.now() + 20_000;
        while (true) {
          const { rows } = await lock.query<{ waiting: number }>(
            `SELECT count(*)::int AS waiting FROM pg_locks WHERE NOT granted AND relation = '"${table}"'::regclass`,
          );
          const waiting = rows[0]?.waiting ?? 0;
          if (waiting + answered >= sent) break;
          if (Date.now() > deadline) expect.fail(`${answered} answered and ${waiting} waiting of ${sent}`);
          await sleep(20);
        }
      }
      await lock.query("COMMIT");
      const [burstResults = [], lateResults = []] = await Promise.all(pending.map((wave) => Promise.all(wave)));
      return [burstResults, lateResults];
    } finally {
      await lock.end();
    }
  }

  /** A new tenant with the given end-user auth settings (self sign-up, password and code sign-in by default). */
  async function authTenant(
    auth: { selfSignUp?: boolean; signInMethods?: ("PASSWORD" | "EMAIL_CODE")[] } = {},
  ): Promise<AuthTenant> {
    const tenant = await createTenant(server.url, []);
    await ok(
      server.url,
      UpdateTenant,
      {
        input: {
          auth: {
            selfSignUp: auth.selfSignUp ?? true,
            signInMethods: auth.signInMethods ?? ["PASSWORD", "EMAIL_CODE"],
          },
        },
      },
      { apiKey: tenant.apiKey },
    );
    return { id: tenant.id, apiKey: tenant.apiKey };
  }

  /** Runs `action` and returns the code of the one mail it sends to `email`. */
  async function codeAfter(email: string, action: () => Promise<unknown>): Promise<string> {
    const before = mailbox.to(email).length;
    await action();
    const mail = await mailbox.mail(email, before);
    return codeOf(mail);
  }

  async function register(
    tenant: AuthTenant,
    options: { email?: string; password?: string; name?: string; auth?: Auth } = {},
  ): Promise<Account> {
    const email = options.email ?? newEmail();
    const password = options.password ?? newPassword();
    let payload: Payload | undefined;
    const verifyCode = await codeAfter(email.toLowerCase(), async () => {
      payload = (
        await ok(
          server.url,
          SignUp,
          { input: { tenantId: tenant.id, email, password, name: options.name ?? "New User" } },
          options.auth ?? from(),
        )
      ).signUp;
    });
    if (!payload) expect.fail("signUp returned nothing");
    return { tenant, email: email.toLowerCase(), password, userId: payload.user.id, signUp: payload, verifyCode };
  }

  async function signIn(account: Account, auth: Auth = from(), url = server.url): Promise<Payload> {
    const input = { tenantId: account.tenant.id, email: account.email, password: account.password };
    return (await ok(url, SignIn, { input }, auth)).signIn;
  }

  function signInFails(
    account: { tenant: AuthTenant; email: string },
    password: string,
    code: string,
    auth: Auth = from(),
    url = server.url,
  ): Promise<GraphQLFormattedError> {
    const input = { tenantId: account.tenant.id, email: account.email, password };
    return fails(url, SignIn, { input }, auth, code);
  }

  async function requestCode(
    account: { tenant: AuthTenant; email: string },
    purpose: "VERIFY_EMAIL" | "SIGN_IN" | "RESET_PASSWORD",
    url = server.url,
  ): Promise<string> {
    return codeAfter(account.email, async () => {
      const result = await ok(
        url,
        RequestEmailCode,
        { input: { tenantId: account.tenant.id, email: account.email, purpose } },
        from(),
      );
      expect(result.requestEmailCode).toBe(true);
    });
  }

  const expectUnauthenticated = (token: string, what: string) =>
    fails(server.url, Viewer, {}, bearer(token), "UNAUTHENTICATED").catch((error: unknown) => {
      throw new Error(`${what}: ${String(error)}`);
    });

  async function expectWorks(token: string, userId: string): Promise<void> {
    const { viewer } = await ok(server.url, Viewer, {}, bearer(token));
    expect(viewer.user?.id).toBe(userId);
  }

  /** A group of the account's own, where the API key can post to reach all of the user's sockets. */
  async function homeGroup(account: Account): Promise<string> {
    const { createGroup } = await ok(
      server.url,
      CreateGroup,
      { input: { name: "Devices" } },
      bearer(account.signUp.accessToken),
    );
    return createGroup.id;
  }

  function poke(account: Account, conversationId: string, body = "probe") {
    return () => ok(server.url, SendMessage, { input: { conversationId, body } }, { apiKey: account.tenant.apiKey });
  }

  async function device(token: string, account: Account, conversationId: string): Promise<Device> {
    const client = wsClient(server.wsUrl, { token: token }, { keepOpen: true });
    const sub = subscribe(client, MessageAdded);
    await whenLive(sub, poke(account, conversationId));
    return { client, sub };
  }

  /** The device still receives: a message posted now arrives. */
  async function expectReceives(dev: Device, account: Account, conversationId: string): Promise<void> {
    await drain(dev.sub);
    const body = `still-here-${suffix()}`;
    await poke(account, conversationId, body)();
    const event = await dev.sub.next(5_000);
    expect(event.data?.messageAdded.body).toBe(body);
  }

  /** A device untouched by another session's end: its subscription runs, its socket is open, it receives. */
  async function expectSurvives(dev: Device, account: Account, conversationId: string, what: string): Promise<void> {
    const ended = await Promise.race([dev.sub.done, sleep(500).then(() => null)]);
    expect(ended, `the server ended the subscription of ${what}: ${JSON.stringify(ended)}`).toBeNull();
    await expectOpen(dev.client, what, 100);
    await expectReceives(dev, account, conversationId);
  }

  // -------------------------------------------------------------------------------------------
  // 1. Settings
  // -------------------------------------------------------------------------------------------

  describe("tenant auth settings", () => {
    it("refuses sign-up with FORBIDDEN until the tenant enables it (and again once disabled)", async () => {
      const tenant = await createTenant(server.url, []);
      const { tenant: settings } = await ok(server.url, Tenant, {}, { apiKey: tenant.apiKey });
      expect(settings.selfSignUp).toBe(false);
      expect(settings.signInMethods).toEqual(["PASSWORD"]);

      const email = newEmail();
      const input = { tenantId: tenant.id, email, password: newPassword(), name: "Early" };
      await fails(server.url, SignUp, { input }, from(), "FORBIDDEN");

      const { updateTenant } = await ok(
        server.url,
        UpdateTenant,
        { input: { auth: { selfSignUp: true } } },
        { apiKey: tenant.apiKey },
      );
      expect(updateTenant.selfSignUp).toBe(true);
      expect(updateTenant.signInMethods).toEqual(["PASSWORD"]);
      const { signUp } = await ok(server.url, SignUp, { input }, from());
      expect(signUp.user.email).toBe(email);

      await ok(server.url, UpdateTenant, { input: { auth: { selfSignUp: false } } }, { apiKey: tenant.apiKey });
      const again = { ...input, email: newEmail() };
      await fails(server.url, SignUp, { input: again }, from(), "FORBIDDEN");
      // The one mail is the VERIFY_EMAIL code of the accepted sign-up; refused ones send none.
      await sleep(200);
      expect(mailbox.to(email)).toHaveLength(1);
      expect(mailbox.to(again.email)).toHaveLength(0);
    });

    it("refuses EMAIL_CODE sign-in with FORBIDDEN unless the tenant lists it, and PASSWORD likewise", async () => {
      const tenant = await authTenant({ signInMethods: ["PASSWORD"] });
      const account = await register(tenant);
      const codeRequest = { tenantId: tenant.id, email: account.email, purpose: "SIGN_IN" as const };
      await fails(server.url, RequestEmailCode, { input: codeRequest }, from(), "FORBIDDEN");
      await fails(
        server.url,
        SignInWithEmailCode,
        { input: { tenantId: tenant.id, email: account.email, code: "123456" } },
        from(),
        "FORBIDDEN",
      );
      await sleep(200);
      expect(mailbox.to(account.email)).toHaveLength(1); // only the VERIFY_EMAIL mail of sign-up

      await ok(
        server.url,
        UpdateTenant,
        { input: { auth: { signInMethods: ["PASSWORD", "EMAIL_CODE"] } } },
        { apiKey: tenant.apiKey },
      );
      const code = await requestCode(account, "SIGN_IN");
      const { signInWithEmailCode } = await ok(
        server.url,
        SignInWithEmailCode,
        { input: { tenantId: tenant.id, email: account.email, code } },
        from(),
      );
      expect(signInWithEmailCode.user.id).toBe(account.userId);

      // Without PASSWORD in the list, password sign-in is refused even with the right password.
      const { updateTenant } = await ok(
        server.url,
        UpdateTenant,
        { input: { auth: { signInMethods: ["EMAIL_CODE"] } } },
        { apiKey: tenant.apiKey },
      );
      expect(updateTenant.signInMethods).toEqual(["EMAIL_CODE"]);
      await signInFails(account, account.password, "FORBIDDEN");

      // An unknown tenant looks like a closed one.
      await fails(
        server.url,
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
        server.url,
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
      const { refreshSession } = await ok(server.url, RefreshSession, { refreshToken: session.refreshToken }, from());
      expectAbout(refreshSession.accessTokenExpiresAt, now + 120_000);

      // Out-of-range lifetimes are refused, naming the field.
      const error = await fails(
        server.url,
        UpdateTenant,
        { input: { auth: { accessTokenTtlSeconds: 30 } } },
        { apiKey: tenant.apiKey },
        "BAD_USER_INPUT",
      );
      expect(error.extensions?.field).toBe("input.auth.accessTokenTtlSeconds");
    });
  });

  // -------------------------------------------------------------------------------------------
  // 2. Sign-up and email verification
  // -------------------------------------------------------------------------------------------

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
      const { viewer } = await ok(server.url, Viewer, {}, bearer(payload.accessToken));
      expect(viewer).toMatchObject({ isService: false, user: { id: account.userId, email: account.email } });

      // The code arrived by SMTP to the address; the account is not verified until it is used.
      expect(account.verifyCode).toMatch(/^\d{6}$/);
      const prisma = server.app.deps.db.prisma;
      const before = await prisma.user.findUniqueOrThrow({ where: { id: account.userId } });
      expect(before.emailVerifiedAt).toBeNull();
      const { verifyEmail } = await ok(
        server.url,
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
          server.url,
          SignUp,
          { input: { tenantId: tenant.id, email, password, name: "Short" } },
          from(),
          "BAD_USER_INPUT",
        );
        expect(error.extensions?.field).toBe("input.password");
        await sleep(100);
        expect(mailbox.to(email)).toHaveLength(0);
        // No account was created: the address is still free.
        await register(tenant, { email });
      }
      const error = await fails(
        server.url,
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
          server.url,
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

  // -------------------------------------------------------------------------------------------
  // 3. Password sign-in
  // -------------------------------------------------------------------------------------------

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

  describe("sign-in", () => {
    it("gives an unknown email and a wrong password the same error, in similar time", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const attempt = async (email: string, password: string) => {
        const started = performance.now();
        const result = await request(server.url, SignIn, { input: { tenantId: tenant.id, email, password } }, from());
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
          server.url,
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

  // -------------------------------------------------------------------------------------------
  // 4. Sessions
  // -------------------------------------------------------------------------------------------

  describe("sessions", () => {
    it("lists the viewer's sessions with creation, last use, user agent, address and which is current", async () => {
      const tenant = await authTenant();
      const laptopIp = freshIp();
      const phoneIp = freshIp();
      const account = await register(tenant, { auth: from(laptopIp, "AcctTest/laptop") });
      const phone = await signIn(account, from(phoneIp, "AcctTest/phone"));
      const other = await register(tenant); // another user's sessions never show

      const { sessions } = await ok(server.url, Sessions, {}, bearer(phone.accessToken));
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

      const { sessions: fromLaptop } = await ok(server.url, Sessions, {}, bearer(account.signUp.accessToken));
      expect(fromLaptop.find((s) => s.current)?.id).toBe(account.signUp.session.id);

      // Refreshing the laptop session marks it used (and it moves to the front).
      await sleep(20);
      const refreshed = await ok(server.url, RefreshSession, { refreshToken: account.signUp.refreshToken }, from());
      expect(refreshed.refreshSession.session.id).toBe(account.signUp.session.id);
      const { sessions: later } = await ok(server.url, Sessions, {}, bearer(phone.accessToken));
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
        server.url,
        RefreshSession,
        { refreshToken: first.refreshToken },
        from(),
      );
      expect(second.session.id).toBe(first.session.id);
      expect(second.refreshToken).not.toBe(first.refreshToken);
      expect(second.accessToken).not.toBe(first.accessToken);
      expect(second.user.id).toBe(account.userId);
      const { refreshSession: newest } = await ok(
        server.url,
        RefreshSession,
        { refreshToken: second.refreshToken },
        from(),
      );
      await expectWorks(newest.accessToken, account.userId);

      const dev = await device(newest.accessToken, account, group);
      const otherDev = await device(other.accessToken, account, group);
      try {
        // The first refresh token was already rotated: refused, and the session ends.
        await fails(server.url, RefreshSession, { refreshToken: first.refreshToken }, from(), "UNAUTHENTICATED");
        await expectClosed4403(dev.client, "the socket of the session with a reused refresh token");
        await expectUnauthenticated(newest.accessToken, "the newest access token of the ended session");
        await expectUnauthenticated(second.accessToken, "an earlier access token of the ended session");
        await fails(server.url, RefreshSession, { refreshToken: newest.refreshToken }, from(), "UNAUTHENTICATED");

        // The user's other session is untouched.
        await expectSurvives(otherDev, account, group, "the other session's socket");
        await expectWorks(other.accessToken, account.userId);
        const { sessions } = await ok(server.url, Sessions, {}, bearer(other.accessToken));
        expect(sessions.map((s) => s.id)).not.toContain(first.session.id);
        expect(sessions.map((s) => s.id)).toContain(other.session.id);
        const { refreshSession } = await ok(server.url, RefreshSession, { refreshToken: other.refreshToken }, from());
        await expectWorks(refreshSession.accessToken, account.userId);
      } finally {
        await dev.client.dispose();
        await otherDev.client.dispose();
      }
      await fails(server.url, RefreshSession, { refreshToken: "rt_not-a-real-token" }, from(), "UNAUTHENTICATED");
    });

    it("lets only one of two concurrent refreshes with the same token win, and then ends the session", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const session = await signIn(account);
      const results = await Promise.all(
        [0, 1].map(() => request(server.url, RefreshSession, { refreshToken: session.refreshToken }, from())),
      );
      const winners = results.filter((r) => r.data?.refreshSession);
      const losers = results.filter((r) => r.errors?.length);
      expect(winners, JSON.stringify(results)).toHaveLength(1);
      expect(losers[0]?.errors?.[0]?.extensions?.code).toBe("UNAUTHENTICATED");
      const winner = winners[0]?.data?.refreshSession as Payload;
      await expectUnauthenticated(winner.accessToken, "the access token of a session whose refresh token was raced");
      await fails(server.url, RefreshSession, { refreshToken: winner.refreshToken }, from(), "UNAUTHENTICATED");
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
        const { signOut } = await ok(server.url, SignOut, {}, bearer(a.accessToken));
        expect(signOut).toBe(true);
        await expectClosed4403(devA.client, "the signed-out session's socket");
        await expectUnauthenticated(a.accessToken, "the signed-out access token");
        await fails(server.url, RefreshSession, { refreshToken: a.refreshToken }, from(), "UNAUTHENTICATED");

        await expectSurvives(devB, account, group, "the other session's socket");
        await expectWorks(b.accessToken, account.userId);
        const { sessions } = await ok(server.url, Sessions, {}, bearer(b.accessToken));
        const ids = sessions.map((s) => s.id);
        expect(ids).not.toContain(a.session.id);
        expect(ids).toEqual(expect.arrayContaining([b.session.id, account.signUp.session.id]));
        // A new socket with the signed-out token is refused.
        const late = wsClient(server.wsUrl, { token: a.accessToken });
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
        await fails(server.url, RevokeSession, { id: stranger.signUp.session.id }, bearer(b.accessToken), "NOT_FOUND");
        await fails(
          server.url,
          RevokeSession,
          { id: "00000000-0000-4000-8000-000000000000" },
          bearer(b.accessToken),
          "NOT_FOUND",
        );
        await expectWorks(stranger.signUp.accessToken, stranger.userId);

        const { revokeSession } = await ok(server.url, RevokeSession, { id: a.session.id }, bearer(b.accessToken));
        expect(revokeSession).toBe(true);
        await expectClosed4403(devA.client, "the revoked session's socket");
        await expectUnauthenticated(a.accessToken, "the revoked session's access token");
        await fails(server.url, RefreshSession, { refreshToken: a.refreshToken }, from(), "UNAUTHENTICATED");

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
        server.url,
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
        const { signOutEverywhere } = await ok(server.url, SignOutEverywhere, {}, bearer(a.accessToken));
        expect(signOutEverywhere).toBe(true);
        await expectClosed4403(devA.client, "the current session's socket");
        await expectClosed4403(devB.client, "another session's socket");
        await expectClosed4403(devKey.client, "the socket of a token issued by the API key");
        for (const token of [a.accessToken, b.accessToken, account.signUp.accessToken, issueUserToken.token]) {
          await expectUnauthenticated(token, "a token after signOutEverywhere");
        }
        for (const refreshToken of [a.refreshToken, b.refreshToken, account.signUp.refreshToken]) {
          await fails(server.url, RefreshSession, { refreshToken }, from(), "UNAUTHENTICATED");
        }
        // Other users are untouched, and the user can sign in again.
        await expectSurvives(devBystander, bystander, bystanderGroup, "another user's socket");
        await expectWorks(bystander.signUp.accessToken, bystander.userId);
        const fresh = await signIn(account);
        const { sessions } = await ok(server.url, Sessions, {}, bearer(fresh.accessToken));
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
          server.url,
          RevokeUserTokens,
          { userId: account.userId },
          { apiKey: tenant.apiKey },
        );
        expect(revokeUserTokens).toBe(true);
        await expectClosed4403(devA.client, "the user's socket");
        for (const refreshToken of [a.refreshToken, account.signUp.refreshToken]) {
          await fails(server.url, RefreshSession, { refreshToken }, from(), "UNAUTHENTICATED");
        }
        await expectUnauthenticated(a.accessToken, "an access token after revokeUserTokens");
        await expectWorks(bystander.signUp.accessToken, bystander.userId);
        // Another user's session goes on.
        await ok(server.url, RefreshSession, { refreshToken: bystander.signUp.refreshToken }, from());
        const fresh = await signIn(account);
        const { sessions } = await ok(server.url, Sessions, {}, bearer(fresh.accessToken));
        expect(sessions.map((s) => s.id)).toEqual([fresh.session.id]);
      } finally {
        await devA.client.dispose();
      }
    });
  });

  // -------------------------------------------------------------------------------------------
  // 5. Login-attempt limits
  // -------------------------------------------------------------------------------------------

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
        request(server.url, SignIn, { input: { tenantId: tenant.id, email: account.email, password } }, from());
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

  // -------------------------------------------------------------------------------------------
  // 6. One-time email codes
  // -------------------------------------------------------------------------------------------

  describe("email codes", () => {
    /** Signs in with a code from a fresh address (so the per-address limit stays out of the way). */
    const codeSignIn = async (account: Account, code: string): Promise<Payload> => {
      const input = { tenantId: account.tenant.id, email: account.email, code };
      return (await ok(server.url, SignInWithEmailCode, { input }, from())).signInWithEmailCode;
    };
    const codeSignInFails = (account: Account, code: string, errorCode: string) => {
      const input = { tenantId: account.tenant.id, email: account.email, code };
      return fails(server.url, SignInWithEmailCode, { input }, from(), errorCode);
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
        server.url,
        VerifyEmail,
        { code: wrongCode(verify) },
        bearer(token),
        "BAD_USER_INPUT",
      );
      expect(wrongVerify.extensions?.field).toBe("code");
      await ok(server.url, VerifyEmail, { code: verify }, bearer(token));
      const reusedVerify = await fails(server.url, VerifyEmail, { code: verify }, bearer(token), "BAD_USER_INPUT");
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
        await fails(server.url, VerifyEmail, { code: wrongCode(account.verifyCode) }, bearer(token), "BAD_USER_INPUT");
      }
      const error = await fails(server.url, VerifyEmail, { code: account.verifyCode }, bearer(token), "RATE_LIMITED");
      expectRateLimited(error, 600);
    });

    it("takes each guess from the code before comparing it: 20 parallel wrong codes are at most 5 guesses", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const code = await requestCode(account, "SIGN_IN");
      const guesses = Array.from({ length: 20 }, (_, i) => String((Number(code) + 1 + i) % 1_000_000).padStart(6, "0"));
      const attempt = (guess: string) => () =>
        request(
          server.url,
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
      const row = await server.app.deps.db.prisma.emailCode.findFirstOrThrow({
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
          const result = await request(i % 2 ? second.url : server.url, SignInWithEmailCode, { input }, from());
          expect(refused, JSON.stringify(result)).toContain(result.errors?.[0]?.extensions?.code);
        }
        for (const url of [server.url, second.url]) {
          const input = { tenantId: tenant.id, email: account.email, code };
          const result = await request(url, SignInWithEmailCode, { input }, from());
          expect(result.data?.signInWithEmailCode, JSON.stringify(result)).toBeFalsy();
          expect(refused, JSON.stringify(result)).toContain(result.errors?.[0]?.extensions?.code);
        }
        const row = await server.app.deps.db.prisma.emailCode.findFirstOrThrow({
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
      const unrefuse = mailbox.refuse(account.email);
      try {
        for (const purpose of ["SIGN_IN", "RESET_PASSWORD"] as const) {
          const ask = (email: string) =>
            request(server.url, RequestEmailCode, { input: { tenantId: tenant.id, email, purpose } }, from());
          const known = await ask(account.email);
          const missing = await ask(unknown);
          expect(known).toEqual({ status: 200, data: { requestEmailCode: true } });
          expect(missing).toEqual(known);
        }
        // The failed deliveries are the server's business (logged), not the client's.
        await server.app.deps.tasks.drain();
      } finally {
        unrefuse();
      }
      const code = await requestCode(account, "SIGN_IN");
      const input = { tenantId: tenant.id, email: account.email, code };
      expect((await ok(server.url, SignInWithEmailCode, { input }, from())).signInWithEmailCode.user.id).toBe(
        account.userId,
      );
    });

    it("answers requestEmailCode before the mail goes out; the code arrives afterwards and works", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const before = mailbox.to(account.email).length;
      const release = mailbox.hold(account.email);
      let answer: Awaited<ReturnType<typeof request>>;
      try {
        // The mail server does not acknowledge the mail until released: a server that
        // mailed before answering would never answer here.
        answer = await request(
          server.url,
          RequestEmailCode,
          { input: { tenantId: tenant.id, email: account.email, purpose: "SIGN_IN" } },
          from(),
        );
        expect(mailbox.to(account.email)).toHaveLength(before);
      } finally {
        release();
      }
      expect(answer).toEqual({ status: 200, data: { requestEmailCode: true } });
      const code = codeOf(await mailbox.mail(account.email, before));
      const input = { tenantId: tenant.id, email: account.email, code };
      expect((await ok(server.url, SignInWithEmailCode, { input }, from())).signInWithEmailCode.user.id).toBe(
        account.userId,
      );
    });

    it("answers true for unknown addresses and sends them nothing", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const unknown = newEmail("nobody");
      for (const purpose of ["VERIFY_EMAIL", "SIGN_IN", "RESET_PASSWORD"] as const) {
        const { requestEmailCode } = await ok(
          server.url,
          RequestEmailCode,
          { input: { tenantId: tenant.id, email: unknown, purpose } },
          from(),
        );
        expect(requestEmailCode).toBe(true);
      }
      // A request for a real account afterwards is delivered; by then the others would have been too.
      await requestCode(account, "RESET_PASSWORD");
      // Mail goes out after the answer: wait for all of it.
      await server.app.deps.tasks.drain();
      await sleep(200);
      expect(mailbox.to(unknown)).toEqual([]);
    });

    it("signs in with an emailed SIGN_IN code, which also proves the address", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const code = await codeAfter(account.email, () =>
        ok(
          server.url,
          RequestEmailCode,
          { input: { tenantId: tenant.id, email: account.email.toUpperCase(), purpose: "SIGN_IN" } },
          from(),
        ),
      );
      const ip = freshIp();
      const { signInWithEmailCode: session } = await ok(
        server.url,
        SignInWithEmailCode,
        { input: { tenantId: tenant.id, email: account.email, code } },
        from(ip, "AcctTest/code"),
      );
      expect(session.user).toMatchObject({ id: account.userId, email: account.email });
      expect(session.session).toMatchObject({ method: "EMAIL_CODE", userAgent: "AcctTest/code", ipAddress: ip });
      await expectWorks(session.accessToken, account.userId);
      const { sessions } = await ok(server.url, Sessions, {}, bearer(session.accessToken));
      expect(sessions.find((s) => s.current)).toMatchObject({ id: session.session.id, method: "EMAIL_CODE" });
      const { refreshSession } = await ok(server.url, RefreshSession, { refreshToken: session.refreshToken }, from());
      await expectWorks(refreshSession.accessToken, account.userId);
      const user = await server.app.deps.db.prisma.user.findUniqueOrThrow({ where: { id: account.userId } });
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
        const policy = await fails(server.url, ResetPassword, { input }, from(), "BAD_USER_INPUT");
        expect(policy.extensions?.field).toBe("input.newPassword");
        const wrong = await fails(
          server.url,
          ResetPassword,
          { input: { ...input, code: wrongCode(code), newPassword: newPassword() } },
          from(),
          "BAD_USER_INPUT",
        );
        expect(wrong.extensions?.field).toBe("code");

        const replacement = newPassword();
        const { resetPassword } = await ok(
          server.url,
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
          await fails(server.url, RefreshSession, { refreshToken }, from(), "UNAUTHENTICATED");
        }
        await signInFails(account, account.password, "UNAUTHENTICATED");
        const session = await signIn({ ...account, password: replacement });
        expect(session.user.id).toBe(account.userId);
        // The code worked once.
        const again = await fails(
          server.url,
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

  // -------------------------------------------------------------------------------------------
  // 7. Profile and password changes
  // -------------------------------------------------------------------------------------------

  describe("profile and password", () => {
    it("updateProfile changes the viewer's own name, phone and avatar; bad values are BAD_USER_INPUT", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const other = await register(tenant);
      const token = account.signUp.accessToken;
      const { updateProfile } = await ok(
        server.url,
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
      const { viewer } = await ok(server.url, Viewer, {}, bearer(token));
      expect(viewer.user).toMatchObject({ name: "Renamed", phone: "+1 (555) 010-0000" });

      // Omitted fields stay, null clears.
      const cleared = await ok(server.url, UpdateProfile, { input: { phone: null } }, bearer(token));
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
        const error = await fails(server.url, UpdateProfile, { input }, bearer(token), "BAD_USER_INPUT");
        expect(error.extensions?.field, JSON.stringify(input)).toBe(field);
      }
      const { viewer: unchanged } = await ok(server.url, Viewer, {}, bearer(token));
      expect(unchanged.user).toMatchObject({ name: "Renamed", avatarUrl: "https://cdn.example.com/a.png" });
      // Another user's profile is not touched.
      const { viewer: otherViewer } = await ok(server.url, Viewer, {}, bearer(other.signUp.accessToken));
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
          server.url,
          ChangePassword,
          { input: { currentPassword: "not my password", newPassword: newPassword() } },
          bearer(current.accessToken),
          "BAD_USER_INPUT",
        );
        expect(wrong.extensions?.field).toBe("input.currentPassword");
        const short = await fails(
          server.url,
          ChangePassword,
          { input: { currentPassword: account.password, newPassword: "tiny" } },
          bearer(current.accessToken),
          "BAD_USER_INPUT",
        );
        expect(short.extensions?.field).toBe("input.newPassword");
        await expectOpen(devOther.client, "the other socket after refused changes", 200);

        const replacement = newPassword();
        const { changePassword } = await ok(
          server.url,
          ChangePassword,
          { input: { currentPassword: account.password, newPassword: replacement } },
          bearer(current.accessToken),
        );
        expect(changePassword).toBe(true);
        await expectClosed4403(devOther.client, "another session's socket after changePassword");
        await expectUnauthenticated(other.accessToken, "another session's token after changePassword");
        await expectUnauthenticated(account.signUp.accessToken, "the sign-up session's token after changePassword");
        await fails(server.url, RefreshSession, { refreshToken: other.refreshToken }, from(), "UNAUTHENTICATED");

        await expectSurvives(devCurrent, account, group, "the current session's socket");
        await expectWorks(current.accessToken, account.userId);
        const { sessions } = await ok(server.url, Sessions, {}, bearer(current.accessToken));
        expect(sessions.map((s) => s.id)).toEqual([current.session.id]);
        const { refreshSession } = await ok(server.url, RefreshSession, { refreshToken: current.refreshToken }, from());
        await expectWorks(refreshSession.accessToken, account.userId);

        await signInFails(account, account.password, "UNAUTHENTICATED");
        await signIn({ ...account, password: replacement });
      } finally {
        await devCurrent.client.dispose();
        await devOther.client.dispose();
      }
    });
  });

  // -------------------------------------------------------------------------------------------
  // Tenant-chosen text in mail
  // -------------------------------------------------------------------------------------------

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
        const error = await fails(server.url, CreateTenant, { input: { name } }, undefined, "BAD_USER_INPUT");
        expect(error.extensions?.field).toBe("input.name");
      }
      const tenant = await authTenant();
      for (const name of unsafeNames) {
        await fails(server.url, UpdateTenant, { input: { name } }, { apiKey: tenant.apiKey }, "BAD_USER_INPUT");
      }
      // Ordinary punctuation, accents and emoji remain welcome.
      const fine = 'Ærø & Co. <EU> "Chat" 💬';
      expect((await ok(server.url, CreateTenant, { input: { name: fine } })).createTenant.tenant.name).toBe(fine);
    });

    it("markup and links in a tenant name reach the mail as inert plain text", async () => {
      const name = '<a href="https://evil.test/reset">Reset your password</a><img src=x onerror=alert(1)> Acme & Co';
      const { createTenant: created } = await ok(server.url, CreateTenant, { input: { name } });
      const tenant = { id: created.tenant.id, apiKey: created.apiKey };
      await ok(
        server.url,
        UpdateTenant,
        { input: { auth: { selfSignUp: true, signInMethods: ["PASSWORD"] } } },
        { apiKey: tenant.apiKey },
      );
      const account = await register(tenant);
      const [mail] = mailbox.to(account.email);
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
      await server.app.deps.db.sql.query('UPDATE "Tenant" SET name = $1 WHERE id = $2', [name, tenant.id]);
      const account = await register(tenant);
      const [mail] = mailbox.to(account.email);
      if (!mail) expect.fail("no mail arrived");
      expect(mail.subject).toBe(
        `Evil Bcc: victim@evil.test X-Injected: yes txt.exe: your code is ${account.verifyCode}`,
      );
      expect(mail.headerNames.filter((header) => header === "subject")).toHaveLength(1);
      expect(mail.headerNames).not.toContain("bcc");
      expect(mail.headerNames).not.toContain("x-injected");
      expect(mail.to).toEqual([account.email]);
      expect(mailbox.to("victim@evil.test")).toEqual([]);
      // The body loses the controls and the name's CR/LF pairs too.
      expect(mail.text).not.toContain("\u0007");
      expect(mail.text).not.toContain("\u202E");
      expect(mail.text).not.toMatch(/^Bcc:/m);
    });
  });

  // -------------------------------------------------------------------------------------------
  // 8. Changing the email address
  // -------------------------------------------------------------------------------------------

  describe("email change", () => {
    async function verified(account: Account, token = account.signUp.accessToken) {
      return (await ok(server.url, ViewerEmail, {}, bearer(token))).viewer.user;
    }

    /** Asks to move `account` to `newAddress`; returns the code mailed there and the notice to the old address. */
    async function changeCode(account: Account, newAddress: string, token = account.signUp.accessToken) {
      const noticesBefore = mailbox.to(account.email).length;
      const code = await codeAfter(newAddress.toLowerCase(), async () => {
        const { requestEmailChange } = await ok(
          server.url,
          RequestEmailChange,
          { newEmail: newAddress },
          bearer(token),
        );
        expect(requestEmailChange).toBe(true);
      });
      const notice = await mailbox.mail(account.email, noticesBefore);
      return { code, notice };
    }

    it("keeps a user's own updateUser from changing their email (BAD_USER_INPUT naming requestEmailChange)", async () => {
      const tenant = await authTenant();
      const account = await register(tenant);
      const token = account.signUp.accessToken;
      await ok(server.url, VerifyEmail, { code: account.verifyCode }, bearer(token));
      const target = newEmail("takeover");
      const error = await fails(
        server.url,
        UpdateUser,
        { id: account.userId, input: { email: target } },
        bearer(token),
        "BAD_USER_INPUT",
      );
      expect(error.extensions?.field).toBe("input.email");
      expect(error.message).toContain("requestEmailChange");
      await fails(
        server.url,
        UpdateUser,
        { id: account.userId, input: { email: null } },
        bearer(token),
        "BAD_USER_INPUT",
      );
      await fails(
        server.url,
        UpdateUser,
        { id: account.userId, input: { emailVerified: true } },
        bearer(token),
        "FORBIDDEN",
      );
      // updateProfile has no email to set at all.
      const profile = await request(
        server.url,
        `mutation { updateProfile(input: { email: "${target}" }) { id } }`,
        undefined,
        bearer(token),
      );
      expect(profile.errors?.[0]?.extensions?.code, JSON.stringify(profile)).toBe("GRAPHQL_VALIDATION_FAILED");
      expect(await verified(account)).toEqual({ id: account.userId, email: account.email, emailVerified: true });
      // The same address (in any case) with other changes is no change of email.
      const { updateUser } = await ok(
        server.url,
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
      await ok(server.url, VerifyEmail, { code: account.verifyCode }, bearer(token));
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
        server.url,
        VerifyEmail,
        { code },
        bearer(stranger.signUp.accessToken),
        "BAD_USER_INPUT",
      );
      expect(theirs.extensions?.field).toBe("code");
      const wrong = await fails(server.url, VerifyEmail, { code: wrongCode(code) }, bearer(token), "BAD_USER_INPUT");
      expect(wrong.extensions?.field).toBe("code");

      const { verifyEmail } = await ok(server.url, VerifyEmail, { code }, bearer(token));
      expect(verifyEmail).toEqual({ id: account.userId, email: target });
      expect(await verified(account)).toEqual({ id: account.userId, email: target, emailVerified: true });
      await fails(server.url, VerifyEmail, { code }, bearer(token), "BAD_USER_INPUT");
      await signInFails(account, account.password, "UNAUTHENTICATED");
      expect((await signIn({ ...account, email: target })).user.id).toBe(account.userId);
      // Codes mailed to the old address went with it: they do not open an account registered there later.
      const successor = await register(tenant, { email: account.email });
      const input = { tenantId: tenant.id, email: successor.email, code: oldSignInCode };
      const stale = await fails(server.url, SignInWithEmailCode, { input }, from(), "BAD_USER_INPUT");
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
        await fails(server.url, VerifyEmail, { code: firstCode }, bearer(account.signUp.accessToken), "BAD_USER_INPUT");
      }
      const { verifyEmail } = await ok(
        server.url,
        VerifyEmail,
        { code: secondCode },
        bearer(account.signUp.accessToken),
      );
      expect(verifyEmail.email).toBe(second);
      // The unverified sign-up address's own code still verifies nothing now: it was for the old address.
      await fails(
        server.url,
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
      const ownerMailsBefore = mailbox.to(owner.email).length;
      const noticesBefore = mailbox.to(account.email).length;
      const { requestEmailChange } = await ok(
        server.url,
        RequestEmailChange,
        { newEmail: owner.email },
        bearer(account.signUp.accessToken),
      );
      expect(requestEmailChange).toBe(true);
      // The inbox of that address learns someone tried, without a code; the requester learns nothing.
      const told = await mailbox.mail(owner.email, ownerMailsBefore);
      expect(`${told.subject}\n${told.text}`).not.toMatch(/\b\d{6}\b/);
      expect(told.text).toContain("already exists");
      await mailbox.mail(account.email, noticesBefore);
      await server.app.deps.tasks.drain();
      const row = await server.app.deps.db.prisma.emailCode.findFirst({
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
      await fails(server.url, VerifyEmail, { code }, bearer(account.signUp.accessToken), "CONFLICT");
      expect(await verified(account)).toMatchObject({ email: account.email, emailVerified: false });
    });

    it("lets only the API key set another user's email and emailVerified; users:update is not enough", async () => {
      const tenant = await authTenant();
      const admin = await register(tenant);
      const account = await register(tenant);
      await ok(server.url, VerifyEmail, { code: account.verifyCode }, bearer(account.signUp.accessToken));
      const { roles } = await ok(server.url, Roles, {}, { apiKey: tenant.apiKey });
      const adminRole = roles.find((role) => role.name === "admin");
      if (!adminRole) expect.fail("no admin role");
      await ok(server.url, AssignRole, { userId: admin.userId, roleId: adminRole.id }, { apiKey: tenant.apiKey });
      const adminAuth = bearer(admin.signUp.accessToken);

      const forbiddenChange = await fails(
        server.url,
        UpdateUser,
        { id: account.userId, input: { email: newEmail("hijack") } },
        adminAuth,
        "FORBIDDEN",
      );
      expect(forbiddenChange.message).toContain("requestEmailChange");
      await fails(server.url, UpdateUser, { id: account.userId, input: { email: null } }, adminAuth, "FORBIDDEN");
      await fails(
        server.url,
        UpdateUser,
        { id: account.userId, input: { emailVerified: false } },
        adminAuth,
        "FORBIDDEN",
      );
      await fails(
        server.url,
        CreateUser,
        { input: { name: "Pre-verified", email: newEmail("pre"), emailVerified: true } },
        adminAuth,
        "FORBIDDEN",
      );
      // Other fields are still theirs to change.
      const { updateUser: renamed } = await ok(
        server.url,
        UpdateUser,
        { id: account.userId, input: { name: "Renamed by admin" } },
        adminAuth,
      );
      expect(renamed).toMatchObject({ name: "Renamed by admin", email: account.email, emailVerified: true });

      // The API key: a new address is unverified unless it vouches for it.
      const apiKey = { apiKey: tenant.apiKey };
      const backendSet = newEmail("backend");
      const { updateUser: moved } = await ok(
        server.url,
        UpdateUser,
        { id: account.userId, input: { email: backendSet } },
        apiKey,
      );
      expect(moved).toMatchObject({ email: backendSet, emailVerified: false });
      const { updateUser: vouched } = await ok(
        server.url,
        UpdateUser,
        { id: account.userId, input: { emailVerified: true } },
        apiKey,
      );
      expect(vouched).toMatchObject({ email: backendSet, emailVerified: true });
      const alsoVerified = newEmail("vouched");
      const { updateUser: both } = await ok(
        server.url,
        UpdateUser,
        { id: account.userId, input: { email: alsoVerified, emailVerified: true } },
        apiKey,
      );
      expect(both).toMatchObject({ email: alsoVerified, emailVerified: true });
      const { createUser } = await ok(
        server.url,
        CreateUser,
        { input: { name: "Imported", email: newEmail("imported"), emailVerified: true } },
        apiKey,
      );
      expect(createUser.emailVerified).toBe(true);
      const noEmail = await fails(
        server.url,
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
      await fails(server.url, RequestEmailChange, { newEmail: newEmail() }, { apiKey: tenant.apiKey }, "FORBIDDEN");
      const bad = await fails(
        server.url,
        RequestEmailChange,
        { newEmail: "not an address" },
        bearer(token),
        "BAD_USER_INPUT",
      );
      expect(bad.extensions?.field).toBe("newEmail");
      const same = await fails(
        server.url,
        RequestEmailChange,
        { newEmail: account.email },
        bearer(token),
        "BAD_USER_INPUT",
      );
      expect(same.extensions?.field).toBe("newEmail");
      for (let i = 0; i < 5; i++)
        await ok(server.url, RequestEmailChange, { newEmail: newEmail("many") }, bearer(token));
      expectRateLimited(
        await fails(server.url, RequestEmailChange, { newEmail: newEmail("more") }, bearer(token), "RATE_LIMITED"),
        600,
      );
      await server.app.deps.tasks.drain();
    });
  });

  // -------------------------------------------------------------------------------------------
  // Mail without an SMTP server
  // -------------------------------------------------------------------------------------------

  describe("local outbox", () => {
    it("without SMTP_URL writes the mail with the code to <dataDir>/outbox/mail.jsonl", async () => {
      const dataDir = await mkdtemp(join(tmpdir(), "acct-outbox-"));
      const local = await startServer(database, { dataDir, smtpUrl: undefined, trustProxy: 1 });
      try {
        const tenant = await authTenant();
        const email = newEmail("outbox");
        const { signUp } = await ok(
          local.url,
          SignUp,
          { input: { tenantId: tenant.id, email, password: newPassword(), name: "Offline" } },
          from(),
        );
        // Account mail goes out after the answer.
        await local.app.deps.tasks.drain();
        const lines = (await readFile(join(dataDir, "outbox", "mail.jsonl"), "utf8")).trim().split("\n");
        const entries = lines.map((line) => JSON.parse(line) as { to: string; subject: string; text: string });
        const mine = entries.filter((entry) => entry.to === email);
        expect(mine).toHaveLength(1);
        const code = codeOf(mine[0] as { subject: string; text: string });
        const { verifyEmail } = await ok(local.url, VerifyEmail, { code }, bearer(signUp.accessToken));
        expect(verifyEmail.id).toBe(signUp.user.id);
        // Nothing went over SMTP.
        expect(mailbox.to(email)).toEqual([]);
      } finally {
        await local.stop();
        await rm(dataDir, { recursive: true, force: true });
      }
    });
  });
});
