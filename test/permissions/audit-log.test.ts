import { describe, expect, it } from "vitest";
import type { AuditLogQuery } from "../generated/graphql.ts";
import { backends } from "../helpers/backends.ts";
import { type Auth, fails, ok, request } from "../helpers/client.ts";
import { createTenant } from "../helpers/fixtures.ts";
import { useServer } from "../helpers/world.ts";
import { AuditLog } from "../operations/audit.ts";
import { AddMembers, CreateGroup, DeleteGroup, RemoveMember, SetMemberRole } from "../operations/conversations.ts";
import { DeleteMessage, SendMessage } from "../operations/messages.ts";
import { AssignRole, CreateRole, DeleteRole, UnassignRole, UpdateRole } from "../operations/roles.ts";
import { RotateApiKey } from "../operations/tenants.ts";
import { DeleteUser, IssueUserToken, RevokeUserTokens, UpdateUser } from "../operations/users.ts";
import { permissionHelpers, UUID } from "./helpers.ts";

/** The audit log records security-relevant actions, with actor and target, paged by cursor. */
describe.each(backends())("roles, permissions and tenant isolation on %s", (backend) => {
  const world = useServer(backend);
  const { roleIds, latestAudit, users4 } = permissionHelpers(world);

  describe("audit log", () => {
    it("records security-relevant actions with actor and target, newest first, paged by cursor", async () => {
      const tenant = await createTenant(world.url, ["Admin", "Alice", "Bob", "Carol"]);
      const [admin, alice, bob, carol] = users4(tenant);
      const asAdmin = { token: admin.token };
      const ids = await roleIds(tenant.apiKey);
      const recorded: { id: string; action: string }[] = [];
      let reader: Auth = { apiKey: tenant.apiKey };

      async function expectEntry(
        action: string,
        actor: { kind: "SERVICE" | "USER"; id: string | null },
        target: { type: string; id: string | null },
      ) {
        const entry = await latestAudit(reader);
        expect({ action: entry.action, actor: entry.actor, target: entry.target }).toEqual({ action, actor, target });
        expect(recorded.map((r) => r.id)).not.toContain(entry.id);
        recorded.push({ id: entry.id, action });
        return entry;
      }

      // Rotation: the actor is the old key, the target the new one, which acts from then on.
      const { rotateApiKey } = await ok(world.url, RotateApiKey, {}, { apiKey: tenant.apiKey });
      const apiKey = rotateApiKey.apiKey;
      reader = { apiKey };
      const rotated = await latestAudit(reader);
      expect(rotated.action).toBe("apiKey.rotated");
      expect(rotated.actor.kind).toBe("SERVICE");
      expect(rotated.actor.id).toMatch(UUID);
      expect(rotated.target.type).toBe("ApiKey");
      expect(rotated.target.id).toMatch(UUID);
      expect(rotated.target.id).not.toBe(rotated.actor.id);
      recorded.push({ id: rotated.id, action: "apiKey.rotated" });
      const service = { kind: "SERVICE" as const, id: rotated.target.id ?? null };
      const byAdmin = { kind: "USER" as const, id: admin.id };

      await ok(world.url, AssignRole, { userId: admin.id, roleId: ids.admin as string }, { apiKey });
      await expectEntry("role.assigned", service, { type: "User", id: admin.id });
      await ok(world.url, UnassignRole, { userId: admin.id, roleId: ids.member as string }, { apiKey });
      await expectEntry("role.unassigned", service, { type: "User", id: admin.id });
      reader = asAdmin;

      const { createRole } = await ok(
        world.url,
        CreateRole,
        { input: { name: "auditors", permissions: ["chats:read"] } },
        asAdmin,
      );
      const roleId = createRole.id;
      await expectEntry("role.created", byAdmin, { type: "Role", id: roleId });
      await ok(world.url, UpdateRole, { id: roleId, input: { permissions: ["chats:read", "users:read"] } }, asAdmin);
      await expectEntry("role.updated", byAdmin, { type: "Role", id: roleId });
      await ok(world.url, AssignRole, { userId: alice.id, roleId }, asAdmin);
      await expectEntry("role.assigned", byAdmin, { type: "User", id: alice.id });
      await ok(world.url, UnassignRole, { userId: alice.id, roleId }, asAdmin);
      await expectEntry("role.unassigned", byAdmin, { type: "User", id: alice.id });
      await ok(world.url, DeleteRole, { id: roleId }, asAdmin);
      await expectEntry("role.deleted", byAdmin, { type: "Role", id: roleId });

      await ok(world.url, UpdateUser, { id: bob.id, input: { active: false } }, asAdmin);
      await expectEntry("user.deactivated", byAdmin, { type: "User", id: bob.id });
      await ok(world.url, RevokeUserTokens, { userId: carol.id }, asAdmin);
      await expectEntry("user.tokensRevoked", byAdmin, { type: "User", id: carol.id });
      await ok(world.url, RevokeUserTokens, { userId: alice.id }, { token: alice.token });
      await expectEntry("user.tokensRevoked", { kind: "USER", id: alice.id }, { type: "User", id: alice.id });
      const aliceToken = (await ok(world.url, IssueUserToken, { userId: alice.id }, { apiKey })).issueUserToken.token;

      const group = await ok(world.url, CreateGroup, { input: { name: "Audited", memberIds: [alice.id] } }, asAdmin);
      const groupId = group.createGroup.id;
      await ok(world.url, AddMembers, { conversationId: groupId, userIds: [carol.id] }, asAdmin);
      await expectEntry("member.added", byAdmin, { type: "Conversation", id: groupId });
      await ok(world.url, SetMemberRole, { conversationId: groupId, userId: alice.id, role: "ADMIN" }, asAdmin);
      await expectEntry("member.roleChanged", byAdmin, { type: "Conversation", id: groupId });
      await ok(world.url, RemoveMember, { conversationId: groupId, userId: carol.id }, asAdmin);
      await expectEntry("member.removed", byAdmin, { type: "Conversation", id: groupId });
      const sent = await ok(
        world.url,
        SendMessage,
        { input: { conversationId: groupId, body: "bad" } },
        { token: aliceToken },
      );
      await ok(world.url, DeleteMessage, { id: sent.sendMessage.id }, asAdmin);
      await expectEntry("message.moderated", byAdmin, { type: "Message", id: sent.sendMessage.id });
      await ok(world.url, DeleteGroup, { id: groupId }, asAdmin);
      await expectEntry("group.deleted", byAdmin, { type: "Conversation", id: groupId });
      await ok(world.url, DeleteUser, { id: bob.id }, { apiKey });
      await expectEntry("user.deleted", service, { type: "User", id: bob.id });

      // The whole log, newest first, is exactly what was done.
      const all = await ok(world.url, AuditLog, { first: 100 }, asAdmin);
      expect(all.auditLog.edges.map((e) => e.node.id)).toEqual([...recorded].reverse().map((r) => r.id));
      expect(all.auditLog.edges.map((e) => e.node.action)).toEqual([...recorded].reverse().map((r) => r.action));
      const times = all.auditLog.edges.map((e) => Date.parse(e.node.createdAt));
      expect([...times].sort((a, b) => b - a)).toEqual(times);
      expect(all.auditLog.pageInfo).toMatchObject({ hasNextPage: false, hasPreviousPage: false });

      // Cursor paging visits every entry once, in order.
      const paged: string[] = [];
      let after: string | null | undefined = null;
      let pages = 0;
      for (;;) {
        const page: AuditLogQuery = await ok(world.url, AuditLog, { first: 4, after }, asAdmin);
        pages++;
        expect(page.auditLog.edges.length).toBeLessThanOrEqual(4);
        expect(page.auditLog.pageInfo.hasPreviousPage).toBe(after !== null);
        paged.push(...page.auditLog.edges.map((e) => e.node.id));
        if (page.auditLog.edges.length) {
          expect(page.auditLog.pageInfo.endCursor).toBe(page.auditLog.edges.at(-1)?.cursor);
        }
        if (!page.auditLog.pageInfo.hasNextPage) break;
        after = page.auditLog.pageInfo.endCursor;
        expect(pages).toBeLessThan(20);
      }
      expect(paged).toEqual(all.auditLog.edges.map((e) => e.node.id));
      expect(pages).toBe(Math.ceil(recorded.length / 4));
      const fromMiddle = await ok(world.url, AuditLog, { first: 2, after: all.auditLog.edges[2]?.cursor }, asAdmin);
      expect(fromMiddle.auditLog.edges.map((e) => e.node.id)).toEqual(
        all.auditLog.edges.slice(3, 5).map((e) => e.node.id),
      );
      await fails(world.url, AuditLog, { first: 1, after: "garbage" }, asAdmin, "BAD_USER_INPUT");

      // tenant:read is needed: members are refused.
      await fails(world.url, AuditLog, { first: 1 }, { token: aliceToken }, "FORBIDDEN");
      const carolToken = (await ok(world.url, IssueUserToken, { userId: carol.id }, { apiKey })).issueUserToken.token;
      await fails(world.url, AuditLog, { first: 1 }, { token: carolToken }, "FORBIDDEN");

      // Another tenant never sees any of it, not even with this tenant's cursors.
      const other = await createTenant(world.url, ["Stranger"]);
      await ok(
        world.url,
        AssignRole,
        { userId: other.users[0]?.id as string, roleId: (await roleIds(other.apiKey)).admin as string },
        { apiKey: other.apiKey },
      );
      const theirs = await ok(world.url, AuditLog, { first: 100 }, { apiKey: other.apiKey });
      const theirIds = theirs.auditLog.edges.map((e) => e.node.id);
      expect(theirIds.length).toBeGreaterThan(0);
      expect(theirIds.filter((id) => recorded.some((r) => r.id === id))).toEqual([]);
      const mine = new Set([admin.id, alice.id, bob.id, carol.id, groupId, roleId, sent.sendMessage.id]);
      expect(
        theirs.auditLog.edges.filter((e) => mine.has(e.node.target.id ?? "") || mine.has(e.node.actor.id ?? "")),
      ).toEqual([]);
      const viaCursor = await request(
        world.url,
        AuditLog,
        { first: 100, after: all.auditLog.edges[0]?.cursor },
        { apiKey: other.apiKey },
      );
      expect((viaCursor.data?.auditLog.edges ?? []).filter((e) => recorded.some((r) => r.id === e.node.id))).toEqual(
        [],
      );
      // And this tenant does not see theirs.
      const ownAgain = await ok(world.url, AuditLog, { first: 100 }, asAdmin);
      expect(ownAgain.auditLog.edges.map((e) => e.node.id).filter((id) => theirIds.includes(id))).toEqual([]);
    });
  });
});
