import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type MutableResponse, type MutableToken, OAuth2Server } from "oauth2-mock-server";
import { afterAll, beforeAll, beforeEach, expect } from "vitest";
import type { SignInMethod } from "../generated/graphql.ts";
import {
  type BackendName,
  createTestDatabase,
  startServer,
  type TestDatabase,
  type TestServer,
} from "../helpers/backends.ts";
import { ok } from "../helpers/client.ts";
import { RequestEmailCode, VerifyEmailStatus } from "../operations/accounts.ts";
import { CreateTenant, UpdateTenantWithDefaultRole } from "../operations/tenants.ts";
import { CreateUser, IssueUserToken, Users, Viewer } from "../operations/users.ts";

// driven end to end through the real server: start -> provider -> callback -> app.

// ---------------------------------------------------------------------------------------------
// Local providers
// ---------------------------------------------------------------------------------------------

export type Provider = "google" | "github";

export const GOOGLE_CLIENT = { clientId: "google-client-id", clientSecret: "google-client-secret" };
export const GITHUB_CLIENT = { clientId: "github-client-id", clientSecret: "github-client-secret" };
export const USER_AGENT = "OAuthTestBrowser/1.0";

/** Claims the local Google issuer puts in the next tokens it signs. */
export interface GoogleAccount {
  sub: string;
  email?: string;
  email_verified?: boolean;
  name?: string;
  [claim: string]: unknown;
}

export interface GithubEmail {
  email: string;
  primary: boolean;
  verified: boolean;
}

export interface GithubAccount {
  user: { id: number; login: string; name: string | null };
  emails: GithubEmail[];
}

/** A token endpoint call as the provider saw it. */
export interface TokenCall {
  body: Record<string, string>;
  authorization?: string;
}

export type BodyRequest = IncomingMessage & { body?: Record<string, string> };

export const suffix = () => randomBytes(4).toString("hex");

export function googleAccount(overrides: Partial<GoogleAccount> = {}): GoogleAccount {
  const id = suffix();
  return {
    sub: `google-${randomUUID()}`,
    email: `grace-${id}@gmail.test`,
    email_verified: true,
    name: `Grace ${id}`,
    ...overrides,
  };
}

export function githubAccount(overrides: Partial<GithubAccount> = {}): GithubAccount {
  const id = suffix();
  return {
    user: { id: Number.parseInt(id, 16), login: `octo-${id}`, name: `Octo ${id}` },
    emails: [
      { email: `octo-${id}@users.noreply.github.test`, primary: false, verified: true },
      { email: `octo-${id}@github.test`, primary: true, verified: true },
    ],
    ...overrides,
  };
}

export const s256 = (verifier: string) => createHash("sha256").update(verifier).digest("base64url");

export function decodeJwt(token: string): { header: Record<string, unknown>; payload: Record<string, unknown> } {
  const [header = "", payload = ""] = token.split(".");
  return {
    header: JSON.parse(Buffer.from(header, "base64url").toString("utf8")),
    payload: JSON.parse(Buffer.from(payload, "base64url").toString("utf8")),
  };
}

/** The client secret a token request carried, in a Basic header or in the body. */
export function clientCredentials(call: TokenCall): { id?: string; secret?: string } {
  if (call.authorization?.startsWith("Basic ")) {
    const decoded = Buffer.from(call.authorization.slice(6), "base64").toString("utf8");
    const [id = "", secret = ""] = decoded.split(":");
    return { id: decodeURIComponent(id), secret: decodeURIComponent(secret) };
  }
  return { id: call.body.client_id, secret: call.body.client_secret };
}

/** A cookie as a browser keeps it. */
export interface StoredCookie {
  name: string;
  value: string;
  host: string;
  path: string;
  expiresAt: number;
}

/**
 * The cookies of one browser: kept from Set-Cookie answers and sent back, as a browser
 * would, to the same host under the cookie's path until they expire. Two instances are two
 * browsers (an attacker's and a victim's).
 */
export class Browser {
  private readonly cookies: StoredCookie[] = [];

  async get(target: string | URL, headers: Record<string, string> = {}): Promise<Response> {
    const url = new URL(target);
    const now = Date.now();
    const sent = this.cookies
      .filter((c) => c.host === url.host && c.expiresAt > now)
      .filter((c) => url.pathname === c.path || url.pathname.startsWith(c.path.endsWith("/") ? c.path : `${c.path}/`))
      .map((c) => `${c.name}=${c.value}`);
    const response = await fetch(url, {
      redirect: "manual",
      headers: sent.length > 0 ? { ...headers, cookie: sent.join("; ") } : headers,
    });
    for (const line of response.headers.getSetCookie()) this.store(url, line);
    return response;
  }

