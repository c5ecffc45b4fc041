-- AlterEnum
ALTER TYPE "MessageType" ADD VALUE 'CUSTOM';

-- AlterTable
ALTER TABLE "Message" ADD COLUMN     "customType" TEXT,
ADD COLUMN     "data" JSONB;
