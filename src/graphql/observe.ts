/**
 * One log line and the metrics of every GraphQL operation, over HTTP and on WebSockets:
 * request id, tenant, principal kind, operation name and type, duration and error codes.
 * Never variables, tokens or message bodies. HTTP responses carry the request id in
 * `X-Request-Id` (a client's own, when well formed, is kept for correlation).
 */
import { randomUUID } from "node:crypto";
import { type DocumentNode, GraphQLError, getOperationAST } from "graphql";
import type { Plugin } from "graphql-yoga";
import type { AppDeps, Context } from "../context.ts";
import type { OperationRecord } from "../metrics.ts";
import { classifyError } from "./errors.ts";

const REQUEST_ID = /^[\w.:-]{1,128}$/;

/** An HTTP request's id and start, kept on its server context (which every later hook sees). */
export interface RequestInfo {
  id: string;
  started: number;
}

/** Gives every HTTP request its id (the client's `X-Request-Id` when well formed) and returns it as a header. */
export const requestIdPlugin: Plugin<{ requestInfo?: RequestInfo }> = {
  onRequest({ request, serverContext }) {
    const given = request.headers.get("x-request-id");
    (serverContext as { requestInfo?: RequestInfo }).requestInfo = {
      id: given && REQUEST_ID.test(given) ? given : randomUUID(),
      started: performance.now(),
    };
  },
  onResponse({ response, serverContext }) {
    const info = (serverContext as { requestInfo?: RequestInfo }).requestInfo;
    if (info) response.headers.set("x-request-id", info.id);
  },
};

function operationOf(document: DocumentNode | undefined, name: string | null | undefined) {
  const operation = document ? getOperationAST(document, name ?? undefined) : null;
  return {
    type: (operation?.operation ?? "unknown") as OperationRecord["type"],
    name: operation?.name?.value ?? name ?? null,
  };
}

function codesOf(errors: readonly unknown[] | undefined): string[] {
  if (!errors?.length) return [];
  const codes = new Set<string>();
  for (const error of errors) {
    const code = error instanceof GraphQLError ? classifyError(error).extensions?.code : undefined;
    codes.add(typeof code === "string" ? code : "INTERNAL_SERVER_ERROR");
  }
  return [...codes];
}

/** What the hooks see as context: Yoga's (HTTP, before the chat context exists) or the chat context. */
interface HookContext {
  requestInfo?: RequestInfo;
  chatContext?: Context;
  deps?: AppDeps;
  requestId?: string;
  principal?: Context["principal"];
  startedAt?: number;
}

/** Records one operation: a metric update and one log line. */
function record(deps: AppDeps, context: HookContext, operation: ReturnType<typeof operationOf>, codes: string[]) {
  const chat = context.chatContext ?? (context.deps ? (context as Context) : undefined);
  const request = context.requestInfo;
  const seconds = request
    ? (performance.now() - request.started) / 1000
    : chat
      ? (Date.now() - chat.startedAt) / 1000
      : 0;
  deps.metrics.operation({ ...operation, seconds, codes });
  const principal = chat?.principal ?? null;
  deps.log.info(
    {
      requestId: request?.id ?? chat?.requestId,
      tenantId: principal?.tenantId,
      principal: principal?.kind ?? "anonymous",
      operation: operation.name,
      type: operation.type,
      transport: request ? "http" : "ws",
      durationMs: Math.round(seconds * 10_000) / 10,
      ...(codes.length ? { code: codes.join(",") } : {}),
    },
    "graphql operation",
  );
}

/** Logs and counts every operation once: when it failed to parse or validate, or when its result is ready. */
export function observePlugin(deps: AppDeps): Plugin {
  return {
    onParse({ context }) {
      return ({ result }) => {
        if (result instanceof Error) {
          record(deps, context as HookContext, { type: "unknown", name: null }, ["GRAPHQL_PARSE_FAILED"]);
        }
      };
    },
    onValidate({ context, params }) {
      return ({ valid, result }) => {
        if (valid) return;
        const operation = operationOf(
          params.documentAST,
          (context as { params?: { operationName?: string } }).params?.operationName,
        );
        record(deps, context as HookContext, operation, codesOf(result).length ? ["GRAPHQL_VALIDATION_FAILED"] : []);
      };
    },
    onExecute({ args }) {
      const context = args.contextValue as HookContext;
      const operation = operationOf(args.document, args.operationName);
      return {
        onExecuteDone({ result }) {
          const errors = Symbol.asyncIterator in result ? undefined : result.errors;
          record(deps, context, operation, codesOf(errors));
        },
      };
    },
    onSubscribe({ args }) {
      const context = args.contextValue as HookContext;
      const operation = operationOf(args.document, args.operationName);
      return {
        onSubscribeResult({ result }) {
          const errors = Symbol.asyncIterator in result ? undefined : result.errors;
          record(deps, context, operation, codesOf(errors));
        },
        onSubscribeError({ error }) {
          record(deps, context, operation, codesOf([error]));
        },
      };
    },
  };
}
