import { GraphQLError } from "graphql";

/** Codes a client can cause; anything else is masked as INTERNAL_SERVER_ERROR. */
export type ErrorCode =
  | "UNAUTHENTICATED"
  | "FORBIDDEN"
  | "NOT_FOUND"
  | "BAD_USER_INPUT"
  | "CONFLICT"
  | "RATE_LIMITED"
  | "PAYLOAD_TOO_LARGE"
  | "GRAPHQL_PARSE_FAILED"
  | "GRAPHQL_VALIDATION_FAILED"
  | "QUERY_TOO_COMPLEX"
  | "SLOW_CONSUMER"
  /** A stream cursor too old to resume from: reload, then subscribe without it. */
  | "CURSOR_EXPIRED";

export const CLIENT_ERROR_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  "UNAUTHENTICATED",
  "FORBIDDEN",
  "NOT_FOUND",
  "BAD_USER_INPUT",
  "CONFLICT",
  "RATE_LIMITED",
  "PAYLOAD_TOO_LARGE",
  "GRAPHQL_PARSE_FAILED",
  "GRAPHQL_VALIDATION_FAILED",
  "QUERY_TOO_COMPLEX",
  "SLOW_CONSUMER",
  "CURSOR_EXPIRED",
]);

export function appError(code: ErrorCode, message: string, extensions: Record<string, unknown> = {}): GraphQLError {
  return new GraphQLError(message, { extensions: { code, ...extensions } });
}

export const notFound = (what: string) => appError("NOT_FOUND", `${what} not found`);
export const forbidden = (message = "Not allowed") => appError("FORBIDDEN", message);
export const unauthenticated = (message = "Authentication required") => appError("UNAUTHENTICATED", message);
export const conflict = (message: string, field?: string) => appError("CONFLICT", message, field ? { field } : {});
export const badInput = (field: string, message: string) => appError("BAD_USER_INPUT", message, { field });
