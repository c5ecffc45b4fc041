/**
 * Request path: `sendMessage` against the raw transaction a correct chat server needs
 * (BEGIN; bump the conversation's seq; INSERT the message; COMMIT, with `pg`) and against
 * `{ __typename }` at the same concurrency; an authenticated trivial query; history pages of
 * 10 and 50 messages; the embedded PGlite mode beside PostgreSQL.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { gql } from "./lib/graphql.ts";
import { closedLoop, httpClient, type LoadOptions, type LoadResult } from "./lib/load.ts";
import { type ServerProcess, startServer } from "./lib/proc.ts";

export interface RequestOptions {
  seconds: number;
  warmupSeconds: number;
  concurrencies: number[];
}

export interface RequestResult {
  backend: "postgres" | "pglite";
  raw: LoadResult[];
  typename: LoadResult[];
  send: LoadResult[];
  viewer: LoadResult[];
  history: { messages: number; result: LoadResult }[];
}

const TYPENAME = JSON.stringify({ query: "{ __typename }" });
const VIEWER = JSON.stringify({ query: "{ viewer { user { id } } }" });
const SEND = "mutation($input: SendMessageInput!) { sendMessage(input: $input) { id seq } }";
const HISTORY =
  "query($id: ID!, $n: Int!) { messages(conversationId: $id, last: $n) { edges { node { id body sender { name } reactions { emoji count } } } } }";

interface Seeded {
  /** One sender per concurrent client, each with a group of their own (the sender and one other member). */
  senders: { token: string; conversationId: string }[];
  /** A conversation with 50 messages, each with reactions. */
  historyConversationId: string;
  historyToken: string;
  tenantId: string;
}

async function seed(url: string, senders: number): Promise<Seeded> {
  const tag = Math.random().toString(36).slice(2, 8);
  const { createTenant } = await gql<{ createTenant: { apiKey: string; tenant: { id: string } } }>(
    url,
    "mutation($input: CreateTenantInput!) { createTenant(input: $input) { apiKey tenant { id } } }",
    { input: { name: `bench-${tag}` } },
  );
  const auth = { "x-api-key": createTenant.apiKey };
  const createUser = async (name: string) => {
    const { createUser } = await gql<{ createUser: { id: string } }>(
      url,
      "mutation($input: CreateUserInput!) { createUser(input: $input) { id } }",
      { input: { name } },
      auth,
    );
    const { issueUserToken } = await gql<{ issueUserToken: { token: string } }>(
      url,
      "mutation($id: ID!) { issueUserToken(userId: $id, expiresInSeconds: 86400) { token } }",
      { id: createUser.id },
      auth,
    );
    return { id: createUser.id, token: issueUserToken.token };
  };
  const createGroup = async (memberIds: string[]) =>
    (
      await gql<{ createGroup: { id: string } }>(
        url,
        "mutation($input: CreateGroupInput!) { createGroup(input: $input) { id } }",
        { input: { name: "bench", memberIds } },
        auth,
      )
    ).createGroup.id;
  const pairs = await Promise.all(
    Array.from({ length: senders }, async (_, i) => {
      const [sender, other] = [await createUser(`s${i}`), await createUser(`r${i}`)];
      return { token: sender.token, conversationId: await createGroup([sender.id, other.id]) };
    }),
  );
  const reader = await createUser("reader");
  const others = await Promise.all([createUser("o1"), createUser("o2")]);
  const historyConversationId = await createGroup([reader.id, ...others.map((o) => o.id)]);
  for (let i = 0; i < 50; i++) {
    const author = i % 2 ? (others[0] as { token: string }) : reader;
    const { sendMessage } = await gql<{ sendMessage: { id: string } }>(
      url,
      SEND,
      { input: { conversationId: historyConversationId, body: `history message ${i} with some text in it` } },
      { authorization: `Bearer ${author.token}` },
    );
    for (const [who, emoji] of [
      [reader, "👍"],
      [others[1], "🎉"],
    ] as const) {
      await gql(
        url,
        "mutation($m: ID!, $e: String!) { addReaction(messageId: $m, emoji: $e) { id } }",
        { m: sendMessage.id, e: emoji },
        { authorization: `Bearer ${(who as { token: string }).token}` },
      );
    }
  }
  return {
    senders: pairs,
    historyConversationId,
    historyToken: reader.token,
    tenantId: createTenant.tenant.id,
  };
}

