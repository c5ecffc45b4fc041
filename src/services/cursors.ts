import { badInput } from "../errors.ts";
import { decodeStreamCursor, isStreamCursor } from "../realtime/positions.ts";
import { isUuid } from "./validation.ts";

/**
 * What one part of a cursor holds. Cursors come back from clients, so every part is
 * checked before it reaches SQL:
 * - `uuid`: a row id (returned lower-cased);
 * - `time`: milliseconds since the epoch, an integer from year 1 to year 9999 (PostgreSQL
 *   timestamptz and JavaScript Date both hold these exactly); returned as a Date;
 * - `seq`: a sequence number, 0 to 2^31 - 1 (an int4 column);
 * - `offset`: a position in a ranked list, 0 to MAX_CURSOR_OFFSET.
 */
export type CursorPart = "uuid" | "time" | "seq" | "offset";

type PartValue<P extends CursorPart> = P extends "uuid" ? string : P extends "time" ? Date : number;

/** The decoded parts of a cursor, typed after its spec. */
export type CursorParts<S extends readonly CursorPart[]> = { -readonly [K in keyof S]: PartValue<S[K]> };

/** How deep a ranked list (search) pages; past that a client should narrow the query. */
export const MAX_CURSOR_OFFSET = 10_000;

/** 0001-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z. */
const MIN_TIME = -62_135_596_800_000;
const MAX_TIME = 253_402_300_799_999;
const MAX_SEQ = 2 ** 31 - 1;

const isIntegerIn = (value: unknown, min: number, max: number): value is number =>
  typeof value === "number" && Number.isInteger(value) && value >= min && value <= max;

function decodePart(part: CursorPart, value: unknown): string | number | Date | undefined {
  switch (part) {
    case "uuid":
      return typeof value === "string" && isUuid(value) ? value.toLowerCase() : undefined;
    case "time":
      return isIntegerIn(value, MIN_TIME, MAX_TIME) ? new Date(value) : undefined;
    case "seq":
      return isIntegerIn(value, 0, MAX_SEQ) ? value : undefined;
    case "offset":
      return isIntegerIn(value, 0, MAX_CURSOR_OFFSET) ? value : undefined;
  }
}

/**
 * Cursors are opaque to clients: base64url of a tagged tuple, e.g. `["m1", conversationId, seq]`.
 * Dates are encoded as epoch milliseconds.
 */
export function encodeCursor(tag: string, parts: (string | number)[]): string {
  return Buffer.from(JSON.stringify([tag, ...parts])).toString("base64url");
}

/**
 * Decodes a cursor of the list tagged `tag` whose parts follow `spec`. A cursor of another
 * list, of another shape, or with any part out of its range is BAD_USER_INPUT naming `field`.
 */
export function decodeCursor<const S extends readonly CursorPart[]>(
  field: string,
  cursor: string,
  tag: string,
  spec: S,
): CursorParts<S> {
  const invalid = () => badInput(field, `${field} is not a valid cursor`);
  let parsed: unknown;
  try {
    if (cursor.length > 512) throw new Error("too long");
    parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw invalid();
  }
  if (!Array.isArray(parsed) || parsed[0] !== tag || parsed.length !== spec.length + 1) throw invalid();
  const parts = spec.map((part, index) => decodePart(part, parsed[index + 1]));
  if (parts.some((part) => part === undefined)) throw invalid();
  return parts as CursorParts<S>;
}

export const messageCursor = (conversationId: string, seq: number) => encodeCursor("m1", [conversationId, seq]);

/**
 * A message cursor: Message.cursor, which in `messageAdded` without a conversation id is a
 * stream cursor (see realtime/positions.ts) that also names its own message.
 */
export function decodeMessageCursor(field: string, cursor: string): { conversationId: string; seq: number } {
  if (isStreamCursor(cursor)) return decodeStreamCursor(field, cursor, "messages").item;
  const [conversationId, seq] = decodeCursor(field, cursor, "m1", ["uuid", "seq"]);
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
