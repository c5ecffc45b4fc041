import { Readable } from "node:stream";
import { GraphQLError } from "graphql";
import { credentialsFromHeaders } from "../auth/credentials.ts";
import { type AppDeps, createContext } from "../context.ts";
import { appError } from "../errors.ts";
import { isClientError } from "../graphql/errors.ts";
import { findDownloadable, verifySignedUrl } from "../services/attachments.ts";
import { requireConversation } from "../services/conversations.ts";
import { jsonError, statusOf } from "./respond.ts";
import type { Route } from "./routes.ts";

type Downloadable = Awaited<ReturnType<typeof findDownloadable>>;

/** The attachment a request may download: by a valid signed link, or by the caller's credentials. */
async function authorize(deps: AppDeps, request: Request, url: URL, id: string): Promise<Downloadable> {
  if (url.searchParams.has("signature")) {
    const valid = verifySignedUrl(
      deps.urlSecret,
      id,
      url.searchParams.get("expires"),
      url.searchParams.get("signature"),
    );
    if (!valid) throw appError("FORBIDDEN", "This download link is invalid or has expired");
    // The signature names the attachment, so no tenant scope is needed to find it.
    const row = await deps.db.prisma.attachment.findUnique({
      where: { id },
      include: { message: { select: { deletedAt: true } } },
    });
    if (!row || row.message?.deletedAt) throw appError("NOT_FOUND", "Attachment not found");
    return row;
  }
  const { authorization, apiKey } = credentialsFromHeaders(request.headers);
  const ctx = await createContext(deps, { authorization, apiKey });
  if (!ctx.principal) throw appError("UNAUTHENTICATED", ctx.authError ?? "Authentication required");
  const attachment = await findDownloadable(ctx, id);
  await requireConversation(ctx, attachment.conversationId, "id");
  // An upload not yet sent is its uploader's alone.
  const userId = ctx.principal.kind === "user" ? ctx.principal.userId : null;
  if (!attachment.messageId && userId && attachment.uploaderId !== userId) {
    throw appError("NOT_FOUND", "Attachment not found");
  }
  return attachment;
}

/**
 * Downloads: with a signed link from Attachment.url, or with the caller's credentials in
 * headers (members of the conversation; an unsent upload only for its uploader). Always
 * served as a download, never rendered by the browser in our origin.
 */
export function attachmentsRoute(deps: AppDeps): Route {
  return {
    methods: ["GET", "HEAD"],
    path: /^\/attachments\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i,
    async handle(request, match) {
      const id = (match[1] as string).toLowerCase();
      let attachment: Downloadable;
      try {
        attachment = await authorize(deps, request, new URL(request.url), id);
      } catch (error) {
        if (error instanceof GraphQLError && isClientError(error)) {
          const code = String(error.extensions.code);
          return jsonError(statusOf(code), code, error.message);
        }
        throw error;
      }
      const stored = await deps.attachments.get(attachment.storageKey);
      if (!stored) return jsonError(404, "NOT_FOUND", "Attachment not found");
      const ascii = attachment.filename.replace(/[^\x20-\x7e]/g, "_").replace(/["\\]/g, "_");
      const headers = {
        "content-type": attachment.mimeType,
        "content-length": String(stored.size),
        "content-disposition": `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(attachment.filename)}`,
        "x-content-type-options": "nosniff",
        "content-security-policy": "default-src 'none'; sandbox",
        "cache-control": "private, max-age=300",
      };
      if (request.method === "HEAD") {
        stored.stream.destroy();
        return new Response(null, { status: 200, headers });
      }
      return new Response(Readable.toWeb(stored.stream) as ReadableStream<Uint8Array>, { status: 200, headers });
    },
  };
}
