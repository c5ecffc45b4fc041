import { appError, badInput } from "../errors.ts";

/**
 * Positions of the streams that follow all of a viewer's conversations (`messageAdded` and
 * `conversationEvents` without a conversation id), and the cursors that carry them.
 *
 * A single-conversation stream resumes from one sequence number. A stream over many
 * conversations has delivered, in each of them, everything up to some sequence number; its
 * position is that whole vector, which can hold thousands of conversations. It is written
 * compactly as a database snapshot plus exceptions:
 *
 * - the snapshot (`pg_current_snapshot()`, xmin:xmax:in-progress list) says which
 *   transactions had committed when it was taken. Every message and event row records the
 *   transaction that stored it (`txId`, a column default, so the database assigns it), so
 *   "stored by a transaction visible in the snapshot" is exact: no clocks, no margin for
 *   transactions that commit late. In a conversation without an exception the stream has
 *   delivered exactly its rows visible in the snapshot;
 * - the exceptions are the conversations where that is not so (something delivered since the
 *   snapshot, or a conversation followed since), each with its last delivered sequence number.
 *
 * Why the rows visible in a snapshot are a prefix of each conversation (what makes one
 * snapshot stand for a sequence number per conversation): sequence numbers are taken under
 * the conversation row's lock, held until commit, so a row with a lower number committed
 * before any row with a higher one, and a snapshot that sees a row sees every row before it.
 * Transactional outboxes on PostgreSQL use the same pair (xid8 column, pg_snapshot) to read
 * "everything committed since" without the gaps a sequence or a timestamp leaves.
 *
 * The stream takes a new snapshot now and then (`rebase`): it checks that everything the new
 * snapshot sees has been delivered (reading what has not from storage, e.g. a publish that
 * failed), and then keeps exceptions only for conversations that still need one. So a
 * cursor stays small: a snapshot and the few conversations that moved since it.
 *
 * Resuming replays, in each of the viewer's conversations now, the rows after the exception
 * or, without one, the rows the snapshot does not see; then the stream goes live through the
 * usual per-conversation gap-free machinery.
 *
 * Why not a time watermark (what Stream's /sync or Sendbird's changelogs resume from): a
 * row's time is taken before it commits, so "everything up to W was delivered" holds only
 * after a margin longer than any write transaction (Prisma's interactive transactions may
 * run 15 s here), clocks of several instances must agree, and a publish that fails or
 * arrives late leaves a row behind the watermark that the stream never saw, so advancing W
 * needs a read of storage anyway. A snapshot needs neither margin nor clock: it is what
 * PostgreSQL itself uses to decide what a reader sees, and the same rebase read that keeps
 * exceptions few also catches rows whose publish was lost.
 *
 * What writers must keep (sendMessage and appendEvents do): a row and the bump of its
 * conversation's counter in one transaction, the counter row locked until commit, `txId`
 * left to its default, and publishing only after commit.
 */

export type StreamKind = "messages" | "events";

/** A PostgreSQL pg_snapshot: transactions below xmin are done, from xmax on not started, xip were running. */
export interface DbSnapshot {
  xmin: bigint;
  xmax: bigint;
  xip: bigint[];
}

/** A decoded stream cursor. */
export interface StreamCursor {
  kind: StreamKind;
  /** When the snapshot was taken, database time, seconds since the epoch. */
  at: number;
  snapshot: DbSnapshot;
  /** Exceptions: conversation id -> last delivered seq. The cursor's own item comes first. */
  entries: Map<string, number>;
  /** The item the cursor was handed out with. */
  item: { conversationId: string; seq: number };
}

/** How old a stream cursor may be: past this, the client reloads and subscribes afresh (CURSOR_EXPIRED). */
export const STREAM_CURSOR_MAX_AGE_SECONDS = 7 * 24 * 3600;

/** Longest stream cursor accepted, in characters (a position with about ten thousand exceptions). */
export const MAX_STREAM_CURSOR_LENGTH = 256 * 1024;

