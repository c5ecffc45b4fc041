-- Attachments of messages deleted before deletion discarded them: their rows go now (the
-- tenant's upload quota counts them otherwise), and the attachment sweep removes their
-- files, which no row references any more, once they are older than UPLOAD_ORPHAN_TTL_SECONDS.
DELETE FROM "Attachment" AS a
 USING "Message" AS m
 WHERE a."tenantId" = m."tenantId"
   AND a."messageId" = m."id"
   AND m."deletedAt" IS NOT NULL;
