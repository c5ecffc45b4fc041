// Prints live messages as they arrive: a terminal client for trying the API.
//   npm run watch -- <token> [conversationId] [afterCursor]
// Uses CHAT_URL (default ws://localhost:4000/graphql).
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [token, conversationId, after] = process.argv.slice(2);
if (!token) {
  console.error("usage: npm run watch -- <token> [conversationId] [afterCursor]");
  process.exit(2);
}
const url = process.env.CHAT_URL ?? "ws://localhost:4000/graphql";
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { authorization: `Bearer ${token}` },
  retryAttempts: 0,
  on: {
    connected: () => console.error(`connected to ${url}; waiting for messages (Ctrl-C to stop)`),
    closed: (event) => {
      const { code, reason } = event as { code: number; reason: string };
      console.error(`connection closed: ${code} ${reason}`);
    },
  },
});

client.subscribe(
  {
    query: `subscription Watch($conversationId: ID, $after: String) {
      messageAdded(conversationId: $conversationId, after: $after) {
        seq cursor body createdAt sender { name } conversation { id name }
      }
    }`,
    variables: { conversationId: conversationId ?? null, after: after ?? null },
  },
  {
    next: (event) => console.log(JSON.stringify(event)),
    error: (error) => {
      console.error(JSON.stringify(error));
      process.exit(1);
    },
    complete: () => process.exit(0),
  },
);
