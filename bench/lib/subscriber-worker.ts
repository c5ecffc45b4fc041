/**
 * A child process holding many graphql-ws subscriber sockets (speaking the
 * graphql-transport-ws protocol by hand, to keep client CPU low). Each delivery's latency
 * is read from the `t=<ms>;` stamp in the message body. Driven over IPC.
 */
import WebSocket from "ws";

interface ConnectCommand {
  cmd: "connect";
  wsUrl: string;
  tokens: string[];
  count: number;
  query: string;
  variables: Record<string, unknown>;
}

type Command = ConnectCommand | { cmd: "reset" } | { cmd: "report"; maxSamples: number } | { cmd: "close" };

const sockets: WebSocket[] = [];
let deliveries = 0;
let errors = 0;
let completes = 0;
let lastAt = 0;
let closed = 0;
let latencies: number[] = [];
const perSocket: number[] = [];

const now = () => performance.timeOrigin + performance.now();

function onFrame(index: number, data: WebSocket.RawData) {
  const text = data.toString();
  if (text.startsWith('{"id"') || text.includes('"type":"next"')) {
    const at = text.indexOf("t=");
    if (at >= 0 && text.includes('"next"')) {
      const stamp = Number.parseFloat(text.slice(at + 2, text.indexOf(";", at)));
      const received = now();
      deliveries++;
      perSocket[index] = (perSocket[index] ?? 0) + 1;
      lastAt = received;
      latencies.push(received - stamp);
      return;
    }
  }
  if (text.includes('"type":"error"')) errors++;
  else if (text.includes('"type":"complete"')) completes++;
}

/** Opens one subscriber socket; resolves once it is acknowledged and its subscribe is sent. */
function open(command: ConnectCommand, token: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const index = sockets.length;
    const socket = new WebSocket(command.wsUrl, "graphql-transport-ws", { perMessageDeflate: false });
    sockets.push(socket);
    let acked = false;
    socket.on("open", () => {
      socket.send(JSON.stringify({ type: "connection_init", payload: { authorization: `Bearer ${token}` } }));
    });
    socket.on("message", (data) => {
      if (!acked && data.toString().includes('"connection_ack"')) {
        acked = true;
        socket.send(
          JSON.stringify({
            id: "1",
            type: "subscribe",
            payload: { query: command.query, variables: command.variables },
          }),
        );
        resolve();
        return;
      }
      onFrame(index, data);
    });
    socket.on("error", reject);
    socket.on("close", (code) => {
      closed++;
      if (!acked) reject(new Error(`socket closed before ack: ${code}`));
    });
  });
}

/** Opens the sockets in waves, so that a listen backlog is never overrun. */
async function connect(command: ConnectCommand): Promise<void> {
  const WAVE = 100;
  for (let first = 0; first < command.count; first += WAVE) {
    const wave = Math.min(WAVE, command.count - first);
    await Promise.all(
      Array.from({ length: wave }, (_, i) =>
        open(command, command.tokens[(first + i) % command.tokens.length] as string),
      ),
    );
  }
}

process.on("message", async (command: Command) => {
  try {
    if (command.cmd === "connect") {
      await connect(command);
      process.send?.({ ok: true });
    } else if (command.cmd === "reset") {
      deliveries = 0;
      errors = 0;
      completes = 0;
      latencies = [];
      perSocket.length = 0;
      process.send?.({ ok: true });
    } else if (command.cmd === "report") {
      const step = Math.max(1, Math.ceil(latencies.length / command.maxSamples));
      const samples = step === 1 ? latencies : latencies.filter((_, i) => i % step === 0);
      const reached = perSocket.filter((count) => count > 0).length;
      process.send?.({ ok: true, deliveries, errors, completes, closed, lastAt, samples, reached });
    } else if (command.cmd === "close") {
      for (const socket of sockets) socket.terminate();
      process.send?.({ ok: true });
      setTimeout(() => process.exit(0), 50);
    }
  } catch (error) {
    process.send?.({ ok: false, error: String(error) });
  }
});
