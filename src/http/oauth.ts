import { GraphQLError } from "graphql";
import { type AppDeps, contextFor } from "../context.ts";
import { isClientError } from "../graphql/errors.ts";
import { finishProviderSignIn, type Provider, startProviderSignIn } from "../services/oauth.ts";
import { clientInfo, jsonError, originOf } from "./respond.ts";
import type { Route } from "./routes.ts";

const redirect = (location: string) =>
  new Response(null, { status: 302, headers: { location, "cache-control": "no-store" } });

/**
 * Sign-in with Google or GitHub (authorization code flow with PKCE, state and nonce).
 * `start` redirects to the provider; `callback` returns the browser to the app's
 * registered redirect URI with the session in the fragment, as a password sign-in would
 * return it: #access_token, refresh_token, expires_at, refresh_expires_at, token_type.
 */
export function providerSignInRoute(deps: AppDeps): Route {
  return {
    methods: ["GET"],
    path: /^\/auth\/(google|github)\/(start|callback)$/,
    async handle(request, match, serverContext) {
      const provider = match[1] as Provider;
      const step = match[2] as "start" | "callback";
      const url = new URL(request.url);
      const ctx = contextFor(deps, null, {
        origin: originOf(deps.config, request),
        client: clientInfo(deps.config, request, serverContext),
      });
      try {
        if (step === "start") {
          const target = await startProviderSignIn(
            ctx,
            provider,
            url.searchParams.get("tenantId"),
            url.searchParams.get("redirectUri"),
          );
          return redirect(target.href);
        }
        const { redirectUri, payload } = await finishProviderSignIn(ctx, provider, url);
        const fragment = new URLSearchParams({
          access_token: payload.accessToken,
          refresh_token: payload.refreshToken,
          expires_at: payload.accessTokenExpiresAt.toISOString(),
          refresh_expires_at: payload.refreshTokenExpiresAt.toISOString(),
          token_type: "Bearer",
        });
        return redirect(`${redirectUri}#${fragment}`);
      } catch (error) {
        const redirectUri = (error as { redirectUri?: string }).redirectUri;
        const clientError = error instanceof GraphQLError && isClientError(error);
        if (!clientError) deps.log.warn({ err: error, provider }, "provider sign-in failed");
        const message = clientError ? error.message : "The provider sign-in failed";
        if (redirectUri) {
          return redirect(
            `${redirectUri}#${new URLSearchParams({ error: "access_denied", error_description: message })}`,
          );
        }
        const code = clientError ? String(error.extensions.code) : "BAD_USER_INPUT";
        return jsonError(code === "FORBIDDEN" ? 403 : 400, code, message);
      }
    },
  };
}
