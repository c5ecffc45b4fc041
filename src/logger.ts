import { type DestinationStream, type Logger, pino } from "pino";

export type { Logger };

/**
 * Query parameters that carry credentials (the UI pages' `token` and `api_key`, OAuth's
 * `access_token` and `refresh_token`), also URL-encoded inside another parameter. Their
 * values end at the next parameter, fragment, space or quote; another escaped character
 * (JSON, as log lines are written) is part of the value.
 */
const SECRET_PARAMETER =
  /(?<=^|[^a-z0-9_]|%3f|%26)(token|api_key|access_token|refresh_token)(=|%3d)(?:[^&#\s"'\\]|\\[^"])*/gi;

const MAY_HOLD_SECRET = /token|api_key/i;

/** The text with the values of credential parameters replaced: `token=[redacted]`. */
export function redactSecrets(text: string): string {
  // Most lines name no such parameter: a plain scan spares them the pattern above.
  if (!MAY_HOLD_SECRET.test(text)) return text;
  return text.replace(SECRET_PARAMETER, "$1$2[redacted]");
}

/** A request's path and query for a log line, without credentials. */
export function redactUrl(url: URL | string): string {
  const parsed = typeof url === "string" ? new URL(url, "http://localhost") : url;
  return redactSecrets(parsed.pathname + parsed.search);
}

/**
 * The server's logger: JSON lines on stdout (or `destination`). Every line passes
 * redactSecrets as it is written, whatever logged it (an error message, a URL, a library).
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = { level, base: undefined, hooks: { streamWrite: redactSecrets } };
  return destination ? pino(options, destination) : pino(options);
}
