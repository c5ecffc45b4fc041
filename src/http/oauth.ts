import { GraphQLError } from "graphql";
import { type AppDeps, contextFor } from "../context.ts";
import { isClientError } from "../graphql/errors.ts";
import {
  type CallbackFailure,
  finishProviderSignIn,
  type Provider,
  STATE_TTL_SECONDS,
  startProviderSignIn,
} from "../services/oauth.ts";
import { clientInfo, jsonError, originOf, statusOf } from "./respond.ts";
import type { Route } from "./routes.ts";

/** The cookie that binds a sign-in attempt to the browser that started it. */
const COOKIE = "chat_oauth";

const redirect = (location: string, cookie?: string) => {
  const headers = new Headers({ location, "cache-control": "no-store" });
  if (cookie) headers.set("set-cookie", cookie);
  return new Response(null, { status: 302, headers });
};

/**
 * Only sent back to this provider's start and callback, never readable by scripts, sent on
 * the provider's top-level redirect back (Lax) but not on cross-site subrequests, and only
 * over https when the server is reached over https.
 */
function attemptCookie(provider: Provider, value: string, maxAgeSeconds: number, secure: boolean): string {
  return [
    `${COOKIE}=${value}`,
    `Path=/auth/${provider}`,
    `Max-Age=${maxAgeSeconds}`,
    "HttpOnly",
    "SameSite=Lax",
    ...(secure ? ["Secure"] : []),
  ].join("; ");
}

function cookieValue(request: Request, name: string): string | null {
  for (const part of (request.headers.get("cookie") ?? "").split(";")) {
    const separator = part.indexOf("=");
    if (separator > 0 && part.slice(0, separator).trim() === name) return part.slice(separator + 1).trim();
  }
  return null;
}

/**
 * Sign-in with Google or GitHub (authorization code flow with PKCE, state and nonce).
 * `start` redirects to the provider and binds the attempt to the browser with a cookie;
 * `callback` (in that browser only) returns it to the app's registered redirect URI with
 * the session in the fragment, as a password sign-in would return it: #access_token,
 * refresh_token, expires_at, refresh_expires_at, token_type.
 */
export function providerSignInRoute(deps: AppDeps): Route {
  // Each start writes a row and calls the provider's discovery: a client address gets so many a minute.
  const starts = deps.limits.address.sibling("oauth-start", {
    points: deps.config.oauthStartsPerMinute,
    durationSeconds: 60,
  });
  return {
    methods: ["GET"],
    path: /^\/auth\/(google|github)\/(start|callback)$/,
    async handle(request, match, serverContext) {
      const provider = match[1] as Provider;
      const step = match[2] as "start" | "callback";
      const url = new URL(request.url);
      const origin = originOf(deps.config, request);
      const secure = origin.startsWith("https:") || !!deps.config.publicUrl?.startsWith("https:");
      const ctx = contextFor(deps, null, { origin, client: clientInfo(deps.config, request, serverContext) });
      try {
        if (step === "start") {
          await starts.consume(ctx.client?.address ?? "unknown");
          const started = await startProviderSignIn(
            ctx,
            provider,
            url.searchParams.get("tenantId"),
            url.searchParams.get("redirectUri"),
          );
          return redirect(started.url.href, attemptCookie(provider, started.browserKey, STATE_TTL_SECONDS, secure));
        }
        const { redirectUri, payload } = await finishProviderSignIn(ctx, provider, url, cookieValue(request, COOKIE));
        const fragment = new URLSearchParams({
          access_token: payload.accessToken,
          refresh_token: payload.refreshToken,
          expires_at: payload.accessTokenExpiresAt.toISOString(),
          refresh_expires_at: payload.refreshTokenExpiresAt.toISOString(),
          token_type: "Bearer",
        });
        return redirect(`${redirectUri}#${fragment}`, attemptCookie(provider, "", 0, secure));
      } catch (error) {
        const { redirectUri, attemptEnded } = error as CallbackFailure;
        const clearCookie = attemptEnded ? attemptCookie(provider, "", 0, secure) : undefined;
        const clientError = error instanceof GraphQLError && isClientError(error);
        if (!clientError) deps.log.warn({ err: error, provider }, "provider sign-in failed");
        const message = clientError ? error.message : "The provider sign-in failed";
        if (redirectUri) {
          return redirect(
            `${redirectUri}#${new URLSearchParams({ error: "access_denied", error_description: message })}`,
            clearCookie,
          );
        }
        const code = clientError ? String(error.extensions.code) : "BAD_USER_INPUT";
        const headers: Record<string, string> = clearCookie ? { "set-cookie": clearCookie } : {};
        const retryAfter = clientError ? error.extensions.retryAfterSeconds : undefined;
        if (typeof retryAfter === "number") headers["retry-after"] = String(retryAfter);
        return jsonError(statusOf(code), code, message, headers);
      }
    },
  };
}
