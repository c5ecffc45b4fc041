import { RequestCache } from "@pothos/plugin-scope-auth";
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

/**
 * Writes a subscription's results as `next` frames straight to its socket, without a trip
 * through graphql-ws's per-operation loop; the frame's payload text is serialized once per
 * group and event. graphql-ws still owns the operation: it waits on the returned stream,
 * which ends when the source ends, fails when it fails (graphql-ws then sends `error` or
 * `complete` as usual) and stops the source when the client completes. A result with errors
 * goes through graphql-ws (its hooks give the errors their codes), and the frames after it
 * wait until graphql-ws has sent it, so frames keep their order.
 */
function directStream(
  source: AsyncIterable<unknown>,
  deliver: (item: unknown) => Promise<ExecutionResult | null>,
): AsyncGenerator<ExecutionResult, undefined, undefined> {
  const iterator = source[Symbol.asyncIterator]();
  type Waiter = { resolve(item: IteratorResult<ExecutionResult, undefined>): void; reject(error: unknown): void };
  let waiter: Waiter | null = null;
  /** Resolved when graphql-ws asks for the next result (it has sent the previous one). */
  let asked: (() => void) | null = null;
  let ending: { error: unknown } | { done: true } | null = null;
  let stopped = false;
  const settle = () => {
    if (!waiter || !ending) return;
    const { resolve, reject } = waiter;
    waiter = null;
    if ("error" in ending) reject(ending.error);
    else resolve({ value: undefined, done: true });
  };
  const handOver = (result: ExecutionResult) =>
    new Promise<void>((resume) => {
      asked = resume;
      const current = waiter as Waiter;
      waiter = null;
      current.resolve({ value: result, done: false });
    });
  let started = false;
  const run = async () => {
    try {
      while (!stopped) {
        const item = await iterator.next();
        if (item.done || stopped) break;
        const passed = await deliver(item.value);
        if (passed && !stopped) await handOver(passed);
      }
      ending = { done: true };
    } catch (error) {
      ending = stopped ? { done: true } : { error };
    }
    settle();
  };
  const stream: AsyncGenerator<ExecutionResult, undefined, undefined> = {
    next() {
      return new Promise((resolve, reject) => {
        waiter = { resolve, reject };
        if (asked) {
          const resume = asked;
          asked = null;
          resume();
        }
        if (!started) {
          started = true;
          void run();
        }
        settle();
      });
    },
    async return() {
      stopped = true;
      ending ??= { done: true };
      asked?.();
      await iterator.return?.();
      settle();
      return { value: undefined, done: true };
    },
    async throw(error: unknown) {
      stopped = true;
      await iterator.return?.();
      throw error;
    },
    [Symbol.asyncIterator]() {
      return stream;
    },
  };
  return stream;
}

/** A shared result, the result itself once it is there, and, once a socket needed it, its JSON text. */
interface SharedResult {
  result: Promise<ExecutionResult>;
  settled?: ExecutionResult;
  json?: string;
}

/** The group's result as JSON text, serialized by the first subscriber that needs it. */
function sharedJson(shared: SharedResult, result: ExecutionResult): string {
  if (shared.json === undefined) shared.json = JSON.stringify(result);
  return shared.json;
}

/** Results of one event, per group key: shared while the event object lives. */
const resultsByEvent = new WeakMap<object, Map<string, SharedResult>>();
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

/**
 * Group keys, one instance each: every subscriber of a group holds the same flat string
 * instead of a concatenation of its own. Cleared when it grows large (keys are only
 * compared, so a cleared entry just means a new instance).
 */
const internedKeys = new Map<string, string>();

function intern(key: string): string {
  const known = internedKeys.get(key);
  if (known !== undefined) return known;
  if (internedKeys.size >= 10_000) internedKeys.clear();
  internedKeys.set(key, key);
  return key;
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
      // The scope checks of starting the stream are done; events run on copies with caches of
      // their own, so the subscription's context need not keep its cache for its whole life.
      RequestCache.clearForContext(base);
      const fixed = intern(subscriptionKey(args, base));
      const run = (payload: unknown) => execute({ ...args, rootValue: payload, contextValue: { ...base } });
      // Streams over all conversations position their items: the item is shared, its cursor is the subscriber's.
      const cursorPlan = planStreamCursor(args);
      // The key changes only when the permissions are re-read (a role change mid-stream).
      let keyedPermissions: readonly string[] | null = null;
      let key = "";
      const { delivery } = base;
      if (delivery) {
        // graphql-ws's own frame, with the payload written in: {"id":…,"type":"next","payload":…}.
        const framePrefix = `{"id":${JSON.stringify(delivery.id)},"type":"next","payload":`;
        const write = (json: string) => delivery.send(`${framePrefix}${json}}`);
        // Live items of single-conversation streams: executed once per group before the hub hands
        // them over, then written by the feed in the same pass (see realtime/hub.ts).
        delivery.prepare = (item) => {
          const shared = sharedOf(item, base.loadedPermissions());
          return shared && !shared.settled ? shared.result : undefined;
        };
        delivery.fast = (item) => {
          const shared = sharedOf(item, base.loadedPermissions());
          const result = shared?.settled;
          if (!shared || !result || result.errors?.length) return false;
          write(sharedJson(shared, result));
          return true;
        };
        return directStream(source as AsyncIterable<unknown>, (streamed) => send(write, streamed));
      }
      return mapStream(source as AsyncIterable<unknown>, async (streamed) => {
        if (!(streamed instanceof Positioned)) return (await sharedFor(streamed)).result;
        const result = await (await sharedFor(streamed.item)).result;
        return cursorPlan ? withStreamCursor(cursorPlan, result, streamed, base) : result;
      });

      /** Writes the frame of one item; returns the result instead when graphql-ws must send it. */
      async function send(write: (json: string) => void, streamed: unknown): Promise<ExecutionResult | null> {
        const item = streamed instanceof Positioned ? streamed.item : streamed;
        const shared = sharedOf(item, base.loadedPermissions()) ?? (await sharedFor(item));
        const result = shared.settled ?? (await shared.result);
        if (result.errors?.length) return result;
        // A stream cursor makes the subscriber's copy its own; otherwise the group's text is shared.
        write(
          cursorPlan && streamed instanceof Positioned
            ? JSON.stringify(withStreamCursor(cursorPlan, result, streamed, base))
            : sharedJson(shared, result),
        );
        return null;
      }

      async function sharedFor(payload: unknown): Promise<SharedResult> {
        return (
          sharedOf(payload, base.loadedPermissions()) ?? (sharedOf(payload, await base.permissions()) as SharedResult)
        );
      }

      /** The group's result for an event; null while the permissions (part of the key) are being read. */
      function sharedOf(payload: unknown, permissions: readonly string[] | null): SharedResult | null {
        if (payload === null || typeof payload !== "object") return { result: Promise.resolve(run(payload)) };
        if (!permissions) return null;
        if (permissions !== keyedPermissions) {
          keyedPermissions = permissions;
          key = intern(`${fixed}|${audienceOf(base, permissions)}`);
        }
        let results = resultsByEvent.get(payload);
        if (!results) {
          results = new Map();
          resultsByEvent.set(payload, results);
        }
        let shared = results.get(key);
        if (!shared) {
          const created: SharedResult = { result: Promise.resolve(run(payload)) };
          created.result.then(
            (value) => {
              created.settled = value;
            },
            () => {},
          );
          shared = created;
          results.set(key, shared);
        }
        return shared;
      }
    });
  },
};
