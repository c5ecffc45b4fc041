import { ApolloClient, ApolloLink, CombinedGraphQLErrors, HttpLink, InMemoryCache } from "@apollo/client";
import { SetContextLink } from "@apollo/client/link/context";
import { ErrorLink } from "@apollo/client/link/error";
import { getMainDefinition } from "@apollo/client/utilities";
import { print } from "graphql";
import type { Client } from "graphql-ws";
import { from, Observable, switchMap, throwError } from "rxjs";
import possibleTypes from "./generated/possible-types.ts";
import { type ChatClientOptions, refusesCredentials, sessionOf } from "./options.ts";
import { subscribeResumable } from "./resume.ts";
import type { AuthSession } from "./session.ts";
import { createWsClient } from "./ws.ts";

/** Subscriptions over graphql-ws, resumed from their last cursor after a reconnect. */
export class ResumableWsLink extends ApolloLink {
  constructor(readonly client: Client) {
    super();
  }

  override request(operation: ApolloLink.Operation): Observable<ApolloLink.Result> {
    return new Observable((observer) =>
      subscribeResumable(
        this.client,
        {
          query: print(operation.query),
          document: operation.query,
          operationName: operation.operationName,
          variables: operation.variables,
          extensions: operation.extensions,
        },
        {
          next: (result) => observer.next(result as ApolloLink.Result),
          error: (error) => observer.error(error),
          complete: () => observer.complete(),
        },
      ),
    );
  }
}

export interface ChatApolloClient {
  apollo: ApolloClient;
  session: AuthSession;
  ws: Client;
  /** Closes the WebSocket and stops the client. */
  dispose(): Promise<void>;
}

/**
 * An Apollo Client for the chat API: queries and mutations over HTTP with the session's
 * credentials (renewed before they expire, and once more when refused), subscriptions over
 * graphql-ws with credentials in connection_init, resumed by cursor after a reconnect.
 */
export function createApolloClient(options: ChatClientOptions): ChatApolloClient {
  const session = sessionOf(options);
  const ws = createWsClient(options.url, session, options);
  const credentials = new SetContextLink(async (context) => {
    await session.ensureFresh();
    return { headers: { ...context.headers, ...session.headers() }, presentedToken: session.accessToken };
  });
  // Refused credentials: renew them once and send the operation again.
  const renewal = new ErrorLink(({ error, operation, forward }) => {
    if (!CombinedGraphQLErrors.is(error) || !refusesCredentials(error.errors)) return;
    const context = operation.getContext();
    if (context.renewed) return;
    return from(session.refused(context.presentedToken as string | undefined)).pipe(
      switchMap((renewed) => {
        if (!renewed) return throwError(() => error);
        operation.setContext({ renewed: true });
        return forward(operation);
      }),
    );
  });
  const http = ApolloLink.from([renewal, credentials, new HttpLink({ uri: options.url, fetch: options.fetch })]);
  const link = ApolloLink.split(
    ({ query }) => {
      const definition = getMainDefinition(query);
      return definition.kind === "OperationDefinition" && definition.operation === "subscription";
    },
    new ResumableWsLink(ws),
    http,
  );
  const apollo = new ApolloClient({ link, cache: new InMemoryCache({ possibleTypes: possibleTypes.possibleTypes }) });
  return {
    apollo,
    session,
    ws,
    async dispose() {
      apollo.stop();
      await ws.dispose();
    },
  };
}
