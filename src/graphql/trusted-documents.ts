/**
 * Trusted documents (TRUSTED_DOCUMENTS=<path to a persisted-operations manifest>): requests
 * with a user's token, or with none, may run only the operations of the manifest, sent by
 * id (`extensions.persistedQuery.sha256Hash` or `documentId`) or as their exact text.
 * Requests with the tenant's API key (backends) or the platform admin key keep sending
 * their own documents.
 * The manifest is what the client kit's codegen writes (client/src/generated/persisted-documents.json):
 * `{ "sha256:<hash>": "<document>" }`. The UI pages' manifest (UI_DIST/persisted-documents.json,
 * copied there by `npm run build:ui`) is trusted as well when present.
 */
import { readFileSync } from "node:fs";
import { usePersistedOperations } from "@graphql-yoga/plugin-persisted-operations";
import type { GraphQLParams, Plugin } from "graphql-yoga";
import { resolvePrincipal } from "../auth/principal.ts";
import { safeEqual } from "../auth/secrets.ts";
import type { AppDeps } from "../context.ts";
import { appError } from "../errors.ts";

export interface TrustedDocuments {
  byId: ReadonlyMap<string, string>;
  texts: ReadonlySet<string>;
}

/**
 * The manifests' documents, all trusted alike: TRUSTED_DOCUMENTS, and the UI pages' own
 * manifest where the UI is built (so the pages keep working with the restriction on).
 */
export function loadTrustedDocuments(...paths: string[]): TrustedDocuments {
  const byId = new Map<string, string>();
  for (const path of paths) {
    let manifest: unknown;
    try {
      manifest = JSON.parse(readFileSync(path, "utf8"));
    } catch (error) {
      throw new Error(`TRUSTED_DOCUMENTS: cannot read ${path} as JSON (${(error as Error).message})`);
    }
    if (!manifest || typeof manifest !== "object" || Array.isArray(manifest)) {
      throw new Error(`TRUSTED_DOCUMENTS: ${path} is not an object of id -> document`);
    }
    for (const [id, text] of Object.entries(manifest)) {
      if (typeof text !== "string") throw new Error(`TRUSTED_DOCUMENTS: the entry ${id} of ${path} is not a document`);
      byId.set(id, text);
      // Codegen writes "sha256:<hex>"; clients send the hex alone (extensions.persistedQuery.sha256Hash).
      if (id.startsWith("sha256:")) byId.set(id.slice("sha256:".length), text);
    }
  }
  return { byId, texts: new Set(byId.values()) };
}

/** The id a request names, if any (the two conventions clients use). */
function idOf(params: { extensions?: Record<string, unknown> | null; documentId?: unknown }): string | null {
  const persisted = params.extensions?.persistedQuery as { sha256Hash?: unknown } | undefined;
  if (typeof persisted?.sha256Hash === "string") return persisted.sha256Hash;
  return typeof params.documentId === "string" ? params.documentId : null;
}

/**
 * The document a request may run, or an error: by id from the manifest, or its own text
 * when the manifest holds exactly that text.
 */
export function trustedQuery(
  documents: TrustedDocuments,
  params: { query?: string | null; extensions?: Record<string, unknown> | null; documentId?: unknown },
) {
  const id = idOf(params);
  if (id) {
    const text = documents.byId.get(id);
    return text ?? appError("BAD_USER_INPUT", "Unknown persisted operation id", { field: "documentId" });
  }
  if (params.query && documents.texts.has(params.query)) return params.query;
  return appError(
    "FORBIDDEN",
    "This server accepts only the operations of its client kit (trusted documents); send the operation's id",
  );
}

/**
 * Whether a request holds a valid API key or the platform admin key (then it may send any
 * document): verified, not just present, so a made-up header does not lift the restriction.
 */
async function sendsOwnDocuments(deps: AppDeps, headers: Headers): Promise<boolean> {
  const adminKey = headers.get("x-platform-admin-key");
  const configured = deps.config.platformAdminKey;
  if (adminKey && configured && safeEqual(adminKey, configured)) return true;
  const apiKey = headers.get("x-api-key");
  if (!apiKey) return false;
  const principal = await resolvePrincipal(deps.db.prisma, deps.tokens, { apiKey }, deps.credentialCache).catch(
    () => null,
  );
  return principal?.kind === "service";
}

/** Over HTTP: ids resolved by Yoga's persisted-operations plugin, then only manifest texts pass for users. */
export function trustedDocumentsPlugins(deps: AppDeps, documents: TrustedDocuments): Plugin[] {
  return [
    usePersistedOperations({
      getPersistedOperation: (id) => documents.byId.get(id) ?? null,
      allowArbitraryOperations: true,
      extractPersistedOperationId: (params) => idOf(params as GraphQLParams & { documentId?: unknown }),
      customErrors: {
        notFound: { message: "Unknown persisted operation id", extensions: { code: "BAD_USER_INPUT" } },
        keyNotFound: {
          message: "Send a query, or the id of a persisted operation",
          extensions: { code: "BAD_USER_INPUT" },
        },
      },
    }),
    {
      async onParams({ request, params, setParams }) {
        const trusted = trustedQuery(documents, params as GraphQLParams & { documentId?: unknown });
        if (typeof trusted === "string") {
          // An id sent with a document of its own (the persisted-operations plugin leaves such
          // requests alone) runs the trusted document, never the one sent beside it.
          if (params.query !== trusted) {
            const { operationName, variables, extensions } = params;
            setParams({ query: trusted, operationName, variables, extensions });
          }
          return;
        }
        if (await sendsOwnDocuments(deps, request.headers)) return;
        throw trusted;
      },
    },
  ];
}
