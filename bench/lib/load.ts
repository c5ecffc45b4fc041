/**
 * Closed-loop load: `concurrency` clients each send a request, wait for its answer and send
 * the next, for a fixed time after a warm-up. HTTP goes through one keep-alive agent.
 */
import { Agent, request } from "node:http";
import { cpuSeconds } from "./proc.ts";
import { round, type Summary, summarize } from "./stats.ts";

export interface LoadResult {
  concurrency: number;
  requests: number;
  perSecond: number;
  latencyMs: Summary;
  errors: number;
  /** Server CPU per request in microseconds (all processes given), when measured. */
  cpuMicrosPerRequest?: number;
}

export interface LoadOptions {
  concurrency: number;
  seconds: number;
  warmupSeconds: number;
  /** Processes whose CPU time is charged to the requests. */
  pids?: number[];
}

/** Runs `operation(client, i)` in a closed loop; a thrown error counts as an error and the loop goes on. */
export async function closedLoop(
  options: LoadOptions,
  operation: (client: number, iteration: number) => Promise<void>,
): Promise<LoadResult> {
  const { concurrency } = options;
  let measuring = false;
  let stop = false;
  const samples: number[] = [];
  let errors = 0;
  const clients = Array.from({ length: concurrency }, async (_, client) => {
    for (let iteration = 0; !stop; iteration++) {
      const started = performance.now();
      try {
        await operation(client, iteration);
        if (measuring) samples.push(performance.now() - started);
      } catch (error) {
        if (measuring) errors++;
        if (errors === 1 && measuring) console.error(`load error: ${String(error)}`);
      }
    }
  });
  await sleep(options.warmupSeconds * 1000);
  const cpuBefore = (options.pids ?? []).reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const startedAt = performance.now();
  measuring = true;
  await sleep(options.seconds * 1000);
  measuring = false;
  const elapsed = (performance.now() - startedAt) / 1000;
  const cpuAfter = (options.pids ?? []).reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  stop = true;
  await Promise.all(clients);
  const requests = samples.length;
  return {
    concurrency,
    requests,
    perSecond: Math.round(requests / elapsed),
    latencyMs: mapSummary(summarize(samples), (value) => round(value, 2)),
    errors,
    ...(options.pids?.length ? { cpuMicrosPerRequest: Math.round(((cpuAfter - cpuBefore) * 1e6) / requests) } : {}),
  };
}

function mapSummary(summary: Summary, map: (value: number) => number): Summary {
  return { count: summary.count, p50: map(summary.p50), p99: map(summary.p99), max: map(summary.max) };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A GraphQL-over-HTTP client on a keep-alive agent; rejects on transport or GraphQL errors. */
export function httpClient(url: string, maxSockets: number) {
  const agent = new Agent({ keepAlive: true, maxSockets });
  const target = new URL(url);
  return {
    post<T = unknown>(body: string, headers: Record<string, string> = {}): Promise<T> {
      return new Promise((resolve, reject) => {
        const req = request(
          {
            agent,
            host: target.hostname,
            port: target.port,
            path: target.pathname,
            method: "POST",
            headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...headers },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (chunk: Buffer) => chunks.push(chunk));
            res.on("end", () => {
              const text = Buffer.concat(chunks).toString("utf8");
              try {
                const parsed = JSON.parse(text) as { data?: T; errors?: unknown[] };
                if (parsed.errors?.length || !parsed.data) reject(new Error(text.slice(0, 300)));
                else resolve(parsed.data);
              } catch {
                reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 300)}`));
              }
            });
            res.on("error", reject);
          },
        );
        req.on("error", reject);
        req.end(body);
      });
    },
    close() {
      agent.destroy();
    },
  };
}
