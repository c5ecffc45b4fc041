/**
 * A tenant's data as a whole: the NDJSON export (API key only, audited, no secrets) and
 * deleteTenant (every row of every table, files, sockets, Redis keys; other tenants untouched).
 */
import { print } from "graphql";
import { Redis } from "ioredis";
import { describe, expect } from "vitest";
import { backends } from "./helpers/backends.ts";
import { closedWithin, fails, ok, request, subscribe, whenLive } from "./helpers/client.ts";
import { createTenant, type TestTenant } from "./helpers/fixtures.ts";
import { test, useServer } from "./helpers/world.ts";
import { SignIn } from "./operations/accounts.ts";
import { UploadAttachment } from "./operations/attachments.ts";
import { AuditLog } from "./operations/audit.ts";
import { CreateGroup } from "./operations/conversations.ts";
import { MessageAdded } from "./operations/events.ts";
import { AddReaction, SendMessage } from "./operations/messages.ts";
import { DeleteTenant } from "./operations/tenants.ts";

/** A group of the tenant's first two users with two messages, a reaction and an attachment. */
async function populate(url: string, tenant: TestTenant) {
  const [alice, bob] = tenant.users as [TestTenant["users"][0], TestTenant["users"][0]];
  const conversationId = (
    await ok(url, CreateGroup, { input: { name: "Data", memberIds: [bob.id] } }, { token: alice.token })
  ).createGroup.id;
  const form = new FormData();
  form.append(
    "operations",
    JSON.stringify({ query: print(UploadAttachment), variables: { conversationId, file: null } }),
  );
  form.append("map", JSON.stringify({ 0: ["variables.file"] }));
  form.append("0", new Blob(["file body"], { type: "text/plain" }), "notes.txt");
  const uploaded = (await (
    await fetch(url, { method: "POST", headers: { authorization: `Bearer ${alice.token}` }, body: form })
  ).json()) as { data: { uploadAttachment: { id: string } } };
  const attachmentId = uploaded.data.uploadAttachment.id;
  const first = await ok(
    url,
    SendMessage,
    { input: { conversationId, body: "exported body", attachmentIds: [attachmentId] } },
    { token: alice.token },
  );
  await ok(url, SendMessage, { input: { conversationId, body: "second" } }, { token: bob.token });
  await ok(url, AddReaction, { messageId: first.sendMessage.id, emoji: "👍" }, { token: bob.token });
  return { conversationId, attachmentId };
}

const exportUrl = (url: string) => url.replace(/\/graphql$/, "/export");

