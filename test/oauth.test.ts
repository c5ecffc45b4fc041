import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type MutableRedirectUri, type MutableResponse, type MutableToken, OAuth2Server } from "oauth2-mock-server";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import type { SignInMethod } from "./generated/graphql.ts";
import { backends, createTestDatabase, startServer, type TestDatabase, type TestServer } from "./helpers/backends.ts";
import { fails, ok, subscribe, wsClient } from "./helpers/client.ts";
import {
  RefreshSessionBrief,
  RequestEmailCode,
  RevokeSession,
  Sessions,
  SignIn,
  SignUp,
  VerifyEmailStatus,
} from "./operations/accounts.ts";
import { MessageAdded } from "./operations/events.ts";
import { CreateRole } from "./operations/roles.ts";
import { CreateTenant, UpdateTenantWithDefaultRole } from "./operations/tenants.ts";
import { CreateUser, IssueUserToken, UpdateUser, Users, Viewer } from "./operations/users.ts";

// Sign-in with Google (OpenID Connect, discovered from a local issuer) and GitHub (plain
// OAuth 2 against a local authorize/token server and a local stand-in for api.github.com),
// driven end to end through the real server: start -> provider -> callback -> app.

// ---------------------------------------------------------------------------------------------
// Local providers
// ---------------------------------------------------------------------------------------------

type Provider = "google" | "github";

const GOOGLE_CLIENT = { clientId: "google-client-id", clientSecret: "google-client-secret" };
const GITHUB_CLIENT = { clientId: "github-client-id", clientSecret: "github-client-secret" };
const USER_AGENT = "OAuthTestBrowser/1.0";

/** Claims the local Google issuer puts in the next tokens it signs. */
interface GoogleAccount {
  sub: string;
  email?: string;
  email_verified?: boolean;
  name?: string;
  [claim: string]: unknown;
}

interface GithubEmail {
  email: string;
  primary: boolean;
  verified: boolean;
}

interface GithubAccount {
  user: { id: number; login: string; name: string | null };
  emails: GithubEmail[];
}

/** A token endpoint call as the provider saw it. */
interface TokenCall {
  body: Record<string, string>;
  authorization?: string;
}

type BodyRequest = IncomingMessage & { body?: Record<string, string> };

const suffix = () => randomBytes(4).toString("hex");

function googleAccount(overrides: Partial<GoogleAccount> = {}): GoogleAccount {
  const id = suffix();
  return {
    sub: `google-${randomUUID()}`,
    email: `grace-${id}@gmail.test`,
    email_verified: true,
    name: `Grace ${id}`,
    ...overrides,
  };
}

