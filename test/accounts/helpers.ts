import { randomBytes, randomInt } from "node:crypto";
import type { AddressInfo } from "node:net";
import type { GraphQLFormattedError } from "graphql";
import pg from "pg";
import { SMTPServer } from "smtp-server";
import { afterAll, beforeAll, expect } from "vitest";
import type { AuthPayloadFieldsFragment, MessageAddedSubscription } from "../generated/graphql.ts";
import type { BackendName } from "../helpers/backends.ts";
import { createTestDatabase, startServer, type TestDatabase, type TestServer } from "../helpers/backends.ts";
import {
  type Auth,
  drain,
  expectOpen,
  fails,
  ok,
  type Subscription,
  sleep,
  subscribe,
  type WsClient,
  whenLive,
  wsClient,
} from "../helpers/client.ts";
import { createTenant } from "../helpers/fixtures.ts";
import { RequestEmailCode, SignIn, SignUp } from "../operations/accounts.ts";
import { CreateGroup } from "../operations/conversations.ts";
import { MessageAdded } from "../operations/events.ts";
import { SendMessage } from "../operations/messages.ts";
import { UpdateTenant } from "../operations/tenants.ts";
import { Viewer } from "../operations/users.ts";

export type Payload = AuthPayloadFieldsFragment;

// ---------------------------------------------------------------------------------------------
// A real SMTP server that keeps every mail it receives
// ---------------------------------------------------------------------------------------------

export interface ReceivedMail {
  to: string[];
  subject: string;
  text: string;
  /** The names of its header fields, lower-cased, in order (folded lines joined). */
  headerNames: string[];
  raw: string;
}

