/**
 * GraphiQL in a real headless Chromium (Debian's, driven by playwright-core), with every
 * request outside the server refused: the page, its scripts, styles and editor workers come
 * from the server itself. A query runs with the headers tab's Authorization, and a live
 * messageAdded subscription receives a message sent meanwhile, its connection_init carrying
 * the same header. Runs once, on the embedded backend: it tests the page, not a backend.
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect } from "vitest";
import { CHROMIUM, CHROMIUM_ARGS } from "./helpers/browser.ts";
import { ok } from "./helpers/client.ts";
import type { TestTenant } from "./helpers/fixtures.ts";
import { test, useServer } from "./helpers/world.ts";
import { CreateGroup } from "./operations/conversations.ts";
import { SendMessage } from "./operations/messages.ts";

const artifacts = fileURLToPath(new URL("./artifacts/", import.meta.url));

describe("GraphiQL in Chromium on pglite", () => {
  const world = useServer("pglite");
  let profile: string;
  let context: BrowserContext;
  const outside: string[] = [];

  beforeAll(async () => {
    profile = await mkdtemp(join(tmpdir(), "chat-chromium-"));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
    });
    // Anything not from the server (a CDN, fonts) is recorded and refused, as offline.
    await context.route("**/*", (route) => {
      const url = route.request().url();
      if (url.startsWith(world.url.replace(/\/graphql$/, "")) || url.startsWith("blob:") || url.startsWith("data:")) {
        return route.continue();
      }
      outside.push(url);
      return route.abort();
    });
    await mkdir(artifacts, { recursive: true });
  });
  afterAll(async () => {
    await context?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  /** Replaces the text of the Monaco editor inside `selector`, as a user pasting it would. */
  async function fill(page: Page, selector: string, text: string): Promise<void> {
    await page.locator(`${selector} .monaco-editor:visible`).first().click();
    await page.keyboard.press("ControlOrMeta+A");
    await page.keyboard.press("Delete");
    await page.keyboard.insertText(text);
  }

  /** The response pane's text (Monaco renders spaces as no-break spaces). */
  const response = async (page: Page) =>
    (await page.locator(".graphiql-response").first().innerText()).replace(/\u00a0/g, " ");

  test("runs a query and a live subscription with the headers tab's credentials, offline", async ({ tenant }) => {
    const [alice, bob] = tenant.users;
    if (!alice || !bob) throw new Error("the tenant needs two users");
    const { createGroup } = await ok(
      world.url,
      CreateGroup,
      { input: { name: "GraphiQL", memberIds: [bob.id] } },
      { token: alice.token },
    );
    const page = await context.newPage();
    try {
      await runInGraphiQL(page, tenant, createGroup.id);
    } finally {
      // What the page showed last, whether the test passed or not.
      await page.screenshot({ path: join(artifacts, "graphiql.png") }).catch(() => {});
      await page.close();
    }
  }, 150_000);

  async function runInGraphiQL(page: Page, tenant: TestTenant, conversationId: string) {
    const [alice, bob] = tenant.users;
    if (!alice || !bob) throw new Error("the tenant needs two users");
    const consoleErrors: string[] = [];
    page.on("pageerror", (error) => consoleErrors.push(error.message));
    await page.goto(world.url, { waitUntil: "load" });
    expect(await page.title()).toBe("Chat API");
    await page.locator(".graphiql-query-editor .monaco-editor").first().waitFor({ timeout: 60_000 });

    // The headers tab: Bob's token.
    await page.getByText("Headers", { exact: true }).click();
    await fill(page, ".graphiql-editor-tool", JSON.stringify({ Authorization: `Bearer ${bob.token}` }));

    await fill(page, ".graphiql-query-editor", "query Me { viewer { user { name } tenant { id } } }");
    await page.locator(".graphiql-execute-button").click();
    await expect.poll(() => response(page), { timeout: 30_000 }).toContain('"name": "Bob"');
    expect(await response(page)).toContain(tenant.id);

    // A live subscription: GraphiQL opens a WebSocket whose connection_init carries the header.
    await fill(
      page,
      ".graphiql-query-editor",
      `subscription Live { messageAdded(conversationId: "${conversationId}") { body sender { name } } }`,
    );
    await page.locator(".graphiql-execute-button").click();
    const body = `hello from Alice ${Date.now()}`;
    await expect
      .poll(
        async () => {
          // Sent until one arrives: the subscription may not be live at the first.
          await ok(world.url, SendMessage, { input: { conversationId, body } }, { token: alice.token });
          return response(page);
        },
        { timeout: 30_000, interval: 500 },
      )
      .toContain(body);
    expect(await response(page)).toContain('"name": "Alice"');
    await page.screenshot({ path: join(artifacts, "graphiql-subscription.png") });

    expect(outside, "requests that left the server").toEqual([]);
    expect(consoleErrors).toEqual([]);
  }
});
