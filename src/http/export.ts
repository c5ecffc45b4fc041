import { GraphQLError } from "graphql";
import { credentialsFromHeaders } from "../auth/credentials.ts";
import { type AppDeps, createContext } from "../context.ts";
import { isClientError } from "../graphql/errors.ts";
import { exportTenant } from "../services/tenant-data.ts";
import { jsonError, statusOf } from "./respond.ts";
import type { Route } from "./routes.ts";

/**
 * `GET /export` with the tenant's API key (`X-Api-Key`): the tenant's data as NDJSON,
 * streamed (see services/tenant-data.ts exportTenant); audited.
 */
export function exportRoute(deps: AppDeps): Route {
  return {
    methods: ["GET"],
    path: /^\/export$/,
    async handle(request) {
      const ctx = await createContext(deps, { apiKey: credentialsFromHeaders(request.headers).apiKey });
      if (!ctx.principal)
        return jsonError(401, "UNAUTHENTICATED", ctx.authError ?? "Send the tenant's API key in X-Api-Key");
      try {
        const body = await exportTenant(ctx);
        const date = new Date().toISOString().slice(0, 10);
        return new Response(body, {
          headers: {
            "content-type": "application/x-ndjson; charset=utf-8",
            "content-disposition": `attachment; filename="tenant-${ctx.principal.tenantId}-${date}.ndjson"`,
            "cache-control": "no-store",
          },
        });
      } catch (error) {
        if (error instanceof GraphQLError && isClientError(error)) {
          const code = String(error.extensions.code);
          return jsonError(statusOf(code), code, error.message);
        }
        throw error;
      }
    },
  };
}
