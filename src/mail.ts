import { appendFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import nodemailer from "nodemailer";
import type { Logger } from "./logger.ts";

export interface Mail {
  to: string;
  subject: string;
  text: string;
}

export interface Mailer {
  readonly kind: "smtp" | "outbox";
  send(mail: Mail): Promise<void>;
  close(): void;
}

/** Sends over SMTP (SMTP_URL, e.g. smtp://user:pass@host:587). */
export function smtpMailer(url: string, from: string): Mailer {
  const transport = nodemailer.createTransport(url);
  return {
    kind: "smtp",
    async send(mail) {
      await transport.sendMail({ from, ...mail });
    },
    close: () => transport.close(),
  };
}

/**
 * Zero-setup delivery: each mail is logged and appended to DATA_DIR/outbox/mail.jsonl,
 * so sign-up and password reset work on a laptop without a mail server.
 */
export function outboxMailer(dataDir: string, from: string, log: Logger): Mailer {
  const dir = join(dataDir, "outbox");
  return {
    kind: "outbox",
    async send(mail) {
      await mkdir(dir, { recursive: true });
      const entry = { from, ...mail, sentAt: new Date().toISOString() };
      await appendFile(join(dir, "mail.jsonl"), `${JSON.stringify(entry)}\n`, { mode: 0o600 });
      log.info({ to: mail.to, subject: mail.subject }, `mail written to ${join(dir, "mail.jsonl")}:\n${mail.text}`);
    },
    close: () => {},
  };
}
