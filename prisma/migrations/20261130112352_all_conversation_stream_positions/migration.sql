-- AlterTable
-- Added without a default, then given one (what the generated step does in one statement):
-- a volatile default on ADD COLUMN rewrites the whole table, while this only changes the
-- catalog. Rows stored before stay NULL: written before any stream position existed, every
-- position counts them as seen.
ALTER TABLE "ConversationEvent" ADD COLUMN "txId" xid8;
ALTER TABLE "ConversationEvent" ALTER COLUMN "txId" SET DEFAULT pg_current_xact_id();

-- AlterTable
ALTER TABLE "Message" ADD COLUMN "txId" xid8;
ALTER TABLE "Message" ALTER COLUMN "txId" SET DEFAULT pg_current_xact_id();
