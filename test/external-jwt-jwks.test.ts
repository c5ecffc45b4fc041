import { randomBytes, randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, exportSPKI, generateKeyPair, type JWK, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { guardedLookup, isNonPublicAddress, outboundGetJson, outboundUrlProblem } from "../src/http/outbound.ts";
import { backends } from "./helpers/backends.ts";
import { fails, ok } from "./helpers/client.ts";
import { test, useServer } from "./helpers/world.ts";
import { ExternalViewer, UpdateTenantExternalJwt } from "./operations/external-jwt.ts";
import { Viewer } from "./operations/users.ts";

type Alg = "RS256" | "ES256" | "EdDSA";

interface SigningKey {
  kid: string;
  alg: Alg;
  privateKey: CryptoKey;
  jwk: JWK;
  spki: string;
}

async function signingKey(alg: Alg): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, alg === "EdDSA" ? { crv: "Ed25519" } : {});
  const kid = `${alg}-${randomBytes(4).toString("hex")}`;
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { kid, alg, privateKey, jwk, spki: await exportSPKI(publicKey) };
}

/** An identity provider's key set on a local HTTP server: what it serves changes with `keys`. */
class JwksServer {
  keys: SigningKey[] = [];
  fetches = 0;
  private server: Server | null = null;
  url = "";

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      if (req.url !== "/jwks") {
        res.writeHead(404).end();
        return;
      }
      this.fetches++;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ keys: this.keys.map((k) => k.jwk) }));
    });
    await new Promise<void>((resolve) => this.server?.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/jwks`;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }
}

const newIssuer = () => `https://idp-${randomBytes(4).toString("hex")}.example.com/`;

async function sign(key: SigningKey, issuer: string, sub = "user-1", kid = key.kid): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ name: `User ${sub}` })
    .setProtectedHeader({ alg: key.alg, kid })
    .setSubject(sub)
    .setIssuer(issuer)
    .setIssuedAt(now)
    .setJti(randomUUID())
    .setExpirationTime(now + 600)
    .sign(key.privateKey);
}

describe("outbound URL rules", () => {
  it("allows https, and plain http only to loopback outside production mode", () => {
    const dev = { production: false };
    const prod = { production: true };
    expect(outboundUrlProblem("https://idp.example.com/jwks", dev)).toBeNull();
    expect(outboundUrlProblem("https://idp.example.com/jwks", prod)).toBeNull();
    expect(outboundUrlProblem("http://127.0.0.1:8080/jwks", dev)).toBeNull();
    expect(outboundUrlProblem("http://localhost/jwks", dev)).toBeNull();
    expect(outboundUrlProblem("http://[::1]/jwks", dev)).toBeNull();
    expect(outboundUrlProblem("http://127.0.0.1:8080/jwks", prod)).not.toBeNull();
    expect(outboundUrlProblem("http://idp.example.com/jwks", dev)).not.toBeNull();
    expect(outboundUrlProblem("https://10.1.2.3/jwks", prod)).not.toBeNull();
    expect(outboundUrlProblem("https://localhost/jwks", prod)).not.toBeNull();
    expect(outboundUrlProblem("https://user:pw@idp.example.com/jwks", dev)).not.toBeNull();
    expect(outboundUrlProblem("file:///etc/passwd", dev)).not.toBeNull();
    expect(outboundUrlProblem("not a url", dev)).not.toBeNull();
  });

  it("treats private, loopback, link-local and mapped addresses as non-public", () => {
    for (const address of [
      "10.0.0.1",
      "127.0.0.1",
      "169.254.169.254",
      "192.168.1.1",
      "172.16.0.1",
      "::1",
      "fd00::1",
      "::ffff:10.0.0.1",
      "fe80::1",
    ]) {
      expect(isNonPublicAddress(address), address).toBe(true);
    }
    for (const address of ["93.184.216.34", "2606:4700::1111", "::ffff:93.184.216.34"]) {
      expect(isNonPublicAddress(address), address).toBe(false);
    }
  });
});

describe("outbound calls", () => {
  const resolve = (production: boolean, hostname: string) =>
    new Promise<{ error: Error | null; address: unknown }>((done) =>
      guardedLookup({ production })(hostname, {}, (error, address) => done({ error, address })),
    );

  it("in production mode, refuses at connect time a host name that resolves to a loopback address", async () => {
    const dev = await resolve(false, "localhost");
    expect(dev.error).toBeNull();
    expect(typeof dev.address).toBe("string");
    const prod = await resolve(true, "localhost");
    expect(prod.error?.message).toMatch(/private or loopback/);
  });

  it("refuses by shape before connecting, and does not follow redirects", async () => {
    await expect(outboundGetJson("http://127.0.0.1:1/jwks", { production: true })).rejects.toThrow(/https/);
    await expect(outboundGetJson("https://10.0.0.1/jwks", { production: true })).rejects.toThrow(/private/);
    const target = createServer((_req, res) => res.writeHead(302, { location: "http://127.0.0.1:1/elsewhere" }).end());
    await new Promise<void>((done) => target.listen(0, "127.0.0.1", done));
    const port = (target.address() as AddressInfo).port;
    try {
      await expect(outboundGetJson(`http://127.0.0.1:${port}/jwks`, { production: false })).rejects.toThrow(/302/);
    } finally {
      await new Promise<void>((done) => target.close(() => done()));
    }
  });
});

