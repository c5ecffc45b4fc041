/**
 * Attachment files do not outlive what they belong to: deleting a message or a group
 * removes their files, a periodic sweep removes uploads never sent and files without a
 * row, and a tenant's stored attachments are capped by TENANT_UPLOAD_QUOTA_BYTES.
 */
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ResultOf } from "@graphql-typed-document-node/core";
import { type GraphQLFormattedError, print } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAttachmentSweeper, sweepAttachments } from "../src/services/attachment-gc.ts";
import { backends, createTestDatabase, startServer, type TestDatabase, type TestServer } from "./helpers/backends.ts";
import { type Auth, ok, sleep } from "./helpers/client.ts";
import { createTenant, type TestTenant, type TestUser } from "./helpers/fixtures.ts";
import { UploadAttachment } from "./operations/attachments.ts";
import { CreateGroup, DeleteGroup } from "./operations/conversations.ts";
import { DeleteMessage, SendMessage } from "./operations/messages.ts";

type Uploaded = ResultOf<typeof UploadAttachment>["uploadAttachment"];

const as = (user: TestUser): Auth => ({ token: user.token });

/** A GraphQL multipart request with a text file of `size` bytes; credentials in a header. */
async function uploadRaw(url: string, user: TestUser, conversationId: string, size: number) {
  const form = new FormData();
  form.append(
    "operations",
    JSON.stringify({ query: print(UploadAttachment), variables: { conversationId, file: null } }),
  );
  form.append("map", JSON.stringify({ 0: ["variables.file"] }));
  form.append("0", new Blob(["x".repeat(size)], { type: "text/plain" }), "notes.txt");
  const response = await fetch(url, { method: "POST", headers: { authorization: `Bearer ${user.token}` }, body: form });
  return (await response.json()) as { data?: { uploadAttachment?: Uploaded } | null; errors?: GraphQLFormattedError[] };
}

async function upload(url: string, user: TestUser, conversationId: string, size = 10): Promise<Uploaded> {
  const result = await uploadRaw(url, user, conversationId, size);
  if (result.errors?.length || !result.data?.uploadAttachment) {
    return expect.fail(`upload failed: ${JSON.stringify(result)}`);
  }
  return result.data.uploadAttachment;
}

async function group(url: string, owner: TestUser, members: TestUser[] = []): Promise<string> {
  const input = { name: "Files", memberIds: members.map((m) => m.id) };
  return (await ok(url, CreateGroup, { input }, as(owner))).createGroup.id;
}

async function send(url: string, user: TestUser, conversationId: string, attachmentIds: string[]) {
  return (await ok(url, SendMessage, { input: { conversationId, body: "files", attachmentIds } }, as(user)))
    .sendMessage;
}

