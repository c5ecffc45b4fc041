import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { ok, sleep } from "../helpers/client.ts";
import { DeleteMessage, SendFullMessage } from "../operations/messages.ts";
import {
  as,
  bearer,
  download,
  group,
  history,
  messageAs,
  PNG,
  refused,
  send,
  text,
  unsigned,
  upload,
  uploadRaw,
  uploadRefused,
  useMessagingServers,
} from "./helpers.ts";

/** Attachments: multipart upload, download links, limits and types. */
describe.each(backends())("messaging on %s", (backend) => {
  const s = useMessagingServers(backend);
  const { setup, foreigner } = s;

  describe("attachments", () => {
    it("uploads with a multipart request, sends as FILE, and downloads the exact bytes safely", async () => {
      const { alice, bob, conversationId } = await setup();
      const content = "hello attachment\nline two\n";
      const uploaded = await upload(s.url, as(alice), conversationId, text(content, "notes.txt"));
      expect(uploaded).toMatchObject({
        filename: "notes.txt",
        mimeType: "text/plain",
        size: Buffer.byteLength(content),
      });
      expect(new URL(uploaded.url).origin).toBe(new URL(s.url).origin);

      const message = await send(s.url, as(alice), conversationId, "", { attachmentIds: [uploaded.id] });
      expect(message.type).toBe("FILE");
      expect(message.attachments).toMatchObject([{ id: uploaded.id, filename: "notes.txt", mimeType: "text/plain" }]);

      // Another member reads the message and follows its link.
      const seen = await messageAs(s.url, as(bob), conversationId, message.id);
      const link = seen.attachments[0]?.url as string;
      const file = await download(link);
      expect(file.status).toBe(200);
      expect(Buffer.from(file.bytes).toString()).toBe(content);
      expect(file.headers.get("content-type")).toMatch(/^text\/plain\b/);
      expect(file.headers.get("content-disposition")).toMatch(/^attachment;/);
      expect(file.headers.get("content-disposition")).toContain('filename="notes.txt"');
      expect(file.headers.get("x-content-type-options")).toBe("nosniff");

      const png = await upload(s.url, as(bob), conversationId, { name: "pixel.png", type: "image/png", bytes: PNG });
      expect(png).toMatchObject({ mimeType: "image/png", size: PNG.byteLength });
      const image = await download(png.url);
      expect(image.status).toBe(200);
      expect(image.headers.get("content-type")).toBe("image/png");
      expect(image.headers.get("content-disposition")).toMatch(/^attachment;/);
      expect(Buffer.compare(Buffer.from(image.bytes), Buffer.from(PNG))).toBe(0);
    });

    it("keeps an ordinary file name as uploaded, minus any path", async () => {
      const { alice, conversationId } = await setup();
      const named = await upload(s.url, as(alice), conversationId, text("q3", "Report Q3 2024.txt"));
      expect(named.filename).toBe("Report Q3 2024.txt");
      const pathed = await upload(s.url, as(alice), conversationId, text("pw", "../../etc/Passwd-2.txt"));
      expect(pathed.filename).toBe("Passwd-2.txt");
      const file = await download(named.url);
      expect(file.headers.get("content-disposition")).toContain('filename="Report Q3 2024.txt"');
    });

    it("refuses tampered and expired links; members may download with their header, others may not", async () => {
      const { alice, bob, dave, conversationId } = await setup();
      const { eve } = await foreigner();
      const uploaded = await upload(s.url, as(alice), conversationId, text("guarded"));
      await send(s.url, as(alice), conversationId, "", { attachmentIds: [uploaded.id] });
      const link = new URL(uploaded.url);
      expect(link.searchParams.get("signature")).toBeTruthy();
      expect((await download(link.toString())).status).toBe(200);

      const tampered = new URL(link);
      const signature = link.searchParams.get("signature") as string;
      tampered.searchParams.set("signature", `${signature.slice(0, -2)}${signature.endsWith("AA") ? "BB" : "AA"}`);
      expect((await download(tampered.toString())).status).toBe(403);
      const extended = new URL(link);
      extended.searchParams.set("expires", String(Number(link.searchParams.get("expires")) + 3600));
      expect((await download(extended.toString())).status).toBe(403);
      const other = await upload(s.url, as(alice), conversationId, text("other"));
      const swapped = new URL(other.url);
      swapped.searchParams.set("signature", signature);
      swapped.searchParams.set("expires", link.searchParams.get("expires") as string);
      expect((await download(swapped.toString())).status).toBe(403);

      // Header credentials instead of a signature.
      const plain = unsigned(uploaded.url);
      const byBob = await download(plain, bearer(bob));
      expect(byBob.status).toBe(200);
      expect(Buffer.from(byBob.bytes).toString()).toBe("guarded");
      expect([403, 404]).toContain((await download(plain, bearer(dave))).status);
      expect((await download(plain, bearer(eve))).status).toBe(404);
      expect((await download(plain)).status).toBe(401);
      // An upload not sent yet is only its uploader's.
      expect((await download(unsigned(other.url), bearer(alice))).status).toBe(200);
      expect((await download(unsigned(other.url), bearer(bob))).status).toBe(404);
    });

    it("refuses a link once it has expired", async () => {
      const { alice, conversationId } = await setup();
      const uploaded = await upload(s.limited.url, as(alice), conversationId, text("short-lived"));
      await sleep(2100);
      expect((await download(uploaded.url)).status).toBe(403);
      // A fresh link from the API works again.
      const fresh = await upload(s.limited.url, as(alice), conversationId, text("fresh"));
      expect((await download(unsigned(fresh.url), bearer(alice))).status).toBe(200);
    });

    it("answers 404 once the message is deleted, with a link or with credentials", async () => {
      const { alice, bob, conversationId } = await setup();
      const uploaded = await upload(s.url, as(alice), conversationId, text("temporary"));
      const message = await send(s.url, as(alice), conversationId, "with file", { attachmentIds: [uploaded.id] });
      const link = (await messageAs(s.url, as(bob), conversationId, message.id)).attachments[0]?.url as string;
      expect((await download(link)).status).toBe(200);
      const { deleteMessage } = await ok(s.url, DeleteMessage, { id: message.id }, as(alice));
      expect(deleteMessage.attachments).toEqual([]);
      expect((await download(link)).status).toBe(404);
      expect((await download(unsigned(link), bearer(bob))).status).toBe(404);
      expect((await download(unsigned(link), bearer(alice))).status).toBe(404);
    });

    it("refuses oversized files, disallowed and empty files, outsiders and other tenants' conversations", async () => {
      const { alice, dave, conversationId } = await setup();
      const { eve, conversationId: evesRoom } = await foreigner();
      const exact = await upload(s.limited.url, as(alice), conversationId, text("x".repeat(1000)));
      expect(exact.size).toBe(1000);
      await uploadRefused(s.limited.url, as(alice), conversationId, text("x".repeat(1001)), "PAYLOAD_TOO_LARGE");
      const huge = await uploadRaw(s.limited.url, as(alice), conversationId, text("x".repeat(1_100_000)));
      expect(huge.status).toBe(413);
      expect(huge.errors?.[0]?.extensions?.code).toBe("PAYLOAD_TOO_LARGE");

      const pdf = { name: "doc.pdf", type: "application/pdf", bytes: new Uint8Array([37, 80, 68, 70]) };
      await uploadRefused(s.limited.url, as(alice), conversationId, pdf, "BAD_USER_INPUT", "file");
      const html = { name: "page.html", type: "text/html", bytes: new TextEncoder().encode("<script>1</script>") };
      await uploadRefused(s.limited.url, as(alice), conversationId, html, "BAD_USER_INPUT", "file");
      await uploadRefused(s.url, as(alice), conversationId, html, "BAD_USER_INPUT", "file");
      const exe = { name: "run.exe", type: "application/x-msdownload", bytes: new Uint8Array([77, 90]) };
      await uploadRefused(s.url, as(alice), conversationId, exe, "BAD_USER_INPUT", "file");
      await uploadRefused(s.url, as(alice), conversationId, text(""), "BAD_USER_INPUT", "file");

      await uploadRefused(s.url, as(dave), conversationId, text("intruder"), "FORBIDDEN");
      await uploadRefused(s.url, as(eve), conversationId, text("intruder"), "NOT_FOUND");
      await uploadRefused(s.url, as(alice), evesRoom, text("intruder"), "NOT_FOUND");
    });

    it("only the uploader sends an attachment, once, to the conversation it was uploaded to", async () => {
      const { alice, bob, conversationId } = await setup();
      const other = await group(s.url, as(alice), [bob], "Other");
      const uploaded = await upload(s.url, as(alice), conversationId, text("mine"));
      const sendWith = (attachmentIds: string[], target = conversationId) => ({
        input: { conversationId: target, body: "", attachmentIds },
      });
      await refused(s.url, SendFullMessage, sendWith([uploaded.id]), as(bob), "FORBIDDEN");
      await refused(s.url, SendFullMessage, sendWith([uploaded.id], other), as(alice), "NOT_FOUND");
      const sent = await ok(s.url, SendFullMessage, sendWith([uploaded.id]), as(alice));
      expect(sent.sendMessage.type).toBe("FILE");
      await refused(s.url, SendFullMessage, sendWith([uploaded.id]), as(alice), "CONFLICT");
      // Nothing half-sent: exactly one message carries the file.
      const messages = await history(s.url, as(alice), conversationId);
      expect(messages.map((m) => m.attachments.length)).toEqual([1]);
    });

    it("refuses a multipart POST that carries no credentials header with 415", async () => {
      const { conversationId } = await setup();
      const result = await uploadRaw(s.url, {}, conversationId, text("anonymous"));
      expect(result.status).toBe(415);
      // Even a cookie is not a credentials header.
      const cookie = await uploadRaw(s.url, { headers: { cookie: "session=1" } }, conversationId, text("anonymous"));
      expect(cookie.status).toBe(415);
    });
  });
});
