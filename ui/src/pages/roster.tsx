import { useEffect, useState } from "preact/hooks";
import { type Api, describe } from "../api.ts";
import type { Viewer } from "../app.tsx";
import type { UiRosterQuery } from "../generated/graphql.ts";
import { UiConversationEvents, UiPresence, UiRoster } from "../operations.ts";
import { Avatar, ConnectionStatus, Header } from "../parts.tsx";
import { type ChatTarget, ChatWindow } from "./chat-window.tsx";

type Person = UiRosterQuery["users"]["edges"][number]["node"];
type Group = UiRosterQuery["conversations"]["edges"][number]["node"];

/**
 * People and groups of the viewer's tenant, with search. A click opens that chat here, and
 * tells the embedding page (`postMessage({ type: "chat:open", receiverId | groupId })`).
 */
export function Roster({ api, viewer }: { api: Api; viewer: Viewer }) {
  const [search, setSearch] = useState("");
  const [people, setPeople] = useState<Person[] | null>(null);
  const [groups, setGroups] = useState<Group[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [open, setOpen] = useState<ChatTarget | null>(null);
  // Bumped when the viewer's conversations change (members, names, new groups): read again.
  const [changes, setChanges] = useState(0);

  useEffect(() => {
    let current = true;
    const timer = setTimeout(() => {
      api.query(UiRoster, { search: search.trim() || null }).then(
        (data) => {
          if (!current) return;
          setError(null);
          setPeople(data.users.edges.map((edge) => edge.node).filter((user) => user.id !== viewer.id && user.active));
          const term = search.trim().toLowerCase();
          setGroups(
            data.conversations.edges
              .map((edge) => edge.node)
              .filter((group) => !term || (group.name ?? "").toLowerCase().includes(term)),
          );
        },
        (reason: unknown) => current && setError(describe(reason)),
      );
    }, 200);
    return () => {
      current = false;
      clearTimeout(timer);
    };
  }, [api, search, viewer.id, open, changes]);

  useEffect(
    () =>
      api.subscribe(
        UiConversationEvents,
        {},
        ({ conversationEvents: event }) => {
          if (/^(Member|Conversation)/.test(event.__typename)) setChanges((n) => n + 1);
        },
        () => {},
      ),
    [api],
  );

  // Who is online, live.
  useEffect(
    () =>
      api.subscribe(
        UiPresence,
        {},
        ({ presenceChanged }) =>
          setPeople(
            (current) =>
              current?.map((person) =>
                person.id === presenceChanged.user.id ? { ...person, online: presenceChanged.online } : person,
              ) ?? null,
          ),
        () => {},
      ),
    [api],
  );

  const choose = (target: ChatTarget) => {
    // Only to the embedding page's origin where the browser tells it (the frame loads only in
    // the tenant's embedOrigins, so the parent is one of those either way).
    if (window.parent !== window) {
      window.parent.postMessage({ type: "chat:open", ...target }, location.ancestorOrigins?.[0] ?? "*");
    }
    setOpen(target);
  };

  if (open) return <ChatWindow api={api} viewer={viewer} target={open} onBack={() => setOpen(null)} />;

  return (
    <div class="roster">
      <Header title="Chats">
        <ConnectionStatus api={api} />
      </Header>
      <div class="search">
        <label for="roster-search">Search people and groups</label>
        <input
          id="roster-search"
          type="search"
          value={search}
          placeholder="Name or email"
          onInput={(e) => setSearch(e.currentTarget.value)}
        />
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <section aria-labelledby="groups-title">
        <h2 id="groups-title">Groups</h2>
        {groups.length === 0 ? (
          <p class="empty">{search ? "No group matches." : "No groups yet."}</p>
        ) : (
          <ul class="list">
            {groups.map((group) => (
              <li key={group.id}>
                <button type="button" class="row" onClick={() => choose({ groupId: group.id })}>
                  <Avatar name={group.name ?? "Group"} />
                  <span class="row-main">
                    <span class="row-title">{group.name ?? "Group"}</span>
                    <span class="row-detail">
                      {group.memberCount} {group.memberCount === 1 ? "member" : "members"}
                    </span>
                  </span>
                  {group.unreadCount > 0 && (
                    <span class="badge">
                      {group.unreadCount}
                      <span class="visually-hidden"> unread</span>
                    </span>
                  )}
                </button>
              </li>
            ))}
          </ul>
        )}
      </section>
      <section aria-labelledby="people-title">
        <h2 id="people-title">People</h2>
        {people === null ? (
          <p class="empty">Loading…</p>
        ) : people.length === 0 ? (
          <p class="empty">{search ? "Nobody matches." : "Nobody else here yet."}</p>
        ) : (
          <ul class="list">
            {people.map((person) => (
              <li key={person.id}>
                <button type="button" class="row" onClick={() => choose({ receiverId: person.id })}>
                  <Avatar name={person.name} online={person.online} />
                  <span class="row-main">
                    <span class="row-title">{person.name}</span>
                    <span class="row-detail">{person.online ? "Online" : "Offline"}</span>
                  </span>
                </button>
              </li>
            ))}
          </ul>
        )}
      </section>
    </div>
  );
}
