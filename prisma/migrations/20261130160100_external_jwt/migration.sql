-- AlterTable
ALTER TABLE "Conversation" ADD COLUMN     "externalId" TEXT;

-- AlterTable
ALTER TABLE "User" ADD COLUMN     "externalId" TEXT;

-- CreateTable
CREATE TABLE "TenantExternalJwt" (
    "tenantId" UUID NOT NULL,
    "issuer" TEXT NOT NULL,
    "audience" TEXT NOT NULL DEFAULT '',
    "hmacSecret" TEXT,
    "jwksUrl" TEXT,
    "userIdClaim" TEXT NOT NULL DEFAULT 'sub',
    "nameClaim" TEXT NOT NULL DEFAULT 'name',
    "emailClaim" TEXT NOT NULL DEFAULT 'email',
    "groupsClaim" TEXT NOT NULL DEFAULT 'groups',
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "TenantExternalJwt_pkey" PRIMARY KEY ("tenantId")
);

-- CreateIndex
CREATE UNIQUE INDEX "TenantExternalJwt_issuer_audience_key" ON "TenantExternalJwt"("issuer", "audience");

-- CreateIndex
CREATE UNIQUE INDEX "Conversation_tenantId_externalId_key" ON "Conversation"("tenantId", "externalId");

-- CreateIndex
CREATE UNIQUE INDEX "User_tenantId_externalId_key" ON "User"("tenantId", "externalId");

-- AddForeignKey
ALTER TABLE "TenantExternalJwt" ADD CONSTRAINT "TenantExternalJwt_tenantId_fkey" FOREIGN KEY ("tenantId") REFERENCES "Tenant"("id") ON DELETE CASCADE ON UPDATE CASCADE;
