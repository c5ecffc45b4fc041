/**
 * The embeddable UI pages (/ui/chat-window, /ui/roster, /ui/participants, /demo) in a real
 * headless Chromium (Debian's, driven by playwright-core), against a real server: on the
 * embedded default, and on PostgreSQL + Redis with each user's page on another instance.
 * Every request that does not go to the servers is refused and recorded; the pages' CSP
 * violations are recorded too; both must stay empty. Screenshots go to test/artifacts/.
 */
import { mkdir } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, type BrowserContext, chromium, type Frame, type FrameLocator, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect } from "vitest";
import { graphql } from "./generated/gql.ts";
import { type BackendName, startServer, type TestServer } from "./helpers/backends.ts";
import { CHROMIUM, CHROMIUM_ARGS } from "./helpers/browser.ts";
import { ok } from "./helpers/client.ts";
import { createUserWithToken, type TestTenant, type TestUser } from "./helpers/fixtures.ts";
import { test, useServer } from "./helpers/world.ts";
import { SignUp } from "./operations/accounts.ts";
import { AddMembers, CreateGroup } from "./operations/conversations.ts";
import { AddReaction, EditMessage, SendMessage } from "./operations/messages.ts";
import { CreateTenant } from "./operations/tenants.ts";

const artifacts = fileURLToPath(new URL("./artifacts/", import.meta.url));

const UpdateEmbedding = graphql(`
  mutation UpdateEmbedding($input: UpdateTenantInput!) {
    updateTenant(input: $input) {
      id
      embedOrigins
      selfSignUp
    }
  }
`);

let browser: Browser;
beforeAll(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  await mkdir(artifacts, { recursive: true });
});
afterAll(async () => {
  await browser?.close();
});

/** A browser context (one user's browser) that may reach only `allowed` origins; what else it asks for is recorded. */
async function userBrowser(allowed: string[], outside: string[], viewport = { width: 420, height: 720 }) {
  const context = await browser.newContext({ viewport });
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (allowed.some((origin) => url.startsWith(origin)) || url.startsWith("data:")) return route.continue();
    outside.push(url);
    return route.abort();
  });
  // CSP violations of every page and frame, kept on the window for the test to read.
  await context.addInitScript(() => {
    const seen: string[] = [];
    (window as unknown as { cspViolations: string[] }).cspViolations = seen;
    document.addEventListener("securitypolicyviolation", (event) =>
      seen.push(`${event.violatedDirective} ${event.blockedURI}`),
    );
  });
  return context;
}

const violations = (target: Page | Frame) =>
  target.evaluate(() => (window as unknown as { cspViolations: string[] }).cspViolations);

/** A page address with the token in the fragment (never sent to the server). */
function pageUrl(server: string, path: string, query: Record<string, string>, token?: string): string {
  const base = server.replace(/\/graphql$/, "");
  return `${base}${path}?${new URLSearchParams(query)}${token ? `#${new URLSearchParams({ token })}` : ""}`;
}

const composer = (page: Page | FrameLocator) => page.getByRole("textbox", { name: "Message", exact: true });
const log = (page: Page | FrameLocator) => page.getByRole("log");

async function send(page: Page, text: string) {
  await composer(page).fill(text);
  await composer(page).press("Enter");
  await expect.poll(() => composer(page).inputValue()).toBe("");
}

function pair(tenant: TestTenant): [TestUser, TestUser, TestUser] {
  const [alice, bob, carol] = tenant.users;
  if (!alice || !bob || !carol) throw new Error("the tenant needs three users");
  return [alice, bob, carol];
}

