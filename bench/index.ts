/**
 * `npm run bench`: the server measured against baselines taken in the same run on the same
 * machine, reported as ratios of medians. Needs PostgreSQL and Redis
 * (BENCH_DATABASE_URL / BENCH_REDIS_URL, defaulting to the local ones).
 *
 *   npm run bench                       everything
 *   npm run bench -- --only fanout      one part (fanout, request or coldstart)
 *   npm run bench -- --quick            fewer and shorter runs
 *   npm run bench -- --json out.json    also write the figures as JSON
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { type ColdStartResult, runColdStart } from "./coldstart.ts";
import { type FanoutResult, type FanoutScenario, runFanout } from "./fanout.ts";
import type { LoadResult } from "./lib/load.ts";
import { createDatabase } from "./lib/proc.ts";
import { median, round, table } from "./lib/stats.ts";
import { type RequestOptions, type RequestResult, runRequestPglite, runRequestPostgres } from "./request.ts";

const { values } = parseArgs({
  options: {
    only: { type: "string" },
    quick: { type: "boolean", default: false },
    json: { type: "string" },
    runs: { type: "string" },
  },
});

const databaseUrl =
  process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const redisUrl = process.env.BENCH_REDIS_URL ?? process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const runs = Number(values.runs ?? (values.quick ? 1 : 3));

async function withDatabase<T>(run: (env: Record<string, string>) => Promise<T>): Promise<T> {
  const database = await createDatabase(databaseUrl);
  try {
    return await run({
      DATABASE_URL: database.url,
      REDIS_URL: redisUrl,
      JWT_SECRET: "bench-secret-that-is-long-enough-for-hs256",
    });
  } finally {
    await database.drop();
  }
}

interface FanoutRow {
  scenario: FanoutScenario;
  runs: { raw: FanoutResult; server: FanoutResult }[];
}

async function fanout(): Promise<{ rows: FanoutRow[]; twoProcesses: FanoutResult[] }> {
  const scenarios: FanoutScenario[] = values.quick
    ? [{ subscribers: 1000, mode: "burst", messages: 50 }]
    : [
        { subscribers: 1000, mode: "burst", messages: 100 },
        { subscribers: 5000, mode: "burst", messages: 40 },
        { subscribers: 5000, mode: "rate", rate: 2, seconds: 10 },
      ];
  const rows: FanoutRow[] = [];
  for (const scenario of scenarios) {
    const row: FanoutRow = { scenario, runs: [] };
    for (let run = 0; run < runs; run++) {
      const raw = await runFanout("raw", scenario);
      const server = await withDatabase((env) => runFanout({ env, processes: 1 }, scenario));
      row.runs.push({ raw, server });
      console.error(
        `fanout ${describe(scenario)} run ${run + 1}: raw ${raw.deliveriesPerSecond}/s, server ${server.deliveriesPerSecond}/s`,
      );
    }
    rows.push(row);
  }
  const twoProcesses: FanoutResult[] = [];
  if (!values.quick) {
    const scenario: FanoutScenario = { subscribers: 5000, mode: "burst", messages: 40 };
    twoProcesses.push(await withDatabase((env) => runFanout({ env, processes: 2 }, scenario)));
  }
  return { rows, twoProcesses };
}

const failed = (runs: FanoutResult[]) => {
  const count = runs.reduce((sum, run) => sum + run.failedSends, 0);
  return count ? ` (${count} sends failed)` : "";
};

const describe = (scenario: FanoutScenario) =>
  `${scenario.subscribers} subs, ${scenario.mode === "burst" ? "max rate" : `${scenario.rate} msg/s`}`;

function fanoutTable(result: Awaited<ReturnType<typeof fanout>>): string {
  const rows = result.rows.map((row) => {
    const raw = row.runs.map((run) => run.raw);
    const server = row.runs.map((run) => run.server);
    const m = (list: FanoutResult[], pick: (r: FanoutResult) => number) => median(list.map(pick));
    const rawRate = m(raw, (r) => r.deliveriesPerSecond);
    const serverRate = m(server, (r) => r.deliveriesPerSecond);
    return [
      describe(row.scenario),
      rawRate,
      serverRate,
      `${round(serverRate / rawRate)}x`,
      `${round(
        m(raw, (r) => r.latencyMs.p99),
        1,
      )} / ${round(
        m(server, (r) => r.latencyMs.p99),
        1,
      )}`,
      m(server, (r) => r.latencyMs.p50),
      m(server, (r) => r.latencyMs.max),
      `${m(raw, (r) => r.cpuMicrosPerDelivery)} / ${m(server, (r) => r.cpuMicrosPerDelivery)}`,
      `${m(raw, (r) => r.memoryKBPerSubscriber)} / ${m(server, (r) => r.memoryKBPerSubscriber)}`,
      `${m(server, (r) => r.deliveries)}/${m(server, (r) => r.expected)}${failed(server)}`,
    ];
  });
  for (const two of result.twoProcesses) {
    rows.push([
      `${describe({ subscribers: two.subscribers, mode: "burst" })}, 2 processes`,
      "",
      two.deliveriesPerSecond,
      "",
      `- / ${round(two.latencyMs.p99)}`,
      two.latencyMs.p50,
      two.latencyMs.max,
      `- / ${two.cpuMicrosPerDelivery}`,
      `- / ${two.memoryKBPerSubscriber}`,
      `${two.deliveries}/${two.expected}${failed([two])}`,
    ]);
  }
  return table(
    [
      "fan-out",
      "raw ws/s",
      "server/s",
      "ratio",
      "p99 ms raw/server",
      "p50 ms",
      "max ms",
      "CPU us/delivery raw/server",
      "KB/sub raw/server",
      "delivered",
    ],
    rows,
  );
}

async function requestPath(): Promise<{ postgres: RequestResult[]; pglite: RequestResult[] }> {
  const options: RequestOptions = values.quick
    ? { seconds: 2, warmupSeconds: 1, concurrencies: [1, 32] }
    : { seconds: 5, warmupSeconds: 1.5, concurrencies: [1, 8, 32] };
  const postgres: RequestResult[] = [];
  const pglite: RequestResult[] = [];
  for (let run = 0; run < runs; run++) {
    const result = await withDatabase((env) => runRequestPostgres(env, options));
    postgres.push(result);
    const sends = result.send.map(
      (send, i) => `c=${send.concurrency} ${send.perSecond}/s (raw ${result.raw[i]?.perSecond}/s)`,
    );
    console.error(`request run ${run + 1}: sendMessage ${sends.join(", ")}`);
    pglite.push(await runRequestPglite({ ...options, concurrencies: [1] }));
  }
  return { postgres, pglite };
}

/** The median of one figure across runs. */
function across(results: RequestResult[], pick: (result: RequestResult) => number | undefined): number {
  return median(results.map(pick).filter((value): value is number => value !== undefined));
}

