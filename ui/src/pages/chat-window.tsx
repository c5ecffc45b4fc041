import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { type Api, describe } from "../api.ts";
import type { Viewer } from "../app.tsx";
import type { UiConversationEventsSubscription, UiMessageFragment } from "../generated/graphql.ts";
import {
  UiAddReaction,
  UiConversation,
  UiConversationEvents,
  UiDeleteMessage,
  UiEditMessage,
  UiMarkRead,
  UiMessageAdded,
  UiMessages,
  UiOpenDirect,
  UiReadReceipt,
  UiRemoveReaction,
  UiSendMessage,
  UiSetTyping,
  UiTyping,
} from "../operations.ts";
import { ConnectionStatus, Header, Notice, randomId, timeOf } from "../parts.tsx";

const PAGE = 30;
const REACTIONS = ["👍", "❤️", "😂", "🎉", "😮", "😢"];
/** Typing is announced at most this often while the user types, and ends after this much quiet. */
const TYPING_EVERY_MS = 3_000;
const TYPING_IDLE_MS = 4_000;
/** How long after the socket is up the window reads the conversation again (subscriptions are live by then). */
const CATCH_UP_DELAY_MS = 700;
/** Someone else's typing is shown this long after their last event. */
const TYPING_SHOWN_MS = 6_000;

type Message = UiMessageFragment;
type Event = UiConversationEventsSubscription["conversationEvents"];
interface Member {
  name: string;
  lastReadSeq: number;
}

export type ChatTarget = { receiverId: string; groupId?: undefined } | { groupId: string; receiverId?: undefined };

/** Members by user id, with how far each has read. */
const membersOf = (conversation: { members: readonly { lastReadSeq: number; user: { id: string; name: string } }[] }) =>
  new Map<string, Member>(
    conversation.members.map((m) => [m.user.id, { name: m.user.name, lastReadSeq: m.lastReadSeq }]),
  );

/** Messages by id, in conversation order. */
const sorted = (byId: Map<string, Message>) => [...byId.values()].sort((a, b) => a.seq - b.seq);