describe.each<BackendName>(["pglite", "postgres+redis"])("embeddable UI on %s", (backend) => {
  const world = useServer(backend);
  // On PostgreSQL + Redis, Bob's pages are served by a second instance on the same database.
  let second: TestServer | undefined;
  const bobsServer = () => second?.url ?? world.url;
  beforeAll(async () => {
    if (backend === "postgres+redis") second = await startServer(world.database);
  });
  afterAll(async () => {
    await second?.stop();
  });
  const origins = () => [world.url, bobsServer()].map((url) => new URL(url).origin);

  test("two users chat live: messages, typing, read state, edits, reactions, deletes, markup as text", async ({
    tenant,
  }) => {
    const [alice, bob] = pair(tenant);
    const outside: string[] = [];
    const contexts: BrowserContext[] = [];
    try {
      contexts.push(await userBrowser(origins(), outside), await userBrowser(origins(), outside));
      const [aliceBrowser, bobBrowser] = contexts as [BrowserContext, BrowserContext];
      const a = await aliceBrowser.newPage();
      const b = await bobBrowser.newPage();
      const colors = { primary_color: "#FF5733", secondary_color: "#1D4ED8" };
      await a.goto(
        pageUrl(
          world.url,
          "/ui/chat-window",
          { tenant_id: tenant.id, user_id: alice.id, receiver_id: bob.id, ...colors },
          alice.token,
        ),
      );
      // Without a token Bob's page asks him to sign in (the tenant allows passwords); then his
      // token comes in the query (as the seed's links have it) and is cleared from the address
      // bar, as Alice's fragment was.
      await b.goto(
        pageUrl(bobsServer(), "/ui/chat-window", { tenant_id: tenant.id, user_id: bob.id, receiver_id: alice.id }),
      );
      await b.getByRole("heading", { name: /Sign in to/ }).waitFor();
      await b.goto(
        pageUrl(bobsServer(), "/ui/chat-window", {
          tenant_id: tenant.id,
          user_id: bob.id,
          receiver_id: alice.id,
          token: bob.token,
        }),
      );
      expect(a.url()).not.toContain("token");
      expect(b.url()).not.toContain("token");
      for (const page of [a, b]) {
        await page.getByRole("status").filter({ hasText: "Connected" }).waitFor();
      }
      await expect.poll(() => a.getByRole("heading", { level: 1 }).textContent()).toBe("Bob");

      // The theme: the header is painted in the page's primary color.
      expect(await a.evaluate(() => getComputedStyle(document.documentElement).getPropertyValue("--primary"))).toBe(
        "#FF5733",
      );

      await send(a, "Hello Bob");
      await log(b).getByText("Hello Bob").waitFor();

      // Bob typing shows in Alice's window; Bob's window has read the message, so Alice sees it seen.
      await composer(b).pressSequentially("Hi Ali", { delay: 30 });
      await a.getByText("Bob is typing…").waitFor();
      await a.getByText("Seen by Bob").waitFor();
      await composer(b).press("Enter");
      await log(a).getByText("Hi Ali").waitFor();
      await expect.poll(() => a.getByText("Bob is typing…").count()).toBe(0);

      // Markup in a body stays text: nothing runs, no element is made of it.
      const hostile = `<img src=x onerror="window.pwned=1"><script>window.pwned=1</script><b>bold</b>`;
      await send(a, hostile);
      await log(b).getByText(hostile).waitFor();
      expect(await b.evaluate(() => (window as unknown as { pwned?: number }).pwned)).toBeUndefined();
      expect(await log(b).locator("img, script, b").count()).toBe(0);

      // Alice edits her first message; Bob sees the new text and the mark.
      const first = log(a).getByRole("listitem").filter({ hasText: "Hello Bob" });
      await first.getByRole("button", { name: "Edit" }).click();
      const editor = a.getByRole("textbox", { name: "Edit message" });
      await editor.fill("Hello Bob, edited");
      await editor.press("Enter");
      await log(b).getByText("Hello Bob, edited").waitFor();
      await log(b).getByRole("listitem").filter({ hasText: "Hello Bob, edited" }).getByText("(edited)").waitFor();

      // Bob reacts; Alice sees the count.
      const bobsView = log(b).getByRole("listitem").filter({ hasText: "Hello Bob, edited" });
      await bobsView.getByRole("button", { name: /^React to/ }).click();
      await bobsView.getByRole("button", { name: "React with 👍" }).click();
      await log(a).getByRole("button", { name: "👍 1" }).waitFor();

      await a.mouse.move(0, 0);
      await a.screenshot({ path: join(artifacts, `ui-chat-window-${backend}.png`) });

      // Alice deletes the hostile message; Bob sees it gone.
      const hostileOwn = log(a).getByRole("listitem").filter({ hasText: "<script>" });
      await hostileOwn.getByRole("button", { name: "Delete" }).click();
      await hostileOwn.getByRole("button", { name: "Yes, delete" }).click();
      await expect.poll(() => log(b).getByText(hostile).count()).toBe(0);
      await log(b).getByText("This message was deleted.").waitFor();

      await b.mouse.move(0, 0);
      await b.screenshot({ path: join(artifacts, `ui-chat-window-bob-${backend}.png`) });
      expect(await violations(a)).toEqual([]);
      expect(await violations(b)).toEqual([]);
      expect(outside, "requests that left the servers").toEqual([]);
    } finally {
      for (const context of contexts) await context.close();
    }
  }, 120_000);

  test("the roster searches people and groups and opens a chat; participants follow members live", async ({
    tenant,
  }) => {
    const [alice, bob, carol] = pair(tenant);
    const { createGroup } = await ok(
      world.url,
      CreateGroup,
      { input: { name: "Design review", memberIds: [bob.id] } },
      { token: alice.token },
    );
    const outside: string[] = [];
    const context = await userBrowser(origins(), outside);
    try {
      const roster = await context.newPage();
      await roster.goto(pageUrl(bobsServer(), "/ui/roster", { tenant_id: tenant.id, user_id: bob.id }, bob.token));
      await roster.getByRole("button", { name: /Design review/ }).waitFor();
      await roster.getByRole("button", { name: /Carol/ }).waitFor();
      await roster.screenshot({ path: join(artifacts, `ui-roster-${backend}.png`) });
      await roster.getByRole("searchbox", { name: "Search people and groups" }).fill("caro");
      await expect.poll(() => roster.getByRole("button", { name: /Design review/ }).count()).toBe(0);
      await roster.getByRole("button", { name: /Carol/ }).click();
      await expect.poll(() => roster.getByRole("heading", { level: 1 }).textContent()).toBe("Carol");
      await send(roster, "Hi Carol, from the roster");
      await log(roster).getByText("Hi Carol, from the roster").waitFor();
      await roster.getByRole("button", { name: "Back" }).click();
      await roster.getByRole("searchbox", { name: "Search people and groups" }).waitFor();

      const participants = await context.newPage();
      await participants.goto(
        pageUrl(world.url, "/ui/participants", { tenant_id: tenant.id, group_id: createGroup.id }, alice.token),
      );
      const list = participants.getByRole("list", { name: "Participants" });
      await list.getByText("Bob", { exact: true }).waitFor();
      expect(await participants.getByText("2 participants").count()).toBe(1);
      await ok(world.url, AddMembers, { conversationId: createGroup.id, userIds: [carol.id] }, { token: alice.token });
      await list.getByText("Carol", { exact: true }).waitFor();
      await participants.getByText("3 participants").waitFor();
      // Members may see emails (users:read): Carol's shows.
      await expect
        .poll(() => list.getByRole("listitem").filter({ hasText: "Carol" }).textContent())
        .toMatch(/@example\.com/);
      await participants.screenshot({ path: join(artifacts, `ui-participants-${backend}.png`) });
      expect(await violations(roster)).toEqual([]);
      expect(await violations(participants)).toEqual([]);
      expect(outside).toEqual([]);
    } finally {
      await context.close();
    }
  }, 120_000);

  test("bad tokens, another user's token and a missing conversation each show a clear message", async ({ tenant }) => {
    const [alice, bob] = pair(tenant);
    const context = await userBrowser(origins(), []);
    try {
      const page = await context.newPage();
      await page.goto(
        pageUrl(world.url, "/ui/chat-window", { tenant_id: tenant.id, receiver_id: bob.id }, "not-a-real-token"),
      );
      await expect.poll(() => page.getByRole("alert").textContent()).toContain("not valid or has expired");
      expect(page.url()).not.toContain("not-a-real-token");
      await page.screenshot({ path: join(artifacts, `ui-bad-token-${backend}.png`) });

      await page.goto(
        pageUrl(
          world.url,
          "/ui/chat-window",
          { tenant_id: tenant.id, user_id: bob.id, receiver_id: bob.id },
          alice.token,
        ),
      );
      await expect.poll(() => page.getByRole("alert").textContent()).toContain("another user than the page's user_id");

      await page.goto(pageUrl(world.url, "/ui/chat-window", { tenant_id: tenant.id }, alice.token));
      await expect.poll(() => page.getByRole("alert").textContent()).toContain("needs a receiver_id or a group_id");

      // Ids in capitals are the same ids.
      await page.goto(
        pageUrl(
          world.url,
          "/ui/chat-window",
          { tenant_id: tenant.id.toUpperCase(), user_id: alice.id.toUpperCase(), receiver_id: bob.id },
          alice.token,
        ),
      );
      await composer(page).waitFor();
    } finally {
      await context.close();
    }
  }, 60_000);
});

