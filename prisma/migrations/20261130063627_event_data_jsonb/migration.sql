-- AlterTable
-- Converted in place (not dropped and re-added, as the generated step would): every stored
-- event keeps its data, now as jsonb, so it can be queried by path.
ALTER TABLE "ConversationEvent" ALTER COLUMN "data" SET DATA TYPE JSONB USING "data"::jsonb;