  /** The cookies this browser would send to `target`. */
  cookiesFor(target: string | URL): StoredCookie[] {
    const url = new URL(target);
    return this.cookies.filter(
      (c) => c.host === url.host && c.expiresAt > Date.now() && url.pathname.startsWith(c.path),
    );
  }

  private store(url: URL, line: string): void {
    const [pair = "", ...attributes] = line.split(";").map((part) => part.trim());
    const name = pair.slice(0, pair.indexOf("="));
    const value = pair.slice(pair.indexOf("=") + 1);
    const cookie: StoredCookie = { name, value, host: url.host, path: "/", expiresAt: Number.POSITIVE_INFINITY };
    for (const attribute of attributes) {
      const [key = "", attributeValue = ""] = attribute.split("=");
      if (key.toLowerCase() === "path") cookie.path = attributeValue;
      if (key.toLowerCase() === "max-age") cookie.expiresAt = Date.now() + Number(attributeValue) * 1000;
    }
    const index = this.cookies.findIndex((c) => c.name === name && c.host === cookie.host && c.path === cookie.path);
    if (index >= 0) this.cookies.splice(index, 1);
    if (cookie.expiresAt > Date.now()) this.cookies.push(cookie);
  }
}

/** A Set-Cookie line's attributes, names lower-cased ("" for flags). */
export function cookieAttributes(line: string): { name: string; value: string; attributes: Map<string, string> } {
  const [pair = "", ...rest] = line.split(";").map((part) => part.trim());
  const attributes = new Map<string, string>();
  for (const attribute of rest) {
    const [key = "", value = ""] = attribute.split("=");
    attributes.set(key.toLowerCase(), value);
  }
  return { name: pair.slice(0, pair.indexOf("=")), value: pair.slice(pair.indexOf("=") + 1), attributes };
}

export const usedIps = new Set<string>();
/** A client address no other test (or concurrent run on the same Redis) uses. */
export function freshIp(): string {
  while (true) {
    const ip = `10.${randomBytes(1)[0]}.${randomBytes(1)[0]}.${1 + ((randomBytes(1)[0] ?? 0) % 254)}`;
    if (!usedIps.has(ip)) {
      usedIps.add(ip);
      return ip;
    }
  }
}

export interface AuthTenant {
  id: string;
  apiKey: string;
  redirectUri: string;
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  defaultRoleId?: string;
}

export interface Landing {
  accessToken: string;
  refreshToken: string;
  expiresAt: Date;
  refreshExpiresAt: Date;
}

// ---------------------------------------------------------------------------------------------
// The servers of a describe block (both providers, the GitHub API, the app) and the helpers
// bound to them
// ---------------------------------------------------------------------------------------------

/**
 * Starts the local Google issuer, the local GitHub authorize/token server and API, a database
 * and a server for the enclosing describe block, and gives each test a fresh browser.
 */
