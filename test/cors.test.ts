import { randomUUID } from "node:crypto";
import { print } from "graphql";
import { describe, expect, it } from "vitest";
import WebSocket from "ws";
import { ConfigError, loadConfig } from "../src/env.ts";
import { backends, TEST_JWT_SECRET } from "./helpers/backends.ts";
import { ok, subscribe } from "./helpers/client.ts";
import type { TestTenant, TestUser } from "./helpers/fixtures.ts";
import { test, useServer } from "./helpers/world.ts";
import { Viewer } from "./operations/users.ts";

// CORS_ORIGINS: which browser pages of other origins may call the API, over HTTP (CORS
// headers) and over WebSocket (the upgrade's Origin header).

const APP = "https://app.example.com";
const EVIL = "https://evil.example.net";
const ADMIN_KEY = "platform-admin-key-for-cors-tests";

describe("CORS_ORIGINS configuration", () => {
  it("defaults to any origin outside production and to the server's own in production", () => {
    expect(loadConfig({}).corsOrigins).toBe("*");
    expect(loadConfig({ NODE_ENV: "development", CORS_ORIGINS: " " }).corsOrigins).toBe("*");
    expect(
      loadConfig({ NODE_ENV: "production", PLATFORM_ADMIN_KEY: ADMIN_KEY, JWT_SECRET: TEST_JWT_SECRET }).corsOrigins,
    ).toEqual([]);
  });

  it("takes a comma-separated list of origins, or *", () => {
    expect(loadConfig({ CORS_ORIGINS: "https://App.Example.com/, http://localhost:5173" }).corsOrigins).toEqual([
      APP,
      "http://localhost:5173",
    ]);
    expect(
      loadConfig({
        NODE_ENV: "production",
        PLATFORM_ADMIN_KEY: ADMIN_KEY,
        JWT_SECRET: TEST_JWT_SECRET,
        CORS_ORIGINS: APP,
      }).corsOrigins,
    ).toEqual([APP]);
    expect(
      loadConfig({
        NODE_ENV: "production",
        PLATFORM_ADMIN_KEY: ADMIN_KEY,
        JWT_SECRET: TEST_JWT_SECRET,
        CORS_ORIGINS: "*",
      }).corsOrigins,
    ).toBe("*");
  });

  it("refuses entries that are not origins, naming the variable", () => {
    for (const entry of [
      "app.example.com",
      "https://app.example.com/chat",
      "ftp://files.example.com",
      "https://a.example.com?x=1",
    ]) {
      let problems: string[] = [];
      try {
        loadConfig({ CORS_ORIGINS: `${APP},${entry}` });
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        problems = (error as ConfigError).problems;
      }
      expect(problems).toEqual([`CORS_ORIGINS: "${entry}" is not an origin like https://app.example.com (or *)`]);
    }
  });
});

/** An HTTP request from a browser page of `origin` (none: a non-browser client). */
function from(origin: string | null, init: RequestInit = {}): RequestInit {
  const headers = new Headers(init.headers);
  if (origin) headers.set("origin", origin);
  return { ...init, headers };
}

const preflight = (origin: string): RequestInit =>
  from(origin, {
    method: "OPTIONS",
    headers: {
      "access-control-request-method": "POST",
      "access-control-request-headers": "authorization,content-type",
    },
  });

const graphqlPost = (origin: string | null): RequestInit =>
  from(origin, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query: print(Viewer) }),
  });

/** The status of a WebSocket upgrade with the given Origin header: 101 when the socket opened. */
function upgrade(wsUrl: string, origin: string | null): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(wsUrl, "graphql-transport-ws", origin ? { origin } : {});
    socket.once("open", () => {
      socket.close();
      resolve(101);
    });
    socket.once("unexpected-response", (_request, response) => {
      resolve(response.statusCode ?? 0);
      socket.terminate();
    });
    socket.once("error", reject);
  });
}

const aliceOf = (tenant: TestTenant) => tenant.users[0] as TestUser;

/** The server's own origin, as a browser page served from it would send it. */
const ownOrigin = (url: string) => new URL(url).origin;