function usersOf(tenant: TestTenant): [TestUser, TestUser] {
  const [a, b] = tenant.users;
  if (!a || !b) throw new Error("tenant needs two users");
  return [a, b];
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

const DAY_MS = 86_400_000;

describe.each(backends())("attachment garbage collection on %s", (backend) => {
  let database: TestDatabase;
  let attachmentsDir: string;
  let server: TestServer;
  /** Same database and store, with a 100-byte quota per tenant. */
  let limited: TestServer;
  let url: string;

  beforeAll(async () => {
    database = await createTestDatabase(backend);
    attachmentsDir = await mkdtemp(join(tmpdir(), "chat-attachments-gc-"));
    server = await startServer(database, { attachmentsDir });
    limited = await startServer(database, { attachmentsDir, tenantUploadQuotaBytes: 100 });
    url = server.url;
  });
  afterAll(async () => {
    await limited?.stop();
    await server?.stop();
    await database?.drop();
    if (attachmentsDir) await rm(attachmentsDir, { recursive: true, force: true });
  });

  const fileOf = (tenant: TestTenant, attachmentId: string) => join(attachmentsDir, tenant.id, attachmentId);
  const rowOf = (attachmentId: string) =>
    server.app.deps.db.prisma.attachment.findUnique({ where: { id: attachmentId } });
  /** Makes an upload look `ms` older than it is, in its row and its file. */
  const age = async (tenant: TestTenant, attachmentId: string, ms: number) => {
    const then = new Date(Date.now() - ms);
    await server.app.deps.db.prisma.attachment.update({ where: { id: attachmentId }, data: { createdAt: then } });
    await utimes(fileOf(tenant, attachmentId), then, then);
  };

  it("deleting a message removes its files and rows; other messages keep theirs", async () => {
    const tenant = await createTenant(url, ["Alice", "Bob"]);
    const [alice, bob] = usersOf(tenant);
    const conversationId = await group(url, alice, [bob]);
    const [a, b, c] = [
      await upload(url, alice, conversationId),
      await upload(url, alice, conversationId),
      await upload(url, alice, conversationId),
    ];
    const doomed = await send(url, alice, conversationId, [a.id, b.id]);
    const kept = await send(url, alice, conversationId, [c.id]);
    for (const file of [a, b, c]) expect(await exists(fileOf(tenant, file.id))).toBe(true);

    const { deleteMessage } = await ok(url, DeleteMessage, { id: doomed.id }, as(alice));
    expect(deleteMessage.deletedAt).toBeTruthy();
    expect(deleteMessage.attachments).toEqual([]);
    for (const file of [a, b]) {
      expect(await exists(fileOf(tenant, file.id))).toBe(false);
      expect(await rowOf(file.id)).toBeNull();
    }
    expect(await exists(fileOf(tenant, c.id))).toBe(true);
    expect(await rowOf(c.id)).toMatchObject({ messageId: kept.id });
    const download = await fetch(`${url.replace(/\/graphql$/, "")}/attachments/${c.id}`, {
      headers: { authorization: `Bearer ${bob.token}` },
    });
    expect(download.status).toBe(200);
    expect(await download.text()).toBe("x".repeat(10));

    // A moderator's deletion (here the API key) removes files just the same.
    const d = await upload(url, bob, conversationId);
    const bobs = await send(url, bob, conversationId, [d.id]);
    await ok(url, DeleteMessage, { id: bobs.id }, { apiKey: tenant.apiKey });
    expect(await exists(fileOf(tenant, d.id))).toBe(false);
  });

  it("deleting a group removes the files of all its attachments, sent or not", async () => {
    const tenant = await createTenant(url, ["Alice", "Bob"]);
    const [alice, bob] = usersOf(tenant);
    const doomedGroup = await group(url, alice, [bob]);
    const otherGroup = await group(url, alice, [bob]);
    const sent = await upload(url, alice, doomedGroup);
    await send(url, alice, doomedGroup, [sent.id]);
    const unsentByBob = await upload(url, bob, doomedGroup);
    const elsewhere = await upload(url, alice, otherGroup);

    await ok(url, DeleteGroup, { id: doomedGroup }, as(alice));
    for (const file of [sent, unsentByBob]) {
      expect(await exists(fileOf(tenant, file.id))).toBe(false);
      expect(await rowOf(file.id)).toBeNull();
    }
    expect(await exists(fileOf(tenant, elsewhere.id))).toBe(true);
    expect(await rowOf(elsewhere.id)).not.toBeNull();
  });

  it("a file that cannot be removed does not fail the deletion; the row goes all the same", async () => {
    const tenant = await createTenant(url, ["Alice", "Bob"]);
    const [alice] = usersOf(tenant);
    const conversationId = await group(url, alice);
    const file = await upload(url, alice, conversationId);
    const message = await send(url, alice, conversationId, [file.id]);
    // A non-empty directory where the file was: removing it fails with a real I/O error.
    const path = fileOf(tenant, file.id);
    await rm(path);
    await mkdir(path);
    await writeFile(join(path, "pinned"), "x");

    const { deleteMessage } = await ok(url, DeleteMessage, { id: message.id }, as(alice));
    expect(deleteMessage.deletedAt).toBeTruthy();
    expect(await rowOf(file.id)).toBeNull();
    expect(await exists(path)).toBe(true);
    await rm(path, { recursive: true });
  });

  it("the sweep removes stale unsent uploads and files without a row; recent uploads and sent ones stay", async () => {
    const tenant = await createTenant(url, ["Alice", "Bob"]);
    const [alice] = usersOf(tenant);
    const conversationId = await group(url, alice);
    const stale = await upload(url, alice, conversationId);
    const recent = await upload(url, alice, conversationId);
    const sentLongAgo = await upload(url, alice, conversationId);
    await send(url, alice, conversationId, [sentLongAgo.id]);
    await age(tenant, stale.id, 2 * DAY_MS);
    await age(tenant, sentLongAgo.id, 2 * DAY_MS);
    // Files without a row: one left behind long ago, one that may be an upload in progress.
    const strayOld = fileOf(tenant, randomUUID());
    const strayNew = fileOf(tenant, randomUUID());
    for (const path of [strayOld, strayNew]) await writeFile(path, "stray");
    const longAgo = new Date(Date.now() - 2 * DAY_MS);
    await utimes(strayOld, longAgo, longAgo);

    const result = await sweepAttachments(server.app.deps);
    expect(result.unsent).toBeGreaterThanOrEqual(1);
    expect(result.strays).toBeGreaterThanOrEqual(1);
    expect(await rowOf(stale.id)).toBeNull();
    expect(await exists(fileOf(tenant, stale.id))).toBe(false);
    expect(await exists(strayOld)).toBe(false);
    expect(await exists(strayNew)).toBe(true);
    for (const file of [recent, sentLongAgo]) {
      expect(await rowOf(file.id)).not.toBeNull();
      expect(await exists(fileOf(tenant, file.id))).toBe(true);
    }
    // A stale upload can no longer be sent.
    const refused = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${alice.token}` },
      body: JSON.stringify({
        query: print(SendMessage),
        variables: { input: { conversationId, body: "late", attachmentIds: [stale.id] } },
      }),
    });
    expect(((await refused.json()) as { errors?: GraphQLFormattedError[] }).errors?.[0]?.extensions?.code).toBe(
      "NOT_FOUND",
    );

    // A later `now` (or a shorter TTL) makes the recent ones stale too; sent files stay.
    const later = await sweepAttachments(server.app.deps, new Date(Date.now() + 2 * DAY_MS));
    expect(later.failed).toBe(0);
    expect(await rowOf(recent.id)).toBeNull();
    expect(await exists(fileOf(tenant, recent.id))).toBe(false);
    expect(await exists(strayNew)).toBe(false);
    expect(await exists(fileOf(tenant, sentLongAgo.id))).toBe(true);

    // Sweeping again, or from two instances at once, finds nothing left and fails nothing.
    const twice = await Promise.all([sweepAttachments(server.app.deps), sweepAttachments(limited.app.deps)]);
    for (const again of twice) expect(again.failed).toBe(0);
    expect(await exists(fileOf(tenant, sentLongAgo.id))).toBe(true);
  });

  it("the sweeper started by the app sweeps periodically and stops cleanly", async () => {
    const tenant = await createTenant(url, ["Alice", "Bob"]);
    const [alice] = usersOf(tenant);
    const conversationId = await group(url, alice);
    const stale = await upload(url, alice, conversationId);
    await age(tenant, stale.id, 2 * DAY_MS);
    const sweeper = startAttachmentSweeper(server.app.deps, 20);
    try {
      for (let i = 0; i < 250 && (await exists(fileOf(tenant, stale.id))); i++) await sleep(20);
      expect(await exists(fileOf(tenant, stale.id))).toBe(false);
      expect(await rowOf(stale.id)).toBeNull();
    } finally {
      await sweeper.stop();
    }
  });

  it("the tenant quota refuses an upload beyond it and stores nothing; deleting frees space", async () => {
    const tenant = await createTenant(limited.url, ["Alice", "Bob"]);
    const [alice] = usersOf(tenant);
    const conversationId = await group(limited.url, alice);
    const first = await upload(limited.url, alice, conversationId, 60);
    const filesBefore = await readdir(join(attachmentsDir, tenant.id));

    const refused = await uploadRaw(limited.url, alice, conversationId, 60);
    expect(refused.data?.uploadAttachment ?? null).toBeNull();
    expect(refused.errors?.[0]?.extensions).toMatchObject({
      code: "PAYLOAD_TOO_LARGE",
      field: "file",
      quotaBytes: 100,
    });
    expect(refused.errors?.[0]?.message).toMatch(/quota/);
    expect(await readdir(join(attachmentsDir, tenant.id))).toEqual(filesBefore);

    // Within what is left it still accepts; other tenants have quotas of their own.
    await upload(limited.url, alice, conversationId, 40);
    const other = await createTenant(limited.url, ["Eve", "Frank"]);
    const [eve] = usersOf(other);
    await upload(limited.url, eve, await group(limited.url, eve), 100);

    // Sent with a message, then deleted: its bytes count no more.
    const message = await send(limited.url, alice, conversationId, [first.id]);
    await ok(limited.url, DeleteMessage, { id: message.id }, as(alice));
    await upload(limited.url, alice, conversationId, 60);
    expect((await uploadRaw(limited.url, alice, conversationId, 1)).errors?.[0]?.extensions?.code).toBe(
      "PAYLOAD_TOO_LARGE",
    );

    // Deleting the group frees everything.
    await ok(limited.url, DeleteGroup, { id: conversationId }, as(alice));
    await upload(limited.url, alice, await group(limited.url, alice), 100);
  });

  it("concurrent uploads never exceed the quota together", async () => {
    const tenant = await createTenant(limited.url, ["Alice", "Bob"]);
    const [alice, bob] = usersOf(tenant);
    const conversationId = await group(limited.url, alice, [bob]);
    const results = await Promise.all(
      Array.from({ length: 6 }, (_, i) => uploadRaw(limited.url, i % 2 ? bob : alice, conversationId, 30)),
    );
    const accepted = results.filter((r) => r.data?.uploadAttachment);
    const refused = results.filter((r) => r.errors?.[0]?.extensions?.code === "PAYLOAD_TOO_LARGE");
    expect(accepted).toHaveLength(3);
    expect(refused).toHaveLength(3);
    expect(await readdir(join(attachmentsDir, tenant.id))).toHaveLength(3);
  });
});
