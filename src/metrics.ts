/**
 * Prometheus metrics (`GET /metrics`, prom-client). Per instance a registry of its own; with
 * worker processes (WEB_CONCURRENCY > 1) a scrape of any worker answers for all of them,
 * aggregated by the primary (prom-client's AggregatorRegistry).
 *
 * Counts on the delivery path are plain numbers (`tallies`), read into the registry when it
 * is scraped, so a frame written costs an addition, not a metric update.
 */
import cluster from "node:cluster";
import { randomUUID } from "node:crypto";
import {
  AggregatorRegistry,
  Counter,
  collectDefaultMetrics,
  Gauge,
  Histogram,
  type Registry as PromRegistry,
  Registry,
} from "prom-client";
import type { Database } from "./db/client.ts";
import type { Route } from "./http/routes.ts";

/** Process-wide counts from the hot paths; only grow. */
export const tallies = {
  /** Events published to pub/sub by this process. */
  published: 0,
  /** `next` frames written to sockets. */
  deliveries: 0,
  /** Streams ended with SLOW_CONSUMER because their own queue overflowed. */
  queueOverflows: 0,
  /** Streams ended with SLOW_CONSUMER because their socket's send buffer passed its bound. */
  socketOverflows: 0,
  /** Pub/sub (Redis) reconnects after which local streams resynced from storage. */
  pubsubResyncs: 0,
  /** Requests and operations refused by a rate limit, by limit. */
  rateLimited: new Map<string, number>(),
};

export function countRateLimited(limit: string): void {
  tallies.rateLimited.set(limit, (tallies.rateLimited.get(limit) ?? 0) + 1);
}

/** Operation names become labels: at most this many distinct ones, then "other". */
const MAX_OPERATION_NAMES = 200;

export interface OperationRecord {
  type: "query" | "mutation" | "subscription" | "unknown";
  name: string | null;
  seconds: number;
  /** The error codes of the result (deduplicated), empty when it succeeded. */
  codes: readonly string[];
}

/** Live numbers the registry reads from the server when scraped. */
export interface LiveSources {
  sockets(): number;
  subscriptions(): number;
}

export class Metrics {
  readonly registry: PromRegistry = new Registry();
  private readonly names = new Set<string>();
  private readonly operations: Counter<"type" | "name">;
  private readonly durations: Histogram<"type" | "name">;
  private readonly errors: Counter<"type" | "name" | "code">;
  private readonly deliveryLatency: Histogram;
  private readonly dbQueries: Histogram;
  private sources: LiveSources = { sockets: () => 0, subscriptions: () => 0 };

