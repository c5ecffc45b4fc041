import cluster from "node:cluster";
import type { WorkerReady } from "./cluster.ts";
import { type Config, ConfigError, loadConfig } from "./env.ts";
import { createLogger, type Logger } from "./logger.ts";

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(2);
    }
    throw error;
  }
  const log = createLogger(config.logLevel);
  if (config.webConcurrency === 1) return serve(config, log);
  // Several processes write to one output: each line says which one wrote it.
  const own = log.child({ pid: process.pid });
  if (cluster.isPrimary) {
    // The primary serves nothing, so it does not load the application at all.
    const { runPrimary } = await import("./cluster.ts");
    return runPrimary(config, own);
  }
  return serve(config, own);
}

/** One whole server: alone, or as one worker of the primary in cluster.ts. */
async function serve(config: Config, log: Logger): Promise<void> {
  const { buildApp } = await import("./app.ts");
  const app = await buildApp(config, { log });
  const { url, wsUrl } = await app.start();
  if (cluster.isWorker) {
    // The primary reports the server ready once every worker is.
    process.send?.({ type: "chat:ready", url, wsUrl } satisfies WorkerReady);
  } else {
    log.info(
      {
        database: app.deps.db.kind,
        pubsub: app.deps.pubsub.kind,
      },
      `chat API ready: GraphQL and GraphiQL at ${url}, subscriptions at ${wsUrl}`,
    );
  }

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down");
    // In-flight operations get SHUTDOWN_DRAIN_SECONDS; closing the parts after them, a little more.
    const force = setTimeout(() => {
      log.error("shutdown timed out; exiting");
      process.exit(1);
    }, config.shutdownDrainMs + 10_000);
    force.unref();
    app.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exit(1);
});