export function ChatWindow({
  api,
  viewer,
  target,
  onBack,
}: {
  api: Api;
  viewer: Viewer;
  target: ChatTarget;
  onBack?: () => void;
}) {
  const [conversationId, setConversationId] = useState<string | null>(null);
  const [title, setTitle] = useState("Chat");
  const [kind, setKind] = useState<string>("DIRECT");
  const [members, setMembers] = useState<Map<string, Member>>(new Map());
  const [byId, setById] = useState<Map<string, Message>>(new Map());
  const [earlier, setEarlier] = useState<string | null>(null);
  // While history is being put in, the log is busy: screen readers announce only live additions.
  const [loading, setLoading] = useState(true);
  const [typing, setTyping] = useState<Map<string, { name: string; until: number }>>(new Map());
  const [fatal, setFatal] = useState<string | null>(null);
  const [alert, setAlert] = useState<string | null>(null);
  const log = useRef<HTMLDivElement>(null);
  const stick = useRef(true);

  const upsert = (messages: readonly Message[]) =>
    setById((current) => {
      const next = new Map(current);
      for (const message of messages) next.set(message.id, message);
      return next;
    });
  const patch = (message: Message) =>
    setById((current) => (current.has(message.id) ? new Map(current).set(message.id, message) : current));

  // Opens the conversation, loads its newest page, then follows it live from that page's
  // newest message: messageAdded(after:) replays whatever was sent meanwhile, so nothing is missed.
  useEffect(() => {
    let open = true;
    const stops: (() => unknown)[] = [];
    const follow = (stop: () => unknown) => (open ? stops.push(stop) : stop());
    const failed = (error: unknown) => open && setAlert(describe(error));
    (async () => {
      const id = target.groupId
        ? target.groupId
        : (await api.mutate(UiOpenDirect, { userId: target.receiverId as string })).openDirectConversation.id;
      const { conversation } = await api.query(UiConversation, { id });
      if (!conversation) throw new Error("This conversation does not exist or you are not one of its members.");
      const { messages } = await api.query(UiMessages, { conversationId: id, last: PAGE });
      if (!open) return;
      const other = conversation.members.find((m) => m.user.id !== viewer.id)?.user.name;
      setConversationId(id);
      setKind(conversation.kind);
      setTitle(conversation.kind === "GROUP" ? (conversation.name ?? "Group") : (other ?? "Direct chat"));
      setMembers(membersOf(conversation));
      upsert(messages.edges.map((edge) => edge.node));
      setEarlier(messages.pageInfo.hasPreviousPage ? (messages.pageInfo.startCursor ?? null) : null);
      requestAnimationFrame(() => open && setLoading(false));
      const newest = messages.edges.at(-1)?.node.cursor;
      follow(
        api.subscribe(
          UiMessageAdded,
          { conversationId: id, ...(newest ? { after: newest } : {}) },
          (data) => upsert([data.messageAdded]),
          failed,
        ),
      );
      follow(
        api.subscribe(UiConversationEvents, { conversationId: id }, (data) => apply(data.conversationEvents), failed),
      );
      follow(
        api.subscribe(
          UiTyping,
          { conversationId: id },
          ({ typing: event }) => {
            if (event.user.id === viewer.id) return;
            setTyping((current) => {
              const next = new Map(current);
              if (event.isTyping)
                next.set(event.user.id, { name: event.user.name, until: Date.now() + TYPING_SHOWN_MS });
              else next.delete(event.user.id);
              return next;
            });
          },
          failed,
        ),
      );
      follow(
        api.subscribe(
          UiReadReceipt,
          { conversationId: id },
          ({ readReceipt }) =>
            setMembers((current) => {
              const member = current.get(readReceipt.user.id);
              if (!member || member.lastReadSeq >= readReceipt.lastReadSeq) return current;
              return new Map(current).set(readReceipt.user.id, { ...member, lastReadSeq: readReceipt.lastReadSeq });
            }),
          failed,
        ),
      );
      // What the subscriptions may have missed: events between the page's load and the moment
      // they were live (conversationEvents, typing and read receipts start from "now"), and
      // everything while the socket was down before a stream had a position to resume from.
      // Reading the members and the newest page again once the socket is up closes that gap.
      const catchUp = () => {
        if (!open) return;
        api.query(UiConversation, { id }).then((again) => {
          if (!open || !again.conversation) return;
          setMembers(membersOf(again.conversation));
        }, failed);
        api
          .query(UiMessages, { conversationId: id, last: PAGE })
          .then((again) => open && upsert(again.messages.edges.map((edge) => edge.node)), failed);
      };
      const soon = () => setTimeout(catchUp, CATCH_UP_DELAY_MS);
      soon();
      follow(api.onState((state) => state === "connected" && soon()));
    })().catch((error: unknown) => open && setFatal(describe(error)));
    return () => {
      open = false;
      for (const stop of stops) stop();
    };

    function apply(event: Event) {
      switch (event.__typename) {
        case "MessageEditedEvent":
        case "MessageDeletedEvent":
        case "ReactionChangedEvent":
          patch(event.message);
          break;
        case "MemberAddedEvent":
          if (event.user) {
            const { id, name } = event.user;
            setMembers((current) => new Map(current).set(id, { name, lastReadSeq: 0 }));
          }
          break;
        case "MemberRemovedEvent": {
          if (!event.user) break;
          const user = event.user;
          if (user.id === viewer.id) setFatal("You are no longer a member of this conversation.");
          setMembers((current) => {
            const next = new Map(current);
            next.delete(user.id);
            return next;
          });
          break;
        }
        case "ConversationUpdatedEvent":
          if (event.name) setTitle(event.name);
          break;
        case "ConversationDeletedEvent":
          setFatal("This conversation was deleted.");
          break;
      }
    }
  }, [api, target.groupId, target.receiverId, viewer.id]);

  // Someone's typing disappears when they stop or fall quiet.
  useEffect(() => {
    if (typing.size === 0) return;
    const timer = setInterval(() => {
      const now = Date.now();
      setTyping((current) => {
        const next = new Map([...current].filter(([, entry]) => entry.until > now));
        return next.size === current.size ? current : next;
      });
    }, 1_000);
    return () => clearInterval(timer);
  }, [typing.size]);

  const messages = sorted(byId);
  const newest = messages.at(-1);

  // Marks what the user sees as read: the newest message, once the page is visible.
  const marked = useRef(0);
  useEffect(() => {
    if (!conversationId || !newest) return;
    const mark = () => {
      if (document.visibilityState !== "visible" || newest.seq <= marked.current) return;
      marked.current = newest.seq;
      api.mutate(UiMarkRead, { conversationId, upToMessageId: newest.id }).catch(() => {
        marked.current = 0;
      });
    };
    mark();
    document.addEventListener("visibilitychange", mark);
    return () => document.removeEventListener("visibilitychange", mark);
  }, [api, conversationId, newest?.id]);

  // Keeps the newest message in view unless the user scrolled up to read.
  useLayoutEffect(() => {
    const element = log.current;
    if (element && stick.current) element.scrollTop = element.scrollHeight;
  }, [messages.length, typing.size]);

  const loadEarlier = async () => {
    if (!conversationId || !earlier) return;
    const element = log.current;
    const fromBottom = element ? element.scrollHeight - element.scrollTop : 0;
    try {
      setLoading(true);
      const { messages: page } = await api.query(UiMessages, { conversationId, last: PAGE, before: earlier });
      stick.current = false;
      upsert(page.edges.map((edge) => edge.node));
      setEarlier(page.pageInfo.hasPreviousPage ? (page.pageInfo.startCursor ?? null) : null);
      requestAnimationFrame(() => {
        if (element) element.scrollTop = element.scrollHeight - fromBottom;
        setLoading(false);
      });
    } catch (error) {
      setLoading(false);
      setAlert(describe(error));
    }
  };

  if (fatal) return <Notice kind="error" title="This chat cannot be shown." detail={fatal} />;

  // The newest message of the viewer's, and who has read it.
  const ownNewest = [...messages].reverse().find((m) => m.sender?.id === viewer.id && !m.deletedAt);
  const readers = ownNewest
    ? [...members].filter(([id, m]) => id !== viewer.id && m.lastReadSeq >= ownNewest.seq).map(([, m]) => m.name)
    : [];
  const typers = [...typing.values()].map((entry) => entry.name);

  return (
    <div class="chat">
      <Header title={title}>
        {onBack && (
          <button type="button" class="ghost" onClick={onBack}>
            Back
          </button>
        )}
        <ConnectionStatus api={api} />
      </Header>
      <div
        class="log"
        ref={log}
        role="log"
        aria-label={`Messages with ${title}`}
        aria-live="polite"
        aria-relevant="additions"
        aria-busy={loading}
        // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrollable region is focusable so keyboards can scroll it
        tabIndex={0}
        onScroll={(e) => {
          const element = e.currentTarget;
          stick.current = element.scrollHeight - element.scrollTop - element.clientHeight < 40;
        }}
      >
        {earlier && (
          <button type="button" class="ghost earlier" onClick={loadEarlier}>
            Load earlier messages
          </button>
        )}
        {conversationId && messages.length === 0 && <p class="empty">No messages yet. Say hello!</p>}
        <ul class="messages">
          {messages.map((message) => (
            <MessageItem
              key={message.id}
              api={api}
              message={message}
              own={message.sender?.id === viewer.id}
              showSender={kind === "GROUP"}
              seenBy={message === ownNewest ? readers : null}
              onChanged={patch}
              onError={(error) => setAlert(describe(error))}
            />
          ))}
        </ul>
      </div>
      <p class="typing" aria-live="polite">
        {typers.length === 1 && `${typers[0]} is typing…`}
        {typers.length > 1 && `${typers.join(", ")} are typing…`}
      </p>
      {alert && (
        <p class="error alert" role="alert">
          {alert}
          <button type="button" class="ghost" onClick={() => setAlert(null)} aria-label="Dismiss the error">
            ×
          </button>
        </p>
      )}
      {conversationId && (
        <Composer
          api={api}
          conversationId={conversationId}
          onSent={(message) => {
            stick.current = true;
            upsert([message]);
          }}
          onError={(error) => setAlert(describe(error))}
        />
      )}
    </div>
  );
}

