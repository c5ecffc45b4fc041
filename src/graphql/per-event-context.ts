import { createSourceEventStream, type ExecutionArgs, type ExecutionResult, execute } from "graphql";
import type { Plugin } from "graphql-yoga";

/** Maps a source stream to execution results; return() reaches the source at once, even while it waits. */
function mapStream<T>(
  source: AsyncIterable<unknown>,
  map: (payload: unknown) => Promise<T> | T,
): AsyncGenerator<T, undefined, undefined> {
  const iterator = source[Symbol.asyncIterator]();
  const done = { value: undefined, done: true } as const;
  const stream: AsyncGenerator<T, undefined, undefined> = {
    async next() {
      const item = await iterator.next();
      if (item.done) return done;
      return { value: await map(item.value), done: false };
    },
    async return() {
      await iterator.return?.();
      return done;
    },
    async throw(error: unknown) {
      if (iterator.throw) await iterator.throw(error);
      throw error;
    },
    [Symbol.asyncIterator]() {
      return stream;
    },
  };
  return stream;
}

/**
 * Executes each event of a subscription with a context of its own (a shallow copy of the
 * subscription's), so that per-request caches keyed on the context, scope-auth's above all,
 * live for one event: a permission lost mid-stream applies to the next event, and nothing
 * grows with the number of events. Shared state (the principal, its permissions, which the
 * streams refresh on role changes) stays on the subscription's context.
 */
export const perEventContextPlugin: Plugin = {
  onSubscribe({ setSubscribeFn }) {
    setSubscribeFn(async (args: ExecutionArgs) => {
      const source = await createSourceEventStream(args);
      if (!(Symbol.asyncIterator in (source as object))) return source as ExecutionResult;
      const base = args.contextValue as object;
      return mapStream(source as AsyncIterable<unknown>, (payload) =>
        execute({ ...args, rootValue: payload, contextValue: { ...base } }),
      );
    });
  },
};