/**
 * When a stream takes a new snapshot: once it has more than `soonEntries` exceptions (then
 * at most every `intervalMs`), at once past `maxEntries` (bounds the cursor's size: about
 * 23 bytes per exception), and when its snapshot is older than `refreshMs` (keeps the cursor
 * of a long-lived stream far from expiring). Each is one query over the counters of the
 * conversations followed, nothing per delivered item.
 */
export interface RebasePolicy {
  soonEntries: number;
  maxEntries: number;
  intervalMs: number;
  refreshMs: number;
}

export const DEFAULT_REBASE_POLICY: RebasePolicy = {
  soonEntries: 32,
  maxEntries: 2000,
  intervalMs: 5_000,
  refreshMs: 60 * 60 * 1000,
};

const VERSION = 1;
const KIND_CODES: Record<StreamKind, number> = { messages: 1, events: 2 };
const MAX_XID = 2n ** 63n - 1n;
const MAX_SEQ = 2 ** 31 - 1;

/** Parses pg_snapshot's text form, `xmin:xmax:xip,xip,...`. */
export function parseSnapshot(text: string): DbSnapshot {
  const match = /^(\d+):(\d+):([\d,]*)$/.exec(text);
  if (!match) throw new Error(`not a pg_snapshot: ${text}`);
  return {
    xmin: BigInt(match[1] as string),
    xmax: BigInt(match[2] as string),
    xip: match[3] ? (match[3] as string).split(",").map((xid) => BigInt(xid)) : [],
  };
}

export function snapshotText(snapshot: DbSnapshot): string {
  return `${snapshot.xmin}:${snapshot.xmax}:${snapshot.xip.join(",")}`;
}

// --- the binary form: version, kind, at, snapshot, exceptions; base64url ----------------
//
// [version 1] [kind 1] [at: uint32 seconds] [xmin, xmax - xmin, xip count, xip deltas: varints]
// [exception count: varint] then per exception [conversation id: 16 bytes] [seq: varint]

function pushVarint(out: number[], value: bigint): void {
  let rest = value;
  while (rest >= 0x80n) {
    out.push(Number(rest & 0x7fn) | 0x80);
    rest >>= 7n;
  }
  out.push(Number(rest));
}

const varintLength = (value: number) =>
  value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x200000 ? 3 : value < 0x10000000 ? 4 : 5;

function writeVarint(buffer: Buffer, offset: number, value: number): number {
  let rest = value;
  let at = offset;
  while (rest >= 0x80) {
    buffer[at++] = (rest & 0x7f) | 0x80;
    rest = Math.floor(rest / 0x80);
  }
  buffer[at++] = rest;
  return at;
}

function uuidBytes(id: string): Buffer {
  return Buffer.from(id.replaceAll("-", ""), "hex");
}

