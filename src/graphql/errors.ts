import { randomUUID } from "node:crypto";
import { GraphQLError } from "graphql";
import type { Plugin } from "graphql-yoga";
import { CLIENT_ERROR_CODES } from "../errors.ts";
import { Prisma } from "../generated/prisma/client.ts";
import type { Logger } from "../logger.ts";

/** Codes graphql-yoga uses for malformed requests; clients see BAD_USER_INPUT. */
const REQUEST_ERROR_CODES = new Set(["BAD_REQUEST", "OPERATION_RESOLUTION_FAILURE"]);

/** graphql-js hints at valid names ("Did you mean ...?"); the API does not reveal its schema that way. */
const SUGGESTION = /\s*Did you mean [^?]*\?/g;

/** Gives every client-caused error without a code the code its phase implies. */
export function classifyError(error: GraphQLError): GraphQLError {
  const existing = error.extensions?.code;
  const message = error.message.replace(SUGGESTION, "");
  if (existing && !REQUEST_ERROR_CODES.has(String(existing)) && message === error.message) return error;
  const http = error.extensions?.http as { status?: number } | undefined;
  let code: string;
  if (existing && !REQUEST_ERROR_CODES.has(String(existing))) code = String(existing);
  else if (http?.status === 413) code = "PAYLOAD_TOO_LARGE";
  else if (http?.status === 401) code = "UNAUTHENTICATED";
  else if (error.message.startsWith("Syntax Error")) code = "GRAPHQL_PARSE_FAILED";
  else if (error.message.startsWith('Variable "$')) code = "BAD_USER_INPUT";
  else if (error.path && message === error.message) return error;
  else if (error.locations?.length) code = "GRAPHQL_VALIDATION_FAILED";
  else code = "BAD_USER_INPUT";
  return new GraphQLError(message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    path: error.path,
    originalError: error.originalError,
    extensions: { ...error.extensions, code },
  });
}

/** The error with the given code when it has none yet. */
export function withCode(error: GraphQLError, code: string): GraphQLError {
  if (error.extensions?.code) return error;
  return new GraphQLError(error.message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    extensions: { ...error.extensions, code },
  });
}

/** Whether a client caused the error (its message may be shown); anything else is masked. */
export function isClientError(error: unknown): error is GraphQLError {
  if (!(error instanceof GraphQLError)) return false;
  // Request-level errors Yoga raises itself (bad JSON, wrong method) carry their HTTP status.
  const status = (error.extensions?.http as { status?: number } | undefined)?.status;
  if (status && status < 500) return true;
  const original = error.originalError;
  if (original && !(original instanceof GraphQLError)) return false;
  const code = (original instanceof GraphQLError ? original : error).extensions?.code;
  return code === undefined || CLIENT_ERROR_CODES.has(String(code));
}

/**
 * Client errors pass through; anything else becomes INTERNAL_SERVER_ERROR with an id, and
 * is logged once, with that id, so an operator can find it.
 */
export function createErrorMasker(log: Logger): (error: unknown) => GraphQLError {
  return (error) => {
    if (isClientError(error)) return error;
    if (isRecordGone(error)) {
      // Deleted by a concurrent request after this one found it (a message whose group was
      // just deleted, say): the client's view is out of date, nothing failed on our side.
      return new GraphQLError("This record no longer exists", {
        path: error instanceof GraphQLError ? error.path : undefined,
        extensions: { code: "NOT_FOUND" },
      });
    }
    if (
      error instanceof GraphQLError &&
      error.extensions?.code === "INTERNAL_SERVER_ERROR" &&
      error.extensions.errorId
    ) {
      return error; // already masked (and logged) once
    }
    const errorId = randomUUID();
    const original = error instanceof GraphQLError ? (error.originalError ?? error) : error;
    log.error({ err: original, errorId }, "unexpected error");
    return new GraphQLError("Unexpected error.", {
      path: error instanceof GraphQLError ? error.path : undefined,
      extensions: { code: "INTERNAL_SERVER_ERROR", errorId },
    });
  };
}

/** Prisma's "record to read or change was not found" (P2025), however it was wrapped. */
function isRecordGone(error: unknown): boolean {
  const original = error instanceof GraphQLError ? error.originalError : error;
  return original instanceof Prisma.PrismaClientKnownRequestError && original.code === "P2025";
}

/** Codes every error of a result (see classifyError). */
export const errorCodesPlugin: Plugin = {
  onResultProcess({ result, setResult }) {
    if (Array.isArray(result) || !result || typeof result !== "object" || !("errors" in result)) return;
    const errors = (result as { errors?: readonly GraphQLError[] }).errors;
    if (!errors?.length) return;
    setResult({ ...result, errors: errors.map((e) => (e instanceof GraphQLError ? classifyError(e) : e)) });
  },
};