  constructor(db: Database) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.operations = new Counter({
      name: "chat_graphql_operations_total",
      help: "GraphQL operations by type and operation name (subscriptions counted as they start)",
      labelNames: ["type", "name"],
      registers,
    });
    this.durations = new Histogram({
      name: "chat_graphql_operation_duration_seconds",
      help: "Time from an operation's arrival to its result (for subscriptions: to the stream's start)",
      labelNames: ["type", "name"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.errors = new Counter({
      name: "chat_graphql_errors_total",
      help: "GraphQL operations that failed, by extensions.code",
      labelNames: ["type", "name", "code"],
      registers,
    });
    const sources = () => this.sources;
    new Gauge({
      name: "chat_ws_sockets",
      help: "Open WebSocket connections",
      registers,
      collect() {
        this.set(sources().sockets());
      },
    });
    new Gauge({
      name: "chat_subscriptions",
      help: "Live subscriptions on this instance's sockets",
      registers,
      collect() {
        this.set(sources().subscriptions());
      },
    });
    const tally = (name: string, help: string, read: () => number) => {
      let seen = 0;
      new Counter({
        name,
        help,
        registers,
        collect() {
          const now = read();
          this.inc(now - seen);
          seen = now;
        },
      });
    };
    tally("chat_events_published_total", "Events published to pub/sub", () => tallies.published);
    tally("chat_deliveries_total", "Subscription results (next frames) written to sockets", () => tallies.deliveries);
    tally(
      "chat_queue_overflows_total",
      "Streams ended with SLOW_CONSUMER because their queue passed its bound",
      () => tallies.queueOverflows,
    );
    tally(
      "chat_socket_overflows_total",
      "Sockets whose streams ended with SLOW_CONSUMER because the send buffer passed SOCKET_BUFFER_LIMIT_BYTES",
      () => tallies.socketOverflows,
    );
    tally(
      "chat_pubsub_resyncs_total",
      "Pub/sub reconnects after which live streams re-read what they missed from storage",
      () => tallies.pubsubResyncs,
    );
    const limitSeen = new Map<string, number>();
    new Counter({
      name: "chat_rate_limited_total",
      help: "Requests and operations refused by a rate limit, by limit",
      labelNames: ["limit"],
      registers,
      collect() {
        for (const [limit, count] of tallies.rateLimited) {
          this.inc({ limit }, count - (limitSeen.get(limit) ?? 0));
          limitSeen.set(limit, count);
        }
      },
    });
    this.deliveryLatency = new Histogram({
      name: "chat_message_delivery_seconds",
      help: "From a new message's commit to its frames written by this instance (end of its write pass)",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.dbQueries = new Histogram({
      name: "chat_db_query_duration_seconds",
      help: "Database statements, from sending to the answer",
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    db.stats.observeQueries((seconds) => this.dbQueries.observe(seconds));
    new Gauge({
      name: "chat_db_pool_connections",
      help: "PostgreSQL pool connections by state (total, idle, waiting requests)",
      labelNames: ["state"],
      registers,
      collect() {
        const pool = db.pool?.();
        if (!pool) return;
        this.set({ state: "total" }, pool.total);
        this.set({ state: "idle" }, pool.idle);
        this.set({ state: "waiting" }, pool.waiting);
      },
    });
  }

  /** The server's live numbers (sockets, subscriptions). */
  watch(sources: LiveSources): void {
    this.sources = sources;
  }

  operation(record: OperationRecord): void {
    const labels = { type: record.type, name: this.label(record.name) };
    this.operations.inc(labels);
    this.durations.observe(labels, record.seconds);
    for (const code of record.codes) this.errors.inc({ ...labels, code });
  }

  /** A new message's frames are written: `createdAt` is when it was stored. */
  delivered(createdAt: number): void {
    this.deliveryLatency.observe(Math.max(0, Date.now() - createdAt) / 1000);
  }

  private label(name: string | null): string {
    if (!name) return "(anonymous)";
    if (this.names.has(name)) return name;
    if (this.names.size >= MAX_OPERATION_NAMES) return "(other)";
    this.names.add(name);
    return name;
  }

  /** This process's metrics, or with worker processes all of them (asked of the primary). */
  async render(): Promise<{ text: string; contentType: string }> {
    if (cluster.isWorker && process.send) {
      return { text: await askPrimary(), contentType: this.registry.contentType };
    }
    return { text: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}

const METRICS_REQUEST = "chat:metrics";
const METRICS_REPLY = "chat:metrics-reply";

function askPrimary(): Promise<string> {
  const id = randomUUID();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      process.off("message", onMessage);
      reject(new Error("the primary did not answer the metrics request"));
    }, 10_000);
    const onMessage = (message: unknown) => {
      const reply = message as { type?: string; id?: string; text?: string; error?: string };
      if (reply?.type !== METRICS_REPLY || reply.id !== id) return;
      clearTimeout(timer);
      process.off("message", onMessage);
      if (reply.error !== undefined) reject(new Error(reply.error));
      else resolve(reply.text ?? "");
    };
    process.on("message", onMessage);
    process.send?.({ type: METRICS_REQUEST, id });
  });
}

/** In a worker process: the registry the primary's aggregation reads. */
export function shareWithPrimary(metrics: Metrics): void {
  if (!cluster.isWorker) return;
  AggregatorRegistry.setRegistries([metrics.registry]);
  // Constructing one installs prom-client's answer to the primary's requests in this worker.
  new AggregatorRegistry();
}

/** In the primary: answers workers' metrics requests with every worker's metrics, aggregated. */
export function serveClusterMetrics(): void {
  const aggregator = new AggregatorRegistry();
  cluster.on("message", (worker, message: unknown) => {
    const request = message as { type?: string; id?: string };
    if (request?.type !== METRICS_REQUEST) return;
    aggregator.clusterMetrics().then(
      (text) => worker.send({ type: METRICS_REPLY, id: request.id, text }),
      (error: Error) => worker.send({ type: METRICS_REPLY, id: request.id, error: error.message }),
    );
  });
}

/** `GET /metrics`; with METRICS_TOKEN set, only for `Authorization: Bearer <METRICS_TOKEN>`. */
export function metricsRoute(
  metrics: Metrics,
  token: string | undefined,
  safeEqual: (a: string, b: string) => boolean,
): Route {
  return {
    methods: ["GET"],
    path: /^\/metrics$/,
    async handle(request) {
      if (token) {
        const presented = request.headers.get("authorization")?.match(/^Bearer (.+)$/i)?.[1];
        if (!presented || !safeEqual(presented, token)) {
          return new Response("Unauthorized\n", {
            status: 401,
            headers: { "www-authenticate": 'Bearer realm="metrics"', "content-type": "text/plain" },
          });
        }
      }
      const { text, contentType } = await metrics.render();
      return new Response(text, { headers: { "content-type": contentType, "cache-control": "no-store" } });
    },
  };
}
