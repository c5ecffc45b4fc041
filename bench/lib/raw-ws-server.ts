/**
 * The baseline: a bare `ws` server that speaks just enough graphql-transport-ws to accept
 * the same subscriber sockets, and broadcasts each published message to all of them
 * (payload serialized once, one frame per socket). No auth, no storage, no GraphQL.
 * POST /publish with the message body as text; prints its port on stdout.
 */
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { type WebSocket, WebSocketServer } from "ws";

const subscribers = new Map<WebSocket, string>();
const http = createServer((request, response) => {
  let body = "";
  request.on("data", (chunk) => {
    body += chunk;
  });
  request.on("end", () => {
    const payload = JSON.stringify({
      data: { messageAdded: { id: randomUUID(), body, createdAt: new Date().toISOString() } },
    });
    for (const [socket, id] of subscribers) {
      socket.send(`{"id":${JSON.stringify(id)},"type":"next","payload":${payload}}`);
    }
    response.end("{}");
  });
});
const wss = new WebSocketServer({ server: http, path: "/graphql" });
wss.on("connection", (socket) => {
  socket.on("message", (data) => {
    const message = JSON.parse(String(data)) as { type: string; id?: string };
    if (message.type === "connection_init") socket.send('{"type":"connection_ack"}');
    else if (message.type === "subscribe" && message.id) subscribers.set(socket, message.id);
  });
  socket.on("close", () => subscribers.delete(socket));
});
http.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  const address = http.address() as { port: number };
  process.stdout.write(`${address.port}\n`);
});
process.on("SIGTERM", () => process.exit(0));
