import { useEffect, useState } from "preact/hooks";
import { type Api, describe } from "../api.ts";
import type { Viewer } from "../app.tsx";
import { UiConversation, UiConversationEvents, UiPresence } from "../operations.ts";
import { Avatar, ConnectionStatus, Header, Notice, useConnection } from "../parts.tsx";

const RANK: Record<string, number> = { OWNER: 0, ADMIN: 1, MEMBER: 2 };
/** Owners, then admins, then members, each by name. */
const byRoleAndName = (a: Participant, b: Participant) =>
  (RANK[a.role] ?? 3) - (RANK[b.role] ?? 3) || a.name.localeCompare(b.name);

interface Participant {
  id: string;
  name: string;
  email: string | null;
  online: boolean;
  role: string;
}

/** The members of a group with names and emails (where the viewer may see them), live. */
export function Participants({ api, viewer, groupId }: { api: Api; viewer: Viewer; groupId: string }) {
  const [name, setName] = useState("Participants");
  const [members, setMembers] = useState<Participant[] | null>(null);
  const [fatal, setFatal] = useState<string | null>(null);

  useEffect(() => {
    let open = true;
    const stops: (() => void)[] = [];
    const update = (change: (current: Participant[]) => Participant[]) =>
      setMembers((current) => change(current ?? []));
    // Subscribed before the members are read, so a change in between is not missed; events
    // are applied by user id, so one seen twice changes nothing.
    stops.push(
      api.subscribe(
        UiConversationEvents,
        { conversationId: groupId },
        ({ conversationEvents: event }) => {
          if (event.__typename === "ConversationUpdatedEvent") {
            if (event.name) setName(event.name);
            return;
          }
          if (event.__typename === "ConversationDeletedEvent") return setFatal("This group was deleted.");
          const user = "user" in event ? event.user : null;
          if (!user) return;
          if (event.__typename === "MemberAddedEvent" && event.user) {
            const added = { ...event.user, role: event.role };
            addedSince.add(user.id);
            removedSince.delete(user.id);
            update((current) => [...current.filter((m) => m.id !== user.id), added]);
          } else if (event.__typename === "MemberRemovedEvent") {
            if (user.id === viewer.id) setFatal("You are no longer a member of this group.");
            addedSince.delete(user.id);
            removedSince.add(user.id);
            update((current) => current.filter((m) => m.id !== user.id));
          } else if (event.__typename === "MemberRoleChangedEvent") {
            const role = event.role;
            update((current) => current.map((m) => (m.id === user.id ? { ...m, role } : m)));
          }
        },
        (error) => open && setFatal(describe(error)),
      ),
    );
    stops.push(
      api.subscribe(
        UiPresence,
        { conversationId: groupId },
        ({ presenceChanged }) =>
          update((current) =>
            current.map((m) => (m.id === presenceChanged.user.id ? { ...m, online: presenceChanged.online } : m)),
          ),
        () => {},
      ),
    );
    // Members added or removed by events since the last read began: an answer that predates
    // those events does not undo them.
    let addedSince = new Set<string>();
    let removedSince = new Set<string>();
    const read = () => {
      addedSince = new Set();
      removedSince = new Set();
      return api.query(UiConversation, { id: groupId }).then(
        ({ conversation }) => {
          if (!open) return;
          if (!conversation) return setFatal("This group does not exist or you are not one of its members.");
          setName(conversation.name ?? "Participants");
          const listed = conversation.members
            .filter((m) => !removedSince.has(m.user.id))
            .map((m) => ({ ...m.user, email: m.user.email ?? null, role: m.role }));
          const later = (current: Participant[]) =>
            current.filter((m) => addedSince.has(m.id) && !listed.some((l) => l.id === m.id));
          setMembers((current) => [...listed, ...later(current ?? [])]);
        },
        (error: unknown) => open && setFatal(describe(error)),
      );
    };
    void read();
    // Read again whenever the socket (re)connects: presence and members changed while it was down.
    stops.push(api.onState((state) => state === "connected" && void read()));
    return () => {
      open = false;
      for (const stop of stops) stop();
    };
  }, [api, groupId, viewer.id]);

  // The viewer is online exactly while this page's own socket is connected.
  const connected = useConnection(api) === "connected";
  if (fatal) return <Notice kind="error" title="The participants cannot be shown." detail={fatal} />;
  return (
    <div class="participants">
      <Header title={name}>
        <ConnectionStatus api={api} />
      </Header>
      <p class="count" aria-live="polite">
        {members === null ? "Loading…" : `${members.length} ${members.length === 1 ? "participant" : "participants"}`}
      </p>
      <ul class="list" aria-label="Participants">
        {[...(members ?? [])].sort(byRoleAndName).map((member) => (
          <li key={member.id} class="row">
            <Avatar name={member.name} online={member.id === viewer.id ? connected : member.online} />
            <span class="row-main">
              <span class="row-title">
                {member.name}
                {member.id === viewer.id && " (you)"}
              </span>
              {member.email && <span class="row-detail">{member.email}</span>}
            </span>
            {member.role !== "MEMBER" && <span class="tag">{member.role.toLowerCase()}</span>}
          </li>
        ))}
      </ul>
    </div>
  );
}
