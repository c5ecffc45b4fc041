/**
 * The embeddable UI pages (/ui/chat-window, /ui/roster, /ui/participants, /demo) and their
 * assets, served from a build directory (UI_DIST; here a small fixture, as the routes do not
 * care what the files hold): the configuration put in the page, the Content-Security-Policy
 * whose frame-ancestors follow the tenant's embedOrigins, cache headers, what is refused, and
 * that credentials in the pages' query parameters never reach the logs.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { loadConfig } from "../src/env.ts";
import { createLogger, redactSecrets } from "../src/logger.ts";
import { backends, capturingLogger, TEST_JWT_SECRET } from "./helpers/backends.ts";
import { fails, ok, request } from "./helpers/client.ts";
import { freePort, killAll, type Running, runServer, waitFor } from "./helpers/process.ts";
import { test, useServer } from "./helpers/world.ts";
import { AssignRole, CreateRole } from "./operations/roles.ts";
import { CreateTenant, DeleteTenant, TenantEmbedOrigins, UpdateEmbedOrigins } from "./operations/tenants.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const ADMIN_KEY = "platform-admin-key-for-ui-tests";
const PRODUCTION = { NODE_ENV: "production", PLATFORM_ADMIN_KEY: ADMIN_KEY, JWT_SECRET: TEST_JWT_SECRET };

const SCRIPT = 'console.log("chat ui");\n';
const STYLE = "body { margin: 0 }\n";
const INDEX = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="UTF-8" />
    <title>Chat</title>
    <script type="module" crossorigin src="/ui/assets/index-B1a2c3.js"></script>
    <link rel="stylesheet" crossorigin href="/ui/assets/index-D4e5f6.css">
  </head>
  <body><div id="app"></div></body>
</html>
`;

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A build directory as Vite writes it, plus a file that cannot be read (a link to itself). */
function fixtureDist(): string {
  const dir = mkdtempSync(join(tmpdir(), "chat-ui-"));
  dirs.push(dir);
  mkdirSync(join(dir, "assets"));
  writeFileSync(join(dir, "index.html"), INDEX);
  writeFileSync(join(dir, "assets", "index-B1a2c3.js"), SCRIPT);
  writeFileSync(join(dir, "assets", "index-D4e5f6.css"), STYLE);
  writeFileSync(join(dir, "assets", "logo-9z8y.svg"), '<svg xmlns="http://www.w3.org/2000/svg"/>');
  writeFileSync(join(dir, "assets", ".hidden"), "not served");
  symlinkSync("loop-0.js", join(dir, "assets", "loop-0.js"));
  return dir;
}

const POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
];
const policy = (ancestors: string, extra: string[] = []) =>
  [...POLICY, ...extra, `frame-ancestors ${ancestors}`].join("; ");

/** The JSON of the page's `<meta name="chat-config">`, read back as a browser would. */
function pageConfig(html: string): unknown {
  const match = /<meta name="chat-config" content="([^"]*)">\s*<\/head>/.exec(html);
  if (!match) return expect.fail(`no chat-config meta right before </head> in:\n${html}`);
  const decoded = (match[1] as string)
    .replaceAll("&quot;", '"')
    .replaceAll("&#39;", "'")
    .replaceAll("&lt;", "<")
    .replaceAll("&gt;", ">")
    .replaceAll("&amp;", "&");
  return JSON.parse(decoded);
}

/** Writes a request as it is (no URL normalization) and returns the raw response. */
function rawRequest(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let received = "";
    const socket = connect(port, "127.0.0.1", () => socket.write(text));
    socket.on("data", (chunk) => {
      received += chunk;
    });
    socket.on("close", () => resolve(received));
    socket.on("error", reject);
  });
}

