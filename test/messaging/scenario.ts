import type { VariablesOf } from "@graphql-typed-document-node/core";
import { expect } from "vitest";
import { type Auth, ok, type Subscription, subscribe, wsClient } from "../helpers/client.ts";
import type { TestUser } from "../helpers/fixtures.ts";
import { AddMembers, RemoveMember, UpdateGroup } from "../operations/conversations.ts";
import { ConversationEvents } from "../operations/events.ts";
import {
  AddReaction,
  DeleteMessage,
  EditMessage,
  PinMessage,
  RemoveReaction,
  UnpinMessage,
} from "../operations/messages.ts";
import {
  as,
  type ConversationEvent,
  conversationAs,
  drain,
  type EventsResult,
  history,
  ids,
  nextEvent,
  normalizeGroups,
  pick,
  send,
} from "./helpers.ts";

// ---------------------------------------------------------------------------------------
// A local copy kept in sync from conversationEvents alone
// ---------------------------------------------------------------------------------------

export interface CopiedMessage {
  id: string;
  seq: number;
  type: string;
  sender: string | null;
  replyTo: string | null;
  body: string | null;
  editedAt: string | null;
  deletedAt: string | null;
  deletedBy: string | null;
  pinned: boolean;
  /** Event seq of the latest pin, to order pinnedMessages (most recently pinned first). */
  pinSeq: number;
  /** emoji -> user ids */
  reactions: Map<string, string[]>;
}

export interface ChatState {
  name: string | null;
  description: string | null;
  members: { id: string; role: string }[];
  pinned: string[];
  messages: (Omit<CopiedMessage, "pinSeq" | "reactions"> & { reactions: { emoji: string; users: string[] }[] })[];
}

export type SnapshotMessage = Extract<ConversationEvent, { __typename: "MessageAddedEvent" }>["message"];

export function fromSnapshot(message: SnapshotMessage) {
  return {
    body: message.body ?? null,
    editedAt: message.editedAt ?? null,
    deletedAt: message.deletedAt ?? null,
    deletedBy: message.deletedBy?.id ?? null,
    pinned: message.pinned,
  };
}

export class LocalCopy {
  readonly messages = new Map<string, CopiedMessage>();
  readonly members = new Map<string, string>();
  name: string | null = null;
  description: string | null = null;
  deleted = false;
  readonly seqs: number[] = [];
  lastCursor: string | null = null;

  constructor(readonly conversationId: string) {}

  private known(id: string): CopiedMessage {
    const message = this.messages.get(id);
    if (!message) return expect.fail(`an event about message ${id}, which was never added`);
    return message;
  }

