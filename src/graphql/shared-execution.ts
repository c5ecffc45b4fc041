import { createSourceEventStream, type ExecutionArgs, type ExecutionResult, execute } from "graphql";
import type { Plugin } from "graphql-yoga";
import type { Context } from "../context.ts";
import { Positioned } from "../realtime/positions.ts";
import { documentIsViewerDependent } from "./audience.ts";
import { planStreamCursor, withStreamCursor } from "./stream-cursor.ts";

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

/** Results of one event, per group key: shared while the event object lives. */
const resultsByEvent = new WeakMap<object, Map<string, Promise<ExecutionResult>>>();
const documentIds = new WeakMap<object, number>();
let nextDocumentId = 0;

/**
 * What a principal may see, as a key: its tenant, its kind and its permissions, and the
 * origin that absolute URLs are built from. Subscribers with equal keys get equal results
 * for every field that does not depend on who the viewer is.
 */
function audienceOf(ctx: Context, permissions: readonly string[]): string {
  const principal = ctx.principal;
  return `${principal?.tenantId}|${principal?.kind}|${ctx.origin ?? ""}|${[...permissions].sort().join(",")}`;
}

/** The part of the group key fixed for the life of a subscription: document, variables and, if needed, the viewer. */
function subscriptionKey(args: ExecutionArgs, ctx: Context): string {
  let id = documentIds.get(args.document);
  if (id === undefined) {
    id = nextDocumentId++;
    documentIds.set(args.document, id);
  }
  const viewer =
    documentIsViewerDependent(args.schema, args.document) && ctx.principal?.kind === "user" ? ctx.principal.userId : "";
  return `${id}|${args.operationName ?? ""}|${JSON.stringify(args.variableValues ?? {})}|${viewer}`;
}

/**
 * Live events are executed once per group, not once per subscriber. Subscribers share a
 * group when they run the same document with the same variables and may see the same
 * (same tenant, principal kind, permissions and origin; for documents selecting
 * viewer-dependent fields, the same viewer): the first of them to receive an event
 * executes it, the others reuse the result. Sharing needs the same event object, which
 * the feeds hand to every local subscriber; events read from storage for one subscriber
 * (replays, gaps) are executed for that subscriber alone.
 *
 * Each execution gets a context of its own (a shallow copy of the subscription's), so
 * per-request caches keyed on the context, scope-auth's above all, live for one event: a
 * permission lost mid-stream applies to the next event, and nothing grows with the number
 * of events. Shared state (the principal, its permissions, which the streams refresh on
 * role changes) stays on the subscription's context.
 */
export const sharedExecutionPlugin: Plugin = {
  onSubscribe({ setSubscribeFn }) {
    setSubscribeFn(async (args: ExecutionArgs) => {
      const source = await createSourceEventStream(args);
      if (!(Symbol.asyncIterator in (source as object))) return source as ExecutionResult;
      const base = args.contextValue as Context;
      const fixed = subscriptionKey(args, base);
      const run = (payload: unknown) => execute({ ...args, rootValue: payload, contextValue: { ...base } });
      // Streams over all conversations position their items: the item is shared, its cursor is the subscriber's.
      const cursorPlan = planStreamCursor(args);
      // The key changes only when the permissions are re-read (a role change mid-stream).
      let keyedPermissions: readonly string[] | null = null;
      let key = "";
      return mapStream(source as AsyncIterable<unknown>, async (streamed) => {
        if (!(streamed instanceof Positioned)) return resultOf(streamed);
        const result = await resultOf(streamed.item);
        return cursorPlan ? withStreamCursor(cursorPlan, result, streamed, base) : result;
      });

      async function resultOf(payload: unknown): Promise<ExecutionResult> {
        if (payload === null || typeof payload !== "object") return run(payload);
        const permissions = await base.permissions();
        if (permissions !== keyedPermissions) {
          keyedPermissions = permissions;
          key = `${fixed}|${audienceOf(base, permissions)}`;
        }
        let results = resultsByEvent.get(payload);
        if (!results) {
          results = new Map();
          resultsByEvent.set(payload, results);
        }
        let result = results.get(key);
        if (!result) {
          result = Promise.resolve(run(payload));
          results.set(key, result);
        }
        return result;
      }
    });
  },
};
