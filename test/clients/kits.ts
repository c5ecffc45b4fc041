/**
 * The client kit's Apollo Client and urql client behind one small interface, so every
 * scenario runs with both. Results come back as the app would see them: data, or an error.
 */

import { type AuthSession, type ChatClientOptions, createApolloClient, createUrqlClient } from "@chat-api/client";
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { expect } from "vitest";
import WebSocket from "ws";

export type KitName = "apollo" | "urql";
export const kitNames: KitName[] = ["apollo", "urql"];

/** What a subscription delivered so far, in order, and whether it ended. */
export interface Stream<T> {
  /** The next `n` items (waiting up to timeoutMs for all); fails the test on an error result. */
  take(n: number, timeoutMs?: number): Promise<T[]>;
  /** Items received and not yet taken. */
  pending(): T[];
  /** Errors the subscription delivered (an app would have noticed these). */
  errors: unknown[];
  unsubscribe(): void;
}

export interface Kit {
  name: KitName;
  session: AuthSession;
  query<T, V extends Record<string, unknown>>(document: TypedDocumentNode<T, V>, variables: V): Promise<T>;
  mutate<T, V extends Record<string, unknown>>(document: TypedDocumentNode<T, V>, variables: V): Promise<T>;
  subscribe<T, V extends Record<string, unknown>>(document: TypedDocumentNode<T, V>, variables: V): Stream<T>;
  dispose(): Promise<void>;
}

function stream<T>(): {
  stream: Stream<T>;
  push(item: T): void;
  fail(error: unknown): void;
  stop(fn: () => void): void;
} {
  const items: T[] = [];
  const waiters: (() => void)[] = [];
  const errors: unknown[] = [];
  let stop = () => {};
  const wake = () => {
    for (const waiter of waiters.splice(0)) waiter();
  };
  return {
    push(item) {
      items.push(item);
      wake();
    },
    fail(error) {
      errors.push(error);
      wake();
    },
    stop(fn) {
      stop = fn;
    },
    stream: {
      errors,
      pending: () => [...items],
      async take(n, timeoutMs = 15_000) {
        const deadline = Date.now() + timeoutMs;
        while (items.length < n) {
          expect(errors, "the subscription failed").toEqual([]);
          const left = deadline - Date.now();
          if (left <= 0) expect.fail(`received ${items.length} of ${n} items`);
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, Math.min(left, 1000));
            waiters.push(() => {
              clearTimeout(timer);
              resolve();
            });
          });
        }
        expect(errors, "the subscription failed").toEqual([]);
        return items.splice(0, n);
      },
      unsubscribe: () => stop(),
    },
  };
}

const required = <T>(data: T | undefined | null, error: unknown): T => {
  if (error) throw error;
  if (data == null) throw new Error("no data");
  return data;
};

export function createKit(name: KitName, options: Omit<ChatClientOptions, "webSocketImpl">): Kit {
  const withWs = { ...options, webSocketImpl: WebSocket };
  if (name === "apollo") {
    const { apollo, session, dispose } = createApolloClient(withWs);
    return {
      name,
      session,
      dispose,
      async query(query, variables) {
        const result = await apollo.query({ query, variables, fetchPolicy: "network-only" } as never);
        return required(result.data as never, result.error);
      },
      async mutate(mutation, variables) {
        const result = await apollo.mutate({ mutation, variables } as never);
        return required(result.data as never, result.error);
      },
      subscribe(query, variables) {
        const s = stream<never>();
        const subscription = apollo.subscribe({ query, variables } as never).subscribe({
          next: (result) => (result.error ? s.fail(result.error) : s.push(result.data as never)),
          error: (error) => s.fail(error),
        });
        s.stop(() => subscription.unsubscribe());
        return s.stream;
      },
    };
  }
  const { urql, session, dispose } = createUrqlClient(withWs);
  return {
    name,
    session,
    dispose,
    async query(query, variables) {
      const result = await urql.query(query, variables, { requestPolicy: "network-only" }).toPromise();
      return required(result.data, result.error);
    },
    async mutate(mutation, variables) {
      const result = await urql.mutation(mutation, variables).toPromise();
      return required(result.data, result.error);
    },
    subscribe(query, variables) {
      const s = stream<never>();
      const subscription = urql
        .subscription(query, variables)
        .subscribe((result) => (result.error ? s.fail(result.error) : s.push(result.data as never)));
      s.stop(() => subscription.unsubscribe());
      return s.stream;
    },
  };
}
