import { Client, cacheExchange, fetchExchange, subscriptionExchange } from "@urql/core";
import { authExchange } from "@urql/exchange-auth";
import type { Client as WsClient } from "graphql-ws";
import { type ChatClientOptions, refusesCredentials, sessionOf } from "./options.ts";
import { subscribeResumable } from "./resume.ts";
import type { AuthSession } from "./session.ts";
import { createWsClient } from "./ws.ts";

export interface ChatUrqlClient {
  urql: Client;
  session: AuthSession;
  ws: WsClient;
  /** Closes the WebSocket. */
  dispose(): Promise<void>;
}

/**
 * An urql client for the chat API: queries and mutations over HTTP with the session's
 * credentials (renewed through @urql/exchange-auth before they expire and when refused),
 * subscriptions over graphql-ws with credentials in connection_init, resumed by cursor
 * after a reconnect.
 */
export function createUrqlClient(options: ChatClientOptions): ChatUrqlClient {
  const session = sessionOf(options);
  const ws = createWsClient(options.url, session, options);
  const urql = new Client({
    url: options.url,
    fetch: options.fetch,
    preferGetMethod: false,
    exchanges: [
      cacheExchange,
      authExchange(async (utils) => ({
        addAuthToOperation(operation) {
          const headers = session.headers();
          return Object.keys(headers).length ? utils.appendHeaders(operation, headers) : operation;
        },
        willAuthError: () => session.due(),
        didAuthError: (error) => refusesCredentials(error.graphQLErrors),
        async refreshAuth() {
          // Due or refused (urql does not say which token failed; one renewal too many is harmless).
          // A failure reaches the app as the operation's error.
          await session.refused(session.accessToken).catch(() => false);
        },
      })),
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request, operation) {
          return {
            subscribe(sink) {
              const unsubscribe = subscribeResumable(
                ws,
                { ...request, query: request.query ?? "", document: operation.query },
                {
                  next: (result) => sink.next(result as Parameters<typeof sink.next>[0]),
                  error: (error) => sink.error(error),
                  complete: () => sink.complete(),
                },
              );
              return { unsubscribe };
            },
          };
        },
      }),
    ],
  });
  return {
    urql,
    session,
    ws,
    async dispose() {
      await ws.dispose();
    },
  };
}