function requestTables(result: Awaited<ReturnType<typeof requestPath>>): string {
  const pgRuns = result.postgres;
  const first = pgRuns[0] as RequestResult;
  const at = (list: LoadResult[], i: number) => list[i] as LoadResult;
  const sends = first.send.map((send, i) => {
    const raw = across(pgRuns, (r) => r.raw[i]?.perSecond);
    const server = across(pgRuns, (r) => r.send[i]?.perSecond);
    const typename = across(pgRuns, (r) => r.typename[i]?.perSecond);
    const sendP50 = across(pgRuns, (r) => r.send[i]?.latencyMs.p50);
    const typenameP50 = across(pgRuns, (r) => r.typename[i]?.latencyMs.p50);
    return [
      `sendMessage c=${send.concurrency}`,
      raw,
      server,
      `${round(server / raw)}x`,
      typename,
      `${sendP50} / ${typenameP50}`,
      `${round(sendP50 / typenameP50)}x`,
      across(pgRuns, (r) => r.send[i]?.latencyMs.p99),
      across(pgRuns, (r) => r.send[i]?.cpuMicrosPerRequest),
      errorsOf(pgRuns.map((r) => at(r.send, i))),
    ];
  });
  const viewers = first.viewer.map((viewer, i) => {
    const server = across(pgRuns, (r) => r.viewer[i]?.perSecond);
    const typename = across(pgRuns, (r) => r.typename[i]?.perSecond);
    const p50 = across(pgRuns, (r) => r.viewer[i]?.latencyMs.p50);
    const typenameP50 = across(pgRuns, (r) => r.typename[i]?.latencyMs.p50);
    return [
      `viewer c=${viewer.concurrency}`,
      "",
      server,
      "",
      typename,
      `${p50} / ${typenameP50}`,
      `${round(p50 / typenameP50)}x`,
      across(pgRuns, (r) => r.viewer[i]?.latencyMs.p99),
      across(pgRuns, (r) => r.viewer[i]?.cpuMicrosPerRequest),
      errorsOf(pgRuns.map((r) => at(r.viewer, i))),
    ];
  });
  const headers = [
    "PostgreSQL + Redis",
    "raw tx/s",
    "server/s",
    "ratio",
    "__typename/s",
    "p50 ms op / __typename",
    "time ratio",
    "p99 ms",
    "CPU us/req",
    "errors",
  ];
  const history = (runsOf: RequestResult[]) =>
    (runsOf[0] as RequestResult).history.map((page, i) => [
      `history of ${page.messages} (${runsOf[0]?.backend})`,
      across(runsOf, (r) => r.history[i]?.result.perSecond),
      across(runsOf, (r) => r.history[i]?.result.latencyMs.p50),
      across(runsOf, (r) => r.history[i]?.result.latencyMs.p99),
      across(runsOf, (r) => r.history[i]?.result.cpuMicrosPerRequest),
    ]);
  const lite = result.pglite;
  const embedded = [
    [
      "sendMessage c=1 (pglite)",
      across(lite, (r) => r.send[0]?.perSecond),
      across(lite, (r) => r.send[0]?.latencyMs.p50),
      across(lite, (r) => r.send[0]?.latencyMs.p99),
      across(lite, (r) => r.send[0]?.cpuMicrosPerRequest),
    ],
    [
      "__typename c=1 (pglite)",
      across(lite, (r) => r.typename[0]?.perSecond),
      across(lite, (r) => r.typename[0]?.latencyMs.p50),
      across(lite, (r) => r.typename[0]?.latencyMs.p99),
      across(lite, (r) => r.typename[0]?.cpuMicrosPerRequest),
    ],
  ];
  return [
    table(headers, [...sends, ...viewers]),
    table(
      ["reads and embedded mode", "req/s", "p50 ms", "p99 ms", "CPU us/req"],
      [...history(pgRuns), ...history(lite), ...embedded],
    ),
  ].join("\n\n");
}

