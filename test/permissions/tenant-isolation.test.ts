import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Database, openDatabase, type PrismaClient } from "../../src/db/client.ts";
import { tenantScoped } from "../../src/db/scoped.ts";
import { backends } from "../helpers/backends.ts";
import { ok } from "../helpers/client.ts";
import { createTenant, type TestUser } from "../helpers/fixtures.ts";
import { useServer } from "../helpers/world.ts";
import { Messages } from "../operations/messages.ts";
import { CreateUser } from "../operations/users.ts";
import { permissionHelpers } from "./helpers.ts";

/** Tenant isolation below the API: the tenant-scoped data access and the database constraints. */
describe.each(backends())("roles, permissions and tenant isolation on %s", (backend) => {
  const world = useServer(backend);
  const { createRoleWithKey, groupWith, sendAs } = permissionHelpers(world);

  describe("tenant isolation in depth", () => {
    let prisma: PrismaClient;
    let own: Database | undefined;
    let pool: pg.Pool | undefined;

    beforeAll(async () => {
      if (world.database.db) {
        prisma = world.database.db.prisma;
      } else {
        own = await openDatabase({ databaseUrl: world.database.url, poolSize: 2 });
        prisma = own.prisma;
        pool = new pg.Pool({ connectionString: world.database.url, max: 2 });
      }
    });
    afterAll(async () => {
      await own?.close();
      await pool?.end();
    });

    async function rawSql(sql: string, params: unknown[]): Promise<unknown> {
      if (pool) return (await pool.query(sql, params)).rows;
      return world.database.db?.sql.query(sql, params);
    }

    /** A tenant with users, a group, messages and a custom role, made through the API. */
    async function populated(label: string) {
      const tenant = await createTenant(world.url, [`${label}1`, `${label}2`]);
      const [one, two] = tenant.users as [TestUser, TestUser];
      const groupId = await groupWith(tenant.apiKey, [one.id, two.id], `${label} group`);
      const messageId = await sendAs(tenant.apiKey, one.id, groupId, `${label} says hi`);
      const roleId = await createRoleWithKey(tenant.apiKey, ["chats:read"], `${label}-role`);
      return { tenant, one, two, groupId, messageId, roleId };
    }

    async function snapshot(tenantId: string) {
      return {
        users: await prisma.user.findMany({ where: { tenantId }, orderBy: { id: "asc" } }),
        conversations: await prisma.conversation.findMany({ where: { tenantId }, orderBy: { id: "asc" } }),
        messages: await prisma.message.findMany({ where: { tenantId }, orderBy: { id: "asc" } }),
        roles: await prisma.role.findMany({ where: { tenantId }, orderBy: { id: "asc" } }),
        members: await prisma.member.findMany({
          where: { tenantId },
          orderBy: [{ conversationId: "asc" }, { userId: "asc" }],
        }),
      };
    }

    it("tenantScoped confines unfiltered reads, updates and deletes to its tenant and stamps creates", async () => {
      const a = await populated("A");
      const b = await populated("B");
      const scoped = tenantScoped(prisma, a.tenant.id);
      const bBefore = await snapshot(b.tenant.id);
      const aBefore = await snapshot(a.tenant.id);
      expect(bBefore.users).toHaveLength(2);
      expect(bBefore.messages).toHaveLength(1);

      // Reads without any tenant filter.
      const users = await scoped.user.findMany();
      expect(users.map((u) => u.id).sort()).toEqual(aBefore.users.map((u) => u.id));
      expect(await scoped.conversation.findMany()).toHaveLength(aBefore.conversations.length);
      expect((await scoped.message.findMany()).map((m) => m.id)).toEqual([a.messageId]);
      expect((await scoped.role.findMany()).every((r) => r.tenantId === a.tenant.id)).toBe(true);
      expect((await scoped.role.findMany()).map((r) => r.id)).toContain(a.roleId);
      expect(await scoped.user.findFirst({ where: { id: b.one.id } })).toBeNull();
      expect(await scoped.user.findUnique({ where: { id: b.one.id } })).toBeNull();
      expect(await scoped.conversation.findFirst({ where: { id: b.groupId } })).toBeNull();
      expect(await scoped.message.findFirst({ where: { id: b.messageId } })).toBeNull();
      expect(await scoped.role.findFirst({ where: { id: b.roleId } })).toBeNull();
      expect(await scoped.member.findFirst({ where: { userId: b.one.id } })).toBeNull();
      expect(await scoped.user.count()).toBe(aBefore.users.length);
      expect(await scoped.conversation.count()).toBe(aBefore.conversations.length);
      expect(await scoped.message.count()).toBe(1);
      expect(await scoped.role.count()).toBe(aBefore.roles.length);
      // Even an explicit filter naming the other tenant finds nothing.
      expect(await scoped.user.findMany({ where: { tenantId: b.tenant.id } })).toEqual([]);
      expect(await scoped.tenant.findFirst({ where: { id: b.tenant.id } })).toBeNull();

      // Updates without a filter touch only tenant A.
      expect((await scoped.user.updateMany({ data: { name: "Scoped" } })).count).toBe(aBefore.users.length);
      expect((await scoped.conversation.updateMany({ data: { description: "scoped" } })).count).toBe(
        aBefore.conversations.length,
      );
      expect((await scoped.message.updateMany({ data: { pinned: true } })).count).toBe(1);
      expect((await scoped.role.updateMany({ data: { description: "scoped" } })).count).toBe(aBefore.roles.length);
      await expect(scoped.user.update({ where: { id: b.one.id }, data: { name: "Hijacked" } })).rejects.toThrow();
      expect(await snapshot(b.tenant.id)).toEqual(bBefore);
      expect((await prisma.user.findMany({ where: { tenantId: a.tenant.id } })).every((u) => u.name === "Scoped")).toBe(
        true,
      );

      // Creates are stamped with tenant A whatever the data says.
      const stampedRole = await scoped.role.create({
        data: { tenantId: b.tenant.id, name: "stamped", permissions: [] },
      });
      expect(stampedRole.tenantId).toBe(a.tenant.id);
      const stampedUser = await scoped.user.create({ data: { tenantId: b.tenant.id, name: "Stamped" } });
      expect(stampedUser.tenantId).toBe(a.tenant.id);
      const stampedMany = await scoped.user.createMany({ data: [{ tenantId: b.tenant.id, name: "Stamped 2" }] });
      expect(stampedMany.count).toBe(1);
      expect(await prisma.user.count({ where: { tenantId: b.tenant.id } })).toBe(2);
      expect(await prisma.user.count({ where: { tenantId: a.tenant.id, name: { startsWith: "Stamped" } } })).toBe(2);

      // Deletes without a filter remove only tenant A's rows.
      expect((await scoped.message.deleteMany({})).count).toBe(1);
      expect((await scoped.conversation.deleteMany({})).count).toBe(aBefore.conversations.length);
      expect((await scoped.role.deleteMany({})).count).toBe(aBefore.roles.length + 1);
      expect((await scoped.user.deleteMany({})).count).toBe(aBefore.users.length + 2);
      await expect(scoped.user.delete({ where: { id: b.one.id } })).rejects.toThrow();
      expect(await snapshot(b.tenant.id)).toEqual(bBefore);
      const aAfter = await snapshot(a.tenant.id);
      expect([aAfter.users, aAfter.conversations, aAfter.messages, aAfter.roles, aAfter.members]).toEqual([
        [],
        [],
        [],
        [],
        [],
      ]);

      // Tenant B still works end to end through the API.
      const history = await ok(world.url, Messages, { conversationId: b.groupId }, { token: b.two.token });
      expect(history.messages.edges.map((e) => e.node.body)).toEqual(["B says hi"]);
    });

    it("the database refuses rows that point into another tenant (composite foreign keys)", async () => {
      const a = await populated("FA");
      const b = await populated("FB");
      const extraA = await ok(world.url, CreateUser, { input: { name: "Unjoined" } }, { apiKey: a.tenant.apiKey });

      async function expectForeignKeyViolation(sql: string, params: unknown[]) {
        let caught: unknown;
        try {
          await rawSql(sql, params);
        } catch (error) {
          caught = error;
        }
        expect(caught, `${sql} ${JSON.stringify(params)} was accepted`).toBeDefined();
        expect((caught as { code?: string }).code).toBe("23503");
      }
      const insertMember = `INSERT INTO "Member" ("tenantId", "conversationId", "userId") VALUES ($1::uuid, $2::uuid, $3::uuid)`;

      // A's conversation with B's user: under either tenant id.
      await expectForeignKeyViolation(insertMember, [a.tenant.id, a.groupId, b.one.id]);
      await expectForeignKeyViolation(insertMember, [b.tenant.id, a.groupId, b.one.id]);
      // A's user into B's conversation.
      await expectForeignKeyViolation(insertMember, [a.tenant.id, b.groupId, a.one.id]);
      // A message in A's conversation sent by B's user.
      await expectForeignKeyViolation(
        `INSERT INTO "Message" ("id", "tenantId", "conversationId", "seq", "senderId", "body") VALUES (gen_random_uuid(), $1::uuid, $2::uuid, 999, $3::uuid, 'x')`,
        [a.tenant.id, a.groupId, b.one.id],
      );
      // A reply pointing at B's message.
      await expectForeignKeyViolation(
        `INSERT INTO "Message" ("id", "tenantId", "conversationId", "seq", "senderId", "body", "replyToId") VALUES (gen_random_uuid(), $1::uuid, $2::uuid, 998, $3::uuid, 'x', $4::uuid)`,
        [a.tenant.id, a.groupId, a.one.id, b.messageId],
      );
      // B's role assigned to A's user.
      await expectForeignKeyViolation(
        `INSERT INTO "UserRole" ("tenantId", "userId", "roleId") VALUES ($1::uuid, $2::uuid, $3::uuid)`,
        [a.tenant.id, a.one.id, b.roleId],
      );
      expect(await prisma.member.count({ where: { conversationId: a.groupId } })).toBe(2);
      expect(await prisma.member.count({ where: { conversationId: b.groupId } })).toBe(2);
      expect(await prisma.userRole.count({ where: { roleId: b.roleId } })).toBe(0);

      // The same statement inside one tenant is accepted: the refusals above are about tenants.
      await rawSql(insertMember, [a.tenant.id, a.groupId, extraA.createUser.id]);
      expect(await prisma.member.count({ where: { conversationId: a.groupId } })).toBe(3);
    });
  });
});
