import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// One page serves /ui/chat-window, /ui/roster, /ui/participants and /demo: the server sends
// dist/index.html for each (with its config and security headers), the script picks the view.
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/ui/",
  logLevel: "warn",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // Small enough to inline nothing: the CSP allows scripts, styles and images from 'self' only.
    assetsInlineLimit: 0,
    sourcemap: false,
  },
});
