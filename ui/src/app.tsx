import type { Credentials } from "@chat-api/client";
import { useEffect, useMemo, useState } from "preact/hooks";
import { Api, ApiError, describe } from "./api.ts";
import type { PageConfig, PageParams } from "./config.ts";
import { UiSignIn, UiViewer } from "./operations.ts";
import { ChatWindow } from "./pages/chat-window.tsx";
import { Demo } from "./pages/demo.tsx";
import { Participants } from "./pages/participants.tsx";
import { Roster } from "./pages/roster.tsx";
import { Notice } from "./parts.tsx";

export interface Viewer {
  id: string;
  name: string;
  tenantId: string;
}

/** Ids are UUIDs: the same in any letter case. */
const sameId = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

export function App({ config, params }: { config: PageConfig; params: PageParams }) {
  const [credentials, setCredentials] = useState<Credentials | null>(
    params.token ? { accessToken: params.token } : null,
  );
  if (config.page === "demo") {
    return config.demo ? <Demo params={params} /> : <Notice kind="error" title="The demo is off on this server." />;
  }
  if (!credentials) {
    if (config.tenant?.passwordSignIn) {
      return <SignIn tenant={config.tenant} onSignedIn={setCredentials} />;
    }
    return (
      <Notice
        kind="error"
        title="No sign-in token."
        detail="This page needs a token (`#token=` or `token=`) issued for the user. Open the chat again from the app that shows it."
      />
    );
  }
  return <Authenticated config={config} params={params} credentials={credentials} />;
}

/** Checks the token against the page's parameters, then shows the page's component. */
function Authenticated({
  config,
  params,
  credentials,
}: {
  config: PageConfig;
  params: PageParams;
  credentials: Credentials;
}) {
  const [ended, setEnded] = useState(false);
  const api = useMemo(() => new Api(credentials, () => setEnded(true)), [credentials]);
  useEffect(() => () => api.dispose(), [api]);
  const [viewer, setViewer] = useState<Viewer | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    api.query(UiViewer, {}).then(
      ({ viewer: data }) => {
        if (data.isService || !data.user) {
          setError("This page needs a user's token, not the tenant's API key.");
        } else if (params.tenantId && !sameId(params.tenantId, data.tenant.id)) {
          setError("The token belongs to another tenant than the page's tenant_id.");
        } else if (params.userId && !sameId(params.userId, data.user.id)) {
          setError("The token is for another user than the page's user_id.");
        } else {
          setViewer({ id: data.user.id, name: data.user.name, tenantId: data.tenant.id });
        }
      },
      (reason: unknown) =>
        setError(
          reason instanceof ApiError && reason.code === "UNAUTHENTICATED"
            ? "The sign-in token is not valid or has expired. Open the chat again from the app that shows it."
            : describe(reason),
        ),
    );
  }, [api, params]);

  if (ended) return <Notice kind="error" title="Your session has ended." detail="Open the chat again to sign in." />;
  if (error) return <Notice kind="error" title="This chat cannot be shown." detail={error} />;
  if (!viewer) return <Notice kind="info" title="Loading…" />;
  switch (config.page) {
    case "roster":
      return <Roster api={api} viewer={viewer} />;
    case "participants":
      return params.groupId ? (
        <Participants api={api} viewer={viewer} groupId={params.groupId} />
      ) : (
        <Notice kind="error" title="No group." detail="The page needs a group_id." />
      );
    default:
      if (!params.receiverId && !params.groupId) {
        return <Notice kind="error" title="No conversation." detail="The page needs a receiver_id or a group_id." />;
      }
      return (
        <ChatWindow
          api={api}
          viewer={viewer}
          target={params.groupId ? { groupId: params.groupId } : { receiverId: params.receiverId as string }}
        />
      );
  }
}

function SignIn({
  tenant,
  onSignedIn,
}: {
  tenant: NonNullable<PageConfig["tenant"]>;
  onSignedIn: (credentials: Credentials) => void;
}) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const anonymous = new Api({});
    try {
      const { signIn } = await anonymous.mutate(UiSignIn, { input: { tenantId: tenant.id, email, password } });
      onSignedIn(signIn);
    } catch (reason) {
      setError(
        reason instanceof ApiError && reason.code === "UNAUTHENTICATED"
          ? "The email address or password is not right."
          : describe(reason),
      );
    } finally {
      anonymous.dispose();
      setBusy(false);
    }
  };

  return (
    <main class="page sign-in">
      <form class="card" onSubmit={submit} aria-labelledby="sign-in-title">
        <h1 id="sign-in-title">Sign in to {tenant.name}</h1>
        <label for="email">Email</label>
        <input
          id="email"
          type="email"
          autocomplete="username"
          required
          value={email}
          onInput={(e) => setEmail(e.currentTarget.value)}
        />
        <label for="password">Password</label>
        <input
          id="password"
          type="password"
          autocomplete="current-password"
          required
          value={password}
          onInput={(e) => setPassword(e.currentTarget.value)}
        />
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
