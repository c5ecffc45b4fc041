/**
 * The deployment as shipped (docker-compose.yml, deploy/nginx.conf), without Docker: two
 * instances on one PostgreSQL + Redis with the replicas' settings from docker-compose.yml,
 * Debian's nginx in front running deploy/nginx.conf (upstreams pointed at the instances),
 * and one folder standing in for the shared attachments volume. Runs where PostgreSQL and
 * Redis are configured; .ci/run installs nginx when it is missing.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomInt } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type GraphQLFormattedError, print } from "graphql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, TEST_JWT_SECRET, type TestDatabase } from "./helpers/backends.ts";
import { ok, subscribe, whenLive, wsClient } from "./helpers/client.ts";
import { createTenant, type TestTenant } from "./helpers/fixtures.ts";
import { freePort, killAll, type Running, runServer, waitFor } from "./helpers/process.ts";
import { SignIn } from "./operations/accounts.ts";
import { UploadAttachment } from "./operations/attachments.ts";
import { CreateGroup } from "./operations/conversations.ts";
import { MessageAdded } from "./operations/events.ts";
import { SendMessage } from "./operations/messages.ts";

const root = new URL("..", import.meta.url).pathname;
const compose = readFileSync(join(root, "docker-compose.yml"), "utf8");
const nginxConf = readFileSync(join(root, "deploy/nginx.conf"), "utf8");

/** A value of the replicas' environment in docker-compose.yml (the `x-api` anchor). */
function composeEnv(name: string): string {
  const match = compose.match(new RegExp(`^ {4}${name}: "?([^"\\n]*)"?$`, "m"));
  if (!match) throw new Error(`docker-compose.yml sets no ${name} for the API replicas`);
  return match[1] as string;
}

/** deploy/nginx.conf as shipped, listening on `port` and balancing over `upstreams`. */
function nginxConfig(dir: string, port: number, upstreams: number[]): string {
  const replace = (text: string, from: RegExp, to: string) => {
    if (!from.test(text)) throw new Error(`deploy/nginx.conf no longer contains ${from}`);
    return text.replace(from, to);
  };
  let conf = replace(
    nginxConf,
    / {4}server api-1:4000;\n {4}server api-2:4000;\n/,
    upstreams.map((p) => `    server 127.0.0.1:${p};\n`).join(""),
  );
  conf = replace(conf, /listen 80;/, `listen 127.0.0.1:${port};`);
  conf = replace(
    conf,
    /^http \{/m,
    `http {\n  access_log off;\n${["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
      .map((kind) => `  ${kind}_temp_path ${dir}/${kind};`)
      .join("\n")}`,
  );
  return `daemon off;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log warn;\n${conf}`;
}

/** A POST from a given local source address (loopback has all of 127.0.0.0/8). */
function postFrom(
  localAddress: string,
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const text = JSON.stringify(body);
    const req = httpRequest(
      url,
      {
        method: "POST",
        localAddress,
        headers: { ...headers, "content-type": "application/json", "content-length": String(text.length) },
      },
      (res) => {
        let data = "";
        res.on("data", (chunk) => {
          data += chunk;
        });
        res.on("end", () => resolve(JSON.parse(data) as Record<string, unknown>));
      },
    );
    req.on("error", reject);
    req.end(text);
  });
}

const READY = /chat API ready/;

