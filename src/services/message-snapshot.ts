import type { Message } from "../generated/prisma/client.ts";
import type { WireMessage } from "../realtime/topics.ts";

/** Message rows cross pub/sub and the event log as JSON; dates come back as strings. */
export function reviveMessage(raw: WireMessage): Message {
  const date = (value: string | null) => (value ? new Date(value) : null);
  return {
    ...raw,
    createdAt: new Date(raw.createdAt),
    editedAt: date(raw.editedAt),
    deletedAt: date(raw.deletedAt),
    pinnedAt: date(raw.pinnedAt),
  };
}
