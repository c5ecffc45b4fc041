import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import type { Api, ConnectionState } from "./api.ts";

/** A full-page message: loading, or an error the user can act on. */
export function Notice({ kind, title, detail }: { kind: "info" | "error"; title: string; detail?: string }) {
  return (
    <main class="page">
      <div class={`notice ${kind}`} role={kind === "error" ? "alert" : "status"}>
        <p class="notice-title">{title}</p>
        {detail && <p>{detail}</p>}
      </div>
    </main>
  );
}

const LABEL: Record<ConnectionState, string> = {
  connecting: "Connecting…",
  connected: "Connected",
  offline: "Offline, reconnecting…",
};

/** The state of the page's WebSocket, kept current. */
export function useConnection(api: Api): ConnectionState {
  const [state, setState] = useState(api.state);
  useEffect(() => {
    setState(api.state);
    return api.onState(setState);
  }, [api]);
  return state;
}

/** The WebSocket's state, announced politely when it changes. */
export function ConnectionStatus({ api }: { api: Api }) {
  const state = useConnection(api);
  return (
    <span class={`connection ${state}`} role="status" data-state={state}>
      <span class="dot" aria-hidden="true" />
      {LABEL[state]}
    </span>
  );
}

/** A header bar in the theme's colors. */
export function Header({ title, children }: { title: string; children?: ComponentChildren }) {
  return (
    <header class="bar">
      <h1>{title}</h1>
      <div class="bar-side">{children}</div>
    </header>
  );
}

/** Initials in a colored circle (no images: nothing is fetched from elsewhere). */
export function Avatar({ name, online }: { name: string; online?: boolean }) {
  // The first word's initial, and the second's when it is a capitalized name ("Ada Lovelace": AL).
  const words = name.split(/\s+/).filter((word) => /^\p{L}/u.test(word));
  const second = words[1]?.[0];
  const initials = (
    (words[0]?.[0] ?? name.trim()[0] ?? "?") + (second && second === second.toUpperCase() ? second : "")
  ).toUpperCase();
  return (
    <span class="avatar" aria-hidden="true">
      {initials}
      {online !== undefined && <span class={online ? "presence online" : "presence"} />}
    </span>
  );
}

export const timeOf = (iso: string) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

/** A random id (crypto.randomUUID needs a secure context; pages may be served over plain http). */
export const randomId = () =>
  Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) => byte.toString(16).padStart(2, "0")).join("");
