import type { Plugin } from "graphql-yoga";
import { credentialsFromHeaders } from "../auth/credentials.ts";
import { type Principal, resolvePrincipal } from "../auth/principal.ts";
import type { AppDeps } from "../context.ts";
import { jsonError, type NodeServerContext } from "./respond.ts";

const JSON_TYPES = ["application/json", "application/graphql-response+json", "application/graphql+json"];

class BodyTooLarge extends Error {}

/**
 * Reads a body up to `limit` bytes; past it, stops reading and throws BodyTooLarge. From a
 * socket it reads the Node request itself, which fails at once when the peer hangs up.
 */
async function readLimited(source: AsyncIterable<Uint8Array> | null, limit: number): Promise<Buffer> {
  if (!source) return Buffer.alloc(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of source) {
    size += chunk.byteLength;
    if (size > limit) throw new BodyTooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** What the gate leaves in the server context for the GraphQL context. */
export interface GateContext {
  /** The principal of an upload, verified before its body was read. */
  verifiedPrincipal?: Principal;
}

/**
 * The one gate every POST to the GraphQL endpoint passes, from a socket (Yoga's Node
 * adapter) or from `app.fetch`: media type, body limits, and for uploads verified
 * credentials before a single body byte is read. The body is then handed on in memory,
 * so nothing downstream reads an unbounded stream.
 */
export function requestGuardPlugin(deps: AppDeps, endpoint: string): Plugin {
  const { config, log } = deps;
  return {
    async onRequest({ request, url, setRequest, endResponse, fetchAPI, serverContext }) {
      const gate = serverContext as GateContext;
      if (request.method !== "POST" || url.pathname !== endpoint) return;
      const type = (request.headers.get("content-type") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
      const { authorization, apiKey } = credentialsFromHeaders(request.headers);
      const credentials = { authorization, apiKey };
      // Uploads must carry credentials in a header, which a browser only sends cross-site
      // after a CORS preflight: form posts cannot forge them.
      const multipart = type === "multipart/form-data" && !!(credentials.authorization || credentials.apiKey);
      if (multipart) {
        // Checked before the body is read, so an upload with bad credentials costs nothing.
        let principal: Principal | null;
        try {
          principal = await resolvePrincipal(deps.db.prisma, deps.tokens, credentials, deps.credentialCache);
        } catch (error) {
          const message = error instanceof Error && "extensions" in error ? error.message : "Invalid credentials";
          endResponse(jsonError(401, "UNAUTHENTICATED", message));
          return;
        }
        if (!principal) {
          endResponse(jsonError(401, "UNAUTHENTICATED", "Authentication required"));
          return;
        }
        // Verified already: the GraphQL context uses it instead of looking it up again.
        gate.verifiedPrincipal = principal;
      } else if (!JSON_TYPES.includes(type)) {
        endResponse(
          jsonError(
            415,
            "BAD_USER_INPUT",
            "POST bodies must be application/json (or multipart/form-data uploads with credentials in a header)",
          ),
        );
        return;
      }
      // An upload may be as large as a file plus its operation; anything else keeps the body limit.
      const limit = multipart ? config.maxUploadBytes + config.maxBodyBytes : config.maxBodyBytes;
      const tooLarge = () => jsonError(413, "PAYLOAD_TOO_LARGE", `Request body exceeds ${limit} bytes`);
      const declared = Number(request.headers.get("content-length") ?? 0);
      if (declared > limit) {
        endResponse(tooLarge());
        return;
      }
      const aborted = (reason: string) => {
        // The client went away or sent a broken stream: one line, and an answer nobody may read.
        log.warn({ err: reason }, "request body aborted");
        endResponse(jsonError(400, "BAD_USER_INPUT", "The request body could not be read"));
      };
      const req = (serverContext as NodeServerContext).req;
      let body: Buffer;
      try {
        body = await readLimited(req ?? (request.body as AsyncIterable<Uint8Array> | null), limit);
      } catch (error) {
        if (error instanceof BodyTooLarge) {
          endResponse(tooLarge());
          return;
        }
        aborted((error as Error).message);
        return;
      }

      setRequest(
        new fetchAPI.Request(request.url, {
          method: "POST",
          headers: request.headers,
          body: body as unknown as BodyInit,
          signal: request.signal,
        }),
      );
    },
  };
}
