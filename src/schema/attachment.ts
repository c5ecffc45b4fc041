import { builder } from "./builder.ts";

/** Placeholder replaced below once attachments are served. */
export const AttachmentRef = builder.prismaObject("Attachment", {
  description: "A file sent with a message.",
  authScopes: { permission: "chats:read" },
  fields: (t) => ({
    id: t.exposeID("id", { description: "Attachment id; pass it in sendMessage(input.attachmentIds)." }),
    filename: t.exposeString("filename", { description: "The file name as uploaded (sanitized)." }),
    mimeType: t.exposeString("mimeType", { description: "Its media type, from the allowed list." }),
    size: t.exposeInt("size", { description: "Size in bytes." }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When it was uploaded." }),
  }),
});
