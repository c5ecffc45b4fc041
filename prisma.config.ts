// Configuration for the Prisma CLI (`prisma generate`, `prisma validate`, and where the
// engines can be downloaded, `prisma migrate deploy` / `migrate dev`). The server does not
// read it: it applies prisma/migrations itself on start (see README, Migrations).
import { defineConfig } from "prisma/config";

export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: { path: "prisma/migrations" },
  // Only commands that touch a database need it; generate and validate run without.
  ...(process.env.DATABASE_URL ? { datasource: { url: process.env.DATABASE_URL } } : {}),
});
