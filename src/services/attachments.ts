import { createHmac, randomUUID } from "node:crypto";
import { safeEqual } from "../auth/secrets.ts";
import type { Context } from "../context.ts";
import type { TransactionClient } from "../db/client.ts";
import { appError, badInput, notFound } from "../errors.ts";
import type { Attachment } from "../generated/prisma/client.ts";
import { joinKey } from "../storage/attachments.ts";
import { tenantOf } from "./access.ts";
import { removeAttachmentFiles } from "./attachment-gc.ts";
import { requireConversation } from "./conversations.ts";

export type { Attachment };

/** Keeps a name a browser can show and a disk would accept: no paths, no control characters. */
export function sanitizeFilename(name: string): string {
  const base = name.split(/[\\/]/).pop() ?? "";
  const clean = base
    .normalize("NFC")
    .replace(/[\p{Cc}"]/gu, "")
    .replace(/^\.+/, "")
    .trim()
    .slice(0, 200);
  return clean || "file";
}

/** Bytes of attachments the tenant keeps stored: sent ones and uploads not sent yet. */
async function storedBytes(db: Pick<TransactionClient, "$queryRaw">, tenantId: string): Promise<number> {
  const [row] = await db.$queryRaw<{ used: number }[]>`
    SELECT COALESCE(SUM("size"), 0)::float8 AS "used" FROM "Attachment" WHERE "tenantId" = ${tenantId}::uuid`;
  return Number(row?.used ?? 0);
}

function quotaExceeded(quotaBytes: number) {
  return appError(
    "PAYLOAD_TOO_LARGE",
    `The tenant's storage quota of ${quotaBytes} bytes is used up; delete messages with attachments to free space`,
    { field: "file", quotaBytes },
  );
}

/**
 * Stores an upload for a conversation the viewer can post to. It belongs to no message
 * until its uploader sends it with sendMessage(attachmentIds). The tenant's attachments
 * may not exceed TENANT_UPLOAD_QUOTA_BYTES in total.
 */
export async function uploadAttachment(ctx: Context, conversationId: string, file: File): Promise<Attachment> {
  const { conversation } = await requireConversation(ctx, conversationId, "conversationId");
  const { maxUploadBytes, attachmentTypes, tenantUploadQuotaBytes: quota } = ctx.deps.config;
  if (file.size > maxUploadBytes) {
    throw appError("PAYLOAD_TOO_LARGE", `The file exceeds ${maxUploadBytes} bytes`, { field: "file" });
  }
  if (file.size === 0) throw badInput("file", "The file is empty");
  const mimeType = (file.type || "application/octet-stream").split(";")[0]?.trim().toLowerCase() ?? "";
  if (!attachmentTypes.includes(mimeType)) {
    throw badInput("file", `Files of type ${mimeType.slice(0, 100)} are not accepted`);
  }
  const tenantId = tenantOf(ctx);
  // Refused before a byte is written; checked again, exactly, when the row is inserted.
  if (quota && (await storedBytes(ctx.prisma, tenantId)) + file.size > quota) throw quotaExceeded(quota);
  const id = randomUUID();
  const storageKey = joinKey(conversation.tenantId, id);
  const bytes = new Uint8Array(await file.arrayBuffer());
  await ctx.deps.attachments.put(storageKey, bytes);
  try {
    return await ctx.prisma.$transaction(async (tx) => {
      if (quota) {
        // One upload of the tenant at a time passes this point, so concurrent uploads
        // cannot together overshoot the quota. The lock ends with the transaction.
        await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${`attachment-quota:${tenantId}`}, 0))`;
        if ((await storedBytes(tx, tenantId)) + bytes.byteLength > quota) throw quotaExceeded(quota);
      }
      return tx.attachment.create({
        data: {
          id,
          tenantId,
          conversationId: conversation.id,
          uploaderId: ctx.principal?.kind === "user" ? ctx.principal.userId : null,
          filename: sanitizeFilename(file.name),
          mimeType,
          size: bytes.byteLength,
          storageKey,
        },
      });
    });
  } catch (error) {
    await removeAttachmentFiles(ctx.deps, [storageKey], ctx.requestId);
    throw error;
  }
}

function signature(secret: string, id: string, expires: number): string {
  return createHmac("sha256", secret).update(`attachment:${id}:${expires}`).digest("base64url");
}

/** A short-lived URL anyone holding it may download from; handed only to readers of the message. */
export function signedUrl(ctx: Context, attachment: Attachment): string {
  const expires = Math.floor(Date.now() / 1000) + ctx.deps.config.attachmentUrlTtlSeconds;
  const sig = signature(ctx.deps.urlSecret, attachment.id, expires);
  const origin = ctx.deps.config.publicUrl ?? ctx.origin ?? "";
  return `${origin}/attachments/${attachment.id}?expires=${expires}&signature=${sig}`;
}

export function verifySignedUrl(secret: string, id: string, expires: string | null, sig: string | null): boolean {
  const at = Number(expires);
  if (!sig || !Number.isInteger(at) || at < Date.now() / 1000) return false;
  return safeEqual(signature(secret, id, at), sig);
}

/** Loads a downloadable attachment: sent with a message that is not deleted, or not yet sent. */
export async function findDownloadable(ctx: Context, id: string) {
  const attachment = await ctx.prisma.attachment.findFirst({
    where: { id, tenantId: tenantOf(ctx) },
    include: { message: { select: { deletedAt: true } } },
  });
  if (!attachment || attachment.message?.deletedAt) throw notFound("Attachment");
  return attachment;
}