function githubAccount(overrides: Partial<GithubAccount> = {}): GithubAccount {
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

const s256 = (verifier: string) => createHash("sha256").update(verifier).digest("base64url");

function decodeJwt(token: string): { header: Record<string, unknown>; payload: Record<string, unknown> } {
  const [header = "", payload = ""] = token.split(".");
  return {
    header: JSON.parse(Buffer.from(header, "base64url").toString("utf8")),
    payload: JSON.parse(Buffer.from(payload, "base64url").toString("utf8")),
  };
}

/** The client secret a token request carried, in a Basic header or in the body. */
function clientCredentials(call: TokenCall): { id?: string; secret?: string } {
  if (call.authorization?.startsWith("Basic ")) {
    const decoded = Buffer.from(call.authorization.slice(6), "base64").toString("utf8");
    const [id = "", secret = ""] = decoded.split(":");
    return { id: decodeURIComponent(id), secret: decodeURIComponent(secret) };
  }
  return { id: call.body.client_id, secret: call.body.client_secret };
}

/** A cookie as a browser keeps it. */
interface StoredCookie {
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
class Browser {
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
function cookieAttributes(line: string): { name: string; value: string; attributes: Map<string, string> } {
  const [pair = "", ...rest] = line.split(";").map((part) => part.trim());
  const attributes = new Map<string, string>();
  for (const attribute of rest) {
    const [key = "", value = ""] = attribute.split("=");
    attributes.set(key.toLowerCase(), value);
  }
  return { name: pair.slice(0, pair.indexOf("=")), value: pair.slice(pair.indexOf("=") + 1), attributes };
}

const usedIps = new Set<string>();
/** A client address no other test (or concurrent run on the same Redis) uses. */
function freshIp(): string {
  while (true) {
    const ip = `10.${randomBytes(1)[0]}.${randomBytes(1)[0]}.${1 + ((randomBytes(1)[0] ?? 0) % 254)}`;
    if (!usedIps.has(ip)) {
      usedIps.add(ip);
      return ip;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

describe.each(backends())("Google and GitHub sign-in on %s", (backend) => {
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

  interface AuthTenant {
    id: string;
    apiKey: string;
    redirectUri: string;
    accessTokenTtlSeconds: number;
    refreshTokenTtlSeconds: number;
    defaultRoleId?: string;
  }

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

  interface Landing {
    accessToken: string;
    refreshToken: string;
    expiresAt: Date;
    refreshExpiresAt: Date;
  }

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

  // -------------------------------------------------------------------------------------------
  // Google
  // -------------------------------------------------------------------------------------------

  describe("Google (OpenID Connect)", () => {
    it("start redirects to the discovered authorize endpoint with PKCE (S256), state and nonce", async () => {
      const tenant = await createAuthTenant();
      const authorizeUrl = await toProvider("google", tenant);
      expect(`${authorizeUrl.origin}${authorizeUrl.pathname}`).toBe(`${googleIssuer}/authorize`);
      const params = authorizeUrl.searchParams;
      expect(params.get("response_type")).toBe("code");
      expect(params.get("client_id")).toBe(GOOGLE_CLIENT.clientId);
      expect(params.get("redirect_uri")).toBe(`${base}/auth/google/callback`);
      expect(params.get("scope")?.split(" ")).toEqual(expect.arrayContaining(["openid", "email"]));
      expect(params.get("code_challenge_method")).toBe("S256");
      expect(params.get("code_challenge")).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(params.get("state")).toMatch(/^[A-Za-z0-9_-]{22,}$/);
      expect(params.get("nonce")).toMatch(/^[A-Za-z0-9_-]{22,}$/);
      expect(params.get("nonce")).not.toBe(params.get("state"));
      // The client secret never travels through the browser.
      expect(authorizeUrl.href).not.toContain(GOOGLE_CLIENT.clientSecret);

      // Every attempt has its own state, nonce and verifier.
      const again = (await toProvider("google", tenant)).searchParams;
      expect(again.get("state")).not.toBe(params.get("state"));
      expect(again.get("nonce")).not.toBe(params.get("nonce"));
      expect(again.get("code_challenge")).not.toBe(params.get("code_challenge"));
    });

    it("the full flow lands on the app with tokens; the code exchange carries the PKCE verifier and secret", async () => {
      const tenant = await createAuthTenant();
      googleClaims = googleAccount();
      const before = Date.now();
      const { authorizeUrl, callbackUrl } = await toCallback("google", tenant);
      expect(callbackUrl.searchParams.get("state")).toBe(authorizeUrl.searchParams.get("state"));
      const landing = await expectTokens(await callback(callbackUrl), tenant.redirectUri);
      const after = Date.now();

      // Lifetimes are the tenant's, as for a password sign-in.
      expect(landing.expiresAt.getTime()).toBeGreaterThanOrEqual(before + tenant.accessTokenTtlSeconds * 1000 - 2000);
      expect(landing.expiresAt.getTime()).toBeLessThanOrEqual(after + tenant.accessTokenTtlSeconds * 1000 + 2000);
      expect(landing.refreshExpiresAt.getTime()).toBeGreaterThanOrEqual(
        before + tenant.refreshTokenTtlSeconds * 1000 - 2000,
      );
      expect(landing.refreshExpiresAt.getTime()).toBeLessThanOrEqual(
        after + tenant.refreshTokenTtlSeconds * 1000 + 2000,
      );

      // The provider saw one code exchange: this code, the callback URL, the verifier of the challenge.
      const exchange = googleTokenCalls.at(-1);
      if (!exchange) expect.fail("the provider saw no token request");
      expect(exchange.body.grant_type).toBe("authorization_code");
      expect(exchange.body.code).toBe(callbackUrl.searchParams.get("code"));
      expect(exchange.body.redirect_uri).toBe(`${base}/auth/google/callback`);
      expect(exchange.body.code_verifier).toMatch(/^[A-Za-z0-9._~-]{43,128}$/);
      expect(s256(exchange.body.code_verifier ?? "")).toBe(authorizeUrl.searchParams.get("code_challenge"));
      expect(clientCredentials(exchange)).toEqual({ id: GOOGLE_CLIENT.clientId, secret: GOOGLE_CLIENT.clientSecret });

      // The access token works over HTTP.
      const viewer = await viewerOf(landing.accessToken);
      expect(viewer.user.email).toBe(googleClaims.email);
      expect(viewer.user.name).toBe(googleClaims.name);
      expect(viewer.tenant.id).toBe(tenant.id);
    });

    it("the access token works on a graphql-ws WebSocket", async () => {
      const tenant = await createAuthTenant();
      googleClaims = googleAccount();
      const { accessToken } = await signIn("google", tenant);
      const client = wsClient(wsUrl, { token: accessToken });
      try {
        const result = await subscribe(client, Viewer).next();
        expect(result.errors).toBeUndefined();
        expect(result.data?.viewer.user?.email).toBe(googleClaims.email);
        expect(result.data?.viewer.tenant.id).toBe(tenant.id);
      } finally {
        await client.dispose();
      }
    });

    it("sessions show method GOOGLE; refreshSession rotates the tokens and detects reuse", async () => {
      const tenant = await createAuthTenant();
      googleClaims = googleAccount();
      const landing = await signIn("google", tenant);

      const { sessions } = await ok(url, Sessions, undefined, { token: landing.accessToken });
      expect(sessions).toHaveLength(1);
      expect(sessions[0]).toMatchObject({ method: "GOOGLE", current: true, userAgent: USER_AGENT });
      const sessionId = sessions[0]?.id;

      const { refreshSession: refreshed } = await ok(url, RefreshSessionBrief, { refreshToken: landing.refreshToken });
      expect(refreshed.session).toEqual({ id: sessionId, method: "GOOGLE" });
      expect(refreshed.user.email).toBe(googleClaims.email);
      expect(refreshed.accessToken).not.toBe(landing.accessToken);
      expect(refreshed.refreshToken).not.toBe(landing.refreshToken);
      expect((await viewerOf(refreshed.accessToken)).user.email).toBe(googleClaims.email);

      // Presenting the spent refresh token again ends the whole session.
      await fails(url, RefreshSessionBrief, { refreshToken: landing.refreshToken }, undefined, "UNAUTHENTICATED");
      await fails(url, Viewer, undefined, { token: refreshed.accessToken }, "UNAUTHENTICATED");
      await fails(url, RefreshSessionBrief, { refreshToken: refreshed.refreshToken }, undefined, "UNAUTHENTICATED");
    });

    it("issues the same kind of tokens as a password sign-in", async () => {
      const tenant = await createAuthTenant();
      googleClaims = googleAccount();
      const viaGoogle = await signIn("google", tenant);
      const { signUp } = await ok(url, SignUp, {
        input: {
          tenantId: tenant.id,
          email: `pw-${suffix()}@example.com`,
          name: "Pat Password",
          password: "a long password 123",
        },
      });
      expect(signUp.session.method).toBe("PASSWORD");
      const google = decodeJwt(viaGoogle.accessToken);
      const password = decodeJwt(signUp.accessToken);
      expect(google.header).toEqual(password.header);
      expect(Object.keys(google.payload).sort()).toEqual(Object.keys(password.payload).sort());
      expect(viaGoogle.refreshToken.split("_")[0]).toBe(signUp.refreshToken.split("_")[0]);
      expect(viaGoogle.refreshToken.length).toBe(signUp.refreshToken.length);
    });

    it("revoking the Google session closes its WebSocket with 4403", async () => {
      const tenant = await createAuthTenant();
      googleClaims = googleAccount();
      const { accessToken } = await signIn("google", tenant);
      const { sessions } = await ok(url, Sessions, undefined, { token: accessToken });
      const client = wsClient(wsUrl, { token: accessToken });
      try {
        const subscription = subscribe(client, MessageAdded);
        await subscription.expectSilence(300);
        await ok(url, RevokeSession, { id: sessions[0]?.id ?? "" }, { token: accessToken });
        const closed = await Promise.race([
          client.closed,
          new Promise<null>((resolve) => setTimeout(() => resolve(null), 5000)),
        ]);
        expect(closed?.code).toBe(4403);
        await fails(url, Viewer, undefined, { token: accessToken }, "UNAUTHENTICATED");
      } finally {
        await client.dispose();
      }
    });

    it("creates a new user with the tenant's default role when self sign-up is on", async () => {
      const tenant = await createAuthTenant();
      const { createRole: role } = await ok(
        url,
        CreateRole,
        { input: { name: `oauth-default-${suffix()}`, permissions: ["chats:read", "users:read"] } },
        { apiKey: tenant.apiKey },
      );
      const { updateTenant } = await ok(
        url,
        UpdateTenantWithDefaultRole,
        { input: { defaultRoleId: role.id } },
        { apiKey: tenant.apiKey },
      );
      expect(updateTenant.defaultRole?.id).toBe(role.id);

      googleClaims = googleAccount({ email: `New.Person-${suffix()}@Gmail.test` });
      const { accessToken } = await signIn("google", tenant);
      const viewer = await viewerOf(accessToken);
      const email = (googleClaims.email ?? "").toLowerCase();
      expect(viewer.user.email).toBe(email);
      expect(viewer.roles.map((r) => r.id)).toEqual([role.id]);
      const found = await usersWith(tenant, email);
      expect(found.map((u) => u.id)).toEqual([viewer.user.id]);
    });

    it("with self sign-up off and no user with that email: error redirect, nothing created", async () => {
      const tenant = await createAuthTenant({ selfSignUp: false });
      googleClaims = googleAccount();
      const description = await denied("google", tenant);
      expect(description).toMatch(/sign-up|account/i);
      expect(await usersWith(tenant, googleClaims.email ?? "")).toEqual([]);
    });

    it("links the existing user with the same email instead of creating another, and keeps the link when the email changes", async () => {
      // Sign-up closed: linking an existing account does not need it.
      const tenant = await createAuthTenant({ selfSignUp: false });
      const email = `linked-${suffix()}@example.com`;
      const existing = await createVerifiedUser(tenant, email, "Lin Ked");

      const account = googleAccount({ email: email.toUpperCase(), name: "Someone Else" });
      googleClaims = account;
      const first = await signIn("google", tenant);
      const viewer = await viewerOf(first.accessToken);
      expect(viewer.user.id).toBe(existing.id);
      expect(viewer.user.name).toBe("Lin Ked");
      expect((await usersWith(tenant, email)).map((u) => u.id)).toEqual([existing.id]);

      // The same Google account later reports another address: still the same user, nobody new.
      const changed = `changed-${suffix()}@gmail.test`;
      googleClaims = { ...account, email: changed };
      const second = await signIn("google", tenant);
      expect((await viewerOf(second.accessToken)).user.id).toBe(existing.id);
      expect(await usersWith(tenant, changed)).toEqual([]);

      // With sign-up open the link still wins over creating a user for the new address.
      await ok(url, UpdateTenantWithDefaultRole, { input: { auth: { selfSignUp: true } } }, { apiKey: tenant.apiKey });
      const third = await signIn("google", tenant);
      expect((await viewerOf(third.accessToken)).user.id).toBe(existing.id);
      expect(await usersWith(tenant, changed)).toEqual([]);
    });

    it("an unverified email at the provider is refused and links nothing", async () => {
      const tenant = await createAuthTenant({ selfSignUp: false });
      const email = `victim-${suffix()}@example.com`;
      const existing = await createVerifiedUser(tenant, email);

      const account = googleAccount({ email, email_verified: false });
      googleClaims = account;
      await denied("google", tenant);

      // A missing email_verified claim is not a verified email either.
      googleClaims = { ...account, email_verified: undefined };
      await denied("google", tenant);

      // No identity was stored: the same account with another (verified) address is a stranger.
      googleClaims = { ...account, email: `other-${suffix()}@gmail.test`, email_verified: true };
      await denied("google", tenant);

      // With sign-up open an unverified address still does not create a user.
      await ok(url, UpdateTenantWithDefaultRole, { input: { auth: { selfSignUp: true } } }, { apiKey: tenant.apiKey });
      const fresh = `fresh-${suffix()}@gmail.test`;
      googleClaims = googleAccount({ email: fresh, email_verified: false });
      await denied("google", tenant);
      expect(await usersWith(tenant, fresh)).toEqual([]);
      expect((await usersWith(tenant, email)).map((u) => u.id)).toEqual([existing.id]);
    });

    it("a deactivated user is refused, whether found by email or by a stored link", async () => {
      const tenant = await createAuthTenant();

      // Found by email.
      const email = `inactive-${suffix()}@example.com`;
      const user = await createVerifiedUser(tenant, email);
      await ok(url, UpdateUser, { id: user.id, input: { active: false } }, { apiKey: tenant.apiKey });
      googleClaims = googleAccount({ email });
      expect(await denied("google", tenant)).toMatch(/deactivated/i);
      expect((await usersWith(tenant, email)).map((u) => u.id)).toEqual([user.id]);

      // Found by a link made while it was active.
      const linkedEmail = `linked-${suffix()}@example.com`;
      const linked = await createVerifiedUser(tenant, linkedEmail);
      const account = googleAccount({ email: linkedEmail });
      googleClaims = account;
      expect((await viewerOf((await signIn("google", tenant)).accessToken)).user.id).toBe(linked.id);
      await ok(url, UpdateUser, { id: linked.id, input: { active: false } }, { apiKey: tenant.apiKey });
      await denied("google", tenant);
      await ok(url, UpdateUser, { id: linked.id, input: { active: true } }, { apiKey: tenant.apiKey });
      expect((await viewerOf((await signIn("google", tenant)).accessToken)).user.id).toBe(linked.id);
    });

    it("an ID token with the wrong nonce, or for another client, is refused", async () => {
      const tenant = await createAuthTenant();
      googleClaims = googleAccount();
      // The provider signs whatever nonce the authorize request carried: change it on the way.
      const { callbackUrl } = await toCallback("google", tenant, (authorizeUrl) =>
        authorizeUrl.searchParams.set("nonce", `forged-${suffix()}`),
      );
      await expectDenied(await callback(callbackUrl), tenant.redirectUri);

      googleClaims = googleAccount({ aud: "someone-elses-client" });
      await denied("google", tenant);
      expect(await usersWith(tenant, "gmail.test")).toEqual([]);
    });

    it("a code bound to another PKCE challenge fails the exchange", async () => {
      const tenant = await createAuthTenant();
      googleClaims = googleAccount();
      const forged = s256(randomBytes(32).toString("base64url"));
      const { callbackUrl } = await toCallback("google", tenant, (authorizeUrl) =>
        authorizeUrl.searchParams.set("code_challenge", forged),
      );
      await expectDenied(await callback(callbackUrl), tenant.redirectUri);
      expect(await usersWith(tenant, googleClaims.email ?? "")).toEqual([]);
    });
  });

  // -------------------------------------------------------------------------------------------
  // State
  // -------------------------------------------------------------------------------------------

  describe("state", () => {
    it("is single use: replaying the callback URL answers 400", async () => {
      const tenant = await createAuthTenant();
      googleClaims = googleAccount();
      const { callbackUrl } = await signIn("google", tenant);
      const message = await expectRefused(await callback(callbackUrl), 400, "BAD_USER_INPUT");
      expect(message).toMatch(/start again/i);
    });

    it("expires", async () => {
      const tenant = await createAuthTenant();
      googleClaims = googleAccount();
      const { callbackUrl } = await toCallback("google", tenant);
      vi.useFakeTimers({ toFake: ["Date"] });
      try {
        vi.setSystemTime(Date.now() + 11 * 60 * 1000);
        await expectRefused(await callback(callbackUrl), 400, "BAD_USER_INPUT");
      } finally {
        vi.useRealTimers();
      }
      expect(await usersWith(tenant, googleClaims.email ?? "")).toEqual([]);
    });

    it("must belong to the provider whose callback receives it", async () => {
      const tenant = await createAuthTenant();
      googleClaims = googleAccount();
      const { callbackUrl } = await toCallback("google", tenant);
      const elsewhere = new URL(callbackUrl);
      elsewhere.pathname = "/auth/github/callback";
      await expectRefused(await callback(elsewhere), 400, "BAD_USER_INPUT");
      expect(await usersWith(tenant, googleClaims.email ?? "")).toEqual([]);
    });

    it("a tampered or missing state answers 400 and leaves the real attempt usable", async () => {
      const tenant = await createAuthTenant();
      googleClaims = googleAccount();
      const { callbackUrl } = await toCallback("google", tenant);

      const tampered = new URL(callbackUrl);
      tampered.searchParams.set("state", `${callbackUrl.searchParams.get("state")}x`);
      await expectRefused(await callback(tampered), 400, "BAD_USER_INPUT");

      const missing = new URL(callbackUrl);
      missing.searchParams.delete("state");
      await expectRefused(await callback(missing), 400, "BAD_USER_INPUT");

      // A state changed on the way to the provider comes back unknown too (another browser's
      // attempt: a new start in this browser would replace the attempt under test).
      const other = new Browser();
      const { callbackUrl: forged } = await toCallback(
        "google",
        tenant,
        (authorizeUrl) => authorizeUrl.searchParams.set("state", randomBytes(32).toString("base64url")),
        other,
      );
      await expectRefused(await callback(forged, other), 400, "BAD_USER_INPUT");

      await expectTokens(await callback(callbackUrl), tenant.redirectUri);
    });

    it("a provider error (access_denied) sends the browser back to the app with the error", async () => {
      const tenant = await createAuthTenant();
      googleClaims = googleAccount();
      google.service.once("beforeAuthorizeRedirect", (redirect: MutableRedirectUri) => {
        redirect.url.searchParams.delete("code");
        redirect.url.searchParams.set("error", "access_denied");
        redirect.url.searchParams.set("error_description", "The user cancelled");
      });
      const { callbackUrl } = await toCallback("google", tenant);
      expect(callbackUrl.searchParams.get("error")).toBe("access_denied");
      expect(callbackUrl.searchParams.has("code")).toBe(false);
      await expectDenied(await callback(callbackUrl), tenant.redirectUri);
      // The attempt is over.
      await expectRefused(await callback(callbackUrl), 400, "BAD_USER_INPUT");
      expect(await usersWith(tenant, googleClaims.email ?? "")).toEqual([]);
    });
  });

  // -------------------------------------------------------------------------------------------
  // Browser binding (login CSRF)
  // -------------------------------------------------------------------------------------------

  describe("the attempt is bound to the browser that started it", () => {
    it("start sets a short-lived HttpOnly, SameSite=Lax cookie for the provider's path", async () => {
      const tenant = await createAuthTenant();
      for (const provider of ["google", "github"] as const) {
        const response = await get(startUrl(provider, { tenantId: tenant.id, redirectUri: tenant.redirectUri }));
        expect(response.status).toBe(302);
        const lines = response.headers.getSetCookie();
        expect(lines).toHaveLength(1);
        const cookie = cookieAttributes(lines[0] ?? "");
        expect(cookie.value).toMatch(/^[A-Za-z0-9_-]{43,}$/);
        expect(cookie.attributes.get("path")).toBe(`/auth/${provider}`);
        expect(cookie.attributes.has("httponly")).toBe(true);
        expect(cookie.attributes.get("samesite")?.toLowerCase()).toBe("lax");
        const maxAge = Number(cookie.attributes.get("max-age"));
        expect(maxAge).toBeGreaterThan(0);
        expect(maxAge).toBeLessThanOrEqual(600);
        // Plain http here: a Secure cookie would never come back.
        expect(cookie.attributes.has("secure")).toBe(false);
        // The value travels nowhere but in the cookie.
        const location = response.headers.get("location") ?? "";
        expect(location).not.toContain(cookie.value);
      }
    });

    it("the cookie is Secure when the request came over https", async () => {
      const tenant = await createAuthTenant();
      const behindProxy = await startServer(database, { ...providerSettings(), trustProxy: 1 });
      try {
        const origin = new URL(behindProxy.url).origin;
        const response = await get(
          startUrl("google", { tenantId: tenant.id, redirectUri: tenant.redirectUri }, origin),
          {
            "x-forwarded-proto": "https",
            "x-forwarded-for": freshIp(),
          },
        );
        expect(response.status).toBe(302);
        const cookie = cookieAttributes(response.headers.getSetCookie()[0] ?? "");
        expect(cookie.attributes.has("secure")).toBe(true);
        expect(cookie.attributes.has("httponly")).toBe(true);
      } finally {
        await behindProxy.stop();
      }
    });

    it("a callback opened in a browser without the cookie is refused: nobody is signed in, nothing created", async () => {
      const tenant = await createAuthTenant();
      for (const provider of ["google", "github"] as const) {
        googleClaims = googleAccount();
        githubUser = githubAccount();
        const email =
          provider === "google" ? (googleClaims.email ?? "") : (githubUser.emails.find((e) => e.primary)?.email ?? "");
        // The attacker signs in with their own provider account, stops at the callback URL...
        const attacker = new Browser();
        const { callbackUrl } = await toCallback(provider, tenant, undefined, attacker);
        // ...and has the victim's browser open it.
        const victim = new Browser();
        const description = await expectDenied(await callback(callbackUrl, victim), tenant.redirectUri);
        expect(description).toMatch(/browser/i);
        // Sign-up is open, so a completed callback would have created the attacker's user.
        expect(await usersWith(tenant, email)).toEqual([]);
        // The attempt is spent: it cannot be finished afterwards, not even by its own browser.
        await expectRefused(await callback(callbackUrl, attacker), 400, "BAD_USER_INPUT");
      }
    });

    it("a callback carrying another attempt's cookie is refused, and the cookie is cleared", async () => {
      const tenant = await createAuthTenant();
      googleClaims = googleAccount();
      const attacker = new Browser();
      const { callbackUrl } = await toCallback("google", tenant, undefined, attacker);
      // The victim's browser holds a cookie of its own, from a sign-in it started.
      const victim = new Browser();
      await toProvider("google", tenant, tenant.redirectUri, victim);
      expect(victim.cookiesFor(callbackUrl)).toHaveLength(1);

      const response = await callback(callbackUrl, victim);
      const cleared = cookieAttributes(response.headers.getSetCookie()[0] ?? "");
      expect(cleared.attributes.get("max-age")).toBe("0");
      expect(cleared.attributes.get("path")).toBe("/auth/google");
      await expectDenied(response, tenant.redirectUri);
      expect(victim.cookiesFor(callbackUrl)).toEqual([]);
      expect(await usersWith(tenant, googleClaims.email ?? "")).toEqual([]);
    });

    it("a forged or foreign cookie value does not match either", async () => {
      const tenant = await createAuthTenant();
      googleClaims = googleAccount();
      const { callbackUrl } = await toCallback("google", tenant);
      const [cookie] = browser.cookiesFor(callbackUrl);
      if (!cookie) expect.fail("the start set no cookie");
      for (const value of ["", "x", `${cookie.value}x`, randomBytes(32).toString("base64url")]) {
        const response = await fetch(callbackUrl, {
          redirect: "manual",
          headers: { cookie: `${cookie.name}=${value}` },
        });
        await expectDenied(response, tenant.redirectUri);
        // Each refusal spent the attempt: run a new one for the next value.
        const next = await toCallback("google", tenant);
        callbackUrl.search = next.callbackUrl.search;
      }
      // The genuine cookie of the last attempt still works.
      await expectTokens(await callback(callbackUrl), tenant.redirectUri);
    });

    it("a newer start in the same browser replaces the older attempt", async () => {
      const tenant = await createAuthTenant();
      googleClaims = googleAccount();
      const older = await toCallback("google", tenant);
      const newer = await toCallback("google", tenant);
      await expectDenied(await callback(older.callbackUrl), tenant.redirectUri);
      // Refusing the older one cleared the cookie: the newer one needs a fresh start too.
      await expectDenied(await callback(newer.callbackUrl), tenant.redirectUri);
      await signIn("google", tenant);
    });
  });

  // -------------------------------------------------------------------------------------------
  // Start rate limit
  // -------------------------------------------------------------------------------------------

  describe("start rate limit", () => {
    it("answers 429 RATE_LIMITED with Retry-After once a client address has used up its starts", async () => {
      const tenant = await createAuthTenant();
      const limited = await startServer(database, { ...providerSettings(), trustProxy: 1, oauthStartsPerMinute: 3 });
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

  // -------------------------------------------------------------------------------------------
  // Tenant settings changed while a sign-in is under way
  // -------------------------------------------------------------------------------------------

  describe("settings changed between start and callback", () => {
    it("a redirect URI unregistered meanwhile receives nothing: 400 BAD_USER_INPUT", async () => {
      const tenant = await createAuthTenant();
      googleClaims = googleAccount();
      const { callbackUrl } = await toCallback("google", tenant);
      const replacement = `http://app-${suffix()}.test/auth/done`;
      await ok(
        url,
        UpdateTenantWithDefaultRole,
        { input: { auth: { oauthRedirectUris: [replacement] } } },
        { apiKey: tenant.apiKey },
      );
      await expectRefused(await callback(callbackUrl), 400, "BAD_USER_INPUT");
      expect(await usersWith(tenant, googleClaims.email ?? "")).toEqual([]);
    });

    it("a provider the tenant turned off meanwhile signs nobody in", async () => {
      const tenant = await createAuthTenant();
      googleClaims = googleAccount();
      const { callbackUrl } = await toCallback("google", tenant);
      await ok(
        url,
        UpdateTenantWithDefaultRole,
        { input: { auth: { signInMethods: ["PASSWORD", "GITHUB"] } } },
        { apiKey: tenant.apiKey },
      );
      await expectDenied(await callback(callbackUrl), tenant.redirectUri);
      expect(await usersWith(tenant, googleClaims.email ?? "")).toEqual([]);
    });
  });

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
      const bare = await startServer(database, { dataDir, oauthStartsPerMinute: 100_000 });
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
  // GitHub
  // -------------------------------------------------------------------------------------------

  describe("GitHub (OAuth 2)", () => {
    it("start redirects to the configured authorize URL with PKCE (S256) and state", async () => {
      const tenant = await createAuthTenant();
      const authorizeUrl = await toProvider("github", tenant);
      expect(`${authorizeUrl.origin}${authorizeUrl.pathname}`).toBe(`${githubIssuer}/authorize`);
      const params = authorizeUrl.searchParams;
      expect(params.get("response_type")).toBe("code");
      expect(params.get("client_id")).toBe(GITHUB_CLIENT.clientId);
      expect(params.get("redirect_uri")).toBe(`${base}/auth/github/callback`);
      expect(params.get("scope")?.split(" ")).toEqual(expect.arrayContaining(["read:user", "user:email"]));
      expect(params.get("code_challenge_method")).toBe("S256");
      expect(params.get("code_challenge")).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(params.get("state")).toMatch(/^[A-Za-z0-9_-]{22,}$/);
      expect(authorizeUrl.href).not.toContain(GITHUB_CLIENT.clientSecret);
    });

    it("the full flow creates the user from the verified primary email; the API gets the access token as Bearer", async () => {
      const tenant = await createAuthTenant();
      githubUser = githubAccount();
      const primary = githubUser.emails.find((e) => e.primary)?.email ?? "";
      const secondary = githubUser.emails.find((e) => !e.primary)?.email ?? "";
      const apiCallsBefore = githubApiCalls.length;

      const { authorizeUrl, callbackUrl } = await toCallback("github", tenant);
      const landing = await expectTokens(await callback(callbackUrl), tenant.redirectUri);

      const exchange = githubTokenCalls.at(-1);
      if (!exchange) expect.fail("the provider saw no token request");
      expect(exchange.body.grant_type).toBe("authorization_code");
      expect(exchange.body.code).toBe(callbackUrl.searchParams.get("code"));
      expect(exchange.body.redirect_uri).toBe(`${base}/auth/github/callback`);
      expect(s256(exchange.body.code_verifier ?? "")).toBe(authorizeUrl.searchParams.get("code_challenge"));
      expect(clientCredentials(exchange)).toEqual({ id: GITHUB_CLIENT.clientId, secret: GITHUB_CLIENT.clientSecret });

      const issued = githubIssuedTokens.at(-1);
      const apiCalls = githubApiCalls.slice(apiCallsBefore);
      expect(apiCalls.map((c) => c.path).sort()).toEqual(["/user", "/user/emails"]);
      for (const call of apiCalls) expect(call.authorization).toBe(`Bearer ${issued}`);

      const viewer = await viewerOf(landing.accessToken);
      expect(viewer.user.email).toBe(primary);
      expect(viewer.user.name).toBe(githubUser.user.name);
      expect(viewer.roles.map((r) => r.id)).toEqual([tenant.defaultRoleId]);
      expect(await usersWith(tenant, secondary)).toEqual([]);

      const { sessions } = await ok(url, Sessions, undefined, { token: landing.accessToken });
      expect(sessions.map((s) => s.method)).toEqual(["GITHUB"]);
      const { refreshSession } = await ok(url, RefreshSessionBrief, { refreshToken: landing.refreshToken });
      expect(refreshSession.session.method).toBe("GITHUB");
      expect((await viewerOf(refreshSession.accessToken)).user.id).toBe(viewer.user.id);
    });

    it("uses the login as the name when the profile has none", async () => {
      const tenant = await createAuthTenant();
      githubUser = githubAccount();
      githubUser.user.name = null;
      const { accessToken } = await signIn("github", tenant);
      expect((await viewerOf(accessToken)).user.name).toBe(githubUser.user.login);
    });

    it("links the existing user by verified primary email and keeps the link when the email changes", async () => {
      const tenant = await createAuthTenant({ selfSignUp: false });
      githubUser = githubAccount();
      const primary = githubUser.emails.find((e) => e.primary)?.email ?? "";
      const existing = await createVerifiedUser(tenant, primary, "Hub User");

      const first = await signIn("github", tenant);
      expect((await viewerOf(first.accessToken)).user.id).toBe(existing.id);
      expect((await usersWith(tenant, primary)).map((u) => u.id)).toEqual([existing.id]);

      const changed = `moved-${suffix()}@github.test`;
      githubUser = { ...githubUser, emails: [{ email: changed, primary: true, verified: true }] };
      const second = await signIn("github", tenant);
      expect((await viewerOf(second.accessToken)).user.id).toBe(existing.id);
      expect(await usersWith(tenant, changed)).toEqual([]);
    });

    it("no verified primary email: error redirect, nothing created or linked", async () => {
      const tenant = await createAuthTenant();
      const id = suffix();
      const unverifiedPrimary = `primary-${id}@github.test`;
      const verifiedSecondary = `secondary-${id}@github.test`;
      const existing = await createVerifiedUser(tenant, unverifiedPrimary);
      const account = githubAccount();

      const cases: GithubEmail[][] = [
        [
          { email: unverifiedPrimary, primary: true, verified: false },
          { email: verifiedSecondary, primary: false, verified: true },
        ],
        [{ email: verifiedSecondary, primary: false, verified: true }],
        [],
      ];
      for (const emails of cases) {
        githubUser = { ...account, emails };
        await denied("github", tenant);
      }
      expect(await usersWith(tenant, verifiedSecondary)).toEqual([]);

      // Nothing was linked: once GitHub verifies the address, the user with it is linked then.
      githubUser = { ...account, emails: [{ email: unverifiedPrimary, primary: true, verified: true }] };
      expect((await viewerOf((await signIn("github", tenant)).accessToken)).user.id).toBe(existing.id);
    });

    it("a failing GitHub API sends the browser back to the app with an error", async () => {
      const tenant = await createAuthTenant();
      githubUser = githubAccount();
      githubEmailsStatus = 500;
      try {
        await denied("github", tenant);
      } finally {
        githubEmailsStatus = 200;
      }
      const primary = githubUser.emails.find((e) => e.primary)?.email ?? "";
      expect(await usersWith(tenant, primary)).toEqual([]);
    });
  });

  // -------------------------------------------------------------------------------------------
  // Linking to an existing account
  // -------------------------------------------------------------------------------------------

  describe("linking to an account that already has the email", () => {
    for (const provider of ["google", "github"] as const) {
      it(`${provider}: an account whose address is unverified is not linked, and its password keeps working`, async () => {
        const tenant = await createAuthTenant();
        const email = `squatted-${suffix()}@example.com`;
        // Someone registers the address first, without being able to receive its mail.
        const password = `squatter password ${suffix()}`;
        const { signUp } = await ok(url, SignUp, {
          input: { tenantId: tenant.id, email, name: "Squatter", password },
        });
        const squatter = (await viewerOf(signUp.accessToken)).user;

        // The address's owner signs in with a provider that has verified it.
        if (provider === "google") googleClaims = googleAccount({ email });
        else githubUser = githubAccount({ emails: [{ email, primary: true, verified: true }] });
        expect(await denied(provider, tenant)).toMatch(/not verified/i);
        // No link was stored: the next attempt is refused the same way.
        expect(await denied(provider, tenant)).toMatch(/not verified/i);
        expect((await usersWith(tenant, email)).map((u) => u.id)).toEqual([squatter.id]);
        // The account was not taken over either: its password still signs in.
        const { signIn: again } = await ok(url, SignIn, { input: { tenantId: tenant.id, email, password } });
        expect(again.user.id).toBe(squatter.id);

        // Once the address is proved (a code mailed to it), the provider account links to it.
        await verifyAddress(tenant, email, signUp.accessToken);
        const linked = await signIn(provider, tenant);
        expect((await viewerOf(linked.accessToken)).user.id).toBe(squatter.id);
      });
    }

    it("a user created by the tenant's backend links only once the address is verified", async () => {
      const tenant = await createAuthTenant({ selfSignUp: false });
      const email = `provisioned-${suffix()}@example.com`;
      const user = await createUser(tenant, email);
      googleClaims = googleAccount({ email });
      expect(await denied("google", tenant)).toMatch(/not verified/i);
      const { issueUserToken } = await ok(url, IssueUserToken, { userId: user.id }, { apiKey: tenant.apiKey });
      await verifyAddress(tenant, email, issueUserToken.token);
      expect((await viewerOf((await signIn("google", tenant)).accessToken)).user.id).toBe(user.id);
    });
  });

  // -------------------------------------------------------------------------------------------
  // Tenant isolation
  // -------------------------------------------------------------------------------------------

  describe("tenant isolation", () => {
    it("the same provider account signing in to two tenants gives two separate users", async () => {
      const tenantA = await createAuthTenant();
      const tenantB = await createAuthTenant();
      const closed = await createAuthTenant({ selfSignUp: false });

      googleClaims = googleAccount();
      const inA = await viewerOf((await signIn("google", tenantA)).accessToken);
      const inB = await viewerOf((await signIn("google", tenantB)).accessToken);
      expect(inA.tenant.id).toBe(tenantA.id);
      expect(inB.tenant.id).toBe(tenantB.id);
      expect(inA.user.id).not.toBe(inB.user.id);
      expect(inA.user.email).toBe(inB.user.email);
      // Signing in again to A finds A's user, not B's.
      expect((await viewerOf((await signIn("google", tenantA)).accessToken)).user.id).toBe(inA.user.id);
      // A link in other tenants opens no door in a tenant with sign-up closed.
      await denied("google", closed);
      expect(await usersWith(closed, googleClaims.email ?? "")).toEqual([]);

      githubUser = githubAccount();
      const hubA = await viewerOf((await signIn("github", tenantA)).accessToken);
      const hubB = await viewerOf((await signIn("github", tenantB)).accessToken);
      expect(hubA.tenant.id).toBe(tenantA.id);
      expect(hubB.tenant.id).toBe(tenantB.id);
      expect(hubA.user.id).not.toBe(hubB.user.id);
      await denied("github", closed);
    });

    it("a redirect URI registered for tenant A cannot be used with tenant B", async () => {
      const tenantA = await createAuthTenant();
      const tenantB = await createAuthTenant();
      for (const provider of ["google", "github"] as const) {
        const response = await get(startUrl(provider, { tenantId: tenantB.id, redirectUri: tenantA.redirectUri }));
        await expectRefused(response, 400, "BAD_USER_INPUT");
      }
      // B's own address works, and A's still works for A.
      googleClaims = googleAccount();
      await signIn("google", tenantB);
      await signIn("google", tenantA);
    });
  });
});
