import { randomBytes } from "node:crypto";
import { describe, expect } from "vitest";
import { backends } from "./helpers/backends.ts";
import { fails, ok, request, subscribe } from "./helpers/client.ts";
import { createTenant } from "./helpers/fixtures.ts";
import { newIssuer, newSecret, type Provider, providerToken, unsignedToken } from "./helpers/identity-provider.ts";
import { test, useServer } from "./helpers/world.ts";
import { AuditLog } from "./operations/audit.ts";
import { Conversation, CreateGroup } from "./operations/conversations.ts";
import { ExternalViewer, TenantExternalJwt, UpdateTenantExternalJwt } from "./operations/external-jwt.ts";
import { CreateUser, DeleteUser, UpdateUser, Users, Viewer } from "./operations/users.ts";

describe.each(backends())("tokens from the tenant's identity provider on %s", (backend) => {
  const world = useServer(backend);

  async function withProvider(apiKey: string, audience?: string): Promise<Provider> {
    const provider = { issuer: newIssuer(), secret: newSecret(), audience };
    await ok(
      world.url,
      UpdateTenantExternalJwt,
      { input: { auth: { externalJwt: { issuer: provider.issuer, audience, hmacSecret: provider.secret } } } },
      { apiKey },
    );
    return provider;
  }

  test("the setting is written with the API key, read back without its secret, and cleared with null", async ({
    tenant,
  }) => {
    const issuer = newIssuer();
    const secret = newSecret();
    const { updateTenant } = await ok(
      world.url,
      UpdateTenantExternalJwt,
      { input: { auth: { externalJwt: { issuer, hmacSecret: secret, groupsClaim: "roles" } } } },
      { apiKey: tenant.apiKey },
    );
    expect(updateTenant.externalJwt).toEqual({
      issuer,
      audience: null,
      jwksUrl: null,
      hasHmacSecret: true,
      userIdClaim: "sub",
      nameClaim: "name",
      emailClaim: "email",
      groupsClaim: "roles",
    });
    // The secret is not in the audit log either.
    const { auditLog } = await ok(world.url, AuditLog, { first: 5 }, { apiKey: tenant.apiKey });
    const logged = auditLog.edges.find((e) => e.node.action === "tenant.updated");
    expect(JSON.stringify(logged?.node.details)).toContain(issuer);
    expect(JSON.stringify(auditLog)).not.toContain(secret);
    const raw = await request(world.url, "{ tenant { externalJwt { hmacSecret } } }", {}, { apiKey: tenant.apiKey });
    expect(raw.errors?.[0]?.extensions?.code).toBe("GRAPHQL_VALIDATION_FAILED");

    // A member without tenant:update cannot set it, nor read it without tenant:read.
    const member = tenant.users[0] as (typeof tenant.users)[0];
    await fails(
      world.url,
      UpdateTenantExternalJwt,
      { input: { auth: { externalJwt: { issuer: newIssuer(), hmacSecret: newSecret() } } } },
      { token: member.token },
      "FORBIDDEN",
    );
    await fails(world.url, TenantExternalJwt, {}, { token: member.token }, "FORBIDDEN");

    await ok(world.url, UpdateTenantExternalJwt, { input: { auth: { externalJwt: null } } }, { apiKey: tenant.apiKey });
    const { tenant: read } = await ok(world.url, TenantExternalJwt, {}, { apiKey: tenant.apiKey });
    expect(read.externalJwt).toBeNull();
  });

  test("refuses a short secret, both or neither key source, this server's issuer, and a plain http JWKS URL", async ({
    tenant,
  }) => {
    const auth = { apiKey: tenant.apiKey };
    const bad = [
      { issuer: newIssuer(), hmacSecret: "x".repeat(31) },
      { issuer: newIssuer() },
      { issuer: newIssuer(), hmacSecret: newSecret(), jwksUrl: "https://idp.example.com/jwks" },
      { issuer: "chat-api", hmacSecret: newSecret() },
      { issuer: newIssuer(), jwksUrl: "http://idp.example.com/jwks" },
      { issuer: newIssuer(), jwksUrl: "ftp://idp.example.com/jwks" },
    ];
    for (const externalJwt of bad) {
      await fails(world.url, UpdateTenantExternalJwt, { input: { auth: { externalJwt } } }, auth, "BAD_USER_INPUT");
    }
    const { tenant: read } = await ok(world.url, TenantExternalJwt, {}, auth);
    expect(read.externalJwt).toBeNull();
  });

  test("an issuer names one tenant: a second tenant gets CONFLICT unless both set different audiences", async ({
    tenant,
  }) => {
    const other = await createTenant(world.url, []);
    const shared = newIssuer();
    const set = (apiKey: string, audience?: string) =>
      request(
        world.url,
        UpdateTenantExternalJwt,
        { input: { auth: { externalJwt: { issuer: shared, audience, hmacSecret: newSecret() } } } },
        { apiKey },
      );
    expect((await set(tenant.apiKey)).errors).toBeUndefined();
    expect((await set(other.apiKey)).errors?.[0]?.extensions?.code).toBe("CONFLICT");
    expect((await set(other.apiKey, "app-b")).errors?.[0]?.extensions?.code).toBe("CONFLICT");
    // With an audience each, they can share the issuer.
    expect((await set(tenant.apiKey, "app-a")).errors).toBeUndefined();
    expect((await set(other.apiKey, "app-b")).errors).toBeUndefined();
    expect((await set(other.apiKey, "app-a")).errors?.[0]?.extensions?.code).toBe("CONFLICT");
    // The same tenant may write its own setting again.
    expect((await set(tenant.apiKey, "app-a")).errors).toBeUndefined();
  });

  test("a valid token works on HTTP and WebSocket; its user is provisioned once and found again", async ({
    tenant,
    sockets,
  }) => {
    const provider = await withProvider(tenant.apiKey);
    const first = await providerToken(provider, { sub: "u-42", name: "Dana", email: "Dana@Example.com" });
    const { viewer } = await ok(world.url, ExternalViewer, {}, { token: first });
    expect(viewer.isService).toBe(false);
    expect(viewer.user).toMatchObject({ name: "Dana", email: "dana@example.com", externalId: "u-42" });
    const userId = viewer.user?.id;

    const second = await providerToken(provider, { sub: "u-42", name: "Dana" });
    expect(second).not.toBe(first);
    const again = await ok(world.url, ExternalViewer, {}, { token: second });
    expect(again.viewer.user?.id).toBe(userId);

    const socket = sockets.open({ token: second });
    const result = await subscribe(socket, ExternalViewer).next();
    expect(result.errors).toBeUndefined();
    expect(result.data?.viewer.user?.id).toBe(userId);

    // The provisioned user is a member of the tenant like any other: it can create a group.
    const { createGroup } = await ok(world.url, CreateGroup, { input: { name: "From the IdP" } }, { token: first });
    expect(createGroup.members.map((m) => m.user.id)).toEqual([userId]);
  });

  test("a user with the same email is never linked: the provisioned user is a new one without the email", async ({
    tenant,
  }) => {
    const email = `shared-${randomBytes(4).toString("hex")}@example.com`;
    const { createUser } = await ok(
      world.url,
      CreateUser,
      { input: { name: "Local", email } },
      { apiKey: tenant.apiKey },
    );
    const provider = await withProvider(tenant.apiKey);
    const token = await providerToken(provider, { sub: "someone", name: "Impostor", email });
    const { viewer } = await ok(world.url, ExternalViewer, {}, { token });
    expect(viewer.user?.id).not.toBe(createUser.id);
    expect(viewer.user).toMatchObject({ name: "Impostor", email: null, externalId: "someone" });
  });

  test("expired, not yet valid, wrongly signed, unsigned, wrong issuer or audience: UNAUTHENTICATED", async ({
    tenant,
    sockets,
  }) => {
    const provider = await withProvider(tenant.apiKey, "chat-app");
    const valid = await providerToken(provider);
    await ok(world.url, ExternalViewer, {}, { token: valid });
    const refused = [
      await providerToken(provider, { expiresIn: -60 }),
      await providerToken(provider, { noExpiry: true }),
      await providerToken(provider, { notBefore: 300 }),
      await providerToken(provider, { secret: newSecret() }),
      unsignedToken(provider),
      await providerToken(provider, { issuer: newIssuer() }),
      await providerToken(provider, { audience: "another-app" }),
    ];
    for (const token of refused) {
      await fails(world.url, ExternalViewer, {}, { token }, "UNAUTHENTICATED");
    }
    // Over WebSocket the connection is refused (4403) and nothing runs.
    const socket = sockets.open({ token: refused[2] as string }, { keepOpen: true });
    const closed = await socket.closed;
    expect(closed.code).toBe(4403);
  });

  test("a foreign tenant's token reaches only its own tenant", async ({ tenant }) => {
    const other = await createTenant(world.url, []);
    const mine = await withProvider(tenant.apiKey);
    const theirs = await withProvider(other.apiKey);
    const alice = tenant.users[0] as (typeof tenant.users)[0];
    const { createGroup } = await ok(world.url, CreateGroup, { input: { name: "Ours" } }, { token: alice.token });

    // Their provider's secret does not sign for our issuer.
    const forged = await providerToken(mine, { secret: theirs.secret });
    await fails(world.url, ExternalViewer, {}, { token: forged }, "UNAUTHENTICATED");

    // Their token is a user of their tenant, who sees nothing of ours.
    const token = await providerToken(theirs, { sub: "user-1" });
    const { viewer } = await ok(world.url, ExternalViewer, {}, { token });
    // Users of our tenant, listed with our key: their provisioned user is not among them.
    const { users } = await ok(world.url, Users, { first: 100 }, { apiKey: tenant.apiKey });
    expect(users.edges.map((e) => e.node.id)).not.toContain(viewer.user?.id);
    await fails(world.url, Conversation, { id: createGroup.id }, { token }, "NOT_FOUND");
  });

  test("issued tokens and API keys keep working next to the provider's tokens", async ({ tenant }) => {
    await withProvider(tenant.apiKey);
    const alice = tenant.users[0] as (typeof tenant.users)[0];
    const { viewer } = await ok(world.url, Viewer, {}, { token: alice.token });
    expect(viewer.user?.id).toBe(alice.id);
    const { viewer: service } = await ok(world.url, Viewer, {}, { apiKey: tenant.apiKey });
    expect(service.isService).toBe(true);
  });

  test("a deactivated user's tokens and tokens verified under a replaced setting stop working", async ({ tenant }) => {
    const provider = await withProvider(tenant.apiKey);
    const token = await providerToken(provider, { sub: "leaver" });
    const { viewer } = await ok(world.url, ExternalViewer, {}, { token });
    const userId = viewer.user?.id as string;
    await ok(world.url, UpdateUser, { id: userId, input: { active: false } }, { apiKey: tenant.apiKey });
    await fails(world.url, ExternalViewer, {}, { token }, "UNAUTHENTICATED");
    await fails(
      world.url,
      ExternalViewer,
      {},
      { token: await providerToken(provider, { sub: "leaver" }) },
      "UNAUTHENTICATED",
    );

    const goner = await providerToken(provider, { sub: "goner" });
    const gone = await ok(world.url, ExternalViewer, {}, { token: goner });
    await ok(world.url, DeleteUser, { id: gone.viewer.user?.id as string }, { apiKey: tenant.apiKey });
    await fails(
      world.url,
      ExternalViewer,
      {},
      { token: await providerToken(provider, { sub: "goner" }) },
      "UNAUTHENTICATED",
    );

    // A token seen valid (and so cached) ends when the tenant replaces its provider's secret.
    const stayer = await providerToken(provider, { sub: "stayer" });
    await ok(world.url, ExternalViewer, {}, { token: stayer });
    await withProvider(tenant.apiKey);
    await fails(world.url, ExternalViewer, {}, { token: stayer }, "UNAUTHENTICATED");
  });

  test("an open socket of a provider's token closes (4403) when the tenant changes the setting", async ({
    tenant,
    sockets,
  }) => {
    const provider = await withProvider(tenant.apiKey);
    const socket = sockets.open({ token: await providerToken(provider, { sub: "socket" }) }, { keepOpen: true });
    const first = await subscribe(socket, ExternalViewer).next();
    expect(first.errors).toBeUndefined();
    await withProvider(tenant.apiKey);
    const closed = await socket.closed;
    expect(closed.code).toBe(4403);
  });
});
