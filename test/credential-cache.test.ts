/**
 * Requests do not read credentials and grants from storage each time (auth/credential-cache.ts).
 * Every change that ends credentials or changes permissions must take effect on the very next
 * request, here each credential is used once first so that it is cached when the change comes.
 */
import { describe, expect } from "vitest";
import { backends, startServer, type TestServer } from "./helpers/backends.ts";
import { type Auth, fails, ok, request } from "./helpers/client.ts";
import { test, useServer } from "./helpers/world.ts";
import { AuditLog } from "./operations/audit.ts";
import { AssignRole, CreateRole, UnassignRole, UpdateRole } from "./operations/roles.ts";
import { RotateApiKey } from "./operations/tenants.ts";
import { DeleteUser, RevokeUserTokens, UpdateUser, Viewer } from "./operations/users.ts";

describe.each(backends())("cached credentials on %s", (backend) => {
  const world = useServer(backend);

  const works = (auth: Auth, url = world.url) => ok(url, Viewer, {}, auth);
  const refused = (auth: Auth, url = world.url) => fails(url, Viewer, {}, auth, "UNAUTHENTICATED");

  test.for([
    ["revokeUserTokens", "revoke"],
    ["deactivating the user", "deactivate"],
    ["deleting the user", "delete"],
  ] as const)("a cached user token is refused right after %s", async ([, change], { tenant }) => {
    const [alice, bob] = tenant.users as [(typeof tenant.users)[0], (typeof tenant.users)[0]];
    const key = { apiKey: tenant.apiKey };
    await works({ token: alice.token });
    await works({ token: bob.token });
    await works({ token: bob.token });
    if (change === "revoke") await ok(world.url, RevokeUserTokens, { userId: bob.id }, key);
    if (change === "deactivate") await ok(world.url, UpdateUser, { id: bob.id, input: { active: false } }, key);
    if (change === "delete") await ok(world.url, DeleteUser, { id: bob.id }, key);
    await refused({ token: bob.token });
    // Only that user's credentials were forgotten.
    expect((await works({ token: alice.token })).viewer.user?.id).toBe(alice.id);
  });

  test("a cached API key is refused right after the key is rotated", async ({ tenant }) => {
    const old = { apiKey: tenant.apiKey };
    await works(old);
    const { rotateApiKey } = await ok(world.url, RotateApiKey, {}, old);
    await refused(old);
    expect((await works({ apiKey: rotateApiKey.apiKey })).viewer.isService).toBe(true);
  });

  test("cached permissions follow role assignments and role changes at once", async ({ tenant }) => {
    const [, bob] = tenant.users as [(typeof tenant.users)[0], (typeof tenant.users)[0]];
    const key = { apiKey: tenant.apiKey };
    const auth = { token: bob.token };
    // Members may not read the audit log; this caches Bob's grants without tenant:read.
    await fails(world.url, AuditLog, {}, auth, "FORBIDDEN");
    const { createRole } = await ok(
      world.url,
      CreateRole,
      { input: { name: "auditors", permissions: ["tenant:read"] } },
      key,
    );
    await ok(world.url, AssignRole, { userId: bob.id, roleId: createRole.id }, key);
    expect((await ok(world.url, AuditLog, {}, auth)).auditLog.edges.length).toBeGreaterThan(0);
    await ok(world.url, UpdateRole, { id: createRole.id, input: { permissions: ["users:read"] } }, key);
    await fails(world.url, AuditLog, {}, auth, "FORBIDDEN");
    await ok(world.url, UpdateRole, { id: createRole.id, input: { permissions: ["tenant:read"] } }, key);
    expect((await ok(world.url, AuditLog, {}, auth)).auditLog.edges.length).toBeGreaterThan(0);
    await ok(world.url, UnassignRole, { userId: bob.id, roleId: createRole.id }, key);
    await fails(world.url, AuditLog, {}, auth, "FORBIDDEN");
  });

  if (backend === "postgres+redis") {
    test("a revocation on one instance reaches the cache of another", async ({ tenant }) => {
      const [, bob] = tenant.users as [(typeof tenant.users)[0], (typeof tenant.users)[0]];
      let other: TestServer | undefined;
      try {
        other = await startServer(world.database);
        const url = other.url;
        await works({ token: bob.token }, url);
        await ok(world.url, RevokeUserTokens, { userId: bob.id }, { apiKey: tenant.apiKey });
        // Across instances the news travels through Redis: wait for it, within a bound.
        const deadline = Date.now() + 5000;
        let code: unknown;
        while (Date.now() < deadline) {
          const result = await request(url, Viewer, {}, { token: bob.token });
          code = result.errors?.[0]?.extensions?.code;
          if (code === "UNAUTHENTICATED") break;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        expect(code).toBe("UNAUTHENTICATED");
      } finally {
        await other?.stop();
      }
    });
  }
});