  apply(event: ConversationEvent): void {
    if (event.conversationId !== this.conversationId) return;
    if (event.__typename === "ConversationDeletedEvent") {
      this.deleted = true;
      return;
    }
    this.seqs.push(event.seq);
    this.lastCursor = event.cursor;
    switch (event.__typename) {
      case "MessageAddedEvent": {
        const m = event.message;
        expect(this.messages.has(m.id), `message ${m.id} added twice`).toBe(false);
        this.messages.set(m.id, {
          id: m.id,
          seq: m.seq,
          type: m.type,
          sender: m.sender?.id ?? null,
          replyTo: m.replyTo?.id ?? null,
          ...fromSnapshot(m),
          pinSeq: 0,
          reactions: new Map(),
        });
        break;
      }
      case "MessageEditedEvent":
      case "MessageDeletedEvent":
      case "MessagePinnedEvent":
      case "MessageUnpinnedEvent": {
        const local = this.known(event.message.id);
        Object.assign(local, fromSnapshot(event.message));
        if (event.__typename === "MessageDeletedEvent") local.reactions.clear();
        if (event.__typename === "MessagePinnedEvent") local.pinSeq = event.seq;
        break;
      }
      case "ReactionChangedEvent": {
        const local = this.known(event.message.id);
        const userId = event.user?.id;
        if (!userId) throw new Error("a reaction event without its user");
        const users = local.reactions.get(event.emoji) ?? [];
        if (event.added) {
          expect(users, `${userId} reacted ${event.emoji} twice`).not.toContain(userId);
          local.reactions.set(event.emoji, [...users, userId]);
        } else {
          expect(users, `${userId} took back a ${event.emoji} never given`).toContain(userId);
          const rest = users.filter((id) => id !== userId);
          if (rest.length) local.reactions.set(event.emoji, rest);
          else local.reactions.delete(event.emoji);
        }
        // The event also carries the message's full set: it must agree with the deltas.
        expect(this.reactionsOf(local)).toEqual(normalizeGroups(event.reactions));
        break;
      }
      case "MemberAddedEvent":
      case "MemberRoleChangedEvent": {
        const userId = event.user?.id;
        if (!userId) throw new Error("a member event without its user");
        this.members.set(userId, event.role);
        break;
      }
      case "MemberRemovedEvent": {
        const userId = event.user?.id;
        if (!userId) throw new Error("a member event without its user");
        expect(this.members.has(userId), `${userId} removed but never added`).toBe(true);
        this.members.delete(userId);
        break;
      }
      case "ConversationUpdatedEvent":
        this.name = event.name ?? null;
        this.description = event.description ?? null;
        break;
    }
  }

  private reactionsOf(message: CopiedMessage) {
    return normalizeGroups(
      [...message.reactions].map(([emoji, users]) => ({
        emoji,
        count: users.length,
        users: users.map((id) => ({ id })),
      })),
    );
  }

  state(): ChatState {
    const messages = [...this.messages.values()].sort((a, b) => a.seq - b.seq);
    return {
      name: this.name,
      description: this.description,
      members: [...this.members].map(([id, role]) => ({ id, role })).sort((a, b) => (a.id < b.id ? -1 : 1)),
      pinned: messages
        .filter((m) => m.pinned)
        .sort((a, b) => b.pinSeq - a.pinSeq)
        .map((m) => m.id),
      messages: messages.map(({ pinSeq: _pinSeq, reactions: _reactions, ...rest }) => ({
        ...rest,
        reactions: this.reactionsOf(this.known(rest.id)),
      })),
    };
  }
}

/** What `messages(first: 100)` and `conversation { name members pinnedMessages }` say, in the copy's shape. */
export async function serverState(url: string, auth: Auth, conversationId: string): Promise<ChatState> {
  const conversation = await conversationAs(url, auth, conversationId);
  const messages = await history(url, auth, conversationId);
  return {
    name: conversation.name ?? null,
    description: conversation.description ?? null,
    members: conversation.members
      .map((member) => ({ id: member.user.id, role: member.role }))
      .sort((a, b) => (a.id < b.id ? -1 : 1)),
    pinned: ids(conversation.pinnedMessages),
    messages: messages.map((m) => ({
      id: m.id,
      seq: m.seq,
      type: m.type,
      sender: m.sender?.id ?? null,
      replyTo: m.replyTo?.id ?? null,
      body: m.body ?? null,
      editedAt: m.editedAt ?? null,
      deletedAt: m.deletedAt ?? null,
      deletedBy: m.deletedBy?.id ?? null,
      pinned: m.pinned,
      reactions: normalizeGroups(m.reactions),
    })),
  };
}

/** A client of conversationEvents that applies every event it receives to its local copy. */
export class Observer {
  private client: ReturnType<typeof wsClient> | null = null;
  private sub: Subscription<EventsResult> | null = null;
  readonly copy: LocalCopy;
  readonly received: ConversationEvent[] = [];

  constructor(
    readonly auth: Auth,
    conversationId: string,
  ) {
    this.copy = new LocalCopy(conversationId);
  }

