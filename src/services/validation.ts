import { z } from "zod";
import { badInput } from "../errors.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const isUuid = (value: string): boolean => UUID.test(value);

/** Ids are UUIDs; anything else is refused before it reaches the database. */
export function parseId(field: string, value: string): string {
  if (!UUID.test(value)) throw badInput(field, `${field} is not a valid id`);
  return value.toLowerCase();
}

export function parseIds(field: string, values: readonly string[], max = 500): string[] {
  if (values.length > max) throw badInput(field, `${field} accepts at most ${max} ids`);
  return [...new Set(values.map((value) => parseId(field, value)))];
}

export const zText = (max: number) =>
  z.string().trim().min(1, "must not be empty").max(max, `must be at most ${max} characters`);
/**
 * Characters that break a line or what a reader sees: controls (C0, DEL, C1, which hold CR
 * and LF), line and paragraph separators, and bidirectional overrides and isolates.
 */
export const UNSAFE_TEXT = /[\p{Cc}\u2028\u2029\u202A-\u202E\u2066-\u2069]/u;

/** One line of display text (a name that also goes into mail subjects). */
export const zLine = (max: number) =>
  zText(max).refine((value) => !UNSAFE_TEXT.test(value), "must be a single line without control characters");
export const zOptionalText = (max: number) => z.string().trim().max(max, `must be at most ${max} characters`);
export const zEmail = z
  .string()
  .trim()
  .max(254)
  .toLowerCase()
  .pipe(z.email({ message: "must be a valid email address" }));
export const zPhone = z
  .string()
  .trim()
  .regex(/^\+?[0-9 ()-]{3,32}$/, "must be a phone number");
export const zUrl = z
  .string()
  .trim()
  .max(2048)
  .url({ message: "must be an http(s) URL" })
  .refine((value) => /^https?:\/\//i.test(value), "must be an http(s) URL");

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
