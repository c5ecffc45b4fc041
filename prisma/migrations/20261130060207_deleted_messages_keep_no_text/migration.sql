-- AlterTable
ALTER TABLE "Message" ALTER COLUMN "body" DROP NOT NULL;

-- A deleted message keeps no text. Tombstones deleted before this lose theirs now (the
-- search trigger empties their search vector with the body), and so do the copies of the
-- message in the event history, which deletion blanks from now on as well.
UPDATE "Message" SET "body" = NULL WHERE "deletedAt" IS NOT NULL AND "body" IS NOT NULL;

UPDATE "ConversationEvent" AS e
   SET "data" = jsonb_set(
         jsonb_set(e."data"::jsonb, '{message,body}', 'null'::jsonb),
         '{message,deletedAt}', to_jsonb(m."deletedAt"))::text
  FROM "Message" AS m
 WHERE m."deletedAt" IS NOT NULL
   AND e."conversationId" = m."conversationId"
   AND e."data"::jsonb -> 'message' ->> 'id' = m."id"::text;
