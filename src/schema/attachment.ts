import { signedUrl, uploadAttachment } from "../services/attachments.ts";
import { builder } from "./builder.ts";

export const AttachmentRef = builder.prismaObject("Attachment", {
  description: "A file sent with a message (or uploaded and not yet sent).",
  authScopes: { permission: "chats:read" },
  fields: (t) => ({
    id: t.exposeID("id", { description: "Attachment id; pass it in sendMessage(input.attachmentIds)." }),
    filename: t.exposeString("filename", { description: "The file name as uploaded, without any path." }),
    mimeType: t.exposeString("mimeType", { description: "Its media type, one of ATTACHMENT_TYPES." }),
    size: t.exposeInt("size", { description: "Size in bytes." }),
    url: t.string({
      description:
        "A download link valid for ATTACHMENT_URL_TTL_SECONDS; ask again for a fresh one. Always served as a download.",
      resolve: (attachment, _args, ctx) => signedUrl(ctx, attachment),
    }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When it was uploaded." }),
  }),
});

builder.mutationField("uploadAttachment", (t) =>
  t.prismaField({
    type: "Attachment",
    description:
      "Uploads a file to a conversation (GraphQL multipart request). Send it with sendMessage(input.attachmentIds). Larger than MAX_UPLOAD_BYTES, or beyond the tenant's storage quota (TENANT_UPLOAD_QUOTA_BYTES; extensions.quotaBytes): PAYLOAD_TOO_LARGE; a type outside ATTACHMENT_TYPES: BAD_USER_INPUT. Uploads not sent within UPLOAD_ORPHAN_TTL_SECONDS are removed.",
    authScopes: { permission: "chats:create" },
    args: {
      conversationId: t.arg.id({ required: true, description: "The conversation it will be sent to." }),
      file: t.arg({ type: "File", required: true, description: "The file." }),
    },
    resolve: (_query, _root, args, ctx) =>
      ctx.deps.writeLimits.run(ctx, () => uploadAttachment(ctx, args.conversationId, args.file)),
  }),
);
