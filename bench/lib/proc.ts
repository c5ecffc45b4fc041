import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import pg from "pg";

/** The checkout whose server is measured (BENCH_ROOT: another checkout, e.g. to compare before and after). */
export const ROOT = process.env.BENCH_ROOT ?? fileURLToPath(new URL("../..", import.meta.url));

/** A free TCP port on loopback. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const TICKS = 100; // USER_HZ on Linux

/** CPU seconds (user + system) a process has used so far, from /proc. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

/** Resident memory of a process in bytes, from /proc. */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) * 1024 : 0;
}

/** A private PostgreSQL database for one benchmark run. */
export async function createDatabase(adminUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `chat_bench_${Date.now()}_${randomBytes(3).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}"`);
  await admin.end();
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await client.end();
    },
  };
}

/** BENCH_CPU_PROF=<dir>: each measured server (ours and the raw one) writes a CPU profile there (node --cpu-prof). */
export function profileArgs(): string[] {
  const dir = process.env.BENCH_CPU_PROF;
  return dir ? ["--cpu-prof", `--cpu-prof-dir=${dir}`] : [];
}

export interface ServerProcess {
  url: string;
  wsUrl: string;
  pid: number;
  /** The server's process and its worker processes, if it runs any. */
  readonly pids: number[];
  stop(): Promise<void>;
}

/** A process and its descendants, from /proc. */
export function processTree(pid: number): number[] {
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) {
    try {
      const children = readFileSync(`/proc/${tree[i]}/task/${tree[i]}/children`, "utf8").trim();
      if (children) tree.push(...children.split(" ").map(Number));
    } catch {
      // the process has exited
    }
  }
  return tree;
}

let built: string[] | null = null;

/**
 * How `npm start` runs the measured checkout: its build (`npm run build`, once per bench run),
 * then Node on dist/main.js. A checkout from before the build step ran src/main.ts through tsx.
 */
function serverCommand(): string[] {
  if (built) return built;
  if (existsSync(`${ROOT}/scripts/build.ts`)) {
    execFileSync("npm", ["run", "build", "--silent"], { cwd: ROOT, stdio: "inherit" });
    built = ["--enable-source-maps", "dist/main.js"];
  } else {
    built = ["--import", "tsx", "src/main.ts"];
  }
  return built;
}

/** Starts the server exactly as `npm start` does, with the given environment, and waits until it is ready. */
export async function startServer(env: Record<string, string>): Promise<ServerProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, [...profileArgs(), ...serverCommand()], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: "warn", RATE_LIMITS: "off", ...env, PORT: String(port), HOST: "127.0.0.1" },
    stdio: ["ignore", "inherit", "inherit"],
  });
  const url = `http://127.0.0.1:${port}/graphql`;
  await waitReady(child, `http://127.0.0.1:${port}/ready`);
  return {
    url,
    wsUrl: url.replace("http", "ws"),
    pid: child.pid as number,
    get pids() {
      return processTree(child.pid as number);
    },
    stop: () => stopChild(child),
  };
}

async function waitReady(child: ChildProcess, readyUrl: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    try {
      const response = await fetch(readyUrl);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  child.kill("SIGKILL");
  throw new Error("server did not become ready within 60 s");
}

export function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("exit", () => {
      clearTimeout(force);
      resolve();
    });
    child.kill("SIGTERM");
  });
}
