import type { Plugin } from "graphql-yoga";
import { type Logger, redactUrl } from "../logger.ts";
import { jsonError, type NodeServerContext } from "./respond.ts";

/** A non-GraphQL route: methods, a path pattern, and a fetch-style handler. */
export interface Route {
  methods: readonly string[];
  path: RegExp;
  handle(request: Request, match: RegExpExecArray, serverContext: NodeServerContext): Promise<Response>;
}

/**
 * Serves the routes beside the GraphQL endpoint (downloads, sign-in redirects, readiness)
 * from Yoga's request pipeline, so a socket and `app.fetch` reach them the same way.
 * A handler that fails unexpectedly answers a masked 500 and is logged once.
 */
export function routesPlugin(routes: readonly Route[], log: Logger): Plugin {
  return {
    async onRequest({ request, url, endResponse, serverContext }) {
      for (const route of routes) {
        const match = route.path.exec(url.pathname);
        if (!match || !route.methods.includes(request.method)) continue;
        try {
          endResponse(await route.handle(request, match, serverContext as NodeServerContext));
        } catch (error) {
          log.error({ err: error, path: redactUrl(url) }, "route failed");
          endResponse(jsonError(500, "INTERNAL_SERVER_ERROR", "Unexpected error."));
        }
        return;
      }
    },
  };
}
