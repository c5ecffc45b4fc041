import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { backends, startServer } from "../helpers/backends.ts";
import { ok } from "../helpers/client.ts";
import { SignUp, VerifyEmail } from "../operations/accounts.ts";
import { bearer, codeOf, from, newEmail, newPassword, useAccountsServer } from "./helpers.ts";

/** Mail without an SMTP server goes to a local outbox. */
describe.each(backends())("accounts on %s", (backend) => {
  const world = useAccountsServer(backend);
  const { authTenant } = world;

  describe("local outbox", () => {
    it("without SMTP_URL writes the mail with the code to <dataDir>/outbox/mail.jsonl", async () => {
      const dataDir = await mkdtemp(join(tmpdir(), "acct-outbox-"));
      const local = await startServer(world.database, { dataDir, smtpUrl: undefined, trustProxy: 1 });
      try {
        const tenant = await authTenant();
        const email = newEmail("outbox");
        const { signUp } = await ok(
          local.url,
          SignUp,
          { input: { tenantId: tenant.id, email, password: newPassword(), name: "Offline" } },
          from(),
        );
        // Account mail goes out after the answer.
        await local.app.deps.tasks.drain();
        const lines = (await readFile(join(dataDir, "outbox", "mail.jsonl"), "utf8")).trim().split("\n");
        const entries = lines.map((line) => JSON.parse(line) as { to: string; subject: string; text: string });
        const mine = entries.filter((entry) => entry.to === email);
        expect(mine).toHaveLength(1);
        const code = codeOf(mine[0] as { subject: string; text: string });
        const { verifyEmail } = await ok(local.url, VerifyEmail, { code }, bearer(signUp.accessToken));
        expect(verifyEmail.id).toBe(signUp.user.id);
        // Nothing went over SMTP.
        expect(world.mailbox.to(email)).toEqual([]);
      } finally {
        await local.stop();
        await rm(dataDir, { recursive: true, force: true });
      }
    });
  });
});
