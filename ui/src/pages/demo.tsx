import { useEffect, useMemo, useState } from "preact/hooks";
import { Api, describe } from "../api.ts";
import type { PageParams } from "../config.ts";
import { UiDemoAddMembers, UiDemoCreateGroup, UiDemoCreateUser, UiDemoIssueToken, UiViewer } from "../operations.ts";
import { Header, Notice, randomId } from "../parts.tsx";

interface DemoUser {
  id: string;
  name: string;
  token: string;
}
interface DemoWorld {
  tenantId: string;
  alice: DemoUser;
  bob: DemoUser;
  carol: DemoUser;
  groupId: string;
  carolAdded: boolean;
}

/**
 * Every component side by side, for users the demo creates with the tenant's API key (taken
 * from `api_key`, or typed in; it stays in this page's memory). Tokens reach the frames in
 * their URL fragment, which is never sent to a server.
 */
export function Demo({ params }: { params: PageParams }) {
  const [apiKey, setApiKey] = useState(params.apiKey);
  const [typed, setTyped] = useState("");
  if (!apiKey) {
    return (
      <main class="page sign-in">
        <form
          class="card"
          aria-labelledby="demo-title"
          onSubmit={(e) => {
            e.preventDefault();
            setApiKey(typed.trim() || null);
          }}
        >
          <h1 id="demo-title">Chat components demo</h1>
          <p>The demo creates three users with your tenant's API key and shows every component for them.</p>
          <label for="api-key">API key</label>
          <input id="api-key" type="password" required value={typed} onInput={(e) => setTyped(e.currentTarget.value)} />
          <button type="submit" class="primary">
            Start the demo
          </button>
        </form>
      </main>
    );
  }
  return <DemoWorkspace apiKey={apiKey} params={params} />;
}

function DemoWorkspace({ apiKey, params }: { apiKey: string; params: PageParams }) {
  const api = useMemo(() => new Api({ apiKey }), [apiKey]);
  useEffect(() => () => api.dispose(), [api]);
  const [world, setWorld] = useState<DemoWorld | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const create = async () => {
    setBusy(true);
    setError(null);
    try {
      const { viewer } = await api.query(UiViewer, {});
      if (!viewer.isService) throw new Error("The demo needs the tenant's API key.");
      const suffix = randomId().slice(0, 4);
      const user = async (name: string): Promise<DemoUser> => {
        const { createUser } = await api.mutate(UiDemoCreateUser, { input: { name: `${name} (demo ${suffix})` } });
        const { issueUserToken } = await api.mutate(UiDemoIssueToken, { userId: createUser.id });
        return { id: createUser.id, name: createUser.name, token: issueUserToken.token };
      };
      const [alice, bob, carol] = [await user("Alice"), await user("Bob"), await user("Carol")];
      const asAlice = new Api({ accessToken: alice.token });
      try {
        const { createGroup } = await asAlice.mutate(UiDemoCreateGroup, {
          input: { name: `Demo group ${suffix}`, memberIds: [bob.id] },
        });
        setWorld({ tenantId: viewer.tenant.id, alice, bob, carol, groupId: createGroup.id, carolAdded: false });
      } finally {
        asAlice.dispose();
      }
    } catch (reason) {
      setError(describe(reason));
    } finally {
      setBusy(false);
    }
  };

  const addCarol = async () => {
    if (!world) return;
    const asAlice = new Api({ accessToken: world.alice.token });
    try {
      await asAlice.mutate(UiDemoAddMembers, { conversationId: world.groupId, userIds: [world.carol.id] });
      setWorld({ ...world, carolAdded: true });
    } catch (reason) {
      setError(describe(reason));
    } finally {
      asAlice.dispose();
    }
  };

  /** A component's address: the query names what to show, the fragment carries the token. */
  const src = (page: string, user: DemoUser, extra: Record<string, string>) => {
    const query = new URLSearchParams({
      tenant_id: world?.tenantId ?? "",
      user_id: user.id,
      ...extra,
      primary_color: params.primaryColor,
      secondary_color: params.secondaryColor,
    });
    return `/ui/${page}?${query}#${new URLSearchParams({ token: user.token })}`;
  };

  return (
    <div class="demo">
      <Header title="Chat components demo" />
      <div class="demo-controls">
        {!world ? (
          <button type="button" class="primary" disabled={busy} onClick={create}>
            {busy ? "Creating…" : "Create demo users"}
          </button>
        ) : (
          <>
            <p>
              Demo users: {world.alice.name}, {world.bob.name}, {world.carol.name}.
            </p>
            <button type="button" class="primary" disabled={world.carolAdded} onClick={addCarol}>
              {world.carolAdded ? "Carol was added to the group" : "Add Carol to the group"}
            </button>
          </>
        )}
      </div>
      {error && <Notice kind="error" title="The demo could not continue." detail={error} />}
      {world && (
        <div class="demo-grid">
          <figure>
            <figcaption>Chat window: Alice to Bob</figcaption>
            <iframe
              title="Chat window for Alice"
              src={src("chat-window", world.alice, { receiver_id: world.bob.id })}
            />
          </figure>
          <figure>
            <figcaption>Chat window: Bob to Alice</figcaption>
            <iframe title="Chat window for Bob" src={src("chat-window", world.bob, { receiver_id: world.alice.id })} />
          </figure>
          <figure>
            <figcaption>Roster: Bob</figcaption>
            <iframe title="Roster for Bob" src={src("roster", world.bob, {})} />
          </figure>
          <figure>
            <figcaption>Participants of the group, seen by Alice</figcaption>
            <iframe
              title="Participants of the demo group"
              src={src("participants", world.alice, { group_id: world.groupId })}
            />
          </figure>
        </div>
      )}
    </div>
  );
}
