import {
  type ExecutionArgs,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLCompositeType,
  type GraphQLError,
  type GraphQLField,
  GraphQLIncludeDirective,
  type GraphQLObjectType,
  type GraphQLSchema,
  GraphQLSkipDirective,
  getArgumentValues,
  getDirectiveValues,
  getNamedType,
  getNullableType,
  getOperationAST,
  getVariableValues,
  isAbstractType,
  isCompositeType,
  isListType,
  Kind,
  type NamedTypeNode,
  type SelectionNode,
  type SelectionSetNode,
  typeFromAST,
} from "graphql";
import type { Plugin } from "graphql-yoga";
import { appError } from "../errors.ts";
import { MAX_ATTACHMENTS, MAX_MENTIONS } from "../services/messages.ts";

/**
 * Query cost: the number of fields an operation can resolve, counted after its variables
 * are coerced, with every list at the size it may reach. graphql-armor's cost limit reads
 * page sizes only when they are literals; `messages(last: $n)` or a server default counted
 * as 1, so nested pages of 100 went through. This counts what the server would do.
 */

/** A list field whose size comes from its arguments. */
export interface PagedField {
  /** Arguments that set the size; when several are given the largest counts. */
  args: readonly string[];
  /** Size when none is given (the server's default page size for the field). */
  default: number;
  /** Largest size the field accepts; larger values are refused by the field itself. */
  max: number;
}

const page = (defaultSize: number, max = 100, args: readonly string[] = ["first"]): PagedField => ({
  args,
  default: defaultSize,
  max,
});

/** Page sizes per field, as the services apply them (see `pageSize` in services/validation.ts). */
export const PAGED_FIELDS: Readonly<Record<string, PagedField>> = {
  "Query.users": page(20),
  "Query.conversations": page(20),
  "Query.auditLog": page(50),
  "Query.reports": page(20),
  "Query.searchMessages": page(20),
  "Query.messages": page(50, 100, ["first", "last"]),
  "Conversation.messages": page(50, 100, ["first", "last"]),
  "Message.replies": page(20),
  "Conversation.members": page(500, 500),
  "Conversation.pinnedMessages": page(500, 500),
};

/** Lists without a size argument: the most items they hold (enforced, or a generous estimate). */
export const LIST_BOUNDS: Readonly<Record<string, number>> = {
  "Message.attachments": MAX_ATTACHMENTS, // as sendMessage accepts
  "Message.mentions": MAX_MENTIONS,
  "Message.reactions": 20, // one group per distinct emoji
  "ReactionChangedEvent.reactions": 20,
  "ReactionGroup.users": 20,
  "Query.roles": 50,
  "User.roles": 20,
  "Viewer.roles": 20,
  "Query.sessions": 50,
};

/** Any other list of objects, and any other field with first/last but no entry above. */
const DEFAULT_LIST_SIZE = 100;

/** Selections visited before giving up on an operation (documents are bounded by the armor limits). */
const MAX_WORK = 200_000;

class TooLarge extends Error {}

/** Counts the fields an operation can resolve; null when its variables or operation do not resolve. */
export function estimateCost(args: Pick<ExecutionArgs, "schema" | "document" | "operationName" | "variableValues">) {
  const { schema, document } = args;
  const operation = getOperationAST(document, args.operationName ?? undefined);
  if (!operation) return null;
  const coerced = getVariableValues(schema, operation.variableDefinitions ?? [], args.variableValues ?? {}, {
    maxErrors: 1,
  });
  // Execution refuses these variables itself before any resolver runs.
  if (coerced.errors) return null;
  const root = schema.getRootType(operation.operation);
  if (!root) return null;
  const fragments: Record<string, FragmentDefinitionNode> = {};
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments[definition.name.value] = definition;
  }
  return new CostEstimator(schema, fragments, coerced.coerced).cost(root, operation.selectionSet);
}

class CostEstimator {
  private work = 0;

  constructor(
    private readonly schema: GraphQLSchema,
    private readonly fragments: Record<string, FragmentDefinitionNode>,
    private readonly variables: Record<string, unknown>,
  ) {}

  /** The operation's cost, or Infinity when it is too large to estimate. */
  cost(root: GraphQLObjectType, selectionSet: SelectionSetNode): number {
    try {
      return this.objectCost(root, [selectionSet], undefined);
    } catch (error) {
      if (error instanceof TooLarge) return Number.POSITIVE_INFINITY;
      throw error;
    }
  }

  /** Fields one value of `type` resolves; for unions and interfaces, the costliest possible type. */
  private valueCost(type: GraphQLCompositeType, sets: SelectionSetNode[], pageSize: number | undefined): number {
    if (!isAbstractType(type)) return this.objectCost(type, sets, pageSize);
    let worst = 0;
    for (const possible of this.schema.getPossibleTypes(type)) {
      worst = Math.max(worst, this.objectCost(possible, sets, pageSize));
    }
    return worst;
  }

  /**
   * Fields one object resolves: selections are grouped by response key as execution groups
   * them, so every alias counts and a field repeated through fragments counts once.
   * `pageSize` is the page of the connection this object is, if it is one.
   */
  private objectCost(type: GraphQLObjectType, sets: SelectionSetNode[], pageSize: number | undefined): number {
    const fields = new Map<string, FieldNode[]>();
    for (const set of sets) this.collect(type, set, fields, new Set());
    let total = 0;
    for (const nodes of fields.values()) total += this.fieldCost(type, nodes, pageSize);
    return total;
  }

