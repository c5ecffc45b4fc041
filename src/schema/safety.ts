import { viewerDependent } from "../graphql/audience.ts";
import * as blocks from "../services/blocks.ts";
import * as reports from "../services/reports.ts";
import { rule } from "../services/validation.ts";
import { MAX_WORD_FILTER_RULE_LENGTH, type WORD_FILTER_ACTIONS, wordFilterInput } from "../services/word-filter.ts";
import { builder } from "./builder.ts";

// Word filters

const WordFilterAction = builder.enumType("WordFilterAction", {
  description: "What happens to a message containing a word of the tenant's word filter.",
  values: {
    REFUSE: { description: "The send or edit fails with BAD_USER_INPUT naming the rule it matched." },
    MASK: { description: "Each matched word is replaced by as many `*` as it has characters." },
  } as const,
});

/** Who may read the word filter: those who may change it, and moderators. */
const readsWordFilter = { $any: { permission: "tenant:update", $all: { permission: "chats:moderate" } } } as const;

const WordFilterRef = builder
  .objectRef<{ words: string[]; action: (typeof WORD_FILTER_ACTIONS)[number] }>("WordFilter")
  .implement({
    description:
      "The tenant's word filter, applied to the text of every sent and edited message (a CUSTOM message's data strings too). Words are compared case- and accent-insensitively (Unicode NFKD, marks removed, lower case).",
    authScopes: readsWordFilter,
    fields: (t) => ({
      words: t.exposeStringList("words", {
        description:
          "The rules, normalized: `word` matches that whole word, `word*` words starting with it, `*word` words ending with it, `*word*` words containing it.",
      }),
      action: t.field({ type: WordFilterAction, description: "REFUSE or MASK.", resolve: (f) => f.action }),
    }),
  });

export const WordFilterInput = builder.inputType("WordFilterInput", {
  description: "Changes to the word filter; omitted fields stay as they are.",
  fields: (t) => ({
    words: t.stringList({
      description: `The new rules, replacing the old (an empty list turns the filter off): ${rule(wordFilterInput.shape.words)}; each rule at most ${MAX_WORD_FILTER_RULE_LENGTH} characters.`,
    }),
    action: t.field({ type: WordFilterAction, description: "What happens to a matching message." }),
  }),
});

builder.prismaObjectField("Tenant", "wordFilter", (t) =>
  t.field({
    type: WordFilterRef,
    description: "The word filter of the tenant's messages. Needs tenant:update or chats:moderate.",
    authScopes: readsWordFilter,
    resolve: (tenant) => ({
      words: tenant.wordFilterRules,
      action: tenant.wordFilterAction === "MASK" ? ("MASK" as const) : ("REFUSE" as const),
    }),
  }),
);

// Blocking

builder.prismaObjectField("Message", "senderBlockedByViewer", (t) =>
  t.boolean({
    description:
      "Whether the viewer blocks the sender of this message (so that a client can hide it). Always false for the API key and for messages without a sender.",
    extensions: viewerDependent,
    resolve: (message, _args, ctx) =>
      ctx.principal?.kind === "user" && message.senderId
        ? blocks.blocks(ctx, ctx.principal.userId, message.senderId)
        : false,
  }),
);

const asUser = { $all: { user: true, permission: "chats:read" } } as const;

builder.queryField("blockedUsers", (t) =>
  t.prismaField({
    type: ["User"],
    description: "The users the viewer blocks, most recently blocked first. Needs a user token and chats:read.",
    authScopes: asUser,
    resolve: (_query, _root, _args, ctx) => blocks.blockedUsers(ctx),
  }),
);

builder.mutationFields((t) => ({
  blockUser: t.boolean({
    description:
      "Blocks a user of the tenant: they can no longer open or send to a direct conversation with the viewer (they are refused with FORBIDDEN, without being told why), and the viewer no longer receives their typing or presence. In groups, their messages carry `senderBlockedByViewer: true`. Blocking twice changes nothing. Needs a user token and chats:read.",
    authScopes: asUser,
    args: { userId: t.arg.id({ required: true, description: "The user to block." }) },
    resolve: (_root, args, ctx) => blocks.blockUser(ctx, args.userId),
  }),
  unblockUser: t.boolean({
    description: "Stops blocking a user (nothing happens if they were not blocked). Needs a user token and chats:read.",
    authScopes: asUser,
    args: { userId: t.arg.id({ required: true, description: "The user to unblock." }) },
    resolve: (_root, args, ctx) => blocks.unblockUser(ctx, args.userId),
  }),
}));

// Reports