describe("embeddable UI across a server restart on postgres+redis", () => {
  const world = useServer("postgres+redis");

  test("after its server comes back, Bob's window shows the messages, edits and reactions it missed", async ({
    tenant,
  }) => {
    const [alice, bob] = pair(tenant);
    const { createGroup } = await ok(
      world.url,
      CreateGroup,
      { input: { name: "Restarts", memberIds: [bob.id] } },
      { token: alice.token },
    );
    const groupId = createGroup.id;
    const { sendMessage: first } = await ok(
      world.url,
      SendMessage,
      { input: { conversationId: groupId, body: "before the restart" } },
      { token: alice.token },
    );
    // Bob's page is served by an instance of its own, which goes away and comes back on the same port.
    let bobs = await startServer(world.database);
    const port = Number(new URL(bobs.url).port);
    const context = await userBrowser(
      [world.url, bobs.url].map((url) => new URL(url).origin),
      [],
    );
    try {
      const page = await context.newPage();
      await page.goto(pageUrl(bobs.url, "/ui/chat-window", { tenant_id: tenant.id, group_id: groupId }, bob.token));
      await log(page).getByText("before the restart").waitFor();
      await page.getByRole("status").filter({ hasText: "Connected" }).waitFor();

      await bobs.stop();
      await expect.poll(() => page.locator("[data-state]").getAttribute("data-state")).not.toBe("connected");
      await ok(world.url, EditMessage, { id: first.id, body: "before the restart, edited" }, { token: alice.token });
      await ok(world.url, AddReaction, { messageId: first.id, emoji: "🎉" }, { token: alice.token });
      await ok(
        world.url,
        SendMessage,
        { input: { conversationId: groupId, body: "while Bob's server was away" } },
        { token: alice.token },
      );
      bobs = await startServer(world.database, {}, { port });

      await page.getByRole("status").filter({ hasText: "Connected" }).waitFor({ timeout: 30_000 });
      await log(page).getByText("while Bob's server was away").waitFor();
      await log(page).getByText("before the restart, edited").waitFor();
      await log(page).getByRole("button", { name: "🎉 1" }).waitFor();
      expect(await log(page).getByText("while Bob's server was away").count()).toBe(1);
    } finally {
      await context.close();
      await bobs.stop().catch(() => {});
    }
  }, 90_000);
});