function MessageItem({
  api,
  message,
  own,
  showSender,
  seenBy,
  onChanged,
  onError,
}: {
  api: Api;
  message: Message;
  own: boolean;
  showSender: boolean;
  seenBy: string[] | null;
  onChanged: (message: Message) => void;
  onError: (error: unknown) => void;
}) {
  const [editing, setEditing] = useState<string | null>(null);
  const [confirming, setConfirming] = useState(false);
  const [picking, setPicking] = useState(false);
  const sender = message.sender?.name ?? "Someone";
  const run = (work: Promise<Message>) => work.then(onChanged, onError);
  // Focus goes back where the action started when the control that had it disappears.
  const reactButton = useRef<HTMLButtonElement>(null);
  const editButton = useRef<HTMLButtonElement>(null);
  const wasEditing = useRef(false);
  useEffect(() => {
    if (editing !== null) wasEditing.current = true;
    else if (wasEditing.current) {
      wasEditing.current = false;
      editButton.current?.focus();
    }
  }, [editing]);

  const save = () => {
    const body = editing?.trim();
    if (!body) return;
    // The editor closes once the edit is saved; a failed one keeps the text.
    api.mutate(UiEditMessage, { id: message.id, body }).then((data) => {
      setEditing(null);
      onChanged(data.editMessage);
    }, onError);
  };
  const react = (emoji: string, reacted: boolean) => {
    setPicking(false);
    reactButton.current?.focus();
    run(
      reacted
        ? api.mutate(UiRemoveReaction, { messageId: message.id, emoji }).then((data) => data.removeReaction)
        : api.mutate(UiAddReaction, { messageId: message.id, emoji }).then((data) => data.addReaction),
    );
  };

  if (message.deletedAt) {
    return (
      <li class={own ? "message own deleted" : "message deleted"} data-message-id={message.id}>
        <p class="body">This message was deleted.</p>
      </li>
    );
  }
  return (
    <li class={own ? "message own" : "message"} data-message-id={message.id}>
      <div class="meta">
        {(showSender || !own) && <span class="sender">{own ? "You" : sender}</span>}
        <time dateTime={message.createdAt}>{timeOf(message.createdAt)}</time>
        {message.editedAt && <span class="edited">(edited)</span>}
      </div>
      {editing === null ? (
        <p class="body">{message.body}</p>
      ) : (
        <div class="edit">
          <label class="visually-hidden" for={`edit-${message.id}`}>
            Edit message
          </label>
          <textarea
            id={`edit-${message.id}`}
            value={editing}
            rows={2}
            // biome-ignore lint/a11y/noAutofocus: the user just asked to edit this message
            autoFocus
            onInput={(e) => setEditing(e.currentTarget.value)}
            onKeyDown={(e) => {
              if (e.key === "Enter" && !e.shiftKey) {
                e.preventDefault();
                save();
              } else if (e.key === "Escape") setEditing(null);
            }}
          />
          <button type="button" class="primary" onClick={save}>
            Save
          </button>
          <button type="button" class="ghost" onClick={() => setEditing(null)}>
            Cancel
          </button>
        </div>
      )}
      {message.reactions.length > 0 && (
        <ul class="reactions" aria-label="Reactions">
          {message.reactions.map((reaction) => (
            <li key={reaction.emoji}>
              <button
                type="button"
                class={reaction.reactedByViewer ? "chip mine" : "chip"}
                aria-pressed={reaction.reactedByViewer}
                aria-label={`${reaction.emoji} ${reaction.count}${reaction.reactedByViewer ? ", including you" : ""}`}
                onClick={() => react(reaction.emoji, reaction.reactedByViewer)}
              >
                {reaction.emoji} {reaction.count}
              </button>
            </li>
          ))}
        </ul>
      )}
      <div class="actions">
        <button
          ref={reactButton}
          type="button"
          class="ghost"
          aria-expanded={picking}
          aria-label={`React to ${own ? "your" : `${sender}'s`} message`}
          onClick={() => setPicking(!picking)}
        >
          React
        </button>
        {own && editing === null && !confirming && (
          <>
            <button ref={editButton} type="button" class="ghost" onClick={() => setEditing(message.body ?? "")}>
              Edit
            </button>
            <button type="button" class="ghost" onClick={() => setConfirming(true)}>
              Delete
            </button>
          </>
        )}
        {confirming && (
          <span class="confirm">
            Delete this message?
            <button
              type="button"
              class="danger"
              onClick={() => {
                setConfirming(false);
                run(api.mutate(UiDeleteMessage, { id: message.id }).then((data) => data.deleteMessage));
                // The message's controls go with it: the message box is the next place to be.
                document.getElementById("composer")?.focus();
              }}
            >
              Yes, delete
            </button>
            <button type="button" class="ghost" onClick={() => setConfirming(false)}>
              Keep
            </button>
          </span>
        )}
      </div>
      {picking && (
        <fieldset class="picker">
          <legend class="visually-hidden">Pick a reaction</legend>
          {REACTIONS.map((emoji) => {
            const reacted = message.reactions.some((r) => r.emoji === emoji && r.reactedByViewer);
            return (
              <button
                key={emoji}
                type="button"
                class="ghost"
                aria-label={`React with ${emoji}`}
                onClick={() => react(emoji, reacted)}
              >
                {emoji}
              </button>
            );
          })}
        </fieldset>
      )}
      {seenBy && (
        <p class="receipt" data-testid="receipt">
          {seenBy.length ? `Seen by ${seenBy.join(", ")}` : "Sent"}
        </p>
      )}
    </li>
  );
}

/** The message box: Enter sends, Shift+Enter starts a new line; typing is announced while typing. */
function Composer({
  api,
  conversationId,
  onSent,
  onError,
}: {
  api: Api;
  conversationId: string;
  onSent: (message: Message) => void;
  onError: (error: unknown) => void;
}) {
  const [draft, setDraft] = useState("");
  const [sending, setSending] = useState(false);
  const announced = useRef(0);
  const pending = useRef<{ body: string; id: string } | null>(null);
  const inFlight = useRef(false);
  const idle = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);

  const stopTyping = () => {
    clearTimeout(idle.current);
    if (!announced.current) return;
    announced.current = 0;
    api.mutate(UiSetTyping, { conversationId, isTyping: false }).catch(() => {});
  };
  useEffect(() => stopTyping, [conversationId]);

  const typed = (value: string) => {
    setDraft(value);
    clearTimeout(idle.current);
    if (!value.trim()) return stopTyping();
    if (Date.now() - announced.current > TYPING_EVERY_MS) {
      announced.current = Date.now();
      api.mutate(UiSetTyping, { conversationId, isTyping: true }).catch(() => {});
    }
    idle.current = setTimeout(stopTyping, TYPING_IDLE_MS);
  };

  const send = async () => {
    const body = draft.trim();
    if (!body || inFlight.current) return;
    inFlight.current = true;
    setSending(true);
    stopTyping();
    try {
      // The same id on a retry of the same text makes the server return the first send, not a copy.
      if (!pending.current || pending.current.body !== body) pending.current = { body, id: randomId() };
      const { sendMessage } = await api.mutate(UiSendMessage, {
        input: { conversationId, body, clientMessageId: pending.current.id },
      });
      pending.current = null;
      // What was typed meanwhile stays.
      setDraft((current) => (current.trim() === body ? "" : current));
      onSent(sendMessage);
    } catch (error) {
      onError(error); // The draft stays, so nothing typed is lost.
    } finally {
      inFlight.current = false;
      setSending(false);
    }
  };

  return (
    <form
      class="composer"
      onSubmit={(e) => {
        e.preventDefault();
        void send();
      }}
    >
      <label class="visually-hidden" for="composer">
        Message
      </label>
      <textarea
        id="composer"
        rows={1}
        placeholder="Write a message…"
        value={draft}
        onInput={(e) => typed(e.currentTarget.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            void send();
          }
        }}
      />
      <button type="submit" class="primary" disabled={sending || !draft.trim()}>
        Send
      </button>
    </form>
  );
}
