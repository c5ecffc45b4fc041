/** What the server puts in the page (`<meta name="chat-config">`). */
export interface PageConfig {
  page: "chat-window" | "roster" | "participants" | "demo";
  /** The tenant named by `tenant_id`; null when it is missing, unknown or inactive. */
  tenant: { id: string; name: string; passwordSignIn: boolean; selfSignUp: boolean } | null;
  demo: boolean;
}

const PAGES = ["chat-window", "roster", "participants", "demo"] as const;

export function readConfig(): PageConfig {
  const meta = document.querySelector<HTMLMetaElement>('meta[name="chat-config"]');
  if (meta?.content) {
    try {
      return JSON.parse(meta.content) as PageConfig;
    } catch {
      // Falls through to what the address says.
    }
  }
  const last = location.pathname.split("/").filter(Boolean).at(-1) ?? "";
  const page = (PAGES as readonly string[]).includes(last) ? (last as PageConfig["page"]) : "chat-window";
  return { page, tenant: null, demo: page === "demo" };
}

/** Parameters read from the address; secrets are removed from the address bar once read. */
export interface PageParams {
  tenantId: string | null;
  userId: string | null;
  receiverId: string | null;
  groupId: string | null;
  token: string | null;
  apiKey: string | null;
  primaryColor: string;
  secondaryColor: string;
}

const SECRETS = ["token", "api_key"];

/**
 * Reads the page's parameters. `token` and `api_key` may come in the fragment (`#token=...`,
 * never sent to a server) or the query; both places are cleared from the address bar (and so
 * from history and bookmarks) as soon as they are read.
 */
export function readParams(): PageParams {
  const query = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
  const secret = (name: string) => fragment.get(name) || query.get(name) || null;
  const params: PageParams = {
    tenantId: query.get("tenant_id"),
    userId: query.get("user_id"),
    receiverId: query.get("receiver_id"),
    groupId: query.get("group_id"),
    token: secret("token"),
    apiKey: secret("api_key"),
    primaryColor: color(query.get("primary_color"), "#4F46E5"),
    secondaryColor: color(query.get("secondary_color"), "#7C3AED"),
  };
  if (SECRETS.some((name) => query.has(name) || fragment.has(name))) {
    for (const name of SECRETS) {
      query.delete(name);
      fragment.delete(name);
    }
    const search = query.toString();
    const hash = fragment.toString();
    history.replaceState(
      history.state,
      "",
      `${location.pathname}${search ? `?${search}` : ""}${hash ? `#${hash}` : ""}`,
    );
  }
  return params;
}

/** A `#rgb` / `#rrggbb` color (the `#` may be left out), else the default. */
function color(value: string | null, fallback: string): string {
  const match = /^#?([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(value?.trim() ?? "");
  return match ? `#${match[1]}` : fallback;
}

type Rgb = [number, number, number];

const rgbOf = (hex: string): Rgb => {
  const full = hex.length === 4 ? hex.replace(/[0-9a-f]/gi, (c) => c + c) : hex;
  return [1, 3, 5].map((i) => Number.parseInt(full.slice(i, i + 2), 16)) as Rgb;
};
const hexOf = (rgb: Rgb) => `#${rgb.map((c) => Math.round(c).toString(16).padStart(2, "0")).join("")}`;

/** WCAG relative luminance. */
function luminance([r, g, b]: Rgb): number {
  const lin = (c: number) => (c / 255 <= 0.03928 ? c / 255 / 12.92 : ((c / 255 + 0.055) / 1.055) ** 2.4);
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}
const contrast = (a: Rgb, b: Rgb) => {
  const [x, y] = [luminance(a), luminance(b)].sort((m, n) => n - m) as [number, number];
  return (x + 0.05) / (y + 0.05);
};
const WHITE: Rgb = [255, 255, 255];
const INK: Rgb = [17, 24, 39];

/** The color darkened just enough to read as text on white (WCAG AA, 4.5:1). */
function inkOf(hex: string): string {
  let rgb = rgbOf(hex);
  for (let i = 0; i < 40 && contrast(rgb, WHITE) < 4.5; i++) rgb = rgb.map((c) => c * 0.93) as Rgb;
  return hexOf(rgb);
}

/** Dark ink or white, whichever reads better on every one of `backgrounds`. */
function textOn(...backgrounds: string[]): string {
  const worst = (text: Rgb) => Math.min(...backgrounds.map((hex) => contrast(text, rgbOf(hex))));
  return worst(INK) > worst(WHITE) ? hexOf(INK) : "#ffffff";
}

/**
 * Applies the theme colors as CSS custom properties (CSSOM: allowed by the page's CSP), with
 * text colors derived from them that stay readable whatever the colors are.
 */
export function applyTheme(params: PageParams): void {
  const style = document.documentElement.style;
  const { primaryColor: primary, secondaryColor: secondary } = params;
  style.setProperty("--primary", primary);
  style.setProperty("--on-primary", textOn(primary));
  style.setProperty("--primary-ink", inkOf(primary));
  style.setProperty("--secondary", secondary);
  style.setProperty("--on-secondary", textOn(secondary));
  style.setProperty("--secondary-ink", inkOf(secondary));
  // The header runs from one color to the other: its text reads on both.
  style.setProperty("--on-bar", textOn(primary, secondary));
}