describe("embeddable UI pages on pglite", () => {
  const world = useServer("pglite");
  const origin = () => new URL(world.url).origin;

  test("history pages back; the window works by keyboard and at 320 px", async ({ tenant }) => {
    const [alice, bob] = pair(tenant);
    const { createGroup } = await ok(
      world.url,
      CreateGroup,
      { input: { name: "Long history", memberIds: [bob.id] } },
      { token: alice.token },
    );
    for (let i = 1; i <= 35; i++) {
      await ok(
        world.url,
        SendMessage,
        { input: { conversationId: createGroup.id, body: `history ${i}` } },
        { token: i % 2 ? alice.token : bob.token },
      );
    }
    const context = await userBrowser([origin()], [], { width: 320, height: 640 });
    try {
      const page = await context.newPage();
      await page.goto(
        pageUrl(
          world.url,
          "/ui/chat-window",
          { tenant_id: tenant.id, user_id: bob.id, group_id: createGroup.id },
          bob.token,
        ),
      );
      await log(page).getByText("history 35").waitFor();
      expect(await log(page).getByText("history 5", { exact: true }).count()).toBe(0);
      await page.getByRole("button", { name: "Load earlier messages" }).click();
      await log(page).getByText("history 1", { exact: true }).waitFor();
      await expect.poll(() => page.getByRole("button", { name: "Load earlier messages" }).count()).toBe(0);
      // Nothing wider than the frame.
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(320);

      // Keyboard only: Tab reaches the message box, Enter sends.
      await page.keyboard.press("Tab");
      for (let i = 0; i < 200; i++) {
        if (await composer(page).evaluate((element) => element === document.activeElement)) break;
        await page.keyboard.press("Tab");
      }
      await page.keyboard.type("sent by keyboard");
      await page.keyboard.press("Enter");
      await log(page).getByText("sent by keyboard").waitFor();
      await page.screenshot({ path: join(artifacts, "ui-chat-window-320.png") });
      expect(await violations(page)).toEqual([]);
    } finally {
      await context.close();
    }
  }, 120_000);

  test("a send whose answer is lost keeps the draft and says so; sending again does not double it", async ({
    tenant,
  }) => {
    const [alice, bob] = pair(tenant);
    const context = await userBrowser([origin()], []);
    try {
      const page = await context.newPage();
      await page.goto(
        pageUrl(
          world.url,
          "/ui/chat-window",
          { tenant_id: tenant.id, user_id: alice.id, receiver_id: bob.id },
          alice.token,
        ),
      );
      await composer(page).waitFor();
      // The first send reaches the server, but its answer is lost on the way back.
      let dropped = 0;
      await page.route("**/graphql", async (route) => {
        if (dropped === 0 && route.request().postData()?.includes("UiSendMessage")) {
          dropped++;
          await route.fetch();
          return route.abort("connectionreset");
        }
        return route.fallback();
      });
      await composer(page).fill("worth keeping");
      await composer(page).press("Enter");
      await expect.poll(() => page.getByRole("alert").textContent()).toContain("cannot be reached");
      expect(await composer(page).inputValue()).toBe("worth keeping");
      await composer(page).press("Enter");
      await expect.poll(() => composer(page).inputValue()).toBe("");
      await log(page).getByText("worth keeping").waitFor();
      expect(dropped).toBe(1);
      await expect.poll(() => log(page).getByText("worth keeping").count()).toBe(1);
    } finally {
      await context.close();
    }
  }, 60_000);

  test("without a token the chat window signs in with a password", async ({ tenant }) => {
    await ok(world.url, UpdateEmbedding, { input: { auth: { selfSignUp: true } } }, { apiKey: tenant.apiKey });
    const email = `dana-${Date.now()}@example.com`;
    const password = "correct horse battery staple";
    await ok(world.url, SignUp, { input: { tenantId: tenant.id, email, password, name: "Dana" } });
    const [alice] = pair(tenant);
    const context = await userBrowser([origin()], []);
    try {
      const page = await context.newPage();
      await page.goto(pageUrl(world.url, "/ui/chat-window", { tenant_id: tenant.id, receiver_id: alice.id }));
      await page.getByRole("heading", { name: /Sign in to/ }).waitFor();
      await page.getByLabel("Email").fill(email);
      await page.getByLabel("Password").fill("wrong password");
      await page.getByRole("button", { name: "Sign in" }).click();
      await expect.poll(() => page.getByRole("alert").textContent()).toContain("not right");
      await page.screenshot({ path: join(artifacts, "ui-sign-in.png") });
      await page.getByLabel("Password").fill(password);
      await page.getByRole("button", { name: "Sign in" }).click();
      await send(page, "Hello from Dana");
      await log(page).getByText("Hello from Dana").waitFor();
    } finally {
      await context.close();
    }
  }, 60_000);

  test("the demo creates users with the API key and shows every component; the key leaves the address bar", async ({
    tenant,
  }) => {
    const outside: string[] = [];
    const context = await userBrowser([origin()], outside, { width: 1400, height: 900 });
    try {
      const page = await context.newPage();
      await page.goto(pageUrl(world.url, "/demo", { api_key: tenant.apiKey, primary_color: "#0F766E" }));
      expect(page.url()).not.toContain(tenant.apiKey);
      await page.getByRole("button", { name: "Create demo users" }).click();
      const alice = page.frameLocator('iframe[title="Chat window for Alice"]');
      const bob = page.frameLocator('iframe[title="Chat window for Bob"]');
      await composer(alice).waitFor();
      await composer(bob).waitFor();
      await composer(alice).fill("Hello from the demo");
      await composer(alice).press("Enter");
      await log(bob).getByText("Hello from the demo").waitFor();
      await page.getByRole("button", { name: "Add Carol to the group" }).click();
      await page.frameLocator('iframe[title="Participants of the demo group"]').getByText("3 participants").waitFor();
      await page
        .frameLocator('iframe[title="Roster for Bob"]')
        .getByRole("button", { name: /Demo group/ })
        .waitFor();
      await page.screenshot({ path: join(artifacts, "ui-demo.png") });
      expect(await violations(page)).toEqual([]);
      expect(outside).toEqual([]);
    } finally {
      await context.close();
    }
  }, 120_000);

  test("frames: another site may embed the chat only once the tenant lists its origin", async ({ tenant }) => {
    const [alice, bob] = pair(tenant);
    const src = pageUrl(world.url, "/ui/chat-window", { tenant_id: tenant.id, receiver_id: bob.id }, alice.token);
    // The embedding site: a page on another origin (another port) that frames the chat window.
    const site = createServer((_request, response) => {
      response.setHeader("content-type", "text/html; charset=utf-8");
      response.end(
        `<!doctype html><title>Embedder</title><iframe title="chat" src="${src.replace(/&/g, "&amp;").replace(/"/g, "&quot;")}" width="400" height="500"></iframe>`,
      );
    });
    await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
    const embedder = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
    const context = await userBrowser([origin(), embedder], []);
    try {
      const page = await context.newPage();
      const framed = async () => {
        await page.goto(`${embedder}/app`);
        return page
          .frameLocator('iframe[title="chat"]')
          .getByRole("textbox", { name: "Message", exact: true })
          .waitFor({ timeout: 5_000 })
          .then(
            () => true,
            () => false,
          );
      };
      expect(await framed(), "embedded without being allowed").toBe(false);
      await ok(world.url, UpdateEmbedding, { input: { embedOrigins: [embedder] } }, { apiKey: tenant.apiKey });
      expect(await framed(), "embedded once allowed").toBe(true);
      await ok(world.url, UpdateEmbedding, { input: { embedOrigins: [] } }, { apiKey: tenant.apiKey });
      expect(await framed(), "embedded after the origin was removed").toBe(false);
    } finally {
      await context.close();
      site.close();
    }
  }, 60_000);
});