describe.runIf(process.env.TEST_DATABASE_URL)("the shipped deployment (two instances behind nginx)", () => {
  let database: TestDatabase;
  let nginx: ChildProcess;
  let dir: string;
  const instances: Running[] = [];
  let url: string;
  let tenant: TestTenant;

  beforeAll(async () => {
    expect(() => execFileSync("nginx", ["-v"], { stdio: "ignore" }), "nginx is not installed").not.toThrow();
    dir = mkdtempSync(join(tmpdir(), "chat-deploy-"));
    chmodSync(dir, 0o777);
    database = await createTestDatabase("postgres+redis");
    const ports = [await freePort(), await freePort()];
    for (const port of ports) {
      const running = runServer({
        DATABASE_URL: database.url as string,
        REDIS_URL: process.env.TEST_REDIS_URL as string,
        JWT_SECRET: TEST_JWT_SECRET,
        PORT: String(port),
        HOST: "127.0.0.1",
        WEB_CONCURRENCY: "1",
        LOG_LEVEL: "info",
        TRUST_PROXY: composeEnv("TRUST_PROXY"),
        // Both replicas mount the same volume at ATTACHMENTS_DIR; here, one folder.
        ATTACHMENTS_DIR: join(dir, "attachments"),
        LOGIN_MAX_FAILURES: "2",
        LOGIN_MAX_FAILURES_PER_ADDRESS: "3",
      });
      instances.push(running);
      await waitFor(running, READY);
    }
    const port = await freePort();
    writeFileSync(join(dir, "nginx.conf"), nginxConfig(dir, port, ports));
    nginx = spawn("nginx", ["-c", join(dir, "nginx.conf")], { stdio: ["ignore", "inherit", "inherit"] });
    url = `http://127.0.0.1:${port}/graphql`;
    const deadline = Date.now() + 20_000;
    while (true) {
      try {
        if ((await fetch(url.replace("/graphql", "/ready"))).ok) break;
      } catch {
        // nginx not listening yet
      }
      if (Date.now() > deadline || nginx.exitCode !== null) throw new Error("nginx did not start");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    tenant = await createTenant(url);
  });

  afterAll(async () => {
    nginx?.kill("SIGTERM");
    await killAll(instances);
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("the replicas share one attachments volume and trust exactly one proxy hop", () => {
    expect(composeEnv("TRUST_PROXY")).toBe("1");
    const attachments = composeEnv("ATTACHMENTS_DIR");
    expect(compose).toContain(`- attachments:${attachments}`);
    expect(compose).toMatch(/^volumes:\n(?: {2}\S+:\n)* {2}attachments:$/m);
  });

  it("a 10 MB upload passes the proxy, and every replica serves the file", async () => {
    const [alice, bob] = tenant.users as [TestTenant["users"][0], TestTenant["users"][0]];
    const conversationId = (
      await ok(url, CreateGroup, { input: { name: "Files", memberIds: [bob.id] } }, { token: alice.token })
    ).createGroup.id;
    const size = 10_000_000 - 1_000;
    const form = new FormData();
    form.append(
      "operations",
      JSON.stringify({ query: print(UploadAttachment), variables: { conversationId, file: null } }),
    );
    form.append("map", JSON.stringify({ 0: ["variables.file"] }));
    form.append("0", new Blob([Buffer.alloc(size, 120)], { type: "text/plain" }), "big.txt");
    const response = await fetch(url, {
      method: "POST",
      headers: { authorization: `Bearer ${alice.token}` },
      body: form,
    });
    expect(response.status).toBe(200);
    const uploaded = (await response.json()) as {
      data?: { uploadAttachment?: { id: string; size: number } };
      errors?: GraphQLFormattedError[];
    };
    expect(uploaded.errors).toBeUndefined();
    const file = uploaded.data?.uploadAttachment as { id: string; size: number };
    expect(file.size).toBe(size);
    await ok(
      url,
      SendMessage,
      { input: { conversationId, body: "big file", attachmentIds: [file.id] } },
      { token: alice.token },
    );
    // Round robin: consecutive downloads land on both replicas.
    for (let i = 0; i < 4; i++) {
      const download = await fetch(`${url.replace(/\/graphql$/, "")}/attachments/${file.id}`, {
        headers: { authorization: `Bearer ${bob.token}` },
      });
      expect(download.status).toBe(200);
      expect((await download.arrayBuffer()).byteLength).toBe(size);
    }
  });

  it("the sign-in limiter sees each client's own address, not the proxy's", async () => {
    const addresses = new Set<string>();
    while (addresses.size < 3) addresses.add(`127.${randomInt(1, 255)}.${randomInt(256)}.${randomInt(1, 255)}`);
    const [a, b, c] = [...addresses] as [string, string, string];
    const signIn = (from: string, headers?: Record<string, string>) =>
      postFrom(
        from,
        url,
        {
          query: print(SignIn),
          variables: {
            input: { tenantId: tenant.id, email: `nobody-${randomInt(1e9)}@example.com`, password: "wrong password 1" },
          },
        },
        headers,
      );
    const codeOf = (result: Record<string, unknown>) =>
      (result.errors as GraphQLFormattedError[] | undefined)?.[0]?.extensions?.code;
    // Three failures from `a` (each on another account) use up its address allowance.
    for (let i = 0; i < 3; i++) expect(codeOf(await signIn(a))).toBe("UNAUTHENTICATED");
    expect(codeOf(await signIn(a))).toBe("RATE_LIMITED");
    // Another client behind the same proxy is not locked out with it.
    expect(codeOf(await signIn(b))).toBe("UNAUTHENTICATED");
    // A client's own X-Forwarded-For is not believed: `c` naming `a` is still `c`.
    expect(codeOf(await signIn(c, { "x-forwarded-for": a }))).toBe("UNAUTHENTICATED");
  });

  it("WebSockets pass the proxy: a subscription on one replica receives a send through the other", async () => {
    const [alice, bob] = tenant.users as [TestTenant["users"][0], TestTenant["users"][0]];
    const conversationId = (
      await ok(url, CreateGroup, { input: { name: "Live", memberIds: [bob.id] } }, { token: alice.token })
    ).createGroup.id;
    const client = wsClient(url.replace("http", "ws"), { token: bob.token });
    try {
      const sub = subscribe(client, MessageAdded, { conversationId });
      const send = (body: string) => ok(url, SendMessage, { input: { conversationId, body } }, { token: alice.token });
      await whenLive(sub, () => send("poke"));
      // Several sends: round robin puts them on both replicas.
      for (let i = 0; i < 4; i++) await send(`after ${i}`);
      const events = await sub.take(4);
      expect(events.map((e) => e.data?.messageAdded.body)).toEqual(["after 0", "after 1", "after 2", "after 3"]);
    } finally {
      await client.dispose();
    }
  });
});
