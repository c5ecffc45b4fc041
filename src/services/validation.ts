import { z } from "zod";
import { badInput } from "../errors.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const isUuid = (value: string): boolean => UUID.test(value);

/** Ids are UUIDs; anything else is refused before it reaches the database. */
export function parseId(field: string, value: string): string {
  if (!UUID.test(value)) throw badInput(field, `${field} is not a valid id`);
  return value.toLowerCase();
}

export function parseIds(field: string, values: readonly string[], max: number): string[] {
  if (values.length > max) throw badInput(field, `${field} accepts at most ${max} ids`);
  return [...new Set(values.map((value) => parseId(field, value)))];
}

/**
 * The rules below carry a description of their limit (zod's `.describe`), written from the
 * same numbers as the checks: the Pothos input fields take their descriptions from it with
 * `rule()`, so a limit is written once and the schema documents what the service enforces.
 */
export const zText = (max: number) =>
  z
    .string()
    .trim()
    .min(1, "must not be empty")
    .max(max, `must be at most ${max} characters`)
    .describe(`1-${max} characters`);
/**
 * Characters that break a line or what a reader sees: controls (C0, DEL, C1, which hold CR
 * and LF), line and paragraph separators, and bidirectional overrides and isolates.
 */
export const UNSAFE_TEXT = /[\p{Cc}\u2028\u2029\u202A-\u202E\u2066-\u2069]/u;

/** One line of display text (a name that also goes into mail subjects). */
export const zLine = (max: number) =>
  zText(max)
    .refine((value) => !UNSAFE_TEXT.test(value), "must be a single line without control characters")
    .describe(`1-${max} characters on one line, without control or direction characters`);
export const zOptionalText = (max: number) =>
  z.string().trim().max(max, `must be at most ${max} characters`).describe(`up to ${max} characters`);
/** A string with only an upper bound on its length; without `message`, zod's own. */
export const zBounded = (max: number, message?: string) =>
  z.string().max(max, message).describe(`up to ${max} characters`);
const EMAIL_MAX = 254;
export const zEmail = z
  .string()
  .trim()
  .max(EMAIL_MAX)
  .toLowerCase()
  .pipe(z.email({ message: "must be a valid email address" }))
  .describe(`up to ${EMAIL_MAX} characters`);
/** An email address to look an account up by: only bounded, as it is compared, never stored. */
export const zEmailLookup = zBounded(EMAIL_MAX);
const PHONE_MIN = 3;
const PHONE_MAX = 32;
export const zPhone = z
  .string()
  .trim()
  .regex(new RegExp(`^\\+?[0-9 ()-]{${PHONE_MIN},${PHONE_MAX}}$`), "must be a phone number")
  .describe(`${PHONE_MIN}-${PHONE_MAX} digits, spaces, dashes or parentheses, after an optional +`);
const URL_MAX = 2048;
export const zUrl = z
  .string()
  .trim()
  .max(URL_MAX)
  .url({ message: "must be an http(s) URL" })
  .refine((value) => /^https?:\/\//i.test(value), "must be an http(s) URL")
  .describe(`an http(s) URL, up to ${URL_MAX} characters`);
/** A list of strings (ids, names) with a bound on its length; `what` names its items in the message. */
export const zList = (max: number, what: string) =>
  z.array(z.string()).max(max, `accepts at most ${max} ${what}`).describe(`up to ${max}`);
/** A whole number in a closed range; zod's own messages, as the range is in the description. */
export const zIntRange = (min: number, max: number) => z.number().int().min(min).max(max).describe(`${min}-${max}`);

/** The described rule of a field's schema (see above), through optional and nullable wrappers. */
export function rule(schema: z.ZodType): string {
  let inner: z.ZodType = schema;
  while (inner instanceof z.ZodOptional || inner instanceof z.ZodNullable) inner = inner.unwrap() as z.ZodType;
  if (!inner.description) throw new Error("This schema does not describe its rule");
  return inner.description;
}

/** Parses input with a zod schema; the first problem becomes BAD_USER_INPUT naming its field. */
export function validate<T extends z.ZodType>(schema: T, value: unknown, argName: string): z.infer<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = [argName, ...(issue?.path ?? [])].filter((part) => part !== "").join(".");
  throw badInput(field, `${field} ${issue?.message ?? "is invalid"}`);
}

/** Page size for connections: first/last must be between 1 and max. */
export function pageSize(field: string, value: number | null | undefined, fallback: number, max = 100): number {
  if (value === null || value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw badInput(field, `${field} must be between 0 and ${max}`);
  }
  return value;
}

/**
 * Text for Prisma's `contains`/`startsWith`, which become SQL LIKE patterns: LIKE's
 * wildcards and its escape character match themselves only.
 */
export function literalLike(text: string): string {
  return text.replace(/[\\%_]/g, (char) => `\\${char}`);
}
