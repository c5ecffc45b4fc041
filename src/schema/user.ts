import { viewerDependent } from "../graphql/audience.ts";
import * as users from "../services/users.ts";
import { rule } from "../services/validation.ts";
import { builder } from "./builder.ts";

export const UserRef = builder.prismaObject("User", {
  description: "A person in the tenant who can chat.",
  // Seen by people who may list users, by chat partners (senders, members), and by themselves.
  authScopes: (user) => ({ $any: { permission: "users:read", self: user.id, $all: { permission: "chats:read" } } }),
  fields: (t) => ({
    id: t.exposeID("id", { description: "User id." }),
    name: t.exposeString("name", { description: "Display name." }),
    email: t.exposeString("email", {
      nullable: true,
      description: "Email address, unique in the tenant. Visible to the user and to holders of users:read.",
      extensions: viewerDependent,
      authScopes: (user) => ({ $any: { self: user.id, permission: "users:read" } }),
    }),
    externalId: t.exposeString("externalId", {
      nullable: true,
      description:
        "The user's id in the tenant's identity provider, for users provisioned from its tokens; unique in the tenant. Visible to the user and to holders of users:read.",
      extensions: viewerDependent,
      authScopes: (user) => ({ $any: { self: user.id, permission: "users:read" } }),
    }),
    phone: t.exposeString("phone", {
      nullable: true,
      description: "Phone number. Visible to the user and to holders of users:read.",
      extensions: viewerDependent,
      authScopes: (user) => ({ $any: { self: user.id, permission: "users:read" } }),
    }),
    roles: t.prismaField({
      type: ["Role"],
      description: "The user's roles. Visible to the user and to holders of rbac:read.",
      extensions: viewerDependent,
      authScopes: (user) => ({ $any: { self: user.id, permission: "rbac:read" } }),
      resolve: (_query, user, _args, ctx) => ctx.loaders.userRoles.load(user.id),
    }),
    avatarUrl: t.exposeString("avatarUrl", { nullable: true, description: "URL of the avatar image." }),
    active: t.exposeBoolean("active", { description: "Inactive users cannot authenticate." }),
    emailVerified: t.boolean({
      description: "Whether the user proved they receive mail at their address (a code, or a provider sign-in).",
      extensions: viewerDependent,
      authScopes: (user) => ({ $any: { self: user.id, permission: "users:read" } }),
      resolve: (user) => user.emailVerifiedAt !== null,
    }),
    createdAt: t.expose("createdAt", { type: "DateTime", description: "When the user was created." }),
    updatedAt: t.expose("updatedAt", { type: "DateTime", description: "When the user last changed." }),
  }),
});

export const UserConnection = builder.connectionObject(
  {
    type: UserRef,
    name: "UserConnection",
    description: "A page of users.",
  },
  { description: "A user with its cursor." },
);

const user = users.createUserInput.shape;
const CreateUserInput = builder.inputType("CreateUserInput", {
  description: "A new user.",
  fields: (t) => ({
    name: t.string({ required: true, description: `Display name, ${rule(user.name)}.` }),
    email: t.string({ description: `Email address, ${rule(user.email)}; unique in the tenant.` }),
    emailVerified: t.boolean({
      description: "Whether the address is already verified (API key only; default false). Needs email.",
    }),
    phone: t.string({ description: `Phone number, ${rule(user.phone)}.` }),
    avatarUrl: t.string({ description: `The avatar image, ${rule(user.avatarUrl)}.` }),
  }),
});

const userChanges = users.updateUserInput.shape;
const UpdateUserInput = builder.inputType("UpdateUserInput", {
  description: "Changes to a user; omitted fields stay as they are, null clears optional ones.",
  fields: (t) => ({
    name: t.string({ description: `Display name, ${rule(userChanges.name)}.` }),
    email: t.string({
      description: `Email address, ${rule(userChanges.email)}; unique in the tenant. Only the API key changes it (a new address is unverified unless emailVerified is true); users change their own with requestEmailChange.`,
    }),
    emailVerified: t.boolean({
      description: "Mark the address verified or not (API key only).",
    }),
    phone: t.string({ description: `Phone number, ${rule(userChanges.phone)}.` }),
    avatarUrl: t.string({ description: `The avatar image, ${rule(userChanges.avatarUrl)}.` }),
    active: t.boolean({ description: "Deactivate or reactivate the user (needs users:update)." }),
  }),
});

builder.queryFields((t) => ({
  user: t.prismaField({
    type: "User",
    nullable: true,
    description: "A user of the tenant, or null when there is none with this id.",
    authScopes: { permission: "users:read" },
    args: { id: t.arg.id({ required: true, description: "User id." }) },
    resolve: (_query, _root, { id }, ctx) => users.findUser(ctx, id),
  }),
  users: t.field({
    type: UserConnection,
    description: "Users of the tenant, oldest first, optionally filtered by name or email.",
    authScopes: { permission: "users:read" },
    args: {
      first: t.arg.int({ description: "Page size, 0-100 (default 20)." }),
      after: t.arg.string({ description: "Cursor of the last user of the previous page." }),
      search: t.arg.string({ description: "Case-insensitive substring of the name or email." }),
    },
    resolve: (_root, args, ctx) => users.listUsers(ctx, args),
  }),
}));

builder.mutationFields((t) => ({
  createUser: t.prismaField({
    type: "User",
    description: "Creates a user in the tenant.",
    authScopes: { permission: "users:create" },
    args: { input: t.arg({ type: CreateUserInput, required: true, description: "The new user." }) },
    resolve: (_query, _root, { input }, ctx) => users.createUser(ctx, input),
  }),
  updateUser: t.prismaField({
    type: "User",
    description:
      "Updates a user. Users may update their own profile; others need users:update. The email address changes only by the API key (or requestEmailChange).",
    authScopes: { authenticated: true },
    args: {
      id: t.arg.id({ required: true, description: "User id." }),
      input: t.arg({
        type: UpdateUserInput,
        required: true,
        description: "The changes; omitted fields stay as they are.",
      }),
    },
    resolve: (_query, _root, { id, input }, ctx) => users.updateUser(ctx, id, input),
  }),
  deleteUser: t.id({
    description: "Deletes a user: personal data is erased, memberships end, their messages stay. Returns the id.",
    authScopes: { permission: "users:delete" },
    args: { id: t.arg.id({ required: true, description: "User id." }) },
    resolve: (_root, { id }, ctx) => users.deleteUser(ctx, id),
  }),
}));
