import { type ASTVisitor, GraphQLError, type ValidationContext } from "graphql";
import type { Plugin } from "graphql-yoga";

/** Deepest nesting of brackets in a document, and of arrays and objects in variables. */
export const MAX_NESTING = 64;

function badInput(message: string, field: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code: "BAD_USER_INPUT", field } });
}

function isPlainContainer(value: unknown): value is Record<string, unknown> | unknown[] {
  if (Array.isArray(value)) return true;
  if (!value || typeof value !== "object") return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Checks request JSON (variables, extensions) without recursion: nesting is bounded and no
 * string may hold a NUL character, which PostgreSQL text cannot store and no chat input
 * needs. Only plain JSON containers are walked; uploaded files are opaque and never read.
 * Returns the error for the first problem, naming its path (e.g. `input.body`).
 */
export function inspectJson(value: unknown, root: string): GraphQLError | null {
  const stack: { value: unknown; path: string; depth: number }[] = [{ value, path: "", depth: 0 }];
  while (stack.length) {
    const item = stack.pop() as { value: unknown; path: string; depth: number };
    if (typeof item.value === "string") {
      if (item.value.includes("\u0000")) {
        const field = item.path || root;
        return badInput(`${field} contains a NUL character, which is not allowed`, field);
      }
      continue;
    }
    if (!isPlainContainer(item.value)) continue;
    if (item.depth >= MAX_NESTING) {
      return badInput(`${root} nest deeper than ${MAX_NESTING} levels`, root);
    }
    const entries = Array.isArray(item.value) ? item.value.entries() : Object.entries(item.value);
    for (const [key, child] of entries) {
      stack.push({ value: child, path: item.path ? `${item.path}.${key}` : String(key), depth: item.depth + 1 });
    }
  }
  return null;
}

/** Checks the variables and extensions of an operation before anything runs. */
export function inspectOperationInput(variables: unknown, extensions?: unknown): GraphQLError | null {
  return inspectJson(variables, "variables") ?? inspectJson(extensions, "extensions");
}

/**
 * The deepest bracket nesting of a document, counted over its tokens (strings, block
 * strings and comments skipped) in one pass, so a hostile document is refused before the
 * recursive parser sees it.
 */
export function documentNesting(source: string): number {
  let depth = 0;
  let deepest = 0;
  const length = source.length;
  for (let i = 0; i < length; i++) {
    const ch = source.charCodeAt(i);
    if (ch === 0x23 /* # */) {
      while (i < length && source.charCodeAt(i) !== 0x0a && source.charCodeAt(i) !== 0x0d) i++;
    } else if (ch === 0x22 /* " */) {
      if (source.startsWith('"""', i)) {
        i += 3;
        while (i < length && !source.startsWith('"""', i)) i += source.startsWith('\\"""', i) ? 4 : 1;
        i += 2;
      } else {
        i++;
        while (i < length && source.charCodeAt(i) !== 0x22 && source.charCodeAt(i) !== 0x0a) {
          if (source.charCodeAt(i) === 0x5c /* \ */) i++;
          i++;
        }
      }
    } else if (ch === 0x7b || ch === 0x5b || ch === 0x28 /* { [ ( */) {
      depth++;
      if (depth > deepest) deepest = depth;
    } else if (ch === 0x7d || ch === 0x5d || ch === 0x29 /* } ] ) */) {
      depth--;
    }
  }
  return deepest;
}

/** Refuses string literals holding NUL, whichever escape produced it (checked on parsed values). */
export function NoNulStringLiteralsRule(context: ValidationContext): ASTVisitor {
  return {
    StringValue(node, _key, parent, _path, ancestors) {
      if (!node.value.includes("\u0000")) return;
      const names: string[] = [];
      for (const ancestor of [...ancestors, parent]) {
        if (Array.isArray(ancestor)) continue;
        const named = ancestor as { kind?: string; name?: { value: string } };
        if ((named.kind === "Argument" || named.kind === "ObjectField") && named.name) names.push(named.name.value);
      }
      const field = names.join(".") || "query";
      context.reportError(
        new GraphQLError(`${field} contains a NUL character, which is not allowed`, {
          nodes: node,
          extensions: { code: "BAD_USER_INPUT", field },
        }),
      );
    },
  };
}

/**
 * Hostile input guards for every operation, over HTTP and WebSocket alike (the WebSocket
 * server runs the same envelop parse and validate, and calls inspectOperationInput).
 */
export const inputGuardsPlugin: Plugin = {
  onParse({ params }) {
    const source = typeof params.source === "string" ? params.source : params.source.body;
    if (documentNesting(source) > MAX_NESTING) {
      throw new GraphQLError(`The document nests deeper than ${MAX_NESTING} levels`, {
        extensions: { code: "GRAPHQL_PARSE_FAILED" },
      });
    }
  },
  onValidate({ addValidationRule }) {
    addValidationRule(NoNulStringLiteralsRule);
  },
  onParams({ params, setResult }) {
    const error = inspectOperationInput(params.variables, params.extensions);
    if (error) setResult({ errors: [error] });
  },
};