export function useOAuthServer(backend: BackendName) {
  let database: TestDatabase;
  let server: TestServer;
  let url: string;
  let wsUrl: string;
  let base: string;
  let dataDir: string;

  let google: OAuth2Server;
  let googleIssuer: string;
  let googleClaims: GoogleAccount = googleAccount();
  const googleTokenCalls: TokenCall[] = [];

  let github: OAuth2Server;
  let githubIssuer: string;
  let githubApi: Server;
  let githubApiUrl: string;
  let githubUser: GithubAccount = githubAccount();
  /** Status the local GitHub API answers /user/emails with, when not 200. */
  let githubEmailsStatus = 200;
  const githubTokenCalls: TokenCall[] = [];
  const githubIssuedTokens: string[] = [];
  const githubApiCalls: { path: string; authorization?: string; accept?: string }[] = [];

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "oauth-test-"));

    google = new OAuth2Server();
    await google.issuer.keys.generate("RS256");
    await google.start(0, "127.0.0.1");
    googleIssuer = google.issuer.url as string;
    google.service.on("beforeTokenSigning", (token: MutableToken) => {
      for (const [claim, value] of Object.entries(googleClaims)) {
        if (value === undefined) delete token.payload[claim];
        else token.payload[claim] = value;
      }
    });
    google.service.on("beforeResponse", (_response: MutableResponse, req: BodyRequest) => {
      googleTokenCalls.push({ body: { ...req.body }, authorization: req.headers.authorization });
    });

    github = new OAuth2Server();
    await github.issuer.keys.generate("RS256");
    await github.start(0, "127.0.0.1");
    githubIssuer = github.issuer.url as string;
    github.service.on("beforeResponse", (response: MutableResponse, req: BodyRequest) => {
      githubTokenCalls.push({ body: { ...req.body }, authorization: req.headers.authorization });
      if (typeof response.body === "object") {
        // GitHub answers with an access token only: no ID token, no refresh token.
        delete response.body.id_token;
        delete response.body.refresh_token;
        if (typeof response.body.access_token === "string") githubIssuedTokens.push(response.body.access_token);
      }
    });

    githubApi = createServer((req, res) => {
      const path = new URL(req.url ?? "/", "http://localhost").pathname;
      const authorization = req.headers.authorization;
      githubApiCalls.push({ path, authorization, accept: req.headers.accept });
      const json = (status: number, body: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      const token = authorization?.startsWith("Bearer ") ? authorization.slice(7) : "";
      if (!token || !githubIssuedTokens.includes(token)) return json(401, { message: "Bad credentials" });
      if (path === "/user") return json(200, githubUser.user);
      if (path === "/user/emails") {
        if (githubEmailsStatus !== 200) return json(githubEmailsStatus, { message: "Server Error" });
        return json(200, githubUser.emails);
      }
      return json(404, { message: "Not Found" });
    });
    await new Promise<void>((resolve) => githubApi.listen(0, "127.0.0.1", resolve));
    githubApiUrl = `http://127.0.0.1:${(githubApi.address() as AddressInfo).port}`;

    database = await createTestDatabase(backend);
    // Every test starts its sign-ins from 127.0.0.1: the start limit is tested on a server of its own.
    server = await startServer(database, { ...providerSettings(), oauthStartsPerMinute: 100_000 });
    url = server.url;
    wsUrl = server.wsUrl;
    base = new URL(url).origin;
  });

  afterAll(async () => {
    await server?.stop();
    await database?.drop();
    await google?.stop();
    await github?.stop();
    await new Promise((resolve) => (githubApi ? githubApi.close(resolve) : resolve(undefined)));
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  /** The server settings that point both providers at the local ones. */
  function providerSettings() {
    return {
      dataDir,
      google: { ...GOOGLE_CLIENT, issuer: googleIssuer },
      github: {
        ...GITHUB_CLIENT,
        authorizeUrl: `${githubIssuer}/authorize`,
        tokenUrl: `${githubIssuer}/token`,
        apiUrl: githubApiUrl,
      },
    };
  }

  /** The browser of the test's user; each test starts with a fresh one (no cookies). */
  let browser = new Browser();
  beforeEach(() => {
    browser = new Browser();
  });

  // -------------------------------------------------------------------------------------------
  // Helpers
  // -------------------------------------------------------------------------------------------

  async function createAuthTenant(
    auth: { selfSignUp?: boolean; signInMethods?: SignInMethod[]; oauthRedirectUris?: string[] } = {},
  ): Promise<AuthTenant> {
    const { createTenant } = await ok(url, CreateTenant, { input: { name: `OAuth ${suffix()}` } });
    const redirectUri = `http://app-${suffix()}.test/auth/done`;
    const { updateTenant } = await ok(
      url,
      UpdateTenantWithDefaultRole,
      {
        input: {
          auth: {
            selfSignUp: auth.selfSignUp ?? true,
            signInMethods: auth.signInMethods ?? ["PASSWORD", "GOOGLE", "GITHUB"],
            oauthRedirectUris: auth.oauthRedirectUris ?? [redirectUri],
          },
        },
      },
      { apiKey: createTenant.apiKey },
    );
    return {
      id: createTenant.tenant.id,
      apiKey: createTenant.apiKey,
      redirectUri: updateTenant.oauthRedirectUris[0] ?? redirectUri,
      accessTokenTtlSeconds: updateTenant.accessTokenTtlSeconds,
      refreshTokenTtlSeconds: updateTenant.refreshTokenTtlSeconds,
      defaultRoleId: updateTenant.defaultRole?.id,
    };
  }

  const get = (target: string | URL, headers: Record<string, string> = {}, as: Browser = browser) =>
    as.get(target, headers);

  function startUrl(provider: Provider, params: Record<string, string | undefined>, origin = base): string {
    const target = new URL(`/auth/${provider}/start`, origin);
    for (const [key, value] of Object.entries(params)) if (value !== undefined) target.searchParams.set(key, value);
    return target.href;
  }

  /** GET /auth/:provider/start; expects a redirect to the provider and returns its URL. */
  async function toProvider(
    provider: Provider,
    tenant: AuthTenant,
    redirectUri = tenant.redirectUri,
    as: Browser = browser,
  ): Promise<URL> {
    const response = await get(startUrl(provider, { tenantId: tenant.id, redirectUri }), {}, as);
    if (response.status !== 302) expect.fail(`start answered ${response.status}: ${await response.text()}`);
    expect(response.headers.get("cache-control")).toContain("no-store");
    return new URL(response.headers.get("location") ?? "");
  }

  /** The provider's authorize endpoint; returns the callback URL it sends the browser to. */
  async function throughProvider(provider: Provider, authorizeUrl: URL, as: Browser = browser): Promise<URL> {
    const response = await get(authorizeUrl, {}, as);
    if (response.status !== 302) expect.fail(`authorize answered ${response.status}: ${await response.text()}`);
    const callbackUrl = new URL(response.headers.get("location") ?? "");
    expect(`${callbackUrl.origin}${callbackUrl.pathname}`).toBe(`${base}/auth/${provider}/callback`);
    return callbackUrl;
  }

  async function toCallback(
    provider: Provider,
    tenant: AuthTenant,
    tamper?: (authorizeUrl: URL) => void,
    as: Browser = browser,
  ): Promise<{ authorizeUrl: URL; callbackUrl: URL }> {
    const authorizeUrl = await toProvider(provider, tenant, tenant.redirectUri, as);
    tamper?.(authorizeUrl);
    return { authorizeUrl, callbackUrl: await throughProvider(provider, authorizeUrl, as) };
  }

  const callback = (callbackUrl: URL | string, as: Browser = browser) =>
    get(callbackUrl, { "user-agent": USER_AGENT }, as);

  /** Asserts the callback sent the browser to the app's redirect URI with tokens in the fragment. */
  async function expectTokens(response: Response, redirectUri: string): Promise<Landing> {
    const location = response.headers.get("location") ?? "";
    if (response.status !== 302 || !location.startsWith(`${redirectUri}#`)) {
      expect.fail(`expected tokens at ${redirectUri}, got ${response.status} ${location} ${await response.text()}`);
    }
    expect(response.headers.get("cache-control")).toContain("no-store");
    const fragment = new URLSearchParams(location.slice(redirectUri.length + 1));
    if (fragment.has("error")) expect.fail(`expected tokens, got ${location}`);
    expect([...fragment.keys()].sort()).toEqual([
      "access_token",
      "expires_at",
      "refresh_expires_at",
      "refresh_token",
      "token_type",
    ]);
    expect(fragment.get("token_type")).toBe("Bearer");
    const expiresAt = new Date(fragment.get("expires_at") ?? "");
    const refreshExpiresAt = new Date(fragment.get("refresh_expires_at") ?? "");
    expect(Number.isNaN(expiresAt.getTime())).toBe(false);
    expect(Number.isNaN(refreshExpiresAt.getTime())).toBe(false);
    return {
      accessToken: fragment.get("access_token") ?? "",
      refreshToken: fragment.get("refresh_token") ?? "",
      expiresAt,
      refreshExpiresAt,
    };
  }

  /** Asserts the callback sent the browser back to the app with error=access_denied; returns the description. */
  async function expectDenied(response: Response, redirectUri: string): Promise<string> {
    const location = response.headers.get("location") ?? "";
    if (response.status !== 302 || !location.startsWith(`${redirectUri}#`)) {
      expect.fail(`expected an error at ${redirectUri}, got ${response.status} ${location} ${await response.text()}`);
    }
    const fragment = new URLSearchParams(location.slice(redirectUri.length + 1));
    expect([...fragment.keys()].sort()).toEqual(["error", "error_description"]);
    expect(fragment.get("error")).toBe("access_denied");
    const description = fragment.get("error_description") ?? "";
    expect(description.length).toBeGreaterThan(0);
    return description;
  }

  /** Asserts a JSON error answer that redirects nowhere; returns the message. */
  async function expectRefused(response: Response, status: number, code: string): Promise<string> {
    const text = await response.text();
    if (response.status !== status) {
      expect.fail(
        `expected ${status} ${code}, got ${response.status} ${response.headers.get("location") ?? ""} ${text}`,
      );
    }
    expect(response.headers.get("location")).toBeNull();
    const body = JSON.parse(text) as { errors?: { message: string; extensions?: { code?: string } }[] };
    expect(body.errors?.[0]?.extensions?.code).toBe(code);
    return body.errors?.[0]?.message ?? "";
  }

  async function signIn(provider: Provider, tenant: AuthTenant): Promise<Landing & { callbackUrl: URL }> {
    const { callbackUrl } = await toCallback(provider, tenant);
    return { ...(await expectTokens(await callback(callbackUrl), tenant.redirectUri)), callbackUrl };
  }

  async function denied(provider: Provider, tenant: AuthTenant): Promise<string> {
    const { callbackUrl } = await toCallback(provider, tenant);
    return expectDenied(await callback(callbackUrl), tenant.redirectUri);
  }

  async function viewerOf(token: string) {
    const { viewer } = await ok(url, Viewer, undefined, { token });
    expect(viewer.isService).toBe(false);
    if (!viewer.user) expect.fail("expected a user viewer");
    return { ...viewer, user: viewer.user };
  }

  async function usersWith(tenant: AuthTenant, search: string) {
    const { users } = await ok(url, Users, { first: 100, search }, { apiKey: tenant.apiKey });
    return users.edges.map((edge) => edge.node);
  }

  async function createUser(tenant: AuthTenant, email: string, name = "Existing User") {
    const { createUser: user } = await ok(url, CreateUser, { input: { name, email } }, { apiKey: tenant.apiKey });
    return user;
  }

  /** The code of the last mail to `email` in the server's outbox (no SMTP server here). */
  async function mailedCode(email: string): Promise<string> {
    // Code mail is sent after the answer (the same work whatever the address): wait for it.
    await server.app.deps.tasks.drain();
    const lines = (await readFile(join(dataDir, "outbox", "mail.jsonl"), "utf8")).trim().split("\n");
    const mail = lines
      .map((line) => JSON.parse(line) as { to: string; subject: string })
      .filter((entry) => entry.to === email)
      .at(-1);
    const code = /your code is (\d{6})/.exec(mail?.subject ?? "")?.[1];
    if (!code) expect.fail(`no code mailed to ${email}`);
    return code;
  }

  /** Proves the user receives mail at `email`: a VERIFY_EMAIL code, redeemed with a token of theirs. */
  async function verifyAddress(tenant: AuthTenant, email: string, token: string): Promise<void> {
    await ok(url, RequestEmailCode, { input: { tenantId: tenant.id, email, purpose: "VERIFY_EMAIL" } });
    const { verifyEmail } = await ok(url, VerifyEmailStatus, { code: await mailedCode(email) }, { token });
    expect(verifyEmail.emailVerified).toBe(true);
  }

  /** A user created by the tenant's backend who has then proved their address. */
  async function createVerifiedUser(tenant: AuthTenant, email: string, name = "Existing User") {
    const user = await createUser(tenant, email, name);
    const { issueUserToken } = await ok(url, IssueUserToken, { userId: user.id }, { apiKey: tenant.apiKey });
    await verifyAddress(tenant, email.toLowerCase(), issueUserToken.token);
    return user;
  }

  // The servers and addresses exist once beforeAll has run: tests read them through the world
  // (`world.url`), and set the next provider account there (`world.googleClaims = ...`).
  return {
    get database(): TestDatabase {
      return database;
    },
    get server(): TestServer {
      return server;
    },
    get url(): string {
      return url;
    },
    get wsUrl(): string {
      return wsUrl;
    },
    get base(): string {
      return base;
    },
    get dataDir(): string {
      return dataDir;
    },
    get googleIssuer(): string {
      return googleIssuer;
    },
    get githubIssuer(): string {
      return githubIssuer;
    },
    get githubApiUrl(): string {
      return githubApiUrl;
    },
    get google(): OAuth2Server {
      return google;
    },
    get github(): OAuth2Server {
      return github;
    },
    get googleClaims(): GoogleAccount {
      return googleClaims;
    },
    set googleClaims(value: GoogleAccount) {
      googleClaims = value;
    },
    get githubUser(): GithubAccount {
      return githubUser;
    },
    set githubUser(value: GithubAccount) {
      githubUser = value;
    },
    get githubEmailsStatus(): number {
      return githubEmailsStatus;
    },
    set githubEmailsStatus(value: number) {
      githubEmailsStatus = value;
    },
    get browser(): Browser {
      return browser;
    },
    googleTokenCalls,
    githubTokenCalls,
    githubIssuedTokens,
    githubApiCalls,
    providerSettings,
    createAuthTenant,
    get,
    startUrl,
    toProvider,
    throughProvider,
    toCallback,
    callback,
    expectTokens,
    expectDenied,
    expectRefused,
    signIn,
    denied,
    viewerOf,
    usersWith,
    createUser,
    mailedCode,
    verifyAddress,
    createVerifiedUser,
  };
}