describe.each(backends())("CORS on %s", (backend) => {
  describe("with CORS_ORIGINS set", () => {
    const world = useServer(backend, { corsOrigins: [APP, "http://localhost:5173"] });
    const base = () => new URL(world.url).origin;

    it("answers a preflight from a listed origin with its CORS headers", async () => {
      const response = await fetch(world.url, preflight(APP));
      expect(response.status).toBe(204);
      expect(response.headers.get("access-control-allow-origin")).toBe(APP);
      expect(response.headers.get("access-control-allow-methods")).toContain("POST");
      expect(response.headers.get("access-control-allow-headers")).toBe("authorization,content-type");
      expect(response.headers.get("access-control-allow-credentials")).toBeNull();
      expect(response.headers.get("vary")).toContain("Origin");
    });

    it("answers a preflight from any other origin without them", async () => {
      const response = await fetch(world.url, preflight(EVIL));
      expect(response.status).toBe(204);
      expect(response.headers.get("access-control-allow-origin")).toBeNull();
      expect(response.headers.get("access-control-allow-headers")).toBeNull();
      expect(response.headers.get("vary")).toContain("Origin");
    });

    test("sets Access-Control-Allow-Origin on GraphQL responses for listed origins only", async ({ tenant }) => {
      const auth = { authorization: `Bearer ${aliceOf(tenant).token}` };
      const allowed = await fetch(world.url, from(APP, graphqlPost(null)));
      expect(allowed.headers.get("access-control-allow-origin")).toBe(APP);
      const refused = await fetch(world.url, from(EVIL, graphqlPost(null)));
      // The server still answers: the browser is what withholds the response from the page.
      expect(refused.status).toBe(200);
      expect(refused.headers.get("access-control-allow-origin")).toBeNull();
      expect(refused.headers.get("vary")).toContain("Origin");
      const signedIn = await fetch(
        world.url,
        from("http://localhost:5173", {
          ...graphqlPost(null),
          headers: { ...auth, "content-type": "application/json" },
        }),
      );
      expect(signedIn.headers.get("access-control-allow-origin")).toBe("http://localhost:5173");
      const body = (await signedIn.json()) as { data?: { viewer?: { user?: { name: string } } } };
      expect(body.data?.viewer?.user?.name).toBe("Alice");
    });

    it("applies the same rule to the routes beside GraphQL", async () => {
      for (const path of ["/health", "/ready", `/attachments/${randomUUID()}`, "/auth/google/start"]) {
        const allowed = await fetch(`${base()}${path}`, from(APP, { redirect: "manual" }));
        expect(allowed.headers.get("access-control-allow-origin"), path).toBe(APP);
        const refused = await fetch(`${base()}${path}`, from(EVIL, { redirect: "manual" }));
        expect(refused.headers.get("access-control-allow-origin"), path).toBeNull();
        const preflighted = await fetch(`${base()}${path}`, preflight(APP));
        expect(preflighted.headers.get("access-control-allow-origin"), path).toBe(APP);
      }
    });

    it("always allows the server's own origin and requests without an Origin", async () => {
      const own = await fetch(world.url, from(base(), graphqlPost(null)));
      expect(own.headers.get("access-control-allow-origin")).toBe(base());
      const plain = await fetch(world.url, graphqlPost(null));
      expect(plain.status).toBe(200);
      expect(plain.headers.get("access-control-allow-origin")).toBeNull();
    });

    it("refuses a WebSocket upgrade from an unlisted origin with 403", async () => {
      expect(await upgrade(world.wsUrl, EVIL)).toBe(403);
      expect(await upgrade(world.wsUrl, APP)).toBe(101);
      expect(await upgrade(world.wsUrl, ownOrigin(world.url))).toBe(101);
      expect(await upgrade(world.wsUrl, null)).toBe(101);
    });
  });

  describe("production default (same origin only)", () => {
    const { corsOrigins } = loadConfig({
      NODE_ENV: "production",
      PLATFORM_ADMIN_KEY: ADMIN_KEY,
      JWT_SECRET: TEST_JWT_SECRET,
    });
    const world = useServer(backend, { corsOrigins });

    it("sends CORS headers to the server's own origin only", async () => {
      const foreign = await fetch(world.url, from(APP, graphqlPost(null)));
      expect(foreign.headers.get("access-control-allow-origin")).toBeNull();
      const foreignPreflight = await fetch(world.url, preflight(APP));
      expect(foreignPreflight.headers.get("access-control-allow-origin")).toBeNull();
      const own = ownOrigin(world.url);
      const same = await fetch(world.url, from(own, graphqlPost(null)));
      expect(same.headers.get("access-control-allow-origin")).toBe(own);
    });

    test("refuses WebSocket upgrades from other origins, accepts clients without an Origin", async ({
      tenant,
      sockets,
    }) => {
      expect(await upgrade(world.wsUrl, APP)).toBe(403);
      expect(await upgrade(world.wsUrl, ownOrigin(world.url))).toBe(101);
      // A non-browser client (no Origin) connects and runs operations as before.
      const client = sockets.open({ token: aliceOf(tenant).token });
      const result = await subscribe(client, Viewer).next();
      expect(result.errors).toBeUndefined();
      expect(result.data?.viewer?.user?.name).toBe("Alice");
    });
  });

  describe("development default (any origin)", () => {
    const world = useServer(backend);

    test("allows every origin over HTTP and WebSocket", async ({ tenant }) => {
      const response = await fetch(world.url, from(EVIL, graphqlPost(null)));
      expect(response.headers.get("access-control-allow-origin")).toBe(EVIL);
      const pre = await fetch(world.url, preflight(EVIL));
      expect(pre.headers.get("access-control-allow-origin")).toBe(EVIL);
      expect(await upgrade(world.wsUrl, EVIL)).toBe(101);
      await ok(world.url, Viewer, undefined, { token: aliceOf(tenant).token });
    });
  });
});