export function decodeHeader(value: string): string {
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

export function parseMail(raw: string, to: string[]): ReceivedMail {
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

export class Mailbox {
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
export function codeOf(mail: { subject: string; text: string }): string {
  const inSubject = /\b(\d{6})\b/.exec(mail.subject)?.[1];
  const inText = /\b(\d{6})\b/.exec(mail.text)?.[1];
  if (!inSubject || inSubject !== inText) {
    expect.fail(`no single 6-digit code in the mail: ${JSON.stringify(mail)}`);
  }
  return inSubject;
}

/** A code that differs from `code` in its last digit. */
export const wrongCode = (code: string) => `${code.slice(0, 5)}${(Number(code[5]) + 1) % 10}`;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

export const suffix = () => randomBytes(4).toString("hex");
export const newEmail = (name = "user") => `${name}-${suffix()}@example.com`;
export const newPassword = () => `correct horse ${suffix()} battery`;

export const usedIps = new Set<string>();
/**
 * A client address nobody else uses (the server trusts X-Forwarded-For here), so the
 * per-address failure limit of one test never locks out another, nor another run that
 * shares the same Redis.
 */
export function freshIp(): string {
  while (true) {
    const ip = `10.${randomInt(256)}.${randomInt(256)}.${randomInt(1, 255)}`;
    if (!usedIps.has(ip)) {
      usedIps.add(ip);
      return ip;
    }
  }
}

/** Request options of an anonymous client at `ip` with a User-Agent. */
export function from(ip = freshIp(), userAgent = "AcctTest/1.0"): Auth {
  return { headers: { "x-forwarded-for": ip, "user-agent": userAgent } };
}

/** Request options with a bearer token (from a fresh address). */
export function bearer(token: string, ip = freshIp()): Auth {
  return { token, ...from(ip) };
}

export function expectRateLimited(error: GraphQLFormattedError, maxSeconds: number): number {
  const retry = error.extensions?.retryAfterSeconds;
  expect(typeof retry, `retryAfterSeconds missing in ${JSON.stringify(error)}`).toBe("number");
  expect(retry as number).toBeGreaterThan(0);
  expect(retry as number).toBeLessThanOrEqual(maxSeconds);
  return retry as number;
}

export function expectAbout(iso: string, expectedMs: number, toleranceMs = 10_000): void {
  const actual = new Date(iso).getTime();
  expect(Number.isNaN(actual), `${iso} is not a date`).toBe(false);
  expect(Math.abs(actual - expectedMs), `${iso} is not about ${new Date(expectedMs).toISOString()}`).toBeLessThan(
    toleranceMs,
  );
}

export function jwtClaims(token: string): Record<string, unknown> {
  const part = token.split(".")[1];
  if (!part) expect.fail(`not a JWT: ${token}`);
  return JSON.parse(Buffer.from(part, "base64url").toString("utf8")) as Record<string, unknown>;
}

export interface AuthTenant {
  id: string;
  apiKey: string;
}

export interface Account {
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
export interface Device {
  client: WsClient;
  sub: Subscription<MessageAddedSubscription>;
}

// ---------------------------------------------------------------------------------------------
// The server of a describe block, with its mailbox, and the helpers bound to it
// ---------------------------------------------------------------------------------------------

export interface AccountsServer {
  database: TestDatabase;
  server: TestServer;
  mailbox: Mailbox;
}

/** Starts the mailbox, a database and a server for the enclosing describe block. */
export function useAccountsServer(backend: BackendName) {
  const world = { mailbox: new Mailbox() } as AccountsServer;
  beforeAll(async () => {
    await world.mailbox.start();
    world.database = await createTestDatabase(backend);
    // A pool larger than the bursts below, so a burst's requests never wait for a connection.
    world.server = await startServer(world.database, {
      smtpUrl: world.mailbox.url,
      trustProxy: 1,
      databasePoolSize: 30,
    });
  });
  afterAll(async () => {
    await world.server?.stop();
    await world.database?.drop();
    await world.mailbox.close();
  });

  /** A server of its own on the same database (and Redis), e.g. with other limits. */
  function extraServer(overrides: Parameters<typeof startServer>[1] = {}): Promise<TestServer> {
    return startServer(world.database, { smtpUrl: world.mailbox.url, trustProxy: 1, ...overrides });
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
    if (!world.database.url) {
      return [await Promise.all(first.map((send) => send())), await Promise.all(late.map((send) => send()))];
    }
    const lock = new pg.Client({ connectionString: world.database.url });
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
    const tenant = await createTenant(world.server.url, []);
    await ok(
      world.server.url,
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
    const before = world.mailbox.to(email).length;
    await action();
    const mail = await world.mailbox.mail(email, before);
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
          world.server.url,
          SignUp,
          { input: { tenantId: tenant.id, email, password, name: options.name ?? "New User" } },
          options.auth ?? from(),
        )
      ).signUp;
    });
    if (!payload) expect.fail("signUp returned nothing");
    return { tenant, email: email.toLowerCase(), password, userId: payload.user.id, signUp: payload, verifyCode };
  }

  async function signIn(account: Account, auth: Auth = from(), url = world.server.url): Promise<Payload> {
    const input = { tenantId: account.tenant.id, email: account.email, password: account.password };
    return (await ok(url, SignIn, { input }, auth)).signIn;
  }

  function signInFails(
    account: { tenant: AuthTenant; email: string },
    password: string,
    code: string,
    auth: Auth = from(),
    url = world.server.url,
  ): Promise<GraphQLFormattedError> {
    const input = { tenantId: account.tenant.id, email: account.email, password };
    return fails(url, SignIn, { input }, auth, code);
  }

  async function requestCode(
    account: { tenant: AuthTenant; email: string },
    purpose: "VERIFY_EMAIL" | "SIGN_IN" | "RESET_PASSWORD",
    url = world.server.url,
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
    fails(world.server.url, Viewer, {}, bearer(token), "UNAUTHENTICATED").catch((error: unknown) => {
      throw new Error(`${what}: ${String(error)}`);
    });

  async function expectWorks(token: string, userId: string): Promise<void> {
    const { viewer } = await ok(world.server.url, Viewer, {}, bearer(token));
    expect(viewer.user?.id).toBe(userId);
  }

  /** A group of the account's own, where the API key can post to reach all of the user's sockets. */
  async function homeGroup(account: Account): Promise<string> {
    const { createGroup } = await ok(
      world.server.url,
      CreateGroup,
      { input: { name: "Devices" } },
      bearer(account.signUp.accessToken),
    );
    return createGroup.id;
  }

  function poke(account: Account, conversationId: string, body = "probe") {
    return () =>
      ok(world.server.url, SendMessage, { input: { conversationId, body } }, { apiKey: account.tenant.apiKey });
  }

  async function device(token: string, account: Account, conversationId: string): Promise<Device> {
    const client = wsClient(world.server.wsUrl, { token: token }, { keepOpen: true });
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

  return Object.assign(world, {
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
    poke,
    device,
    expectReceives,
    expectSurvives,
  });
}