const errorsOf = (list: LoadResult[]) => list.reduce((sum, item) => sum + item.errors, 0);

/** Cold start: a fresh instance per run (5 runs, 2 with --quick). */
async function coldStart(): Promise<ColdStartResult[]> {
  const results: ColdStartResult[] = [];
  for (let run = 0; run < (values.quick ? 2 : Math.max(5, runs)); run++) {
    const result = await withDatabase((env) => runColdStart(env));
    console.error(
      `cold start run ${run + 1}: first subscription ${round(result.firstMs, 1)} ms, warm ${round(result.warmMs, 1)} ms`,
    );
    results.push(result);
  }
  return results;
}

function coldStartTable(results: ColdStartResult[]): string {
  const first = median(results.map((r) => r.firstMs));
  const warm = median(results.map((r) => r.warmMs));
  return table(
    [
      "cold start (fresh instance)",
      "first subscription ms",
      "same instance, warm ms",
      "ratio",
      "max first ms",
      "start -> /ready ms",
    ],
    [
      [
        `${results.length} fresh instances, medians`,
        round(first, 1),
        round(warm, 1),
        `${round(first / warm)}x`,
        round(Math.max(...results.map((r) => r.firstMs)), 1),
        Math.round(median(results.map((r) => r.readyMs))),
      ],
    ],
  );
}

async function main() {
  const report: Record<string, unknown> = { date: new Date().toISOString(), runs };
  const output: string[] = [];
  if (!values.only || values.only === "request") {
    const result = await requestPath();
    report.request = result;
    output.push(requestTables(result));
  }
  if (!values.only || values.only === "fanout") {
    const result = await fanout();
    report.fanout = result;
    output.push(fanoutTable(result));
  }
  if (!values.only || values.only === "coldstart") {
    const result = await coldStart();
    report.coldStart = result;
    output.push(coldStartTable(result));
  }
  console.log(output.join("\n\n"));
  if (values.json) writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
