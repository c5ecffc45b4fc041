import { randomBytes } from "node:crypto";
import { describe, expect } from "vitest";
import { backends } from "./helpers/backends.ts";
import { fails, ok, subscribe, whenLive } from "./helpers/client.ts";
import { createTenant } from "./helpers/fixtures.ts";
import { newIssuer, newSecret, type Provider, providerToken } from "./helpers/identity-provider.ts";
import { test, useServer } from "./helpers/world.ts";
import { AddMembers, OpenDirect, RemoveMember } from "./operations/conversations.ts";
import { ConversationEventsBrief } from "./operations/events.ts";
import {
  CreateExternalGroup,
  ExternalGroup,
  ExternalViewer,
  UpdateExternalGroup,
  UpdateTenantExternalJwt,
} from "./operations/external-jwt.ts";

const tag = () => randomBytes(4).toString("hex");

describe.each(backends())("groups from the identity provider's groups claim on %s", (backend) => {
  const world = useServer(backend);

  async function withProvider(apiKey: string): Promise<Provider> {
    const provider = { issuer: newIssuer(), secret: newSecret() };
    await ok(
      world.url,
      UpdateTenantExternalJwt,
      { input: { auth: { externalJwt: { issuer: provider.issuer, hmacSecret: provider.secret } } } },
      { apiKey },
    );
    return provider;
  }

  async function group(apiKey: string, externalId?: string): Promise<string> {
    const { createGroup } = await ok(
      world.url,
      CreateExternalGroup,
      { input: { name: `Group ${externalId ?? tag()}`, externalId } },
      { apiKey },
    );
    expect(createGroup.externalId).toBe(externalId ?? null);
    return createGroup.id;
  }

  async function membersOf(apiKey: string, id: string): Promise<string[]> {
    const { conversation } = await ok(world.url, ExternalGroup, { id }, { apiKey });
    return conversation?.members.map((m) => m.user.id) ?? [];
  }

  test("a group's external id is set, changed and cleared, and unique in the tenant (CONFLICT)", async ({ tenant }) => {
    const apiKey = tenant.apiKey;
    const id = await group(apiKey, "eng");
    await fails(world.url, CreateExternalGroup, { input: { name: "Twin", externalId: "eng" } }, { apiKey }, "CONFLICT");
    const other = await group(apiKey);
    await fails(world.url, UpdateExternalGroup, { id: other, input: { externalId: "eng" } }, { apiKey }, "CONFLICT");
    const { updateGroup } = await ok(
      world.url,
      UpdateExternalGroup,
      { id, input: { externalId: "platform" } },
      { apiKey },
    );
    expect(updateGroup.externalId).toBe("platform");
    await ok(world.url, UpdateExternalGroup, { id: other, input: { externalId: "eng" } }, { apiKey });
    const cleared = await ok(world.url, UpdateExternalGroup, { id, input: { externalId: null } }, { apiKey });
    expect(cleared.updateGroup.externalId).toBeNull();
    const { conversation } = await ok(world.url, ExternalGroup, { id: other }, { apiKey });
    expect(conversation?.externalId).toBe("eng");
    // Another tenant may use the same external id for its own group.
    const foreign = await createTenant(world.url, []);
    await group(foreign.apiKey, "eng");
  });

  test("each new token joins the listed groups and leaves unlisted ones; groups without external id are untouched", async ({
    tenant,
  }) => {
    const apiKey = tenant.apiKey;
    const provider = await withProvider(apiKey);
    const eng = await group(apiKey, "eng");
    const ops = await group(apiKey, "ops");
    const plain = await group(apiKey);

    const first = await providerToken(provider, { sub: "g-user", groups: ["eng", "unknown-group"] });
    const { viewer } = await ok(world.url, ExternalViewer, {}, { token: first });
    const userId = viewer.user?.id as string;
    expect(await membersOf(apiKey, eng)).toContain(userId);
    expect(await membersOf(apiKey, ops)).not.toContain(userId);

    await ok(world.url, AddMembers, { conversationId: plain, userIds: [userId] }, { apiKey });
    // Removed by hand from eng: the same token does not bring the user back, a new one does.
    await ok(world.url, RemoveMember, { conversationId: eng, userId }, { apiKey });
    await ok(world.url, ExternalViewer, {}, { token: first });
    expect(await membersOf(apiKey, eng)).not.toContain(userId);

    const second = await providerToken(provider, { sub: "g-user", groups: ["ops"] });
    await ok(world.url, ExternalViewer, {}, { token: second });
    expect(await membersOf(apiKey, eng)).not.toContain(userId);
    expect(await membersOf(apiKey, ops)).toContain(userId);
    expect(await membersOf(apiKey, plain)).toContain(userId);

    const third = await providerToken(provider, { sub: "g-user", groups: ["eng", "ops"] });
    await ok(world.url, ExternalViewer, {}, { token: third });
    expect(await membersOf(apiKey, eng)).toContain(userId);
    expect(await membersOf(apiKey, ops)).toContain(userId);

    // No groups claim: no linked group. The user's other conversations stay.
    const alice = tenant.users[0] as (typeof tenant.users)[0];
    const { openDirectConversation } = await ok(world.url, OpenDirect, { userId: alice.id }, { token: third });
    const fourth = await providerToken(provider, { sub: "g-user" });
    await ok(world.url, ExternalViewer, {}, { token: fourth });
    expect(await membersOf(apiKey, eng)).not.toContain(userId);
    expect(await membersOf(apiKey, ops)).not.toContain(userId);
    expect(await membersOf(apiKey, plain)).toContain(userId);
    expect(await membersOf(apiKey, openDirectConversation.id)).toContain(userId);
  });

  test("a groups claim reaches only groups of the token's own tenant", async ({ tenant }) => {
    const foreign = await createTenant(world.url, []);
    const theirs = await withProvider(foreign.apiKey);
    const ours = await group(tenant.apiKey, "shared-name");
    const token = await providerToken(theirs, { sub: "outsider", groups: ["shared-name"] });
    const { viewer } = await ok(world.url, ExternalViewer, {}, { token });
    expect(viewer.user?.id).toBeTruthy();
    expect(await membersOf(tenant.apiKey, ours)).toEqual([]);
  });

  test("joins and leaves by the groups claim reach live streams as member events", async ({ tenant, sockets }) => {
    const apiKey = tenant.apiKey;
    const provider = await withProvider(apiKey);
    const linked = await group(apiKey, "live");
    const { viewer } = await ok(
      world.url,
      ExternalViewer,
      {},
      { token: await providerToken(provider, { sub: "live" }) },
    );
    const userId = viewer.user?.id as string;

    const socket = sockets.open({ apiKey });
    const events = subscribe(socket, ConversationEventsBrief, { conversationId: linked });
    const alice = tenant.users[0] as (typeof tenant.users)[0];
    let pokes = 0;
    // Live once a member added by hand shows up.
    await whenLive(events, async () => {
      const user = tenant.users[pokes++ % tenant.users.length] ?? alice;
      await ok(world.url, AddMembers, { conversationId: linked, userIds: [user.id] }, { apiKey });
      await ok(world.url, RemoveMember, { conversationId: linked, userId: user.id }, { apiKey });
    });

    await ok(
      world.url,
      ExternalViewer,
      {},
      { token: await providerToken(provider, { sub: "live", groups: ["live"] }) },
    );
    const added = await events.next();
    expect(added.data?.conversationEvents).toMatchObject({ __typename: "MemberAddedEvent", user: { id: userId } });

    await ok(world.url, ExternalViewer, {}, { token: await providerToken(provider, { sub: "live", groups: [] }) });
    const removed = await events.next();
    expect(removed.data?.conversationEvents.__typename).toBe("MemberRemovedEvent");
    expect(await membersOf(apiKey, linked)).not.toContain(userId);
  });

  test("a direct conversation cannot be linked to an identity provider group", async ({ tenant }) => {
    const [alice, bob] = tenant.users as [(typeof tenant.users)[0], (typeof tenant.users)[0]];
    const { openDirectConversation } = await ok(world.url, OpenDirect, { userId: bob.id }, { token: alice.token });
    await fails(
      world.url,
      UpdateExternalGroup,
      { id: openDirectConversation.id, input: { externalId: "x" } },
      { apiKey: tenant.apiKey },
      "BAD_USER_INPUT",
    );
  });
});
