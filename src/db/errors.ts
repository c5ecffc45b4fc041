import { Prisma } from "../generated/prisma/client.ts";

/** The columns (or the index name) a driver adapter reports for a violated unique constraint. */
function violatedFields(error: Prisma.PrismaClientKnownRequestError): string[] {
  const meta = error.meta as
    | { target?: unknown; driverAdapterError?: { cause?: { constraint?: { fields?: unknown; index?: unknown } } } }
    | undefined;
  if (Array.isArray(meta?.target)) return meta.target.map(String);
  if (typeof meta?.target === "string") return [meta.target];
  const constraint = meta?.driverAdapterError?.cause?.constraint;
  // PGlite reports quoted column names ("tenantId"); node-postgres reports the index name.
  if (Array.isArray(constraint?.fields)) return constraint.fields.map((field) => String(field).replaceAll('"', ""));
  if (typeof constraint?.index === "string") return [constraint.index];
  return [];
}

/**
 * Whether a write failed on a unique constraint (P2002). With `target`, only when the
 * driver names that column among the constraint's fields (or in its index name); when it
 * names none, any unique violation counts.
 */
export function isUniqueViolation(error: unknown, target?: string): boolean {
  if (isSqlUniqueViolation(error)) {
    const constraint = (error as { constraint?: unknown }).constraint;
    return target === undefined || typeof constraint !== "string" || constraint.includes(`_${target}_`);
  }
  if (!(error instanceof Prisma.PrismaClientKnownRequestError) || error.code !== "P2002") return false;
  if (target === undefined) return true;
  const fields = violatedFields(error);
  return fields.length === 0 || fields.some((field) => field === target || field.includes(`_${target}_`));
}

/** A unique violation (SQLSTATE 23505) raised by plain SQL (`db.sql`), from `pg` or PGlite. */
function isSqlUniqueViolation(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as { code?: unknown }).code === "23505";
}