describe.each(backends())("tenant data on %s", (backend) => {
  useServer(backend);

  test("GET /export streams the tenant's data as NDJSON to its API key, without secrets, audited", async ({
    server,
    tenant,
  }) => {
    const { conversationId, attachmentId } = await populate(server.url, tenant);
    const other = await createTenant(server.url, ["Mallory"]);
    await populate(server.url, { ...other, users: [...other.users, ...other.users] });
    expect((await fetch(exportUrl(server.url))).status).toBe(401);
    const asUser = await fetch(exportUrl(server.url), {
      headers: { authorization: `Bearer ${tenant.users[0]?.token}` },
    });
    expect(asUser.status).toBe(401);

    const response = await fetch(exportUrl(server.url), { headers: { "x-api-key": tenant.apiKey } });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("application/x-ndjson");
    const text = await response.text();
    const lines = text
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { type: string; data: Record<string, unknown> });
    const count = (type: string) => lines.filter((line) => line.type === type).length;
    expect(lines[0]).toMatchObject({ type: "tenant", data: { id: tenant.id } });
    expect(count("user")).toBe(3);
    expect(count("role")).toBeGreaterThanOrEqual(3);
    expect(count("conversation")).toBe(1);
    expect(count("member")).toBe(2);
    expect(count("message")).toBe(2);
    expect(count("reaction")).toBe(1);
    expect(lines.filter((l) => l.type === "attachment").map((l) => l.data.id)).toEqual([attachmentId]);
    expect(lines.find((l) => l.type === "conversation")?.data.id).toBe(conversationId);
    expect(lines.every((l) => l.type === "tenant" || l.data.tenantId === tenant.id)).toBe(true);
    expect(text).toContain("exported body");
    for (const secret of ["passwordHash", "storageKey", tenant.apiKey, other.id]) expect(text).not.toContain(secret);

    const { auditLog } = await ok(server.url, AuditLog, { first: 5 }, { apiKey: tenant.apiKey });
    expect(auditLog.edges.map((e) => e.node.action)).toContain("tenant.exported");
  });

  test("deleteTenant removes every row and file of the tenant, closes its sockets, leaves others alone", async ({
    server,
    tenant,
    sockets,
  }) => {
    const { conversationId } = await populate(server.url, tenant);
    const other = await createTenant(server.url, ["Mallory", "Trent"]);
    await populate(server.url, other);
    const { db, attachments } = server.app.deps;
    const files = await db.sql.query<{ storageKey: string }>(
      `SELECT "storageKey" FROM "Attachment" WHERE "tenantId" = $1`,
      [tenant.id],
    );
    expect(files.length).toBe(1);
    // A failed sign-in leaves a limiter key that names the tenant.
    await request(server.url, SignIn, {
      input: { tenantId: tenant.id, email: "nobody@example.com", password: "wrong password 1" },
    });
    const client = sockets.open({ token: tenant.users[1]?.token });
    const sub = subscribe(client, MessageAdded, { conversationId });
    await whenLive(sub, () =>
      ok(server.url, SendMessage, { input: { conversationId, body: "live" } }, { apiKey: tenant.apiKey }),
    );

    const redisKeys = async () => {
      const redis = new Redis(process.env.TEST_REDIS_URL as string);
      try {
        return await redis.keys(`*${tenant.id}*`);
      } finally {
        redis.disconnect();
      }
    };
    if (backend === "postgres+redis") expect((await redisKeys()).length).toBeGreaterThan(0);
    await fails(server.url, DeleteTenant, { confirmName: "wrong" }, { apiKey: tenant.apiKey }, "BAD_USER_INPUT");
    const name = (await db.sql.query<{ name: string }>(`SELECT name FROM "Tenant" WHERE id = $1`, [tenant.id]))[0]
      ?.name as string;
    await fails(server.url, DeleteTenant, { confirmName: name }, { token: tenant.users[0]?.token }, "FORBIDDEN");
    await fails(
      server.url,
      DeleteTenant,
      { confirmName: name, tenantId: other.id },
      { apiKey: tenant.apiKey },
      "FORBIDDEN",
    );
    expect((await ok(server.url, DeleteTenant, { confirmName: name }, { apiKey: tenant.apiKey })).deleteTenant).toBe(
      true,
    );

    // Every table with a tenantId column holds nothing of the tenant, and all of the other's rows.
    const tables = await db.sql.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.columns WHERE column_name = 'tenantId' AND table_schema = current_schema()`,
    );
    expect(tables.length).toBeGreaterThan(10);
    for (const { table_name } of tables) {
      const rows = await db.sql.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM "${table_name}" WHERE "tenantId" = $1`,
        [tenant.id],
      );
      expect(rows[0]?.n, table_name).toBe(0);
    }
    expect((await db.sql.query(`SELECT 1 FROM "Tenant" WHERE id = $1`, [tenant.id])).length).toBe(0);
    const kept = await db.sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM "Message" WHERE "tenantId" = $1`, [
      other.id,
    ]);
    expect(kept[0]?.n).toBe(2);
    expect(await attachments.get(files[0]?.storageKey as string)).toBeNull();
    expect(await closedWithin(client, 5_000)).not.toBeNull();
    await fails(server.url, AuditLog, { first: 1 }, { apiKey: tenant.apiKey }, "UNAUTHENTICATED");
    if (backend === "postgres+redis") expect(await redisKeys()).toEqual([]);
  });
});
