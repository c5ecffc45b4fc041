import {
  type ExecutionArgs,
  type ExecutionResult,
  type FragmentDefinitionNode,
  type GraphQLAbstractType,
  type GraphQLField,
  GraphQLIncludeDirective,
  type GraphQLObjectType,
  GraphQLSkipDirective,
  getDirectiveValues,
  getNamedType,
  getOperationAST,
  isAbstractType,
  isObjectType,
  Kind,
  type SelectionSetNode,
} from "graphql";
import type { Positioned } from "../realtime/positions.ts";

/**
 * Field extension for a `cursor` field that, on the item at the root of a subscription over
 * all conversations, holds the stream's cursor rather than the item's own.
 *
 * Live results are executed once and shared by every subscriber of a group (see
 * shared-execution.ts), but a stream's position is its own. So the shared execution
 * resolves the item's own cursor there, and each subscriber's copy of the result gets its
 * stream cursor written over it at the response keys planned here, once per subscription:
 * sharing survives, and the stream cursor costs one encoding per delivered item, only for
 * documents that select it.
 */
export const streamCursorField = { streamCursor: true } as const;

const isStreamCursorField = (field: GraphQLField<unknown, unknown> | undefined) =>
  field?.extensions?.streamCursor === true;

/** Where a subscription's results carry the stream cursor. */
export interface StreamCursorPlan {
  /** Response key of the subscription's root field. */
  rootKey: string;
  /** Per concrete type of the root item: the response keys of its stream cursor fields. */
  keysByType: Map<string, string[]>;
  /** The root item's concrete type. */
  typeOf(item: unknown, context: unknown): string | undefined;
}

/** Plans the stream cursor of a subscription; null when its document does not select one. */
export function planStreamCursor(args: ExecutionArgs): StreamCursorPlan | null {
  const { schema, document } = args;
  const operation = getOperationAST(document, args.operationName);
  const subscriptionType = schema.getSubscriptionType();
  if (operation?.operation !== "subscription" || !subscriptionType) return null;
  const variables = (args.variableValues ?? {}) as Record<string, unknown>;
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  }
  const included = (node: Parameters<typeof getDirectiveValues>[1]) =>
    getDirectiveValues(GraphQLSkipDirective, node, variables)?.if !== true &&
    getDirectiveValues(GraphQLIncludeDirective, node, variables)?.if !== false;
  const applies = (condition: string | undefined, type: GraphQLObjectType) => {
    if (!condition || condition === type.name) return true;
    const conditionType = schema.getType(condition);
    return !!conditionType && isAbstractType(conditionType) && schema.isSubType(conditionType, type);
  };
  /** The field nodes a selection set yields for an object of `type`, as graphql's collectFields does. */
  const collect = (
    selectionSet: SelectionSetNode,
    type: GraphQLObjectType,
    visit: (key: string, name: string, node: SelectionSetNode | undefined) => void,
    seen = new Set<string>(),
  ): void => {
    for (const selection of selectionSet.selections) {
      if (!included(selection)) continue;
      if (selection.kind === Kind.FIELD) {
        visit(selection.alias?.value ?? selection.name.value, selection.name.value, selection.selectionSet);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        if (applies(selection.typeCondition?.name.value, type)) collect(selection.selectionSet, type, visit, seen);
      } else {
        const name = selection.name.value;
        const fragment = fragments.get(name);
        if (seen.has(name) || !fragment || !applies(fragment.typeCondition.name.value, type)) continue;
        seen.add(name);
        collect(fragment.selectionSet, type, visit, seen);
      }
    }
  };

  let rootKey: string | undefined;
  let rootName: string | undefined;
  const rootSelections: SelectionSetNode[] = [];
  collect(operation.selectionSet, subscriptionType, (key, name, selectionSet) => {
    rootKey ??= key;
    rootName ??= name;
    if (key === rootKey && selectionSet) rootSelections.push(selectionSet);
  });
  const rootField = rootName ? subscriptionType.getFields()[rootName] : undefined;
  if (!rootKey || !rootField) return null;
  const itemType = getNamedType(rootField.type);
  const possible: readonly GraphQLObjectType[] = isAbstractType(itemType)
    ? schema.getPossibleTypes(itemType)
    : isObjectType(itemType)
      ? [itemType]
      : [];
  const keysByType = new Map<string, string[]>();
  for (const type of possible) {
    const keys = new Set<string>();
    for (const selectionSet of rootSelections) {
      collect(selectionSet, type, (key, name) => {
        if (isStreamCursorField(type.getFields()[name])) keys.add(key);
      });
    }
    if (keys.size) keysByType.set(type.name, [...keys]);
  }
  if (keysByType.size === 0) return null;
  const typeOf = isAbstractType(itemType)
    ? (item: unknown, context: unknown) => concreteType(itemType, item, context)
    : () => itemType.name;
  return { rootKey, keysByType, typeOf };
}

/** The concrete type of an item of a union or interface, as its own resolveType names it. */
function concreteType(type: GraphQLAbstractType, item: unknown, context: unknown): string | undefined {
  const resolved = type.resolveType?.(item, context, undefined as never, type);
  return typeof resolved === "string" ? resolved : undefined;
}

/** A subscriber's copy of a shared result with its stream cursor written in (the shared one is left as is). */
export function withStreamCursor(
  plan: StreamCursorPlan,
  result: ExecutionResult,
  payload: Positioned<unknown>,
  context: unknown,
): ExecutionResult {
  const root = result.data?.[plan.rootKey];
  if (!root || typeof root !== "object") return result;
  const keys = plan.keysByType.get(plan.typeOf(payload.item, context) ?? "");
  if (!keys) return result;
  const item = { ...(root as Record<string, unknown>) };
  for (const key of keys) if (typeof item[key] === "string") item[key] = payload.cursor;
  return { ...result, data: { ...result.data, [plan.rootKey]: item } };
}
