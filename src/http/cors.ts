import type { Plugin } from "graphql-yoga";
import type { Config } from "../env.ts";

/** How long a browser may reuse a preflight's answer. */
const PREFLIGHT_MAX_AGE_SECONDS = 600;

/**
 * Whether a browser page of `origin` may call this server (CORS_ORIGINS). A request
 * without an Origin header comes from no browser page (or from a same-origin GET) and is
 * not restricted here; the server's own origin (the Host the request came to, or
 * PUBLIC_URL) is always allowed.
 */
export function originAllowed(config: Config, origin: string | null | undefined, host: string | null | undefined) {
  if (!origin) return true;
  if (config.corsOrigins === "*" || config.corsOrigins.includes(origin)) return true;
  if (config.publicUrl && origin === new URL(config.publicUrl).origin) return true;
  // Same host, whatever the scheme: behind a TLS proxy the page is https and the request http.
  return !!host && URL.canParse(origin) && new URL(origin).host === host.toLowerCase();
}

/**
 * CORS for every HTTP route (GraphQL, downloads, sign-in, health): an allowed Origin is
 * echoed in Access-Control-Allow-Origin, any other gets no CORS headers, so the browser
 * withholds the response from the page. Credentials travel in headers, never in cookies,
 * so Access-Control-Allow-Credentials is never sent. Preflights (OPTIONS) answer 204.
 */
export function corsPlugin(config: Config): Plugin {
  return {
    onRequest({ request, fetchAPI, endResponse }) {
      if (request.method === "OPTIONS") {
        endResponse(new fetchAPI.Response(null, { status: 204, headers: { "content-length": "0" } }));
      }
    },
    onResponse({ request, response }) {
      const origin = request.headers.get("origin");
      if (!origin) return;
      // The answer depends on the Origin: caches must keep one per origin.
      response.headers.append("vary", "Origin");
      if (!originAllowed(config, origin, request.headers.get("host") ?? new URL(request.url).host)) return;
      response.headers.set("access-control-allow-origin", origin);
      if (request.method !== "OPTIONS") return;
      response.headers.set("access-control-allow-methods", "GET, HEAD, POST");
      const requested = request.headers.get("access-control-request-headers");
      if (requested) {
        response.headers.set("access-control-allow-headers", requested);
        response.headers.append("vary", "Access-Control-Request-Headers");
      }
      response.headers.set("access-control-max-age", String(PREFLIGHT_MAX_AGE_SECONDS));
    },
  };
}
