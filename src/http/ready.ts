import type { AppDeps } from "../context.ts";
import type { Route } from "./routes.ts";

/** Readiness: 200 when the database and pub/sub answer, 503 otherwise. */
export function readyRoute(deps: AppDeps): Route {
  return {
    methods: ["GET", "HEAD"],
    path: /^\/ready$/,
    async handle() {
      const [database, pubsub] = await Promise.all([
        deps.db.sql.query("SELECT 1").then(
          () => true,
          () => false,
        ),
        deps.pubsub.isReady(),
      ]);
      return Response.json({ database, pubsub }, { status: database && pubsub ? 200 : 503 });
    },
  };
}
