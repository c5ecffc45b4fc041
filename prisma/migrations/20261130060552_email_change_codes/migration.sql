-- AlterTable
ALTER TABLE "EmailCode" ADD COLUMN     "userId" UUID;

-- CreateIndex
CREATE INDEX "EmailCode_tenantId_userId_purpose_idx" ON "EmailCode"("tenantId", "userId", "purpose");

-- AddForeignKey
ALTER TABLE "EmailCode" ADD CONSTRAINT "EmailCode_tenantId_userId_fkey" FOREIGN KEY ("tenantId", "userId") REFERENCES "User"("tenantId", "id") ON DELETE CASCADE ON UPDATE CASCADE;