const ReportStatus = builder.enumType("ReportStatus", {
  description: "Where a report stands.",
  values: {
    OPEN: { description: "Waiting for a moderator." },
    RESOLVED: { description: "A moderator decided it; `action` says how." },
  } as const,
});

const ReportAction = builder.enumType("ReportAction", {
  description: "A moderator's decision on a report.",
  values: {
    DISMISS: { description: "Nothing to do." },
    DELETE_MESSAGE: { description: "The message is deleted (a tombstone stays), as deleteMessage does." },
    DEACTIVATE_USER: {
      description:
        "The message's sender is deactivated, as updateUser(active: false) does: needs users:update too, and cannot deactivate the last owner or a user holding permissions the moderator lacks.",
    },
  } as const,
});

const ReportRef = builder.prismaObject("Report", {
  description: "A member's report of a message, for the moderators' review.",
  // The reporter sees their own report; moderators see all of the tenant's.
  authScopes: (report) => ({ $any: { self: report.reporterId, permission: "chats:moderate" } }),
  fields: (t) => ({
    id: t.exposeID("id", { description: "Report id." }),
    message: t.prismaField({
      type: "Message",
      description: "The reported message (a tombstone once deleted).",
      resolve: async (_query, report, _args, ctx) => {
        const message = await ctx.loaders.message.load(report.messageId);
        if (!message) throw new Error("A report's message is missing");
        return message;
      },
    }),
    reporter: t.prismaField({
      type: "User",
      description: "Who reported it.",
      resolve: async (_query, report, _args, ctx) => {
        const user = await ctx.loaders.user.load(report.reporterId);
        if (!user) throw new Error("A report's reporter is missing");
        return user;
      },
    }),
    reason: t.exposeString("reason", { description: "Why, in the reporter's words." }),
    status: t.field({
      type: ReportStatus,
      description: "OPEN or RESOLVED.",
      resolve: (report) => (report.status === "RESOLVED" ? "RESOLVED" : "OPEN"),
    }),
    action: t.field({
      type: ReportAction,
      nullable: true,
      description: "What the moderator decided; null while open.",
      resolve: (report) => report.action as reports.ReportAction | null,
    }),
    resolvedBy: t.prismaField({
      type: "User",
      nullable: true,
      description: "The moderator who resolved it (null while open, or when the API key did).",
      resolve: (_query, report, _args, ctx) =>
        report.resolvedById ? ctx.loaders.user.load(report.resolvedById) : null,
    }),
    resolvedAt: t.expose("resolvedAt", { type: "DateTime", nullable: true, description: "When it was resolved." }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When it was reported." }),
  }),
});

const ReportConnection = builder.connectionObject(
  { type: ReportRef, name: "ReportConnection", description: "A page of reports, newest first." },
  { description: "A report with its cursor." },
);

builder.queryField("reports", (t) =>
  t.field({
    type: ReportConnection,
    description: "The tenant's reports, newest first: the moderators' queue. Needs chats:moderate.",
    authScopes: { permission: "chats:moderate" },
    args: {
      first: t.arg.int({ description: "Page size, 0-100 (default 20)." }),
      after: t.arg.string({ description: "Cursor of the last report of the previous page." }),
      status: t.arg({ type: ReportStatus, description: "Only reports of this status (OPEN for the queue)." }),
    },
    resolve: (_root, args, ctx) => reports.listReports(ctx, args),
  }),
);

builder.mutationFields((t) => ({
  reportMessage: t.prismaField({
    type: "Report",
    description:
      "Reports a message of one of the viewer's conversations to the tenant's moderators. Not the viewer's own message, nor a deleted one; reporting the same message again returns the first report. Audited. Needs a user token and chats:read.",
    authScopes: asUser,
    args: {
      messageId: t.arg.id({ required: true, description: "The message." }),
      reason: t.arg.string({ required: true, description: `Why, ${rule(reports.reportInput.shape.reason)}.` }),
    },
    resolve: (_query, _root, args, ctx) =>
      ctx.deps.writeLimits.run(ctx, () => reports.reportMessage(ctx, args.messageId, args.reason)),
  }),
  resolveReport: t.prismaField({
    type: "Report",
    description:
      "Decides an open report (CONFLICT once resolved): DISMISS, DELETE_MESSAGE or DEACTIVATE_USER (which also needs users:update). Audited. Needs chats:moderate.",
    authScopes: { permission: "chats:moderate" },
    args: {
      id: t.arg.id({ required: true, description: "Report id." }),
      action: t.arg({ type: ReportAction, required: true, description: "The decision." }),
    },
    resolve: (_query, _root, args, ctx) => reports.resolveReport(ctx, args.id, args.action),
  }),
}));
