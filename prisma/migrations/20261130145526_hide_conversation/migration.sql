-- AlterTable
ALTER TABLE "Member" ADD COLUMN     "hiddenAtSeq" INTEGER;
