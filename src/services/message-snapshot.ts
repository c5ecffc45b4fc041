import type { Message } from "../generated/prisma/client.ts";

/** Message rows cross pub/sub and the event log as JSON; dates come back as strings. */
export function reviveMessage(raw: Record<string, unknown>): Message {
  const date = (value: unknown) => (value ? new Date(value as string) : null);
  return {
    ...(raw as unknown as Message),
    createdAt: new Date(raw.createdAt as string),
    editedAt: date(raw.editedAt),
    deletedAt: date(raw.deletedAt),
    pinnedAt: date(raw.pinnedAt),
  };
}
