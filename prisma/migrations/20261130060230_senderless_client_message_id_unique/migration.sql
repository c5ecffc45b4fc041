-- The unique key on ("conversationId", "senderId", "clientMessageId") treats NULL senders as
-- distinct, so it never deduplicated messages the API key sends without a sender. This
-- partial index does. It is written by hand: Prisma declares partial indexes only behind
-- its `partialIndexes` preview feature, which this project does not enable, and the
-- migration generator leaves indexes with a predicate alone (test/migrations.test.ts checks
-- that a generated migration keeps it).

-- Duplicates stored before keep their text; all but the first lose the key, so the index builds.
UPDATE "Message" AS m
   SET "clientMessageId" = NULL
  FROM "Message" AS first
 WHERE m."senderId" IS NULL
   AND m."clientMessageId" IS NOT NULL
   AND first."senderId" IS NULL
   AND first."conversationId" = m."conversationId"
   AND first."clientMessageId" = m."clientMessageId"
   AND first."seq" < m."seq";

CREATE UNIQUE INDEX "Message_conversationId_clientMessageId_senderless_key"
    ON "Message" ("conversationId", "clientMessageId")
 WHERE "senderId" IS NULL AND "clientMessageId" IS NOT NULL;
