/**
 * Fan-out: N subscribers of one group conversation selecting `messageAdded { id body createdAt }`,
 * against a bare `ws` broadcast measured in the same run.
 */
import { type ChildProcess, fork, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { gql, seedGroup, sendStamped, type World } from "./lib/graphql.ts";
import { cpuSeconds, profileArgs, rssBytes, type ServerProcess, startServer, stopChild } from "./lib/proc.ts";
import { round, type Summary, summarize } from "./lib/stats.ts";

export const SUBSCRIPTION = "subscription($id: ID!) { messageAdded(conversationId: $id) { id body createdAt } }";

export interface FanoutResult {
  target: string;
  subscribers: number;
  mode: string;
  messages: number;
  deliveries: number;
  expected: number;
  deliveriesPerSecond: number;
  latencyMs: Summary;
  cpuMicrosPerDelivery: number;
  memoryKBPerSubscriber: number;
  errors: number;
  /** Messages whose send failed. */
  failedSends: number;
}

interface Worker {
  child: ChildProcess;
  call(command: Record<string, unknown>): Promise<Record<string, unknown>>;
}

function startWorker(): Worker {
  const child = fork(fileURLToPath(new URL("./lib/subscriber-worker.ts", import.meta.url)), [], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  let pending = Promise.resolve();
  return {
    child,
    call(command) {
      const result = pending.then(async () => {
        child.send(command);
        const [reply] = (await once(child, "message")) as [Record<string, unknown>];
        if (!reply.ok) throw new Error(String(reply.error));
        return reply;
      });
      pending = result.then(
        () => {},
        () => {},
      );
      return result;
    },
  };
}

/** Something that delivers: our server (one or more processes) or the raw broadcast. */
interface Target {
  name: string;
  pids: number[];
  wsUrls: string[];
  tokens: string[];
  publish(): Promise<unknown>;
  stop(): Promise<void>;
}

/** The raw broadcast server, built like ours (plain Node on built code, no loader at run time). */
async function buildRawServer(): Promise<string> {
  const outfile = fileURLToPath(new URL("../dist/bench/raw-ws-server.mjs", import.meta.url));
  await build({
    entryPoints: [fileURLToPath(new URL("./lib/raw-ws-server.ts", import.meta.url))],
    outfile,
    bundle: true,
    packages: "external",
    platform: "node",
    format: "esm",
    logLevel: "warning",
  });
  return outfile;
}

async function rawTarget(): Promise<Target> {
  const child = spawn(process.execPath, [...profileArgs(), await buildRawServer()], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const [chunk] = (await once(child.stdout as NodeJS.ReadableStream, "data")) as [Buffer];
  const port = Number(String(chunk).trim());
  return {
    name: "raw ws",
    pids: [child.pid as number],
    wsUrls: [`ws://127.0.0.1:${port}/graphql`],
    tokens: ["none"],
    publish: () =>
      fetch(`http://127.0.0.1:${port}/publish`, {
        method: "POST",
        body: `t=${(performance.timeOrigin + performance.now()).toFixed(3)};`,
      }).then((response) => response.text()),
    stop: () => stopChild(child),
  };
}

async function serverTarget(
  env: Record<string, string>,
  processes: number,
  members: number,
): Promise<Target & { world: World }> {
  const servers: ServerProcess[] = [];
  // One process each, as the targets compare a single process with raw ws (WEB_CONCURRENCY: see README).
  for (let i = 0; i < processes; i++) servers.push(await startServer({ ...env, WEB_CONCURRENCY: "1" }));
  const first = servers[0] as ServerProcess;
  const world = await seedGroup(first.url, members);
  return {
    name: processes === 1 ? "server" : `server x${processes} (Redis)`,
    world,
    get pids() {
      return servers.flatMap((server) => server.pids);
    },
    wsUrls: servers.map((server) => server.wsUrl),
    tokens: world.memberTokens,
    publish: () => sendStamped(first.url, world.senderToken, world.conversationId),
    stop: async () => {
      await Promise.all(servers.map((server) => server.stop()));
    },
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function totals(workers: Worker[], maxSamples = 0) {
  const reports = await Promise.all(workers.map((worker) => worker.call({ cmd: "report", maxSamples })));
  return {
    deliveries: reports.reduce((sum, report) => sum + Number(report.deliveries), 0),
    errors: reports.reduce((sum, report) => sum + Number(report.errors) + Number(report.completes), 0),
    reached: reports.reduce((sum, report) => sum + Number(report.reached), 0),
    lastAt: Math.max(...reports.map((report) => Number(report.lastAt))),
    samples: reports.flatMap((report) => (report.samples as number[]) ?? []),
  };
}

/** Waits until `expected` deliveries arrived, or nothing more arrives for `idleMs`. */
async function awaitDeliveries(workers: Worker[], expected: number, idleMs = 5000) {
  let last = -1;
  let lastChange = Date.now();
  while (true) {
    const current = await totals(workers);
    if (current.deliveries >= expected) return;
    if (current.deliveries !== last) {
      last = current.deliveries;
      lastChange = Date.now();
    } else if (Date.now() - lastChange > idleMs) {
      return;
    }
    await sleep(100);
  }
}

export interface FanoutScenario {
  subscribers: number;
  /** "burst": `messages` sent as fast as the sender can (4 at a time); "rate": `rate` per second for `seconds`. */
  mode: "burst" | "rate";
  messages?: number;
  rate?: number;
  seconds?: number;
}

export async function runFanout(
  targetKind: "raw" | { env: Record<string, string>; processes: number },
  scenario: FanoutScenario,
  workerCount = 2,
): Promise<FanoutResult> {
  const members = Math.max(1, Math.ceil(scenario.subscribers / 50));
  const target =
    targetKind === "raw" ? await rawTarget() : await serverTarget(targetKind.env, targetKind.processes, members);
  const workers = Array.from({ length: workerCount }, startWorker);
  try {
    const memoryBefore = target.pids.reduce((sum, pid) => sum + rssBytes(pid), 0);
    const variables = "world" in target ? { id: (target as { world: World }).world.conversationId } : {};
    // Spread sockets over workers and server processes; users hold up to 50 sockets each.
    const per = Math.ceil(scenario.subscribers / workerCount);
    await Promise.all(
      workers.map((worker, w) => {
        const count = Math.min(per, scenario.subscribers - w * per);
        const wsUrl = target.wsUrls[w % target.wsUrls.length] as string;
        return worker.call({ cmd: "connect", wsUrl, tokens: target.tokens, count, query: SUBSCRIPTION, variables });
      }),
    );
    // Warm up until every subscription is live (it has received a message).
    const warmupDeadline = Date.now() + 60_000;
    while ((await totals(workers)).reached < scenario.subscribers) {
      if (Date.now() > warmupDeadline) throw new Error("subscriptions did not all go live within 60 s");
      await target.publish();
      await sleep(300);
    }
    await sleep(1000);
    await Promise.all(workers.map((worker) => worker.call({ cmd: "reset" })));
    global.gc?.();
    await sleep(500);
    const memoryAfter = target.pids.reduce((sum, pid) => sum + rssBytes(pid), 0);

    const cpuBefore = target.pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
    const started = performance.timeOrigin + performance.now();
    let messages = 0;
    // A send that fails (an overloaded server timing out) is counted, not fatal: its
    // deliveries are missing from the result.
    let failedSends = 0;
    const publish = () =>
      target.publish().catch(() => {
        failedSends++;
      });
    if (scenario.mode === "burst") {
      const total = scenario.messages ?? 100;
      const sendNext = async (): Promise<void> => {
        while (messages < total) {
          messages++;
          await publish();
        }
      };
      await Promise.all(Array.from({ length: 4 }, sendNext));
    } else {
      const rate = scenario.rate ?? 2;
      const total = Math.round(rate * (scenario.seconds ?? 10));
      const interval = 1000 / rate;
      const pending: Promise<unknown>[] = [];
      for (; messages < total; messages++) {
        pending.push(publish());
        await sleep(interval - ((performance.now() - (started - performance.timeOrigin)) % interval));
      }
      await Promise.all(pending);
    }
    const expected = messages * scenario.subscribers;
    await awaitDeliveries(workers, expected);
    const cpuAfter = target.pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
    const result = await totals(workers, 200_000);
    const elapsed = (result.lastAt - started) / 1000;
    return {
      target: target.name,
      subscribers: scenario.subscribers,
      mode: scenario.mode === "burst" ? `max rate (${messages} msgs)` : `${scenario.rate} msg/s`,
      messages,
      deliveries: result.deliveries,
      expected,
      deliveriesPerSecond: round(result.deliveries / elapsed, 0),
      latencyMs: summarize(result.samples),
      cpuMicrosPerDelivery: round(((cpuAfter - cpuBefore) * 1e6) / Math.max(1, result.deliveries), 1),
      memoryKBPerSubscriber: round((memoryAfter - memoryBefore) / 1024 / scenario.subscribers, 1),
      errors: result.errors,
      failedSends,
    };
  } finally {
    await Promise.all(workers.map((worker) => worker.call({ cmd: "close" }).catch(() => {})));
    await target.stop();
  }
}

export { gql };
