import type { AppDeps } from "../context.ts";
import type { Route } from "./routes.ts";

/** Whether the instance has finished warming up (see warmup.ts). */
export interface Warmth {
  warm: boolean;
  /** Set when the instance is shutting down: the load balancer should send it nothing new. */
  draining?: boolean;
}

/**
 * Readiness: 200 when the instance is warm and the database and pub/sub answer, 503
 * otherwise (a fresh instance answers `{ warm: false }` until its warm-up is done, so a
 * load balancer sends it no client whose first subscription would wait for it).
 */
export function readyRoute(deps: AppDeps, warmth: Warmth): Route {
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
      const { warm, draining = false } = warmth;
      const ready = warm && !draining && database && pubsub;
      return Response.json(draining ? { warm, draining, database, pubsub } : { warm, database, pubsub }, {
        status: ready ? 200 : 503,
      });
    },
  };
}
