-- AlterTable
ALTER TABLE "Message" ADD COLUMN     "deletedById" UUID;

-- AlterTable
ALTER TABLE "Tenant" ADD COLUMN     "defaultRoleId" UUID;

-- AlterTable
ALTER TABLE "User" DROP COLUMN "tokensValidAfter";

-- CreateTable
CREATE TABLE "Role" (
    "id" UUID NOT NULL,
    "tenantId" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "description" TEXT,
    "permissions" TEXT[],
    "systemKey" TEXT,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "Role_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "UserRole" (
    "tenantId" UUID NOT NULL,
    "userId" UUID NOT NULL,
    "roleId" UUID NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "UserRole_pkey" PRIMARY KEY ("userId","roleId")
);

-- CreateTable
CREATE TABLE "UserToken" (
    "id" UUID NOT NULL,
    "tenantId" UUID NOT NULL,
    "userId" UUID NOT NULL,
    "expiresAt" TIMESTAMPTZ(3) NOT NULL,
    "revokedAt" TIMESTAMPTZ(3),
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "UserToken_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "AuditEntry" (
    "id" UUID NOT NULL,
    "tenantId" UUID NOT NULL,
    "action" TEXT NOT NULL,
    "actorType" TEXT NOT NULL,
    "actorId" UUID,
    "targetType" TEXT NOT NULL,
    "targetId" UUID,
    "details" TEXT,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "AuditEntry_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "Role_tenantId_id_key" ON "Role"("tenantId", "id");

-- CreateIndex
CREATE UNIQUE INDEX "Role_tenantId_name_key" ON "Role"("tenantId", "name");

-- CreateIndex
CREATE UNIQUE INDEX "Role_tenantId_systemKey_key" ON "Role"("tenantId", "systemKey");

-- CreateIndex
CREATE INDEX "UserRole_tenantId_roleId_idx" ON "UserRole"("tenantId", "roleId");

-- CreateIndex
CREATE INDEX "UserToken_tenantId_userId_idx" ON "UserToken"("tenantId", "userId");

-- CreateIndex
CREATE INDEX "AuditEntry_tenantId_createdAt_id_idx" ON "AuditEntry"("tenantId", "createdAt", "id");

-- AddForeignKey
ALTER TABLE "Message" ADD CONSTRAINT "Message_tenantId_deletedById_fkey" FOREIGN KEY ("tenantId", "deletedById") REFERENCES "User"("tenantId", "id") ON DELETE NO ACTION ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Role" ADD CONSTRAINT "Role_tenantId_fkey" FOREIGN KEY ("tenantId") REFERENCES "Tenant"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "UserRole" ADD CONSTRAINT "UserRole_tenantId_userId_fkey" FOREIGN KEY ("tenantId", "userId") REFERENCES "User"("tenantId", "id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "UserRole" ADD CONSTRAINT "UserRole_tenantId_roleId_fkey" FOREIGN KEY ("tenantId", "roleId") REFERENCES "Role"("tenantId", "id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "UserToken" ADD CONSTRAINT "UserToken_tenantId_userId_fkey" FOREIGN KEY ("tenantId", "userId") REFERENCES "User"("tenantId", "id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "AuditEntry" ADD CONSTRAINT "AuditEntry_tenantId_fkey" FOREIGN KEY ("tenantId") REFERENCES "Tenant"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- Backfill: tenants created before roles existed get the system roles (same
-- permissions as src/auth/permissions.ts), their users the member role. Tokens issued
-- before this migration have no UserToken row and must be issued again.
INSERT INTO "Role" ("id", "tenantId", "name", "description", "permissions", "systemKey", "updatedAt")
SELECT gen_random_uuid(), t."id", r.key, r.description, r.permissions, r.key, now()
FROM "Tenant" t
CROSS JOIN (VALUES
    ('owner', 'Everything in the tenant', ARRAY['*']),
    ('admin', 'Manages users, groups, chats and roles', ARRAY['tenant:read', 'users:*', 'groups:*', 'chats:*', 'rbac:*']),
    ('member', 'Chats, creates groups, sees other users', ARRAY['users:read', 'groups:create', 'groups:read', 'chats:create', 'chats:read', 'chats:update', 'chats:delete'])
) AS r(key, description, permissions);

UPDATE "Tenant" t SET "defaultRoleId" = r."id"
FROM "Role" r WHERE r."tenantId" = t."id" AND r."systemKey" = 'member';

INSERT INTO "UserRole" ("tenantId", "userId", "roleId")
SELECT u."tenantId", u."id", r."id"
FROM "User" u JOIN "Role" r ON r."tenantId" = u."tenantId" AND r."systemKey" = 'member'
WHERE u."deletedAt" IS NULL;