describe.each(backends())("identity provider key sets on %s", (backend) => {
  const jwks = new JwksServer();
  beforeAll(() => jwks.start());
  afterAll(() => jwks.stop());

  async function useKeySet(apiKey: string, issuer: string, jwksUrl = jwks.url): Promise<void> {
    await ok(world.url, UpdateTenantExternalJwt, { input: { auth: { externalJwt: { issuer, jwksUrl } } } }, { apiKey });
  }

  // Key sets may be fetched again at once, so rotation is seen without waiting.
  const world = useServer(backend, { jwksMinFetchIntervalSeconds: 0 });

  test("accepts RS256, ES256 and EdDSA tokens signed with a published key", async ({ tenant }) => {
    const keys = await Promise.all((["RS256", "ES256", "EdDSA"] as const).map(signingKey));
    jwks.keys = keys;
    const issuer = newIssuer();
    await useKeySet(tenant.apiKey, issuer);
    const ids = new Set<string>();
    for (const key of keys) {
      const { viewer } = await ok(world.url, ExternalViewer, {}, { token: await sign(key, issuer, "multi-alg") });
      expect(viewer.user?.externalId).toBe("multi-alg");
      ids.add(viewer.user?.id as string);
    }
    expect(ids.size).toBe(1);
  });

  test("a new key id makes the server fetch the key set again (rotation)", async ({ tenant }) => {
    const first = await signingKey("ES256");
    const second = await signingKey("ES256");
    jwks.keys = [first];
    const issuer = newIssuer();
    await useKeySet(tenant.apiKey, issuer);
    await ok(world.url, ExternalViewer, {}, { token: await sign(first, issuer) });
    const before = jwks.fetches;
    // The provider rotates: the new key is published, then used.
    jwks.keys = [first, second];
    await ok(world.url, ExternalViewer, {}, { token: await sign(second, issuer) });
    expect(jwks.fetches).toBe(before + 1);
    // Known keys need no fetch.
    await ok(world.url, ExternalViewer, {}, { token: await sign(first, issuer) });
    await ok(world.url, ExternalViewer, {}, { token: await sign(second, issuer) });
    expect(jwks.fetches).toBe(before + 1);
  });

  test("refuses unpublished keys, HS256 made with the public key, and tokens of an unreachable key set", async ({
    tenant,
  }) => {
    const published = await signingKey("RS256");
    const unpublished = await signingKey("RS256");
    jwks.keys = [published];
    const issuer = newIssuer();
    await useKeySet(tenant.apiKey, issuer);
    await ok(world.url, ExternalViewer, {}, { token: await sign(published, issuer) });
    await fails(world.url, ExternalViewer, {}, { token: await sign(unpublished, issuer) }, "UNAUTHENTICATED");
    // Signed by another key under a published key id.
    await fails(
      world.url,
      ExternalViewer,
      {},
      { token: await sign(unpublished, issuer, "user-1", published.kid) },
      "UNAUTHENTICATED",
    );
    // HS256 with the public key as secret: a key set never verifies HMAC tokens.
    const now = Math.floor(Date.now() / 1000);
    const confused = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256", kid: published.kid })
      .setSubject("user-1")
      .setIssuer(issuer)
      .setExpirationTime(now + 600)
      .sign(new TextEncoder().encode(published.spki));
    await fails(world.url, ExternalViewer, {}, { token: confused }, "UNAUTHENTICATED");

    // A key set nobody serves: refused, and the server goes on answering.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const unreachable = newIssuer();
    await useKeySet(tenant.apiKey, unreachable, `http://127.0.0.1:${port}/jwks`);
    await fails(world.url, ExternalViewer, {}, { token: await sign(published, unreachable) }, "UNAUTHENTICATED");
    const alice = tenant.users[0] as (typeof tenant.users)[0];
    await ok(world.url, Viewer, {}, { token: alice.token });
  });

  describe("with the default fetch interval", () => {
    const limited = useServer(backend);

    test("unknown key ids do not make the server fetch the key set more than once per interval", async ({ tenant }) => {
      const known = await signingKey("ES256");
      jwks.keys = [known];
      const issuer = newIssuer();
      await ok(
        limited.url,
        UpdateTenantExternalJwt,
        { input: { auth: { externalJwt: { issuer, jwksUrl: jwks.url } } } },
        { apiKey: tenant.apiKey },
      );
      await ok(limited.url, ExternalViewer, {}, { token: await sign(known, issuer) });
      const after = jwks.fetches;
      for (let i = 0; i < 3; i++) {
        const stranger = await signingKey("ES256");
        await fails(limited.url, ExternalViewer, {}, { token: await sign(stranger, issuer) }, "UNAUTHENTICATED");
      }
      expect(jwks.fetches).toBe(after);
    });
  });
});