describe("UI configuration", () => {
  it("serves /demo outside production mode, and in it only with DEMO=true", () => {
    expect(loadConfig({}).demo).toBe(true);
    expect(loadConfig({ DEMO: "false" }).demo).toBe(false);
    expect(loadConfig(PRODUCTION).demo).toBe(false);
    expect(loadConfig({ ...PRODUCTION, DEMO: "true" }).demo).toBe(true);
    expect(() => loadConfig({ DEMO: "yes" })).toThrow(/DEMO/);
  });

  it("reads the build from ui/dist at the repository root unless UI_DIST says otherwise", () => {
    expect(loadConfig({}).uiDist).toBe(join(root, "ui", "dist"));
    expect(loadConfig({ UI_DIST: "/srv/ui" }).uiDist).toBe("/srv/ui");
  });

  it("redacts credential parameters from any logged text", () => {
    const lines: string[] = [];
    const log = createLogger("info", { write: (line: string) => lines.push(line) });
    log.info(
      { path: "/ui/roster?tenant_id=t1&token=abc.def&api_key=ck_123" },
      'GET https://x.example/cb?code=1&access_token=at-1#refresh_token=rt-1 and "redirect=%3Ftoken%3Dnested"',
    );
    expect(lines).toHaveLength(1);
    for (const secret of ["abc.def", "ck_123", "at-1", "rt-1", "nested"]) expect(lines[0]).not.toContain(secret);
    expect(JSON.parse(lines[0] as string)).toMatchObject({
      path: "/ui/roster?tenant_id=t1&token=[redacted]&api_key=[redacted]",
      msg: 'GET https://x.example/cb?code=1&access_token=[redacted]#refresh_token=[redacted] and "redirect=%3Ftoken%3D[redacted]"',
    });
    // Other parameters, and names alone, stay.
    expect(redactSecrets("tenant_id=1&mytoken=2&token")).toBe("tenant_id=1&mytoken=2&token");
  });
});

