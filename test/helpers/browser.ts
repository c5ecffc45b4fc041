/**
 * Debian's Chromium for the browser tests (playwright-core drives it; it cannot download one
 * offline), with the flags that keep it from reaching out: this machine's network is closed.
 */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
