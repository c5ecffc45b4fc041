/**
 * Cold start: how long a subscription on a freshly started instance takes to deliver, against
 * the same on that instance once it has served one (the baseline, same run). Instance A holds
 * the data; instance B starts fresh (as `npm start` runs it) beside it on PostgreSQL + Redis.
 * A client opens a graphql-ws socket on B, and right after its `subscribe` frame is written a
 * message is sent through A: the time from that frame to the message's arrival covers B
 * setting the stream up (a message stored meanwhile is replayed, not missed).
 */
import WebSocket from "ws";
import { seedGroup, sendStamped } from "./lib/graphql.ts";
import { startServer } from "./lib/proc.ts";

const SUBSCRIPTION = "subscription($id: ID!) { messageAdded(conversationId: $id) { id body } }";

export interface ColdStartResult {
  /** Subscribe frame -> first delivery on the fresh instance, ms. */
  firstMs: number;
  /** The same for a second subscription on that instance, ms. */
  warmMs: number;
  /** Process start -> /ready 200, ms. */
  readyMs: number;
}

/** Opens an acknowledged graphql-ws socket; `subscribe` resolves with the ms from its frame to the first `next`. */
async function socketOn(wsUrl: string, token: string) {
  const socket = new WebSocket(wsUrl, "graphql-transport-ws", { perMessageDeflate: false });
  const listeners: ((frame: { type: string; id?: string }) => void)[] = [];
  socket.on("message", (data) => {
    const frame = JSON.parse(String(data)) as { type: string; id?: string };
    for (const listener of listeners) listener(frame);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () =>
      socket.send(JSON.stringify({ type: "connection_init", payload: { authorization: `Bearer ${token}` } })),
    );
    listeners.push((frame) => frame.type === "connection_ack" && resolve());
    socket.once("error", reject);
  });
  return {
    /** Subscribes, calls `afterFrame` once the frame is written, and resolves with the ms until the first `next`. */
    subscribe(id: string, variables: Record<string, unknown>, afterFrame: () => Promise<unknown>): Promise<number> {
      return new Promise((resolve, reject) => {
        let sentAt = 0;
        listeners.push((frame) => {
          if (frame.id !== id) return;
          if (frame.type === "next") resolve(performance.now() - sentAt);
          else reject(new Error(`subscription ${id} ended: ${JSON.stringify(frame)}`));
        });
        socket.send(JSON.stringify({ id, type: "subscribe", payload: { query: SUBSCRIPTION, variables } }), (error) => {
          if (error) return reject(error);
          sentAt = performance.now();
          afterFrame().catch(reject);
        });
      });
    },
    close: () => socket.terminate(),
  };
}

export async function runColdStart(env: Record<string, string>): Promise<ColdStartResult> {
  const a = await startServer({ ...env, WEB_CONCURRENCY: "1" });
  try {
    const world = await seedGroup(a.url, 2);
    const started = performance.now();
    const b = await startServer({ ...env, WEB_CONCURRENCY: "1" });
    const readyMs = performance.now() - started;
    try {
      const send = () => sendStamped(a.url, world.senderToken, world.conversationId);
      const first = await socketOn(b.wsUrl, world.memberTokens[0] as string);
      const firstMs = await first.subscribe("1", { id: world.conversationId }, send);
      const second = await socketOn(b.wsUrl, world.memberTokens[1] as string);
      const warmMs = await second.subscribe("1", { id: world.conversationId }, send);
      first.close();
      second.close();
      return { firstMs, warmMs, readyMs };
    } finally {
      await b.stop();
    }
  } finally {
    await a.stop();
  }
}
