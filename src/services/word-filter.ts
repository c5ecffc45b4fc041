import { z } from "zod";
import { badInput } from "../errors.ts";

/** Most rules a tenant's word filter holds, and most characters of one rule. */
export const MAX_WORD_FILTER_RULES = 1000;
export const MAX_WORD_FILTER_RULE_LENGTH = 64;

export const WORD_FILTER_ACTIONS = ["REFUSE", "MASK"] as const;
export type WordFilterAction = (typeof WORD_FILTER_ACTIONS)[number];

/** Combining marks, stripped after compatibility decomposition: "Café" and "café" read "cafe". */
const MARKS = /\p{M}/gu;

/** Compares text as the filter does: compatibility decomposition (NFKD), without marks, lower case. */
export function normalizeWord(text: string): string {
  return text.normalize("NFKD").replace(MARKS, "").toLowerCase();
}

/** A word of a message: letters, digits and the marks that go with them. A fixed pattern, linear in the text. */
const WORD = /[\p{L}\p{N}\p{M}]+/gu;
/** What a normalized rule may be: one word, with `*` at its start and/or end. */
const RULE = /^\*?[\p{L}\p{N}]+\*?$/u;

/** A rule as an administrator writes it: a whole word, or a word with a leading and/or trailing `*`. */
export const zWordFilterRule = z
  .string()
  .max(MAX_WORD_FILTER_RULE_LENGTH, `must be at most ${MAX_WORD_FILTER_RULE_LENGTH} characters`);

export const wordFilterInput = z.object({
  words: z
    .array(zWordFilterRule)
    .max(MAX_WORD_FILTER_RULES, `accepts at most ${MAX_WORD_FILTER_RULES} rules`)
    .describe(
      `up to ${MAX_WORD_FILTER_RULES} rules of up to ${MAX_WORD_FILTER_RULE_LENGTH} characters: a word (letters and digits), optionally with \`*\` at its start and/or end`,
    )
    .nullish(),
  action: z.enum(WORD_FILTER_ACTIONS).nullish(),
});

/**
 * Checks and normalizes a tenant's rules: each one word of letters and digits, optionally
 * with `*` at its start (any word ending so), its end (any word starting so) or both (any
 * word containing it). Duplicates (after normalization) are kept once, in the first place.
 */
export function parseRules(field: string, rules: readonly string[]): string[] {
  const parsed: string[] = [];
  rules.forEach((raw, index) => {
    const rule = normalizeWord(raw.trim());
    if (!RULE.test(rule)) {
      throw badInput(
        `${field}.${index}`,
        `${field}[${index}] must be one word of letters and digits, optionally with * at its start and/or end`,
      );
    }
    parsed.push(rule);
  });
  return [...new Set(parsed)];
}

// Word boundaries as the automaton sees them: never inside a word or a rule's word.
const START = "\u0002";
const END = "\u0003";

/** A rule as a string of the automaton: `cat` is START cat END, `cat*` START cat, `*cat` cat END, `*cat*` cat. */
function keyOf(rule: string): string {
  const leading = rule.startsWith("*");
  const trailing = rule.endsWith("*") && rule.length > 1;
  const word = rule.slice(leading ? 1 : 0, trailing ? -1 : undefined);
  return `${leading ? "" : START}${word}${trailing ? "" : END}`;
}

/** What a text did against a filter: the first rule it matched, and the text with matched words masked. */
export interface FilterResult {
  rule: string | null;
  masked: string;
}

/**
 * A tenant's word filter, compiled once: an Aho-Corasick automaton over the rules, fed one
 * normalized word at a time between boundary marks. Matching is linear in the length of
 * the text (plus the matches), whatever the rules; no rule ever becomes a regular expression.
 */
export class WordFilter {
  private readonly next: Map<string, number>[] = [new Map()];
  private readonly fail: number[] = [0];
  /** Per state: index of a rule that ends here or at one of its suffixes, else -1. */
  private readonly hit: number[] = [-1];

  constructor(
    readonly rules: readonly string[],
    readonly action: WordFilterAction,
  ) {
    rules.forEach((rule, index) => {
      let state = 0;
      for (const char of keyOf(rule)) {
        let to = this.next[state]?.get(char);
        if (to === undefined) {
          to = this.next.length;
          this.next.push(new Map());
          this.fail.push(0);
          this.hit.push(-1);
          this.next[state]?.set(char, to);
        }
        state = to;
      }
      if (this.hit[state] === -1) this.hit[state] = index;
    });
    // Breadth first: a state's failure link is settled before those of the states below it.
    const queue: number[] = [...(this.next[0]?.values() ?? [])];
    for (let head = 0; head < queue.length; head++) {
      const state = queue[head] as number;
      for (const [char, to] of this.next[state] ?? []) {
        let fallback = this.fail[state] as number;
        while (fallback !== 0 && !this.next[fallback]?.has(char)) fallback = this.fail[fallback] as number;
        const link = this.next[fallback]?.get(char);
        this.fail[to] = link !== undefined && link !== to ? link : 0;
        if (this.hit[to] === -1) this.hit[to] = this.hit[this.fail[to] as number] as number;
        queue.push(to);
      }
    }
  }

  private step(state: number, char: string): number {
    let current = state;
    while (true) {
      const to = this.next[current]?.get(char);
      if (to !== undefined) return to;
      if (current === 0) return 0;
      current = this.fail[current] as number;
    }
  }

  /** The first rule one word matches (index), or -1. */
  private matchWord(word: string): number {
    let state = this.step(0, START);
    let found = this.hit[state] as number;
    for (const char of normalizeWord(word)) {
      if (found !== -1) return found;
      state = this.step(state, char);
      found = this.hit[state] as number;
    }
    if (found !== -1) return found;
    return this.hit[this.step(state, END)] as number;
  }

  /** Checks a text; with `mask`, every matched word is replaced by as many `*` as it has characters. */
  apply(text: string, mask: boolean): FilterResult {
    let rule: string | null = null;
    let masked = "";
    let copied = 0;
    for (const found of text.matchAll(WORD)) {
      const index = this.matchWord(found[0]);
      if (index === -1) continue;
      rule ??= this.rules[index] as string;
      if (!mask) break;
      masked += text.slice(copied, found.index) + "*".repeat([...found[0]].length);
      copied = found.index + found[0].length;
    }
    return { rule, masked: rule && mask ? masked + text.slice(copied) : text };
  }
}

/**
 * Applies a tenant's filter to a message's text: its body and, for a CUSTOM message, every
 * string inside its data. REFUSE throws BAD_USER_INPUT naming the rule; MASK returns the
 * text with the matched words masked. Without a filter, the text as it is.
 */
export function filterMessageText<B extends string | null, D>(
  filter: WordFilter | null,
  fields: { body: string; data: string },
  body: B,
  data: D,
): { body: B; data: D } {
  if (!filter) return { body, data };
  const mask = filter.action === "MASK";
  const check = (text: string, where: string) => {
    const result = filter.apply(text, mask);
    if (result.rule && !mask) {
      throw badInput(where, `${where} contains a word the tenant does not allow (rule "${result.rule}")`);
    }
    return result.masked;
  };
  const filtered = (body === null ? null : check(body, fields.body)) as B;
  return { body: filtered, data: data == null ? data : (mapStrings(data, (text) => check(text, fields.data)) as D) };
}

/** A JSON value with every string (keys excepted) passed through `map`. */
function mapStrings(value: unknown, map: (text: string) => string): unknown {
  if (typeof value === "string") return map(value);
  if (Array.isArray(value)) return value.map((item) => mapStrings(item, map));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, mapStrings(item, map)]));
  }
  return value;
}
