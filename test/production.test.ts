import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/env.ts";
import { backends, createTestDatabase, startServer, type TestDatabase, type TestServer } from "./helpers/backends.ts";
import { fails, ok, request } from "./helpers/client.ts";
import { CreateTenant, DeleteTenant, Tenant } from "./operations/tenants.ts";

// Production mode (NODE_ENV=production) refuses what is only safe on a developer's machine:
// today, a server on which anyone may create tenants.

const ADMIN_KEY = `platform-admin-${randomBytes(16).toString("hex")}`;
const SECRET = `jwt-secret-${randomBytes(16).toString("hex")}`;
/** What production mode needs to start at all. */
const PRODUCTION = { NODE_ENV: "production", PLATFORM_ADMIN_KEY: ADMIN_KEY, JWT_SECRET: SECRET };

function configProblems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).problems;
  }
  return expect.fail(`expected a ConfigError for ${JSON.stringify(env)}`);
}

describe("production mode configuration", () => {
  it("refuses to start without PLATFORM_ADMIN_KEY, naming it", () => {
    const unset: Record<string, string>[] = [
      { NODE_ENV: "production" },
      { NODE_ENV: "production", PLATFORM_ADMIN_KEY: "  " },
    ];
    for (const env of unset) {
      const problems = configProblems(env);
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(/^PLATFORM_ADMIN_KEY: required in production mode \(NODE_ENV=production\)/);
    }
    // A key too short to be a secret is refused as it is outside production mode.
    expect(configProblems({ NODE_ENV: "production", PLATFORM_ADMIN_KEY: "short" })).toEqual([
      "PLATFORM_ADMIN_KEY: must be at least 16 characters",
    ]);
  });

  it("refuses to start without JWT_SECRET, naming it", () => {
    expect(configProblems({ NODE_ENV: "production", PLATFORM_ADMIN_KEY: ADMIN_KEY })).toEqual([
      "JWT_SECRET: required in production mode (NODE_ENV=production): a generated secret would differ per instance and machine",
    ]);
  });

  it("turns GraphiQL and introspection off unless enabled", () => {
    expect(loadConfig(PRODUCTION)).toMatchObject({ graphiql: false, introspection: false });
    expect(loadConfig({ ...PRODUCTION, GRAPHIQL: "true" })).toMatchObject({ graphiql: true, introspection: true });
    expect(loadConfig({ ...PRODUCTION, INTROSPECTION: "true" })).toMatchObject({
      graphiql: false,
      introspection: true,
    });
    expect(loadConfig({})).toMatchObject({ graphiql: true, introspection: true });
    expect(loadConfig({ INTROSPECTION: "false" })).toMatchObject({ graphiql: true, introspection: false });
  });

  it("is on for NODE_ENV=production only", () => {
    expect(loadConfig(PRODUCTION)).toMatchObject({
      production: true,
      platformAdminKey: ADMIN_KEY,
    });
    for (const env of [{}, { NODE_ENV: "development" }, { NODE_ENV: "test" }, { NODE_ENV: "Production" }]) {
      const config = loadConfig(env);
      expect(config.production).toBe(false);
      // Outside production an unset key still leaves tenant creation open (local development).
      expect(config.platformAdminKey).toBeUndefined();
    }
  });
});

describe.each(backends())("production mode on %s", (backend) => {
  let database: TestDatabase;
  let server: TestServer;

  beforeAll(async () => {
    database = await createTestDatabase(backend);
    const { production, platformAdminKey, graphiql, introspection } = loadConfig(PRODUCTION);
    server = await startServer(database, { production, platformAdminKey, graphiql, introspection });
  });
  afterAll(async () => {
    await server?.stop();
    await database?.drop();
  });

  it("createTenant needs X-Platform-Admin-Key", async () => {
    const input = { name: `Tenant ${randomBytes(4).toString("hex")}` };
    // Without the key, or with a wrong one, the caller holds no credential that allows it.
    const refused: Record<string, string>[] = [
      {},
      { "x-platform-admin-key": "" },
      { "x-platform-admin-key": `${ADMIN_KEY}x` },
    ];
    for (const headers of refused) {
      await fails(server.url, CreateTenant, { input }, { headers }, "UNAUTHENTICATED");
    }
    const { createTenant } = await ok(
      server.url,
      CreateTenant,
      { input },
      { headers: { "x-platform-admin-key": ADMIN_KEY } },
    );
    expect(createTenant.tenant.name).toBe(input.name);
    // A tenant's API key is a credential, but not one that creates tenants.
    await fails(server.url, CreateTenant, { input }, { apiKey: createTenant.apiKey }, "FORBIDDEN");
  });

  it("deleteTenant with the platform admin key names the tenant", async () => {
    const admin = { headers: { "x-platform-admin-key": ADMIN_KEY } };
    const name = `Doomed ${randomBytes(4).toString("hex")}`;
    const { createTenant } = await ok(server.url, CreateTenant, { input: { name } }, admin);
    await fails(server.url, DeleteTenant, { confirmName: name }, admin, "BAD_USER_INPUT");
    await fails(
      server.url,
      DeleteTenant,
      { confirmName: name, tenantId: createTenant.tenant.id },
      {},
      "UNAUTHENTICATED",
    );
    const { deleteTenant } = await ok(
      server.url,
      DeleteTenant,
      { confirmName: name, tenantId: createTenant.tenant.id },
      admin,
    );
    expect(deleteTenant).toBe(true);
    await fails(server.url, Tenant, undefined, { apiKey: createTenant.apiKey }, "UNAUTHENTICATED");
  });

  it("serves no GraphiQL page and refuses introspection", async () => {
    const page = await fetch(server.url, { headers: { accept: "text/html" } });
    expect(page.headers.get("content-type") ?? "").not.toContain("text/html");
    await fails(server.url, "{ __schema { queryType { name } } }", undefined, {}, "GRAPHQL_VALIDATION_FAILED");
    await fails(server.url, '{ __type(name: "Query") { name } }', undefined, {}, "GRAPHQL_VALIDATION_FAILED");
    // __typename is not introspection of the schema.
    expect((await request(server.url, "{ __typename }")).data).toEqual({ __typename: "Query" });
  });
});