function uuidOf(bytes: Buffer): string {
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Everything before the exceptions; fixed between two snapshots, so encoded once per snapshot. */
function encodeHead(kind: StreamKind, at: number, snapshot: DbSnapshot): Buffer {
  const out = [VERSION, KIND_CODES[kind], (at >>> 24) & 0xff, (at >>> 16) & 0xff, (at >>> 8) & 0xff, at & 0xff];
  pushVarint(out, snapshot.xmin);
  pushVarint(out, snapshot.xmax - snapshot.xmin);
  pushVarint(out, BigInt(snapshot.xip.length));
  let previous = snapshot.xmin;
  for (const xid of snapshot.xip) {
    pushVarint(out, xid - previous);
    previous = xid;
  }
  return Buffer.from(out);
}

/** An exception as the cursor writes it: the conversation id's bytes are computed once. */
interface Exception {
  seq: number;
  id: Buffer;
}

/** The cursor: head, then `first`'s exception, then the others. */
function encodeCursor(head: Buffer, entries: Map<string, Exception>, first: string): string {
  const own = entries.get(first);
  if (!own) throw new Error("a stream cursor's item is not part of its position");
  let size = head.length + varintLength(entries.size);
  for (const entry of entries.values()) size += 16 + varintLength(entry.seq);
  const buffer = Buffer.allocUnsafe(size);
  buffer.set(head, 0);
  let offset = writeVarint(buffer, head.length, entries.size);
  const put = (entry: Exception) => {
    buffer.set(entry.id, offset);
    offset = writeVarint(buffer, offset + 16, entry.seq);
  };
  put(own);
  for (const [id, entry] of entries) if (id !== first) put(entry);
  return buffer.toString("base64url");
}

/** Encodes a decoded stream cursor again (its first entry is its item): for tools and tests. */
export function encodeStreamCursor(cursor: Omit<StreamCursor, "item">): string {
  const entries = new Map<string, Exception>();
  for (const [id, seq] of cursor.entries) entries.set(id, { seq, id: uuidBytes(id) });
  const [first] = cursor.entries.keys();
  return encodeCursor(encodeHead(cursor.kind, cursor.at, cursor.snapshot), entries, first as string);
}

/** Whether a cursor string is a stream cursor (rather than a JSON-tuple cursor of one list). */
export function isStreamCursor(cursor: string): boolean {
  // A JSON-tuple cursor starts with "[" (byte 0x5b); a stream cursor with its version byte.
  return cursor.length >= 4 && Buffer.from(cursor.slice(0, 4), "base64url")[0] === VERSION;
}

/**
 * Decodes a stream cursor of the given kind. Anything else, malformed or out of range, is
 * BAD_USER_INPUT naming `field`; a cursor older than STREAM_CURSOR_MAX_AGE_SECONDS is
 * CURSOR_EXPIRED, when `checkAge`.
 */
export function decodeStreamCursor(
  field: string,
  cursor: string,
  kind: StreamKind,
  options: { checkAge?: boolean } = {},
): StreamCursor {
  const invalid = () => badInput(field, `${field} is not a valid cursor`);
  if (cursor.length > MAX_STREAM_CURSOR_LENGTH || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid();
  const bytes = Buffer.from(cursor, "base64url");
  let offset = 0;
  const byte = () => {
    if (offset >= bytes.length) throw invalid();
    return bytes[offset++] as number;
  };
  const varint = (max: bigint): bigint => {
    let value = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (shift > 63n) throw invalid();
      const next = byte();
      value |= BigInt(next & 0x7f) << shift;
      if ((next & 0x80) === 0) break;
    }
    if (value > max) throw invalid();
    return value;
  };
  if (byte() !== VERSION) throw invalid();
  // A cursor of the other stream (conversationEvents for messageAdded) is as foreign as any.
  if (byte() !== KIND_CODES[kind]) throw invalid();
  const at = ((byte() << 24) | (byte() << 16) | (byte() << 8) | byte()) >>> 0;
  const xmin = varint(MAX_XID);
  const xmax = xmin + varint(MAX_XID - xmin);
  if (xmin === 0n) throw invalid();
  const xipCount = Number(varint(BigInt(bytes.length)));
  const xip: bigint[] = [];
  let previous = xmin;
  for (let i = 0; i < xipCount; i++) {
    const xid = previous + varint(MAX_XID);
    if (xid >= xmax || (i > 0 && xid === previous)) throw invalid();
    xip.push(xid);
    previous = xid;
  }
  const count = Number(varint(BigInt(bytes.length)));
  if (count < 1) throw invalid();
  const entries = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    if (offset + 16 > bytes.length) throw invalid();
    const conversationId = uuidOf(bytes.subarray(offset, offset + 16));
    offset += 16;
    const seq = Number(varint(BigInt(MAX_SEQ)));
    if (entries.has(conversationId)) throw invalid();
    entries.set(conversationId, seq);
  }
  if (offset !== bytes.length) throw invalid();
  if (options.checkAge && Date.now() / 1000 - at > STREAM_CURSOR_MAX_AGE_SECONDS) {
    throw appError(
      "CURSOR_EXPIRED",
      `${field} is too old to resume from: reload the conversations, then subscribe without ${field}`,
      { field },
    );
  }
  const [first] = entries;
  const [conversationId, seq] = first as [string, number];
  return { kind, at, snapshot: { xmin, xmax, xip }, entries, item: { conversationId, seq } };
}