describe.each(backends())("UI pages on %s", (backend) => {
  const dist = fixtureDist();
  const captured = capturingLogger();
  const world = useServer(backend, { uiDist: dist, demo: true }, { log: captured.log });
  const origin = () => new URL(world.url).origin;
  const page = (path: string, init?: RequestInit) => fetch(`${origin()}${path}`, init);

  test("a page for a tenant: the build's HTML with its configuration and headers", async ({ tenant }) => {
    for (const name of ["chat-window", "roster", "participants"]) {
      const response = await page(`/ui/${name}?tenant_id=${tenant.id}`);
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8");
      expect(response.headers.get("cache-control")).toBe("no-store");
      expect(response.headers.get("referrer-policy")).toBe("no-referrer");
      expect(response.headers.get("x-content-type-options")).toBe("nosniff");
      expect(response.headers.get("content-security-policy")).toBe(policy("'self'"));
      expect(response.headers.get("x-frame-options")).toBeNull();
      const html = await response.text();
      // The build's own markup is untouched, the meta inserted before </head>.
      expect(html).toContain('<script type="module" crossorigin src="/ui/assets/index-B1a2c3.js"></script>');
      expect(html.replace(/<meta name="chat-config" content="[^"]*">/, "")).toBe(INDEX);
      expect(pageConfig(html)).toEqual({
        page: name,
        tenant: { id: tenant.id, name: expect.stringMatching(/^Tenant /), passwordSignIn: true, selfSignUp: false },
        demo: true,
      });
    }
  });

  test("frame-ancestors follow the tenant's embedOrigins", async ({ tenant }) => {
    const auth = { apiKey: tenant.apiKey };
    const updated = await ok(
      world.url,
      UpdateEmbedOrigins,
      {
        input: {
          embedOrigins: [
            "https://App.Example.com/",
            "http://localhost:5173",
            "https://*.customer.example",
            "https://app.example.com",
          ],
        },
      },
      auth,
    );
    // Lower-cased, the trailing slash dropped, duplicates removed.
    expect(updated.updateTenant.embedOrigins).toEqual([
      "https://app.example.com",
      "http://localhost:5173",
      "https://*.customer.example",
    ]);
    expect((await ok(world.url, TenantEmbedOrigins, {}, auth)).tenant.embedOrigins).toEqual(
      updated.updateTenant.embedOrigins,
    );
    const framed = await page(`/ui/roster?tenant_id=${tenant.id}`);
    expect(framed.headers.get("content-security-policy")).toBe(
      policy("'self' https://app.example.com http://localhost:5173 https://*.customer.example"),
    );

    await ok(world.url, UpdateEmbedOrigins, { input: { embedOrigins: ["*"] } }, auth);
    const anywhere = await page(`/ui/chat-window?tenant_id=${tenant.id.toUpperCase()}`);
    expect(anywhere.headers.get("content-security-policy")).toBe(policy("*"));
    expect((pageConfig(await anywhere.text()) as { tenant: { id: string } }).tenant.id).toBe(tenant.id);

    // Other settings leave the list alone; an empty list clears it.
    await ok(world.url, UpdateEmbedOrigins, { input: { name: "Renamed" } }, auth);
    expect((await ok(world.url, TenantEmbedOrigins, {}, auth)).tenant.embedOrigins).toEqual(["*"]);
    await ok(world.url, UpdateEmbedOrigins, { input: { embedOrigins: [] } }, auth);
    const cleared = await page(`/ui/participants?tenant_id=${tenant.id}`);
    expect(cleared.headers.get("content-security-policy")).toBe(policy("'self'"));
  });

  test("without a valid, active tenant: tenant null, framed by the server's own origin only", async ({ tenant }) => {
    await ok(world.url, UpdateEmbedOrigins, { input: { embedOrigins: ["*"] } }, { apiKey: tenant.apiKey });
    const gone = await ok(world.url, CreateTenant, { input: { name: "Leaving" } });
    await ok(world.url, DeleteTenant, { confirmName: "Leaving" }, { apiKey: gone.createTenant.apiKey });
    await world.server.app.deps.db.sql.query(`UPDATE "Tenant" SET "active" = false WHERE "id" = $1`, [tenant.id]);
    for (const query of [
      "",
      "?tenant_id=",
      "?tenant_id=not-an-id",
      `?tenant_id=${randomUUID()}`,
      `?tenant_id=${gone.createTenant.tenant.id}`,
      `?tenant_id=${tenant.id}`,
    ]) {
      const response = await page(`/ui/chat-window${query}`);
      expect(response.status, query).toBe(200);
      expect(response.headers.get("content-security-policy"), query).toBe(policy("'self'"));
      expect(pageConfig(await response.text()), query).toEqual({ page: "chat-window", tenant: null, demo: true });
    }
  });

  test("the tenant's name stays inside the attribute", async () => {
    const name = `"><script>alert(1)</script>'&amp;`;
    const created = await ok(world.url, CreateTenant, { input: { name } });
    const html = await (await page(`/ui/roster?tenant_id=${created.createTenant.tenant.id}`)).text();
    expect(html).not.toContain("<script>alert(1)");
    expect(html.match(/<script/g)).toHaveLength(1);
    expect(pageConfig(html)).toMatchObject({ tenant: { name } });
  });

  test("/demo: no tenant, may frame the pages, framed only by its own origin", async ({ tenant }) => {
    const response = await page(`/demo?api_key=${tenant.apiKey}&tenant_id=${tenant.id}`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-security-policy")).toBe(policy("'self'", ["frame-src 'self'"]));
    expect(response.headers.get("x-frame-options")).toBe("SAMEORIGIN");
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(pageConfig(await response.text())).toEqual({ page: "demo", tenant: null, demo: true });
    // Only the exact paths.
    for (const path of ["/demo/", "/ui/demo", "/ui/chat-window/x", "/ui/"]) expect((await page(path)).status).toBe(404);
  });

  test("assets: content types, cached for good, HEAD", async () => {
    for (const [name, type, body] of [
      ["index-B1a2c3.js", "text/javascript; charset=utf-8", SCRIPT],
      ["index-D4e5f6.css", "text/css; charset=utf-8", STYLE],
      ["logo-9z8y.svg", "image/svg+xml", '<svg xmlns="http://www.w3.org/2000/svg"/>'],
    ] as const) {
      const response = await page(`/ui/assets/${name}`);
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toBe(type);
      expect(response.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
      expect(response.headers.get("x-content-type-options")).toBe("nosniff");
      expect(await response.text()).toBe(body);
    }
    const head = await page("/ui/assets/index-B1a2c3.js", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe(String(Buffer.byteLength(SCRIPT)));
    expect(await head.text()).toBe("");
    // A file added by a rebuild is served; one read before stays as it was read.
    writeFileSync(join(dist, "assets", "chunk-N3w.js"), "export {};\n");
    expect(await (await page("/ui/assets/chunk-N3w.js")).text()).toBe("export {};\n");
  });

  test("assets: nothing outside the assets directory, nothing missing", async () => {
    for (const path of [
      "/ui/assets/missing-1.js",
      "/ui/assets/..%2Findex.html",
      "/ui/assets/..%2F..%2Fpackage.json",
      "/ui/assets/%2e%2e%2fpackage.json",
      "/ui/assets/.hidden",
      "/ui/assets/",
      "/ui/assets/nested/index-B1a2c3.js",
    ]) {
      const response = await page(path);
      expect(response.status, path).toBe(404);
      expect(await response.json(), path).toEqual({
        errors: [{ message: "No such file", extensions: { code: "NOT_FOUND" } }],
      });
    }
    // Paths that resolve outside the assets are no asset either.
    for (const path of ["/ui/assets/..", "/ui/assets/../index.html"]) {
      const response = await page(path);
      expect(response.status, path).toBe(404);
      expect(await response.text(), path).not.toContain("chat-config");
    }
    // As written on the wire, before any URL normalization.
    const port = Number(new URL(world.url).port);
    for (const path of ["/ui/assets/../x", "/ui/assets/../../package.json", "/ui/assets/%2e%2e/index.html"]) {
      const response = await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
      expect(response, path).toMatch(/^HTTP\/1\.1 404 /);
      expect(response, path).not.toContain("chat-graphql-api");
      expect(response, path).not.toContain("chat-config");
    }
  });

  test("without a build: 503 with what to do; assets 404", async ({ tenant }) => {
    renameSync(join(dist, "index.html"), join(dist, "index.html.away"));
    try {
      for (const path of [`/ui/chat-window?tenant_id=${tenant.id}`, "/demo"]) {
        const response = await page(path);
        expect(response.status).toBe(503);
        expect(await response.json()).toEqual({
          errors: [
            { message: "The UI is not built: run `npm run build:ui`", extensions: { code: "SERVICE_UNAVAILABLE" } },
          ],
        });
      }
    } finally {
      renameSync(join(dist, "index.html.away"), join(dist, "index.html"));
    }
    expect((await page(`/ui/roster?tenant_id=${tenant.id}`)).status).toBe(200);
  });

  test("embedOrigins are validated, naming the entry", async ({ tenant }) => {
    const auth = { apiKey: tenant.apiKey };
    const invalid: [string[], string][] = [
      [["https://app.example.com/chat"], '"https://app.example.com/chat" is not'],
      [["https://app.example.com?x=1"], '"https://app.example.com?x=1" is not'],
      [["https://app.example.com#top"], '"https://app.example.com#top" is not'],
      [["ftp://files.example.com"], '"ftp://files.example.com" is not'],
      [["app.example.com"], '"app.example.com" is not'],
      [["https://user@app.example.com"], '"https://user@app.example.com" is not'],
      [["https://app.*.example.com"], '"https://app.*.example.com" is not'],
      [["https://app.example.com:99999"], '"https://app.example.com:99999" is not'],
      [["https://a.example.com; script-src *"], '"https://a.example.com; script-src *" is not'],
      [["'self'"], `"'self'" is not`],
    ];
    for (const [embedOrigins, message] of invalid) {
      const error = await fails(world.url, UpdateEmbedOrigins, { input: { embedOrigins } }, auth, "BAD_USER_INPUT");
      expect(error.message).toContain("input.embedOrigins.0 ");
      expect(error.message).toContain(message);
      expect(error.extensions?.field).toBe("input.embedOrigins.0");
    }
    const second = await fails(
      world.url,
      UpdateEmbedOrigins,
      { input: { embedOrigins: ["https://ok.example.com", "javascript:alert(1)"] } },
      auth,
      "BAD_USER_INPUT",
    );
    expect(second.message).toContain('input.embedOrigins.1 "javascript:alert(1)" is not');
    // `*` allows every origin: alone, or not at all.
    const mixed = await fails(
      world.url,
      UpdateEmbedOrigins,
      { input: { embedOrigins: ["*", "https://app.example.com"] } },
      auth,
      "BAD_USER_INPUT",
    );
    expect(mixed.message).toBe("input.embedOrigins * allows every origin and must be the only entry");
    const many = Array.from({ length: 21 }, (_, i) => `https://s${i}.example.com`);
    const tooMany = await fails(
      world.url,
      UpdateEmbedOrigins,
      { input: { embedOrigins: many } },
      auth,
      "BAD_USER_INPUT",
    );
    expect(tooMany.message).toBe("input.embedOrigins accepts at most 20 origins");
    // Nothing was stored by the refused updates; 20 are fine, so are IP addresses and ports.
    expect((await ok(world.url, TenantEmbedOrigins, {}, auth)).tenant.embedOrigins).toEqual([]);
    await ok(world.url, UpdateEmbedOrigins, { input: { embedOrigins: many.slice(0, 20) } }, auth);
    const addresses = ["http://127.0.0.1:8080", "http://[::1]:3000", "https://chat.example.com:8443"];
    expect(
      (await ok(world.url, UpdateEmbedOrigins, { input: { embedOrigins: addresses } }, auth)).updateTenant.embedOrigins,
    ).toEqual(addresses);
  });

  test("only who may update the tenant sets embedOrigins", async ({ tenant }) => {
    const [alice, bob] = tenant.users as [(typeof tenant.users)[0], (typeof tenant.users)[0]];
    const input = { embedOrigins: ["https://app.example.com"] };
    await fails(world.url, UpdateEmbedOrigins, { input }, { token: alice.token }, "FORBIDDEN");
    // Without tenant:read the list is not readable either.
    await fails(world.url, TenantEmbedOrigins, {}, { token: alice.token }, "FORBIDDEN");
    const role = await ok(
      world.url,
      CreateRole,
      { input: { name: `embedder-${randomBytes(3).toString("hex")}`, permissions: ["tenant:update", "tenant:read"] } },
      { apiKey: tenant.apiKey },
    );
    await ok(world.url, AssignRole, { userId: bob.id, roleId: role.createRole.id }, { apiKey: tenant.apiKey });
    const updated = await ok(world.url, UpdateEmbedOrigins, { input }, { token: bob.token });
    expect(updated.updateTenant.embedOrigins).toEqual(input.embedOrigins);
    const page = await fetch(`${origin()}/ui/roster?tenant_id=${tenant.id}`);
    expect(page.headers.get("content-security-policy")).toBe(policy("'self' https://app.example.com"));
  });

  test("credentials in the pages' parameters never reach the logs, on success or failure", async ({ tenant }) => {
    const [alice] = tenant.users as [(typeof tenant.users)[0]];
    const before = captured.lines.length;
    const secrets = `token=${alice.token}&api_key=${tenant.apiKey}&access_token=${alice.token}x&refresh_token=r-${alice.token}`;
    await page(`/ui/chat-window?tenant_id=${tenant.id}&${secrets}`);
    await page(`/demo?${secrets}`);
    await page(`/ui/assets/missing.js?${secrets}`);
    // A route that fails (the file cannot be read) logs its path, redacted.
    expect((await page(`/ui/assets/loop-0.js?${secrets}`)).status).toBe(500);
    await fetch(`${world.url}?query=${encodeURIComponent("{ viewer { isService } }")}&${secrets}`);
    await request(`${world.url}?${secrets}`, "query { viewer { isService } }", {}, { token: `${alice.token}-bad` });
    // A WebSocket upgrade and a malformed request carrying them in the URL.
    await new Promise<void>((resolve) => {
      const socket = new WebSocket(`${world.wsUrl}?${secrets}`, "graphql-transport-ws");
      socket.on("open", () => socket.close());
      socket.on("close", () => resolve());
      socket.on("error", () => resolve());
    });
    const port = Number(new URL(world.url).port);
    const malformed = await rawRequest(port, `GET /ui/roster?${secrets} HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n`);
    expect(malformed).toMatch(/^HTTP\/1\.1 400 /);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const lines = captured.lines.slice(before);
    const text = JSON.stringify(lines);
    for (const secret of [alice.token, tenant.apiKey]) expect(text).not.toContain(secret);
    expect(lines).toContainEqual(
      expect.objectContaining({
        msg: "route failed",
        path: "/ui/assets/loop-0.js?token=[redacted]&api_key=[redacted]&access_token=[redacted]&refresh_token=[redacted]",
      }),
    );
    expect(lines).toContainEqual(expect.objectContaining({ msg: "malformed HTTP request" }));
  });
});

describe("UI pages of a production server process", () => {
  const servers: Running[] = [];
  const dist = fixtureDist();
  afterAll(async () => {
    await killAll(servers);
  });

  it("serves the pages from UI_DIST, /demo only with DEMO=true, and logs no credentials", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "chat-ui-data-"));
    dirs.push(dataDir);
    const start = async (env: Record<string, string>) => {
      const port = await freePort();
      const server = runServer({
        ...PRODUCTION,
        DATA_DIR: join(dataDir, String(port)),
        PORT: String(port),
        HOST: "127.0.0.1",
        LOG_LEVEL: "debug",
        UI_DIST: dist,
        ...env,
      });
      servers.push(server);
      await waitFor(server, /chat API ready/);
      return { server, origin: `http://127.0.0.1:${port}` };
    };
    const off = await start({});
    const secret = `token=secret-${randomBytes(8).toString("hex")}`;
    const demoOff = await fetch(`${off.origin}/demo?${secret}`);
    expect(demoOff.status).toBe(404);
    expect(await demoOff.json()).toEqual({ errors: [{ message: "Not found", extensions: { code: "NOT_FOUND" } }] });
    const roster = await fetch(`${off.origin}/ui/roster?${secret}`);
    expect(roster.status).toBe(200);
    expect(pageConfig(await roster.text())).toEqual({ page: "roster", tenant: null, demo: false });
    expect((await fetch(`${off.origin}/ui/assets/index-B1a2c3.js`)).status).toBe(200);
    expect((await fetch(`${off.origin}/ui/assets/loop-0.js?${secret}`)).status).toBe(500);
    await rawRequest(Number(new URL(off.origin).port), `GET /demo?${secret} HTTP/1.1\r\nBad\r\n\r\n`);
    off.server.child.kill("SIGTERM");
    await off.server.exited;
    expect(off.server.output()).toContain("route failed");
    expect(off.server.output()).not.toContain(secret.slice("token=".length));

    const on = await start({ DEMO: "true" });
    const demoOn = await fetch(`${on.origin}/demo`);
    expect(demoOn.status).toBe(200);
    expect(demoOn.headers.get("content-security-policy")).toBe(policy("'self'", ["frame-src 'self'"]));
    expect(pageConfig(await demoOn.text())).toEqual({ page: "demo", tenant: null, demo: true });
    // Two embedded servers start one after the other: each takes seconds on a loaded machine.
  }, 120_000);
});
