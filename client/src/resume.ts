import { type DocumentNode, type FormattedExecutionResult, getOperationAST, Kind, parse } from "graphql";
import type { Client, Sink, SubscribePayload } from "graphql-ws";

/** Where a subscription's stream is: its last cursor, to resume from after a reconnect. */
export interface ResumeOptions {
  /** Start after this cursor (e.g. one kept from an earlier run of the app). */
  after?: string;
  /** Called with each new cursor, to keep it across app restarts. */
  onCursor?: (cursor: string) => void;
}

/** Whether an operation can resume: a subscription that declares a `$after` variable. */
export function resumable(document: DocumentNode | string): boolean {
  const ast = typeof document === "string" ? parse(document) : document;
  const operation = getOperationAST(ast);
  return (
    operation?.operation === "subscription" &&
    !!operation.variableDefinitions?.some(
      (v) => v.kind === Kind.VARIABLE_DEFINITION && v.variable.name.value === "after",
    )
  );
}

/** The `cursor` of a subscription result's root item (messageAdded, conversationEvents), if it has one. */
export function cursorOf(result: { data?: unknown }): string | undefined {
  const data = result.data as Record<string, unknown> | null | undefined;
  if (!data) return undefined;
  for (const value of Object.values(data)) {
    const cursor = (value as { cursor?: unknown } | null)?.cursor;
    if (typeof cursor === "string") return cursor;
  }
  return undefined;
}

/**
 * Subscribes through graphql-ws and, for a subscription with `$after`, remembers the cursor
 * of each item received. graphql-ws sends the same payload again after a reconnect; this
 * payload's `after` is then the last cursor seen, so the server replays exactly what was
 * missed (across a server restart too) and nothing twice.
 */
export function subscribeResumable(
  client: Client,
  request: SubscribePayload & { document?: DocumentNode },
  sink: Sink<FormattedExecutionResult<Record<string, unknown>, unknown>>,
  options: ResumeOptions = {},
): () => void {
  const { document, ...payload } = request;
  const tracks = resumable(document ?? payload.query);
  // Mutable on purpose: graphql-ws sends this object again on every reconnect.
  const own: { -readonly [K in keyof SubscribePayload]: SubscribePayload[K] } = {
    ...payload,
    variables: {
      ...payload.variables,
      ...(tracks && options.after !== undefined ? { after: options.after } : {}),
    },
  };
  return client.subscribe<Record<string, unknown>, unknown>(own, {
    next(result) {
      const cursor = tracks ? cursorOf(result) : undefined;
      if (cursor) {
        own.variables = { ...own.variables, after: cursor };
        options.onCursor?.(cursor);
      }
      sink.next(result);
    },
    error: (error) => sink.error(error),
    complete: () => sink.complete(),
  });
}
