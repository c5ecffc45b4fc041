import { badInput } from "../errors.ts";

/**
 * Cursors are opaque to clients: base64url of a tagged, versioned tuple. Decoding
 * checks the tag so a cursor of one list is refused by another.
 */
export function encodeCursor(tag: string, parts: (string | number)[]): string {
  return Buffer.from(JSON.stringify([tag, ...parts])).toString("base64url");
}

export function decodeCursor(field: string, cursor: string, tag: string, arity: number): (string | number)[] {
  let parsed: unknown;
  try {
    if (cursor.length > 512) throw new Error("too long");
    parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw badInput(field, `${field} is not a valid cursor`);
  }
  if (
    !Array.isArray(parsed) ||
    parsed[0] !== tag ||
    parsed.length !== arity + 1 ||
    !parsed.slice(1).every((part) => typeof part === "string" || typeof part === "number")
  ) {
    throw badInput(field, `${field} is not a valid cursor`);
  }
  return parsed.slice(1) as (string | number)[];
}

export const messageCursor = (conversationId: string, seq: number) => encodeCursor("m1", [conversationId, seq]);

export function decodeMessageCursor(field: string, cursor: string): { conversationId: string; seq: number } {
  const [conversationId, seq] = decodeCursor(field, cursor, "m1", 2);
  if (typeof conversationId !== "string" || typeof seq !== "number" || !Number.isInteger(seq) || seq < 0) {
    throw badInput(field, `${field} is not a valid cursor`);
  }
  return { conversationId, seq };
}

export interface PageInfo {
  hasNextPage: boolean;
  hasPreviousPage: boolean;
  startCursor: string | null;
  endCursor: string | null;
}

export interface Connection<T> {
  edges: { cursor: string; node: T }[];
  pageInfo: PageInfo;
}

export function connectionOf<T>(
  nodes: T[],
  cursorOf: (node: T) => string,
  flags: { hasNextPage: boolean; hasPreviousPage: boolean },
): Connection<T> {
  const edges = nodes.map((node) => ({ cursor: cursorOf(node), node }));
  return {
    edges,
    pageInfo: {
      ...flags,
      startCursor: edges[0]?.cursor ?? null,
      endCursor: edges.at(-1)?.cursor ?? null,
    },
  };
}