  private collect(
    type: GraphQLObjectType,
    set: SelectionSetNode,
    fields: Map<string, FieldNode[]>,
    visited: Set<string>,
  ): void {
    for (const selection of set.selections) {
      if (++this.work > MAX_WORK) throw new TooLarge();
      if (!this.included(selection)) continue;
      if (selection.kind === Kind.FIELD) {
        const key = selection.alias?.value ?? selection.name.value;
        const group = fields.get(key);
        if (group) group.push(selection);
        else fields.set(key, [selection]);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        if (!selection.typeCondition || this.applies(selection.typeCondition, type)) {
          this.collect(type, selection.selectionSet, fields, visited);
        }
      } else {
        const name = selection.name.value;
        const fragment = this.fragments[name];
        if (visited.has(name) || !fragment || !this.applies(fragment.typeCondition, type)) continue;
        visited.add(name);
        this.collect(type, fragment.selectionSet, fields, visited);
      }
    }
  }

  private fieldCost(parent: GraphQLObjectType, nodes: FieldNode[], pageSize: number | undefined): number {
    const [node] = nodes as [FieldNode];
    // Introspection resolves from the schema in memory; depth and token limits bound it.
    if (node.name.value.startsWith("__")) return 1;
    const field = parent.getFields()[node.name.value];
    if (!field) return 1;
    const type = getNamedType(field.type);
    if (!isCompositeType(type)) return 1;
    const coordinate = `${parent.name}.${field.name}`;
    const size = this.sizeArgument(coordinate, field, node);
    let items = 1;
    let childPage: number | undefined;
    if (isListType(getNullableType(field.type))) {
      items =
        size ??
        LIST_BOUNDS[coordinate] ??
        (pageSize !== undefined && (field.name === "edges" || field.name === "nodes") ? pageSize : DEFAULT_LIST_SIZE);
    } else if (size !== undefined) {
      // A connection: its edges are the page.
      childPage = size;
    }
    if (items === 0) return 1;
    const sets = nodes.flatMap((n) => (n.selectionSet ? [n.selectionSet] : []));
    return 1 + items * this.valueCost(type, sets, childPage);
  }

  /** The page size a field is asked for (coerced arguments, then schema and server defaults, capped). */
  private sizeArgument(coordinate: string, field: GraphQLField<unknown, unknown>, node: FieldNode): number | undefined {
    const paged =
      PAGED_FIELDS[coordinate] ??
      (field.args.some((arg) => arg.name === "first" || arg.name === "last")
        ? page(DEFAULT_LIST_SIZE, Number.POSITIVE_INFINITY, ["first", "last"])
        : undefined);
    if (!paged) return undefined;
    let values: Record<string, unknown> = {};
    try {
      values = getArgumentValues(field, node, this.variables);
    } catch {
      // The field refuses such arguments when it runs; count it at its default.
    }
    const given = paged.args
      .map((name) => values[name])
      .filter((value): value is number => typeof value === "number" && Number.isFinite(value));
    const size = given.length ? Math.max(...given) : paged.default;
    return Math.max(0, Math.min(size, paged.max));
  }

  private included(selection: SelectionNode): boolean {
    try {
      if (getDirectiveValues(GraphQLSkipDirective, selection, this.variables)?.if === true) return false;
      if (getDirectiveValues(GraphQLIncludeDirective, selection, this.variables)?.if === false) return false;
    } catch {
      // An invalid directive argument fails execution anyway; count the selection.
    }
    return true;
  }

  private applies(condition: NamedTypeNode, type: GraphQLObjectType): boolean {
    const conditional = typeFromAST(this.schema, condition);
    if (!conditional) return false;
    if (conditional === type) return true;
    return isAbstractType(conditional) && this.schema.isSubType(conditional, type);
  }
}

/** The refusal: QUERY_TOO_COMPLEX with the estimated and the allowed cost. */
export function tooComplex(cost: number, maxCost: number): GraphQLError {
  if (!Number.isFinite(cost)) {
    return appError(
      "QUERY_TOO_COMPLEX",
      `The operation is too large to estimate; at most ${maxCost} fields are allowed`,
      {
        cost: null,
        maxCost,
      },
    );
  }
  return appError(
    "QUERY_TOO_COMPLEX",
    `The operation could resolve ${cost} fields; at most ${maxCost} are allowed. Ask for fewer fields or smaller pages (first/last).`,
    { cost, maxCost },
  );
}

/**
 * Refuses operations whose cost exceeds `maxCost` before anything runs, over HTTP and over
 * WebSocket (both run the enveloped execute/subscribe).
 */
export function queryCostPlugin(options: { maxCost: number }): Plugin {
  const refusal = (args: ExecutionArgs) => {
    const cost = estimateCost(args);
    return cost !== null && cost > options.maxCost ? tooComplex(cost, options.maxCost) : null;
  };
  return {
    onExecute({ args, setResultAndStopExecution }) {
      const error = refusal(args);
      if (error) setResultAndStopExecution({ errors: [error] });
    },
    onSubscribe({ args, setResultAndStopExecution }) {
      const error = refusal(args);
      if (error) setResultAndStopExecution({ errors: [error] });
    },
  };
}
