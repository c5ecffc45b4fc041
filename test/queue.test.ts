/**
 * The subscriber queue (realtime/queue.ts): bounded for events, coalescing for states
 * (typing and read receipts), so a slow subscriber of states never fails or grows.
 */
import { describe, expect, it } from "vitest";
import { BoundedQueue } from "../src/realtime/queue.ts";

interface Receipt {
  userId: string;
  lastReadSeq: number;
}

async function drain<T>(queue: BoundedQueue<T>): Promise<T[]> {
  queue.end();
  const items: T[] = [];
  for (let next = await queue.next(); !next.done; next = await queue.next()) items.push(next.value);
  return items;
}

describe("subscriber queue", () => {
  it("fails with SLOW_CONSUMER once more events wait than its limit", async () => {
    const queue = new BoundedQueue<number>(16);
    for (let i = 0; i <= 16; i++) queue.push(i);
    await expect(queue.next()).rejects.toMatchObject({ extensions: { code: "SLOW_CONSUMER" } });
  });

  it("keeps one waiting state per key, the latest, in the order keys first arrived", async () => {
    const queue = new BoundedQueue<Receipt>(16, (receipt) => receipt.userId);
    // 3 users read 200 times each while nobody consumes: far more than the limit of 16.
    for (let seq = 1; seq <= 200; seq++) {
      for (const userId of ["bob", "carol", "dave"]) queue.push({ userId, lastReadSeq: seq });
    }
    expect(await drain(queue)).toEqual([
      { userId: "bob", lastReadSeq: 200 },
      { userId: "carol", lastReadSeq: 200 },
      { userId: "dave", lastReadSeq: 200 },
    ]);
  });

  it("still bounds the number of distinct keys waiting", async () => {
    const queue = new BoundedQueue<Receipt>(16, (receipt) => receipt.userId);
    for (let i = 0; i <= 16; i++) queue.push({ userId: `user${i}`, lastReadSeq: 1 });
    await expect(queue.next()).rejects.toMatchObject({ extensions: { code: "SLOW_CONSUMER" } });
  });

  it("hands a state straight to a waiting consumer", async () => {
    const queue = new BoundedQueue<Receipt>(16, (receipt) => receipt.userId);
    const next = queue.next();
    queue.push({ userId: "bob", lastReadSeq: 1 });
    queue.push({ userId: "bob", lastReadSeq: 2 });
    expect((await next).value).toEqual({ userId: "bob", lastReadSeq: 1 });
    expect(await drain(queue)).toEqual([{ userId: "bob", lastReadSeq: 2 }]);
  });
});
