import { appendFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import nodemailer from "nodemailer";
import type { Logger } from "./logger.ts";
import { UNSAFE_TEXT } from "./services/validation.ts";

/**
 * A plain-text mail. There is no HTML part: text in a text/plain body is never rendered as
 * markup. Whoever adds one must HTML-escape every value put into it.
 */
export interface Mail {
  to: string;
  subject: string;
  text: string;
}

/** Longest subject sent: room for a 200-character tenant name and the code after it. */
export const MAX_SUBJECT_LENGTH = 250;
export const MAX_TEXT_LENGTH = 20_000;

const UNSAFE = new RegExp(UNSAFE_TEXT.source, "gu");
/** The same, except line feeds and tabs, which a body may hold. */
const UNSAFE_IN_BODY = /[^\P{Cc}\n\t]|[\u2028\u2029\u202A-\u202E\u2066-\u2069]/gu;

/** Angle brackets become look-alike quotation marks, so no client can take any of it for markup. */
const inert = (value: string) => value.replaceAll("<", "\u2039").replaceAll(">", "\u203A");

function cut(value: string, max: number): string {
  const characters = Array.from(value);
  return characters.length > max ? `${characters.slice(0, max - 1).join("")}\u2026` : value;
}

/**
 * Makes a mail safe to send whatever text it was composed from (tenant names go into
 * subjects and bodies): the subject becomes one line of inert text, control and direction
 * characters leave the body, and both are bounded in length. Every mailer applies it.
 */
export function safeMail(mail: Mail): Mail {
  const subject = mail.subject.replace(UNSAFE, " ").replace(/\s+/g, " ").trim();
  // The server's own text breaks lines with LF alone: a CR can only come from data.
  const text = mail.text.replace(/\r\n?/g, " ").replace(UNSAFE_IN_BODY, "");
  return {
    to: mail.to,
    subject: cut(inert(subject), MAX_SUBJECT_LENGTH),
    text: cut(inert(text), MAX_TEXT_LENGTH),
  };
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
      await transport.sendMail({ from, ...safeMail(mail) });
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
    async send(unsafe) {
      const mail = safeMail(unsafe);
      await mkdir(dir, { recursive: true });
      const entry = { from, ...mail, sentAt: new Date().toISOString() };
      await appendFile(join(dir, "mail.jsonl"), `${JSON.stringify(entry)}\n`, { mode: 0o600 });
      log.info({ to: mail.to, subject: mail.subject }, `mail written to ${join(dir, "mail.jsonl")}:\n${mail.text}`);
    },
    close: () => {},
  };
}