  connect(wsUrl: string, variables: VariablesOf<typeof ConversationEvents>): Subscription<EventsResult> {
    this.client = wsClient(wsUrl, this.auth);
    this.sub = subscribe(this.client, ConversationEvents, variables);
    return this.sub;
  }

  private handle(event: ConversationEvent) {
    this.received.push(event);
    this.copy.apply(event);
  }

  /** Applies whatever has arrived so far. */
  async pump(waitMs = 100): Promise<void> {
    if (!this.sub) return;
    for (const result of await drain(this.sub, waitMs)) {
      if (result.errors?.length || !result.data) expect.fail(`event with errors: ${JSON.stringify(result)}`);
      this.handle(result.data.conversationEvents);
    }
  }

  /** Applies events until the copy satisfies `done`. */
  async until(done: (copy: LocalCopy) => boolean, timeoutMs = 20_000): Promise<void> {
    const sub = this.sub;
    if (!sub) return expect.fail("not connected");
    while (!done(this.copy)) this.handle(await nextEvent(sub, timeoutMs));
  }

  /** Drops the connection abruptly; events that had arrived are still applied. */
  async disconnect(): Promise<void> {
    await this.client?.dispose();
    await this.pump(50);
    this.client = null;
    this.sub = null;
  }
}

// ---------------------------------------------------------------------------------------
// The random scenario driven against the server
// ---------------------------------------------------------------------------------------

export const EMOJIS = ["👍", "❤️", "😂", "👍🏽", "🇯🇵", "👩‍💻", "🎉"];
export const WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"];

export interface DrivenMessage {
  id: string;
  senderId: string;
  clientMessageId: string | null;
  body: string;
  deleted: boolean;
  pinned: boolean;
}

export interface Cast {
  alice: TestUser;
  bob: TestUser;
  carol: TestUser;
  dave: TestUser;
}

/**
 * Random operations by Alice (group owner), Bob (admin) and Carol (member) on one group;
 * Dave comes and goes. Keeps just enough of its own bookkeeping to choose valid operations.
 */
export class Scenario {
  readonly messages: DrivenMessage[] = [];
  readonly reactions = new Set<string>();
  daveIn = false;
  readonly log: string[] = [];

  constructor(
    readonly rand: () => number,
    readonly urls: string[],
    readonly cast: Cast,
    readonly conversationId: string,
  ) {}

  private url(): string {
    return pick(this.rand, this.urls);
  }

  private live(filter: (m: DrivenMessage) => boolean = () => true) {
    return this.messages.filter((m) => !m.deleted && filter(m));
  }

  private words(n: number): string {
    return Array.from({ length: n }, () => pick(this.rand, WORDS)).join(" ");
  }

