import type { ExecutionResult, GraphQLError } from "graphql";
import WebSocket from "ws";
import type { Principal } from "./auth/principal.ts";
import { type AppDeps, contextFor } from "./context.ts";
import type { ChatYoga } from "./graphql/yoga.ts";
import { topics } from "./realtime/topics.ts";
import { messageFeed, messageSource } from "./services/messages.ts";

/**
 * A tenant, user and conversation that cannot exist (ids are random UUIDs, never the nil
 * one): warm-up reads find nothing, subscribes to topics nobody publishes on, and writes
 * nothing.
 */
const NIL = "00000000-0000-0000-0000-000000000000";

const SUBSCRIPTION = /* GraphQL */ `
  subscription WarmUp($conversationId: ID) {
    messageAdded(conversationId: $conversationId) { id seq body cursor createdAt conversation { id } sender { id name } }
  }
`;
const QUERY = /* GraphQL */ `
  query WarmUp {
    viewer { __typename }
  }
`;

export interface WarmUpReport {
  ms: number;
  /** Milliseconds per step. */
  steps: Record<string, number>;
  /** Steps that failed (the instance still serves; a failure here only means it is not warm). */
  failed: string[];
}

/**
 * Brings a fresh instance to the state it reaches after its first requests, before `/ready`
 * says so: the database pool's connections open, Prisma's query compiler and the queries of a
 * subscription's start compiled, the pub/sub subscriber connected and round-tripped, the
 * GraphQL pipeline (parse, validate, execute, subscribe through the same envelop as the
 * WebSocket server) and the WebSocket handshake run once. Everything runs as a principal of a
 * tenant that does not exist, so no tenant's data is read, created or announced.
 */
export async function warmUp(deps: AppDeps, yoga: ChatYoga, wsUrl: string | null): Promise<WarmUpReport> {
  const started = performance.now();
  const failed: string[] = [];
  const steps: Record<string, number> = {};
  const step = async (name: string, work: () => Promise<unknown>) => {
    const begun = performance.now();
    try {
      await work();
    } catch (error) {
      failed.push(name);
      deps.log.warn({ err: (error as Error).message, step: name }, "warm-up step failed");
    }
    steps[name] = Math.round(performance.now() - begun);
  };
  await Promise.all([
    step("database pool", () => openPool(deps)),
    step("pub/sub", () => roundTrip(deps)),
    step("subscription feed", () => feeds(deps)),
  ]);
  await step("GraphQL subscription", () => subscription(deps, yoga));
  await step("GraphQL query", () => query(yoga));
  if (wsUrl) await step("WebSocket handshake", () => handshake(wsUrl));
  return { ms: Math.round(performance.now() - started), steps, failed };
}

/** Opens some of the pool's connections, so the first requests do not each wait for one. */
async function openPool(deps: AppDeps): Promise<void> {
  const connections = deps.db.kind === "postgres" ? Math.min(deps.config.databasePoolSize, 4) : 1;
  await Promise.all(Array.from({ length: connections }, () => deps.db.sql.query("SELECT 1")));
}

/** Publishes on a topic of the non-existent tenant and waits for it to come back. */
async function roundTrip(deps: AppDeps): Promise<void> {
  const topic = topics.presence(NIL);
  let arrived: () => void = () => {};
  const back = new Promise<void>((resolve) => {
    arrived = resolve;
  });
  const unsubscribe = await deps.pubsub.subscribe(topic, () => arrived());
  try {
    await deps.pubsub.publish(topic, { userId: NIL, online: false, lastSeenAt: null });
    await withTimeout(back, 2000, "pub/sub round trip");
  } finally {
    unsubscribe();
  }
}

const nobody: Principal = {
  kind: "user",
  tenantId: NIL,
  userId: NIL,
  tokenId: NIL,
  sessionId: null,
  expiresAt: new Date(Date.now() + 60_000),
};

/** The gap-free feed's start (topic subscriptions, starting points, replay reads), on nothing. */
async function feeds(deps: AppDeps): Promise<void> {
  const ctx = contextFor(deps, nobody, { cacheLoaders: false });
  const one = messageFeed(ctx, { conversationId: NIL, afterSeq: null });
  const all = messageFeed(ctx, { conversationId: null, afterSeq: null });
  // The first ends at once (no such conversation); the second is live: end it.
  await one.next();
  const pending = all.next();
  await messageSource.fetchAfter(ctx, NIL, NIL, 0, 1);
  await all.return(undefined);
  await withTimeout(pending, 2000, "feed end").catch(() => {});
}

/** A subscription operation through Yoga's envelop, as the WebSocket server runs one. */
async function subscription(deps: AppDeps, yoga: ChatYoga): Promise<void> {
  // The API key's principal passes the permission check and reaches the conversation lookup.
  const principal: Principal = { kind: "service", tenantId: NIL, apiKeyId: NIL };
  for (const chatContext of [contextFor(deps, principal, { cacheLoaders: false }), contextFor(deps, nobody)]) {
    const enveloped = yoga.getEnveloped({ chatContext } as never);
    const document = enveloped.parse(SUBSCRIPTION);
    const errors = enveloped.validate(enveloped.schema, document);
    if (errors.length) throw errors[0] as GraphQLError;
    const result = (await enveloped.subscribe({
      schema: enveloped.schema,
      document,
      variableValues: { conversationId: NIL },
      contextValue: await enveloped.contextFactory(),
    })) as AsyncGenerator<unknown> | ExecutionResult;
    if (Symbol.asyncIterator in result) await result.return(undefined);
  }
}

/** A query through the HTTP pipeline (no credentials: it is refused, after parse and validation). */
async function query(yoga: ChatYoga): Promise<void> {
  const response = await yoga.fetch(
    "http://localhost/graphql",
    { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query: QUERY }) },
    {},
  );
  await response.text();
}

/** A WebSocket upgrade and graphql-ws handshake without credentials, which the server refuses. */
function handshake(url: string): Promise<void> {
  return withTimeout(
    new Promise<void>((resolve, reject) => {
      const socket = new WebSocket(url, "graphql-transport-ws");
      socket.once("open", () => socket.send(JSON.stringify({ type: "connection_init", payload: {} })));
      socket.once("close", () => resolve());
      socket.once("error", reject);
    }),
    2000,
    "WebSocket handshake",
  );
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
