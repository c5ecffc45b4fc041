import type { Credentials } from "./principal.ts";

/** Credentials as HTTP headers carry them (requests, uploads, downloads). */
export function credentialsFromHeaders(headers: Headers): Credentials & { platformAdminKey: string | null } {
  return {
    authorization: headers.get("authorization"),
    apiKey: headers.get("x-api-key"),
    platformAdminKey: headers.get("x-platform-admin-key"),
  };
}

/** Credentials as the graphql-ws `connection_init` payload carries them. */
export function credentialsFromConnectionParams(params: Record<string, unknown>): Credentials {
  const authorization = params.authorization ?? params.Authorization;
  return {
    authorization: typeof authorization === "string" ? authorization : undefined,
    apiKey: typeof params.apiKey === "string" ? params.apiKey : undefined,
  };
}
