import { listAudit } from "../services/audit.ts";
import { builder } from "./builder.ts";

const AuditActorKind = builder.enumType("AuditActorKind", {
  description: "Who performed an audited action.",
  values: {
    SERVICE: { description: "The tenant's API key." },
    USER: { description: "A user, with their token." },
    SYSTEM: { description: "The server itself (e.g. disabling a webhook that kept failing)." },
  } as const,
});

const AuditActor = builder
  .objectRef<{ kind: "SERVICE" | "USER" | "SYSTEM"; id: string | null }>("AuditActor")
  .implement({
    description: "The principal behind an audited action.",
    authScopes: { permission: "tenant:read" },
    fields: (t) => ({
      kind: t.field({
        type: AuditActorKind,
        description: "API key, user or the server.",
        resolve: (actor) => actor.kind,
      }),
      id: t.id({
        nullable: true,
        description: "The user id, or the id of the API key used (null for the server).",
        resolve: (actor) => actor.id,
      }),
      user: t.prismaField({
        type: "User",
        nullable: true,
        description: "The acting user (null for the API key or a user since deleted).",
        resolve: (query, actor, _args, ctx) =>
          actor.kind === "USER" && actor.id ? ctx.prisma.user.findFirst({ ...query, where: { id: actor.id } }) : null,
      }),
    }),
  });

const AuditTarget = builder.objectRef<{ type: string; id: string | null }>("AuditTarget").implement({
  description: "What an audited action was applied to.",
  authScopes: { permission: "tenant:read" },
  fields: (t) => ({
    type: t.exposeString("type", {
      description: "Kind of object: Tenant, ApiKey, Role, User, Conversation, Message, Webhook.",
    }),
    id: t.id({ nullable: true, description: "Its id.", resolve: (target) => target.id }),
  }),
});

const AuditEntryRef = builder.prismaObject("AuditEntry", {
  description: "A security-relevant action: key rotation, role and permission changes, member changes, deletions.",
  authScopes: { permission: "tenant:read" },
  fields: (t) => ({
    id: t.exposeID("id", { description: "Entry id." }),
    action: t.exposeString("action", {
      description:
        "What happened, e.g. apiKey.rotated, role.assigned, user.deactivated, member.removed, message.moderated.",
    }),
    actor: t.field({
      type: AuditActor,
      description: "Who did it.",
      resolve: (entry) => ({
        kind:
          entry.actorType === "USER"
            ? ("USER" as const)
            : entry.actorType === "SYSTEM"
              ? ("SYSTEM" as const)
              : ("SERVICE" as const),
        id: entry.actorId,
      }),
    }),
    target: t.field({
      type: AuditTarget,
      description: "What it was done to.",
      resolve: (entry) => ({ type: entry.targetType, id: entry.targetId }),
    }),
    details: t.exposeString("details", { nullable: true, description: "JSON with the specifics of the change." }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When it happened." }),
  }),
});

const AuditEntryConnection = builder.connectionObject(
  { type: AuditEntryRef, name: "AuditEntryConnection", description: "A page of audit entries, newest first." },
  { description: "An audit entry with its cursor." },
);

builder.queryField("auditLog", (t) =>
  t.field({
    type: AuditEntryConnection,
    description: "Security-relevant actions in the tenant, newest first.",
    authScopes: { permission: "tenant:read" },
    args: {
      first: t.arg.int({ description: "Page size, 0-100 (default 50)." }),
      after: t.arg.string({ description: "Cursor of the last entry of the previous page." }),
    },
    resolve: (_root, args, ctx) => listAudit(ctx, args),
  }),
);
