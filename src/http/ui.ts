/**
 * The embeddable UI pages: /ui/chat-window, /ui/roster and /ui/participants (shown in
 * customers' frames) and /demo, all one built page (UI_DIST/index.html) that picks its
 * component from the path, and the built assets it loads from /ui/assets/. Each page gets
 * the configuration it needs in `<meta name="chat-config">` and a strict
 * Content-Security-Policy whose frame-ancestors are the tenant's embedOrigins.
 */
import { readFile, stat } from "node:fs/promises";
import { extname, join } from "node:path";
import type { AppDeps } from "../context.ts";
import { isUuid } from "../services/validation.ts";
import { jsonError } from "./respond.ts";
import type { Route } from "./routes.ts";

export type UiPage = "chat-window" | "roster" | "participants" | "demo";

/** What the page reads from its `<meta name="chat-config">`, as JSON. */
export interface UiPageConfig {
  page: UiPage;
  /** The tenant of the `tenant_id` query parameter; null when absent, malformed, unknown or inactive. */
  tenant: { id: string; name: string; passwordSignIn: boolean; selfSignUp: boolean } | null;
  /** Whether the server serves /demo (DEMO). */
  demo: boolean;
}

const CONTENT_TYPES: Record<string, string> = {
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".webp": "image/webp",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
  ".woff": "font/woff",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
};

/** A built asset's name: no directories, no dot files (so no `..`). */
const ASSET_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

const BASE_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
];

/** The page's Content-Security-Policy: frame-ancestors are the server's own origin and the given origins (validated on input). */
export function contentSecurityPolicy(embedOrigins: readonly string[], demo = false): string {
  const ancestors = embedOrigins.includes("*") ? "*" : ["'self'", ...embedOrigins].join(" ");
  return [...BASE_POLICY, ...(demo ? ["frame-src 'self'"] : []), `frame-ancestors ${ancestors}`].join("; ");
}

/** Text safe inside a double- or single-quoted HTML attribute. */
export function escapeAttribute(text: string): string {
  return text.replace(
    /[&"'<>]/g,
    (char) => ({ "&": "&amp;", '"': "&quot;", "'": "&#39;", "<": "&lt;", ">": "&gt;" })[char] as string,
  );
}

/** The page with its configuration inserted right before `</head>` (at the start when it has none). */
export function withConfig(html: string, config: UiPageConfig): string {
  const meta = `<meta name="chat-config" content="${escapeAttribute(JSON.stringify(config))}">`;
  const head = html.search(/<\/head>/i);
  return head === -1 ? meta + html : `${html.slice(0, head)}${meta}${html.slice(head)}`;
}

interface CachedFile {
  body: Uint8Array<ArrayBuffer>;
  mtimeMs: number;
  size: number;
}

/**
 * Files of the build, kept in memory once read (a build is small), and read again when they
 * change on disk (a rebuild while the server runs). A missing file is not remembered.
 */
class BuildFiles {
  private readonly files = new Map<string, CachedFile>();

  constructor(private readonly dir: string) {}

  /** The file's bytes, or null when it does not exist. */
  async read(relative: string): Promise<Uint8Array<ArrayBuffer> | null> {
    const path = join(this.dir, relative);
    const info = await stat(path).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT" || error.code === "ENOTDIR") return null;
      throw error;
    });
    if (!info?.isFile()) {
      this.files.delete(relative);
      return null;
    }
    const cached = this.files.get(relative);
    if (cached && cached.mtimeMs === info.mtimeMs && cached.size === info.size) return cached.body;
    const body = new Uint8Array(await readFile(path));
    this.files.set(relative, { body, mtimeMs: info.mtimeMs, size: info.size });
    return body;
  }
}

const notBuilt = () => jsonError(503, "SERVICE_UNAVAILABLE", "The UI is not built: run `npm run build:ui`");

async function pageTenant(
  deps: AppDeps,
  tenantId: string | null,
): Promise<{
  config: UiPageConfig["tenant"];
  embedOrigins: string[];
}> {
  if (!tenantId || !isUuid(tenantId)) return { config: null, embedOrigins: [] };
  const tenant = await deps.db.prisma.tenant.findUnique({
    where: { id: tenantId.toLowerCase() },
    select: { id: true, name: true, active: true, signInMethods: true, selfSignUp: true, embedOrigins: true },
  });
  if (!tenant?.active) return { config: null, embedOrigins: [] };
  return {
    config: {
      id: tenant.id,
      name: tenant.name,
      passwordSignIn: tenant.signInMethods.includes("PASSWORD"),
      selfSignUp: tenant.selfSignUp,
    },
    embedOrigins: tenant.embedOrigins,
  };
}

/**
 * `GET|HEAD /ui/assets/<name>`: the build's assets, cached for good (their names carry a
 * hash of their content). `GET /ui/{chat-window,roster,participants}?tenant_id=<id>` and
 * `GET /demo` (DEMO): the page, never cached, with its configuration and policy.
 */
export function uiRoutes(deps: AppDeps): Route[] {
  const files = new BuildFiles(deps.config.uiDist);
  const assets: Route = {
    methods: ["GET", "HEAD"],
    path: /^\/ui\/assets\/(.*)$/,
    async handle(request, match) {
      const name = match[1] as string;
      const body = ASSET_NAME.test(name) ? await files.read(join("assets", name)) : null;
      if (!body) return jsonError(404, "NOT_FOUND", "No such file");
      return new Response(request.method === "HEAD" ? null : body, {
        headers: {
          "content-type": CONTENT_TYPES[extname(name).toLowerCase()] ?? "application/octet-stream",
          "content-length": String(body.byteLength),
          "cache-control": "public, max-age=31536000, immutable",
          "x-content-type-options": "nosniff",
        },
      });
    },
  };
  const pages: Route = {
    methods: ["GET", "HEAD"],
    path: /^\/(?:ui\/(chat-window|roster|participants)|(demo))$/,
    async handle(request, match) {
      const page = (match[1] ?? match[2]) as UiPage;
      const demo = page === "demo";
      if (demo && !deps.config.demo) return jsonError(404, "NOT_FOUND", "Not found");
      const html = await files.read("index.html");
      if (!html) return notBuilt();
      // The demo page takes an API key in its own parameters and needs no tenant from the server.
      const tenant = demo
        ? { config: null, embedOrigins: [] }
        : await pageTenant(deps, new URL(request.url).searchParams.get("tenant_id"));
      const body = withConfig(new TextDecoder().decode(html), {
        page,
        tenant: tenant.config,
        demo: deps.config.demo,
      });
      return new Response(request.method === "HEAD" ? null : body, {
        headers: {
          "content-type": "text/html; charset=utf-8",
          "cache-control": "no-store",
          "referrer-policy": "no-referrer",
          "x-content-type-options": "nosniff",
          "content-security-policy": contentSecurityPolicy(tenant.embedOrigins, demo),
          // Only where nothing else may frame the page: on /ui/* it would override frame-ancestors in some browsers.
          ...(demo ? { "x-frame-options": "SAMEORIGIN" } : {}),
        },
      });
    },
  };
  return [assets, pages];
}
