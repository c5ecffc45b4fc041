import type { AuthResultFragment } from "./generated/graphql.ts";
import { AuthSession, type Credentials } from "./session.ts";
import type { WsOptions } from "./ws.ts";

/** Options of createApolloClient and createUrqlClient. */
export interface ChatClientOptions extends WsOptions {
  /** The GraphQL endpoint, e.g. `http://localhost:4000/graphql`. */
  url: string;
  /** Initial credentials: an access token with its refresh token, or an API key. */
  credentials?: Credentials;
  /** A session shared with other clients (instead of `credentials`). */
  session?: AuthSession;
  fetch?: typeof fetch;
  /** Renew this long before the access token expires (default 30 s); 0: only once refused. */
  refreshMarginMs?: number;
  /** Every new session payload (persist `refreshToken` here). */
  onRefresh?: (payload: AuthResultFragment) => void;
  /** The session cannot be renewed any more: sign in again. */
  onSessionEnded?: (error: Error) => void;
}

export function sessionOf(options: ChatClientOptions): AuthSession {
  return (
    options.session ??
    new AuthSession({
      url: options.url,
      credentials: options.credentials,
      fetch: options.fetch,
      refreshMarginMs: options.refreshMarginMs,
      onRefresh: options.onRefresh,
      onSessionEnded: options.onSessionEnded,
    })
  );
}

/** Whether a GraphQL response refused the credentials. */
export const refusesCredentials = (errors: readonly { extensions?: Record<string, unknown> }[] | undefined) =>
  !!errors?.some((error) => error.extensions?.code === "UNAUTHENTICATED");