// --- a stream's position -------------------------------------------------------------

/** An item of an all-conversations stream with the stream's position right after it. */
export class Positioned<T> {
  constructor(
    readonly item: T,
    private readonly position: StreamPosition,
    private readonly version: number,
    private readonly conversationId: string,
  ) {}

  /** The stream cursor; read it before the stream is advanced (the position moves on with it). */
  get cursor(): string {
    return this.position.cursorAt(this.version, this.conversationId);
  }
}

/** The item inside a stream payload, whether positioned or not. */
export function itemOf<T>(payload: T | Positioned<T>): T {
  return payload instanceof Positioned ? payload.item : payload;
}

/** Where an all-conversations stream stands: a snapshot plus exceptions (see the top of this file). */
export class StreamPosition {
  private head: Buffer = Buffer.alloc(0);
  private readonly entries = new Map<string, Exception>();
  private version = 0;
  private cached: { version: number; first: string; cursor: string } | null = null;
  private rebasedAt = Date.now();

  constructor(
    readonly kind: StreamKind,
    snapshot: DbSnapshot,
    at: number,
    entries: Iterable<[string, number]> = [],
    private readonly policy: RebasePolicy = DEFAULT_REBASE_POLICY,
  ) {
    this.rebase(snapshot, at, entries);
  }

  /** Starts over from a new snapshot with the given exceptions. */
  rebase(snapshot: DbSnapshot, at: number, entries: Iterable<[string, number]>): void {
    this.head = encodeHead(this.kind, at, snapshot);
    const previous = new Map(this.entries);
    this.entries.clear();
    for (const [conversationId, seq] of entries) {
      this.entries.set(conversationId, { seq, id: previous.get(conversationId)?.id ?? uuidBytes(conversationId) });
    }
    this.rebasedAt = Date.now();
    this.version++;
  }

  /** A conversation's exact position, e.g. one just followed at a given seq. */
  set(conversationId: string, seq: number): void {
    const entry = this.entries.get(conversationId);
    if (entry) entry.seq = seq;
    else this.entries.set(conversationId, { seq, id: uuidBytes(conversationId) });
    this.version++;
  }

  /** A conversation no longer followed: nothing of it is replayed any more. */
  delete(conversationId: string): void {
    if (this.entries.delete(conversationId)) this.version++;
  }

  /** Records a delivered item and wraps it with the cursor of the position after it. */
  deliver<T>(item: T, conversationId: string, seq: number): Positioned<T> {
    this.set(conversationId, seq);
    return new Positioned(item, this, this.version, conversationId);
  }

  /** Whether it is time to take a new snapshot (see RebasePolicy). */
  dueForRebase(now = Date.now()): boolean {
    const size = this.entries.size;
    const { soonEntries, maxEntries, intervalMs, refreshMs } = this.policy;
    if (size > maxEntries) return true;
    const since = now - this.rebasedAt;
    return (size > soonEntries && since >= intervalMs) || since >= refreshMs;
  }

  /** Marks an attempt, so a rebase that cannot shrink the exceptions is not retried at once. */
  attempted(): void {
    this.rebasedAt = Date.now();
  }

  /**
   * The cursor of the position as of `version`, with `first` (the item's conversation) first.
   * Encoded only when a subscriber's document selects it, and once however often it does.
   */
  cursorAt(version: number, first: string): string {
    if (version !== this.version) throw new Error("a stream cursor was read after its stream moved on");
    if (this.cached?.version === version && this.cached.first === first) return this.cached.cursor;
    const cursor = encodeCursor(this.head, this.entries, first);
    this.cached = { version, first, cursor };
    return cursor;
  }
}
