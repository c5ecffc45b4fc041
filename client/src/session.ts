import { print } from "graphql";
import { type AuthResultFragment, RefreshSessionDocument } from "./generated/graphql.ts";

/** What a client presents: an access token (with its refresh token to renew it) or an API key. */
export interface Credentials {
  accessToken?: string;
  /** When the access token expires; without it the token is renewed only once it is refused. */
  accessTokenExpiresAt?: string | Date;
  /** From signUp / signIn / refreshSession; single use, replaced on each refresh. */
  refreshToken?: string;
  /** A tenant's API key (server-to-server): sent as X-API-Key, never refreshed. */
  apiKey?: string;
}

export interface SessionOptions {
  /** The GraphQL endpoint, e.g. `http://localhost:4000/graphql`. */
  url: string;
  credentials?: Credentials;
  fetch?: typeof fetch;
  /** Renew this long before the access token expires (default 30 s); 0: only once refused. */
  refreshMarginMs?: number;
  /** Called with every new session payload (store the new refresh token here). */
  onRefresh?: (payload: AuthResultFragment) => void;
  /** The session could not be renewed (refresh token expired or revoked): sign in again. */
  onSessionEnded?: (error: Error) => void;
}

/** The session could not be renewed: the app has to sign in again. */
export class SessionEndedError extends Error {
  override name = "SessionEndedError";
}

/**
 * Holds the credentials shared by HTTP requests and the WebSocket, and renews the access
 * token through `refreshSession`: before it expires, and when the server refuses it
 * (UNAUTHENTICATED over HTTP, a 4403 close on the socket). Concurrent renewals are one.
 */
export class AuthSession {
  #accessToken: string | undefined;
  #expiresAt: number | undefined;
  #refreshToken: string | undefined;
  #apiKey: string | undefined;
  #refusedToken: string | undefined;
  #refreshing: Promise<void> | undefined;
  #ended: SessionEndedError | undefined;
  readonly #options: SessionOptions;
  readonly #fetch: typeof fetch;

  constructor(options: SessionOptions) {
    this.#options = options;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.#apiKey = options.credentials?.apiKey;
    this.#setAccess(options.credentials ?? {});
  }

  get accessToken(): string | undefined {
    return this.#accessToken;
  }

  get refreshToken(): string | undefined {
    return this.#refreshToken;
  }

  /** Takes the tokens of a signUp / signIn / refreshSession payload. */
  signedIn(payload: Pick<AuthResultFragment, "accessToken" | "accessTokenExpiresAt" | "refreshToken">): void {
    this.#ended = undefined;
    this.#setAccess(payload);
  }

  /** Forgets the user's tokens (after signOut). */
  signedOut(): void {
    this.#accessToken = this.#refreshToken = this.#expiresAt = undefined;
  }

  #setAccess(credentials: Credentials): void {
    this.#accessToken = credentials.accessToken;
    this.#refreshToken = credentials.refreshToken ?? this.#refreshToken;
    this.#expiresAt = credentials.accessTokenExpiresAt
      ? new Date(credentials.accessTokenExpiresAt).getTime()
      : undefined;
  }

  /** HTTP headers for the current credentials. */
  headers(): Record<string, string> {
    if (this.#accessToken) return { authorization: `Bearer ${this.#accessToken}` };
    if (this.#apiKey) return { "x-api-key": this.#apiKey };
    return {};
  }

  /** The connection_init payload for the current credentials, renewed first when due. */
  async connectionParams(): Promise<Record<string, unknown>> {
    try {
      await this.ensureFresh();
    } catch (error) {
      if (error instanceof SessionEndedError) throw error;
      // The server is unreachable (restarting?): connect with what there is; a refusal renews.
    }
    if (this.#ended) throw this.#ended;
    if (this.#accessToken) {
      if (this.#refusedToken === this.#accessToken && !this.#refreshToken) {
        // Refused before, and nothing to renew it with: connecting again would loop.
        throw new SessionEndedError("The access token was refused and there is no refresh token");
      }
      return { authorization: `Bearer ${this.#accessToken}` };
    }
    if (this.#apiKey) return { apiKey: this.#apiKey };
    return {};
  }

  /** Whether the access token is expired or about to, and can be renewed. */
  due(): boolean {
    if (!this.#refreshToken || !this.#accessToken) return false;
    if (this.#refusedToken === this.#accessToken) return true;
    const margin = this.#options.refreshMarginMs ?? 30_000;
    return this.#expiresAt !== undefined && Date.now() >= this.#expiresAt - margin;
  }

  /** Renews the access token if it is due. */
  async ensureFresh(): Promise<void> {
    if (this.due()) await this.refresh();
  }

  /**
   * The server refused `token`: renew it, unless that already happened meanwhile. Resolves
   * true when there is a newer token to retry with.
   */
  async refused(token: string | undefined): Promise<boolean> {
    if (!token) return false;
    if (token !== this.#accessToken) return true;
    this.#refusedToken = token;
    if (!this.#refreshToken) return false;
    try {
      await this.refresh();
      return this.#accessToken !== token;
    } catch {
      return false;
    }
  }

  /** Renews the access token through `refreshSession` (once, however many callers wait). */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#renew().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #renew(): Promise<void> {
    const refreshToken = this.#refreshToken;
    if (!refreshToken) throw new SessionEndedError("No refresh token");
    // A network failure (the server restarting) throws here and keeps the tokens for later.
    const response = await this.#fetch(this.#options.url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/graphql-response+json, application/json" },
      body: JSON.stringify({ query: print(RefreshSessionDocument), variables: { refreshToken } }),
    });
    const body = (await response.json()) as {
      data?: { refreshSession?: AuthResultFragment } | null;
      errors?: { message: string; extensions?: { code?: string } }[];
    };
    const payload = body.data?.refreshSession;
    if (payload) {
      this.#setAccess(payload);
      this.#options.onRefresh?.(payload);
      return;
    }
    const codes = body.errors?.map((e) => e.extensions?.code ?? e.message) ?? [];
    if (!codes.includes("UNAUTHENTICATED")) {
      // Rate limited, or a server error: the session may still be valid.
      throw new Error(`refreshSession failed: ${codes.join(", ") || response.status}`);
    }
    this.signedOut();
    const error = new SessionEndedError(`The session has ended: ${codes.join(", ")}`);
    this.#ended = error;
    this.#options.onSessionEnded?.(error);
    throw error;
  }
}
