import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";

const root = new URL("../..", import.meta.url).pathname;

/** The server as a child process, started as `npm start` starts it, with everything it wrote so far. */
export interface Running {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** Starts the built server (`dist/main.js`, see test/global-setup.ts) with only the given environment (plus PATH and HOME). */
export function runServer(env: Record<string, string>): Running {
  // As `npm start` runs it: Node itself on the built server, so Node receives the signals.
  const child = spawn(process.execPath, ["--enable-source-maps", "dist/main.js"], {
    cwd: root,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (chunk) => {
    output += chunk;
  });
  child.stderr?.on("data", (chunk) => {
    output += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, output: () => output, exited };
}

/** Waits until the output matches (or the process exits: then it fails with the output). */
export async function waitFor(running: Running, pattern: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const match = running.output().match(pattern);
    if (match) return match;
    if (running.child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`pattern ${pattern} not seen; output:\n${running.output()}`);
}

/** A TCP port free on loopback right now. */
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

/** The processes a process has started and not yet reaped, from /proc (Linux). */
export function childPids(pid: number): number[] {
  const list = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
  return list ? list.split(" ").map(Number) : [];
}

/** Whether a process of this id exists (a zombie counts until it is reaped). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Kills servers a test left running (and their workers), so a test that failed half-way leaves no process behind. */
export async function killAll(servers: Running[]): Promise<void> {
  for (const server of servers) {
    if (server.child.exitCode !== null || server.child.signalCode !== null) continue;
    for (const pid of childPids(server.child.pid as number)) process.kill(pid, "SIGKILL");
    server.child.kill("SIGKILL");
    await server.exited;
  }
}