/** The raw transaction on the same tables, one conversation per client as the server is given. */
async function rawSends(
  databaseUrl: string,
  world: Seeded,
  options: LoadOptions,
  senderIds: string[],
): Promise<LoadResult> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: options.concurrency });
  try {
    return await closedLoop(options, async (client) => {
      const conversationId = (world.senders[client] as { conversationId: string }).conversationId;
      const connection = await pool.connect();
      try {
        await connection.query("BEGIN");
        const bumped = await connection.query<{ lastSeq: number }>(
          `UPDATE "Conversation" SET "lastSeq" = "lastSeq" + 1, "lastActivityAt" = now(), "updatedAt" = now()
            WHERE "id" = $1 AND "tenantId" = $2 RETURNING "lastSeq"`,
          [conversationId, world.tenantId],
        );
        await connection.query(
          `INSERT INTO "Message" ("id", "tenantId", "conversationId", "seq", "senderId", "body", "type")
           VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, 'TEXT')`,
          [world.tenantId, conversationId, bumped.rows[0]?.lastSeq, senderIds[client], "raw transaction message"],
        );
        await connection.query("COMMIT");
      } catch (error) {
        await connection.query("ROLLBACK");
        throw error;
      } finally {
        connection.release();
      }
    });
  } finally {
    await pool.end();
  }
}

async function senderIdsOf(databaseUrl: string, world: Seeded): Promise<string[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const ids: string[] = [];
    for (const sender of world.senders) {
      // The sender is the member whose name starts with "s" (see seed).
      const { rows } = await client.query<{ id: string }>(
        `SELECT u."id" FROM "Member" m JOIN "User" u ON u."id" = m."userId"
          WHERE m."conversationId" = $1 AND u."name" LIKE 's%'`,
        [sender.conversationId],
      );
      ids.push(rows[0]?.id as string);
    }
    return ids;
  } finally {
    await client.end();
  }
}

async function measure(
  server: ServerProcess,
  world: Seeded,
  options: RequestOptions,
  backend: RequestResult["backend"],
  databaseUrl?: string,
): Promise<RequestResult> {
  const maxConcurrency = Math.max(...options.concurrencies);
  const http = httpClient(server.url, maxConcurrency);
  const load = (concurrency: number): LoadOptions => ({
    concurrency,
    seconds: options.seconds,
    warmupSeconds: options.warmupSeconds,
    pids: server.pids,
  });
  const result: RequestResult = { backend, raw: [], typename: [], send: [], viewer: [], history: [] };
  const senderIds = databaseUrl ? await senderIdsOf(databaseUrl, world) : [];
  try {
    for (const concurrency of options.concurrencies) {
      if (databaseUrl) {
        result.raw.push(await rawSends(databaseUrl, world, { ...load(concurrency), pids: [] }, senderIds));
      }
      result.typename.push(await closedLoop(load(concurrency), () => http.post(TYPENAME).then(() => {})));
      result.send.push(
        await closedLoop(load(concurrency), async (client, iteration) => {
          const sender = world.senders[client] as Seeded["senders"][number];
          await http.post(
            JSON.stringify({
              query: SEND,
              variables: { input: { conversationId: sender.conversationId, body: `bench message ${iteration}` } },
            }),
            { authorization: `Bearer ${sender.token}` },
          );
        }),
      );
      result.viewer.push(
        await closedLoop(load(concurrency), (client) =>
          http
            .post(VIEWER, {
              authorization: `Bearer ${(world.senders[client] as Seeded["senders"][number]).token}`,
            })
            .then(() => {}),
        ),
      );
    }
    for (const messages of [10, 50]) {
      const body = JSON.stringify({ query: HISTORY, variables: { id: world.historyConversationId, n: messages } });
      result.history.push({
        messages,
        result: await closedLoop(load(1), () =>
          http.post(body, { authorization: `Bearer ${world.historyToken}` }).then(() => {}),
        ),
      });
    }
  } finally {
    http.close();
  }
  return result;
}

/** The server on PostgreSQL + Redis, with the raw transaction beside it. */
export async function runRequestPostgres(env: Record<string, string>, options: RequestOptions): Promise<RequestResult> {
  const server = await startServer(env);
  try {
    const world = await seed(server.url, Math.max(...options.concurrencies));
    return await measure(server, world, options, "postgres", env.DATABASE_URL);
  } finally {
    await server.stop();
  }
}

/** The embedded mode: PGlite in a fresh data directory, no Redis. */
export async function runRequestPglite(options: RequestOptions): Promise<RequestResult> {
  const dataDir = mkdtempSync(join(tmpdir(), "chat-bench-pglite-"));
  const server = await startServer({ DATA_DIR: dataDir, DATABASE_URL: "", REDIS_URL: "" });
  try {
    const world = await seed(server.url, Math.max(...options.concurrencies));
    return await measure(server, world, options, "pglite");
  } finally {
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
