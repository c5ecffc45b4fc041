import cluster, { type Worker } from "node:cluster";
import pg from "pg";
import { applyMigrations } from "./db/migrate.ts";
import { pgPoolSql } from "./db/sql.ts";
import type { Config } from "./env.ts";
import type { Logger } from "./logger.ts";
import { serveClusterMetrics } from "./metrics.ts";

/**
 * The primary process of a server with WEB_CONCURRENCY > 1 (PostgreSQL + Redis only). It
 * serves nothing itself: it brings the schema up to date once, forks the workers (each one
 * a whole server, as `src/main.ts` runs it alone) which share the listening port through
 * Node's cluster module, restarts a worker that dies, and on SIGTERM/SIGINT passes the
 * signal on and exits once every worker has shut down gracefully.
 *
 * Workers are separate instances in all but the port: each has its own database pool,
 * Redis connections, sockets and subscriptions, and news reaches the others through Redis.
 */

/** A worker that lived this long before dying is restarted at once; one that died sooner waits. */
const STABLE_MS = 10_000;
const FIRST_RESTART_DELAY_MS = 1000;
const MAX_RESTART_DELAY_MS = 30_000;
/** Longer than a worker's own shutdown deadline (10 s in main.ts). */
/** What a worker may take to shut down beyond SHUTDOWN_DRAIN_SECONDS (closing its parts). */
const SHUTDOWN_TIMEOUT_MS = 15_000;

/**
 * How long to wait before restarting a worker after `quickDeaths` deaths in a row that each
 * came less than STABLE_MS after the worker started: none after a death that ended a
 * stable run, then 1 s, 2 s, 4 s ... up to 30 s, so a crash loop does not spin.
 */
export function restartDelayMs(quickDeaths: number): number {
  if (quickDeaths <= 0) return 0;
  return Math.min(MAX_RESTART_DELAY_MS, FIRST_RESTART_DELAY_MS * 2 ** (quickDeaths - 1));
}

/** What a worker tells the primary once it serves (see main.ts). */
export interface WorkerReady {
  type: "chat:ready";
  url: string;
  wsUrl: string;
}

function isWorkerReady(message: unknown): message is WorkerReady {
  return typeof message === "object" && message !== null && (message as { type?: unknown }).type === "chat:ready";
}

/** One of the WEB_CONCURRENCY places a worker runs in; its worker is replaced when it dies. */
interface Slot {
  worker: Worker | null;
  startedAt: number;
  /** Told the primary it serves (WorkerReady). */
  ready: boolean;
  quickDeaths: number;
  restartTimer: NodeJS.Timeout | null;
}

/** Applies pending migrations once, before any worker starts (the workers then find none). */
async function migrate(config: Config, log: Logger): Promise<void> {
  const pool = new pg.Pool({ connectionString: config.databaseUrl, max: 1 });
  pool.on("error", () => {});
  try {
    await applyMigrations(pgPoolSql(pool), { log: (msg) => log.info(msg) });
  } finally {
    await pool.end().catch(() => {});
  }
}

export async function runPrimary(config: Config, log: Logger): Promise<void> {
  await migrate(config, log);
  // GET /metrics on any worker answers for all of them.
  serveClusterMetrics();

  const count = config.webConcurrency;
  const slots: Slot[] = Array.from({ length: count }, () => ({
    worker: null,
    startedAt: 0,
    ready: false,
    quickDeaths: 0,
    restartTimer: null,
  }));
  const slotOf = new Map<Worker, Slot>();
  /** Until every worker has been ready once, a worker that dies is a failed start: the server exits. */
  let started = false;
  let stopping = false;
  let exitCode = 0;

  const fork = (slot: Slot) => {
    slot.restartTimer = null;
    // The same entry point, Node flags and environment as this process.
    const worker = cluster.fork();
    slot.worker = worker;
    slot.startedAt = Date.now();
    slot.ready = false;
    slotOf.set(worker, slot);
  };

  const live = () => slots.flatMap((slot) => (slot.worker ? [slot.worker] : []));

  const finish = () => {
    if (live().length > 0) return;
    log.info({ exitCode }, "all workers exited");
    process.exit(exitCode);
  };

  const stop = (signal: NodeJS.Signals, reason: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, reason);
    for (const slot of slots) {
      if (slot.restartTimer) clearTimeout(slot.restartTimer);
      slot.restartTimer = null;
    }
    const force = setTimeout(() => {
      log.error("workers did not shut down in time; killing them");
      for (const worker of live()) worker.process.kill("SIGKILL");
      exitCode = 1;
    }, config.shutdownDrainMs + SHUTDOWN_TIMEOUT_MS);
    force.unref();
    for (const worker of live()) worker.process.kill(signal);
    finish();
  };

  cluster.on("message", (worker, message: unknown) => {
    const slot = slotOf.get(worker);
    if (!slot || slot.ready || !isWorkerReady(message)) return;
    slot.ready = true;
    log.info({ worker: worker.process.pid }, "worker ready");
    if (started || stopping || !slots.every((each) => each.ready)) return;
    started = true;
    const { url, wsUrl } = message;
    log.info(
      { database: "postgres", pubsub: "redis", workers: count },
      `chat API ready: GraphQL and GraphiQL at ${url}, subscriptions at ${wsUrl}`,
    );
  });

  cluster.on("exit", (worker, code, signal) => {
    const slot = slotOf.get(worker);
    slotOf.delete(worker);
    if (!slot) return;
    slot.worker = null;
    const details = { worker: worker.process.pid, code, signal };
    if (stopping) {
      // A worker that failed its own graceful shutdown makes the whole stop a failure.
      if (code !== 0 && code !== null) exitCode = 1;
      log.info(details, "worker exited");
      finish();
      return;
    }
    if (!started) {
      log.error(details, "a worker failed to start; stopping");
      exitCode = 1;
      stop("SIGTERM", "startup failed");
      return;
    }
    slot.quickDeaths = Date.now() - slot.startedAt < STABLE_MS ? slot.quickDeaths + 1 : 0;
    const delay = restartDelayMs(slot.quickDeaths);
    log.error({ ...details, restartInMs: delay }, "worker died; restarting it");
    slot.restartTimer = setTimeout(() => fork(slot), delay);
  });

  process.on("SIGTERM", () => stop("SIGTERM", "shutting down"));
  process.on("SIGINT", () => stop("SIGINT", "shutting down"));

  log.info({ workers: count }, "starting workers");
  for (const slot of slots) fork(slot);
}