  async step(i: number): Promise<void> {
    const { alice, bob, carol, dave } = this.cast;
    const actor = pick(this.rand, [alice, bob, carol]);
    const url = this.url();
    const roll = this.rand();
    const op =
      roll < 0.2
        ? "send"
        : roll < 0.28
          ? "reply"
          : roll < 0.38
            ? "edit"
            : roll < 0.45
              ? "delete"
              : roll < 0.6
                ? "react"
                : roll < 0.68
                  ? "unreact"
                  : roll < 0.75
                    ? "pin"
                    : roll < 0.81
                      ? "unpin"
                      : roll < 0.86
                        ? "rename"
                        : roll < 0.93
                          ? "member"
                          : "resend";
    this.log.push(`${i}:${op}:${actor.name}@${this.urls.indexOf(url)}`);
    const mine = this.live((m) => m.senderId === actor.id);
    const any = this.live();
    switch (op) {
      case "reply":
        if (any.length) return this.send(url, actor, i, pick(this.rand, any).id);
        return this.send(url, actor, i);
      case "edit": {
        if (!mine.length) return this.send(url, actor, i);
        const target = pick(this.rand, mine);
        const body = `edited ${this.words(3)}`;
        const { editMessage } = await ok(url, EditMessage, { id: target.id, body }, as(actor));
        expect(editMessage.editedAt).toBeTruthy();
        target.body = body;
        return;
      }
      case "delete": {
        if (!mine.length) return this.send(url, actor, i);
        const target = pick(this.rand, mine);
        await ok(url, DeleteMessage, { id: target.id }, as(actor));
        target.deleted = true;
        target.pinned = false;
        for (const key of [...this.reactions]) if (key.startsWith(`${target.id} `)) this.reactions.delete(key);
        return;
      }
      case "react": {
        if (!any.length) return this.send(url, actor, i);
        const target = pick(this.rand, any);
        const emoji = pick(this.rand, EMOJIS);
        await ok(url, AddReaction, { messageId: target.id, emoji }, as(actor));
        this.reactions.add(`${target.id} ${actor.id} ${emoji}`);
        return;
      }
      case "unreact": {
        const given = [...this.reactions].filter((key) => key.split(" ")[1] === actor.id);
        if (!given.length) return this.send(url, actor, i);
        const key = pick(this.rand, given);
        const [messageId, , emoji] = key.split(" ") as [string, string, string];
        await ok(url, RemoveReaction, { messageId, emoji }, as(actor));
        this.reactions.delete(key);
        return;
      }
      case "pin": {
        if (!any.length) return this.send(url, actor, i);
        const target = pick(this.rand, any);
        await ok(url, PinMessage, { id: target.id }, as(actor));
        target.pinned = true;
        return;
      }
      case "unpin": {
        const pinned = this.live((m) => m.pinned);
        if (!pinned.length) return this.send(url, actor, i);
        const target = pick(this.rand, pinned);
        await ok(url, UnpinMessage, { id: target.id }, as(actor));
        target.pinned = false;
        return;
      }
      case "rename": {
        const manager = pick(this.rand, [alice, bob]);
        const input = this.rand() < 0.5 ? { name: `Room ${i}` } : { name: `Room ${i}`, description: `About ${i}` };
        await ok(url, UpdateGroup, { id: this.conversationId, input }, as(manager));
        return;
      }
      case "member": {
        const manager = pick(this.rand, [alice, bob]);
        if (this.daveIn) {
          await ok(url, RemoveMember, { conversationId: this.conversationId, userId: dave.id }, as(manager));
        } else {
          await ok(url, AddMembers, { conversationId: this.conversationId, userIds: [dave.id] }, as(manager));
        }
        this.daveIn = !this.daveIn;
        return;
      }
      case "resend": {
        // A retried send with the same clientMessageId returns the original and changes nothing.
        const earlier = this.messages.filter((m) => m.senderId === actor.id && m.clientMessageId);
        if (!earlier.length) return this.send(url, actor, i);
        const original = pick(this.rand, earlier);
        const again = await send(url, as(actor), this.conversationId, original.body, {
          clientMessageId: original.clientMessageId,
        });
        expect(again.id).toBe(original.id);
        return;
      }
      default:
        return this.send(url, actor, i);
    }
  }

  private async send(url: string, actor: TestUser, i: number, replyToId?: string): Promise<void> {
    const { alice, bob, carol, dave } = this.cast;
    const mentionable = this.daveIn ? [alice, bob, carol, dave] : [alice, bob, carol];
    const mentionedUserIds = this.rand() < 0.3 ? [pick(this.rand, mentionable).id] : [];
    const body = `${replyToId ? "reply" : "message"} ${i} ${this.words(4)}`;
    const clientMessageId = `c-${i}`;
    const message = await send(url, as(actor), this.conversationId, body, {
      clientMessageId,
      mentionedUserIds,
      ...(replyToId ? { replyToId } : {}),
    });
    this.messages.push({ id: message.id, senderId: actor.id, clientMessageId, body, deleted: false, pinned: false });
  }
}

export const SEED = Number(process.env.TEST_SEED ?? 20261122);
