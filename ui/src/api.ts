import type { Credentials } from "@chat-api/client";
import { type ChatUrqlClient, createUrqlClient } from "@chat-api/client/urql";
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { type CombinedError, createRequest, type GraphQLRequest } from "@urql/core";

/** An error of the API with its `extensions.code` (NETWORK when the server was not reached). */
export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export type ConnectionState = "connecting" | "connected" | "offline";

const errorOf = (error: CombinedError): ApiError => {
  const first = error.graphQLErrors[0];
  if (first) return new ApiError(String(first.extensions?.code ?? "INTERNAL_SERVER_ERROR"), first.message);
  return new ApiError("NETWORK", "The chat server cannot be reached.");
};

/**
 * The operation with its hash (codegen puts it on each document) in `extensions.persistedQuery`:
 * a server with TRUSTED_DOCUMENTS on runs the pages' operations by it; others ignore it.
 */
function request<R, V extends Record<string, unknown>>(
  document: TypedDocumentNode<R, V>,
  variables: V,
): GraphQLRequest<R, V> {
  const hash = (document as { __meta__?: { hash?: string } }).__meta__?.hash;
  // `miss: true` makes urql send the document's text too (it leaves it out beside a hash
  // otherwise), which servers without TRUSTED_DOCUMENTS need.
  return createRequest(
    document,
    variables,
    hash ? { persistedQuery: { version: 1, sha256Hash: hash.replace(/^sha256:/, ""), miss: true } } : undefined,
  );
}

/**
 * The pages' connection to the API: queries and mutations over HTTP, subscriptions over one
 * WebSocket (resumed by cursor after a reconnect), through the client kit's urql client.
 */
export class Api {
  readonly client: ChatUrqlClient;
  #state: ConnectionState = "connecting";
  #listeners = new Set<(state: ConnectionState) => void>();

  constructor(credentials: Credentials, onSessionEnded?: (error: Error) => void) {
    this.client = createUrqlClient({
      url: new URL("/graphql", location.href).href,
      credentials,
      onSessionEnded,
    });
    this.client.ws.on("connecting", () => this.#set("connecting"));
    this.client.ws.on("connected", () => this.#set("connected"));
    this.client.ws.on("closed", () => this.#set("offline"));
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** Calls `listener` on every change of the WebSocket's state; returns the unsubscribe. */
  onState(listener: (state: ConnectionState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #set(state: ConnectionState): void {
    this.#state = state;
    for (const listener of this.#listeners) listener(state);
  }

  async query<R, V extends Record<string, unknown>>(document: TypedDocumentNode<R, V>, variables: V): Promise<R> {
    const result = await this.client.urql
      .executeQuery(request(document, variables), { requestPolicy: "network-only" })
      .toPromise();
    if (result.error) throw errorOf(result.error);
    return result.data as R;
  }

  async mutate<R, V extends Record<string, unknown>>(document: TypedDocumentNode<R, V>, variables: V): Promise<R> {
    const result = await this.client.urql.executeMutation(request(document, variables)).toPromise();
    if (result.error) throw errorOf(result.error);
    return result.data as R;
  }

  /** Live results of a subscription until the returned function is called. */
  subscribe<R, V extends Record<string, unknown>>(
    document: TypedDocumentNode<R, V>,
    variables: V,
    onData: (data: R) => void,
    onError: (error: ApiError) => void,
  ): () => void {
    const { unsubscribe } = this.client.urql.executeSubscription(request(document, variables)).subscribe((result) => {
      if (result.error) onError(errorOf(result.error));
      else if (result.data) onData(result.data as R);
    });
    return unsubscribe;
  }

  dispose(): void {
    void this.client.dispose();
  }
}

/** A user-facing sentence for an error of the API. */
export function describe(error: unknown): string {
  if (error instanceof ApiError) {
    switch (error.code) {
      case "UNAUTHENTICATED":
        return "Your sign-in is not valid or has expired. Open this chat again from the app that shows it.";
      case "FORBIDDEN":
        return "You are not allowed to do this here.";
      case "NETWORK":
        return "The chat server cannot be reached. Check your connection.";
      default:
        return error.message;
    }
  }
  return error instanceof Error ? error.message : String(error);
}
