-- AlterTable
ALTER TABLE "Tenant" ADD COLUMN     "oauthRedirectUris" TEXT[] DEFAULT ARRAY[]::TEXT[];