describe("embeddable UI with trusted documents on", () => {
  // The client kit's manifest as TRUSTED_DOCUMENTS: the pages' own operations are trusted from
  // the UI build's manifest, and sent by hash.
  const kitManifest = fileURLToPath(new URL("../client/src/generated/persisted-documents.json", import.meta.url));
  const adminKey = "platform-admin-key-for-the-ui-test";
  const world = useServer("pglite", { trustedDocuments: kitManifest, platformAdminKey: adminKey });
  const origin = () => new URL(world.url).origin;

  test("the chat window and the roster work; a document of the user's own is refused", async () => {
    const { createTenant } = await ok(
      world.url,
      CreateTenant,
      { input: { name: "Trusted UI" } },
      { headers: { "x-platform-admin-key": adminKey } },
    );
    const alice = await createUserWithToken(world.url, createTenant.apiKey, "Alice");
    const bob = await createUserWithToken(world.url, createTenant.apiKey, "Bob");
    const tenant = { id: createTenant.tenant.id };
    const refused = await fetch(world.url, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${alice.token}` },
      body: JSON.stringify({ query: "{ viewer { isService } }" }),
    });
    expect(((await refused.json()) as { errors: { extensions: { code: string } }[] }).errors[0]?.extensions.code).toBe(
      "FORBIDDEN",
    );
    const context = await userBrowser([origin()], []);
    try {
      const page = await context.newPage();
      await page.goto(pageUrl(world.url, "/ui/roster", { tenant_id: tenant.id, user_id: alice.id }, alice.token));
      await page.getByRole("button", { name: /Bob/ }).click();
      await send(page, "sent under trusted documents");
      await log(page).getByText("sent under trusted documents").waitFor();
      // Bob's copy came through the live subscription as well.
      const bobs = await context.newPage();
      await bobs.goto(
        pageUrl(world.url, "/ui/chat-window", { tenant_id: tenant.id, receiver_id: alice.id }, bob.token),
      );
      await log(bobs).getByText("sent under trusted documents").waitFor();
      await send(bobs, "and a reply");
      await log(page).getByText("and a reply").waitFor();
    } finally {
      await context.close();
    }
  }, 60_000);
});
