import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fails, ok, subscribe, wsClient } from "./helpers/client.ts";
import { runServer as run, waitFor } from "./helpers/process.ts";
import { MessageAdded } from "./operations/events.ts";
import { CreateTenant, Tenant } from "./operations/tenants.ts";

describe("the server process", () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it("refuses to start on invalid configuration, naming each bad value", async () => {
    const running = run({ PORT: "eighty", JWT_SECRET: "short", REDIS_URL: "http://nope", LOG_LEVEL: "loud" });
    expect(await running.exited).toBe(2);
    const output = running.output();
    expect(output).toContain("PORT");
    expect(output).toContain("JWT_SECRET: must be at least 32 characters");
    expect(output).toContain("REDIS_URL: must be a redis:// or rediss:// URL");
    expect(output).toContain("LOG_LEVEL");
  });

  it("refuses to start in production mode without PLATFORM_ADMIN_KEY", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "chat-process-"));
    dirs.push(dataDir);
    const running = run({ NODE_ENV: "production", DATA_DIR: dataDir, PORT: "0", HOST: "127.0.0.1" });
    // A server that starts anyway is stopped rather than left behind.
    const exited = await Promise.race([
      running.exited,
      waitFor(running, /chat API ready/).then(
        () => "started",
        () => "not started",
      ),
    ]);
    running.child.kill("SIGTERM");
    expect(exited).toBe(2);
    expect(running.output()).toContain("PLATFORM_ADMIN_KEY: required in production mode (NODE_ENV=production)");
  });

  it("needs JWT_SECRET when DATABASE_URL is set", async () => {
    const running = run({ DATABASE_URL: "postgres://127.0.0.1:1/none", PORT: "0" });
    expect(await running.exited).toBe(1);
    expect(running.output()).toContain("JWT_SECRET is required when DATABASE_URL is set");
  });

  it("starts embedded with no configuration, keeps data across restarts, and shuts down cleanly on SIGTERM", {
    timeout: 120_000,
  }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "chat-data-"));
    dirs.push(dataDir);
    const first = run({ DATA_DIR: dataDir, PORT: "0", HOST: "127.0.0.1" });
    const [, url] = (await waitFor(first, /GraphQL and GraphiQL at (http:\/\/[^\s,]+)/)) as [string, string];
    expect(first.output()).toContain("JWT_SECRET is not set: generated one");
    expect(existsSync(join(dataDir, "jwt-secret"))).toBe(true);
    const health = await fetch(new URL("/ready", url));
    expect(await health.json()).toEqual({ warm: true, database: true, pubsub: true });
    const { createTenant } = await ok(url, CreateTenant, { input: { name: "Persisted" } });

    const client = wsClient(url.replace("http", "ws"), { apiKey: createTenant.apiKey });
    const sub = subscribe(client, MessageAdded, {});
    await new Promise((resolve) => setTimeout(resolve, 300));
    first.child.kill("SIGTERM");
    expect(await first.exited).toBe(0);
    expect((await client.closed).code).toBe(1012);
    await sub.done;
    await client.dispose();

    // Same data dir: the tenant and its key survive the restart.
    const second = run({ DATA_DIR: dataDir, PORT: "0", HOST: "127.0.0.1" });
    const [, url2] = (await waitFor(second, /GraphQL and GraphiQL at (http:\/\/[^\s,]+)/)) as [string, string];
    expect(second.output()).not.toContain("JWT_SECRET is not set");
    const { tenant } = await ok(url2, Tenant, {}, { apiKey: createTenant.apiKey });
    expect(tenant.id).toBe(createTenant.tenant.id);
    second.child.kill("SIGINT");
    expect(await second.exited).toBe(0);
  });

  it("restricts createTenant to PLATFORM_ADMIN_KEY when it is set", { timeout: 90_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "chat-data-"));
    dirs.push(dataDir);
    const adminKey = "platform-admin-key-for-tests";
    const running = run({ DATA_DIR: dataDir, PORT: "0", HOST: "127.0.0.1", PLATFORM_ADMIN_KEY: adminKey });
    const [, url] = (await waitFor(running, /GraphQL and GraphiQL at (http:\/\/[^\s,]+)/)) as [string, string];
    await fails(url, CreateTenant, { input: { name: "No" } }, {}, "UNAUTHENTICATED");
    await fails(
      url,
      CreateTenant,
      { input: { name: "No" } },
      { headers: { "x-platform-admin-key": "wrong-key-wrong-key" } },
      "UNAUTHENTICATED",
    );
    await ok(url, CreateTenant, { input: { name: "Yes" } }, { headers: { "x-platform-admin-key": adminKey } });
    running.child.kill("SIGTERM");
    expect(await running.exited).toBe(0);
  });
});
