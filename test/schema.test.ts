import { readFileSync } from "node:fs";
import {
  type GraphQLField,
  type GraphQLNamedType,
  isEnumType,
  isInputObjectType,
  isInterfaceType,
  isObjectType,
  printSchema,
} from "graphql";
import { describe, expect, it } from "vitest";
import { schema } from "../src/schema/index.ts";
import * as accounts from "../src/services/accounts.ts";
import * as conversations from "../src/services/conversations.ts";
import * as externalJwt from "../src/services/external-jwt.ts";
import * as messages from "../src/services/messages.ts";
import * as roles from "../src/services/roles.ts";
import * as tenants from "../src/services/tenants.ts";
import * as users from "../src/services/users.ts";
import * as webhooks from "../src/services/webhooks.ts";
import { wordFilterInput } from "../src/services/word-filter.ts";

const BUILT_IN = (type: GraphQLNamedType) =>
  type.name.startsWith("__") || ["String", "Boolean", "Int", "Float", "ID"].includes(type.name);

describe("schema", () => {
  it("schema.graphql is the printed Pothos schema (run `npm run schema:print` when this fails)", () => {
    const committed = readFileSync(new URL("../schema.graphql", import.meta.url), "utf8");
    expect(committed).toBe(`${printSchema(schema)}\n`);
  });

  it("describes every public type, field, argument and enum value", () => {
    const missing: string[] = [];
    for (const type of Object.values(schema.getTypeMap())) {
      if (BUILT_IN(type)) continue;
      if (!type.description) missing.push(type.name);
      if (isObjectType(type) || isInterfaceType(type) || isInputObjectType(type)) {
        for (const field of Object.values(type.getFields())) {
          if (!field.description) missing.push(`${type.name}.${field.name}`);
          for (const arg of "args" in field ? field.args : []) {
            if (!arg.description) {
              missing.push(`${type.name}.${field.name}(${arg.name})`);
            }
          }
        }
      }
      if (isEnumType(type)) {
        for (const value of type.getValues()) if (!value.description) missing.push(`${type.name}.${value.name}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it("declares each input with exactly the fields its service validates", () => {
    const validated: Record<string, { shape: object }> = {
      SignUpInput: accounts.signUpInput,
      SignInInput: accounts.signInInput,
      RequestEmailCodeInput: accounts.codeRequestInput,
      SignInWithEmailCodeInput: accounts.codeSignInInput,
      ResetPasswordInput: accounts.resetInput,
      ChangePasswordInput: accounts.changePasswordInput,
      UpdateProfileInput: accounts.profileInput,
      TenantAuthSettingsInput: accounts.settingsInput,
      ExternalJwtInput: externalJwt.externalJwtInput,
      CreateGroupInput: conversations.createGroupInput,
      UpdateGroupInput: conversations.updateGroupInput,
      SendMessageInput: messages.sendMessageInput(1),
      CreateRoleInput: roles.createRoleInput,
      UpdateRoleInput: roles.updateRoleInput,
      CreateTenantInput: tenants.createTenantInput,
      UpdateTenantInput: tenants.updateTenantInput,
      CreateUserInput: users.createUserInput,
      UpdateUserInput: users.updateUserInput,
      CreateWebhookInput: webhooks.createWebhookInput,
      UpdateWebhookInput: webhooks.updateWebhookInput,
      WordFilterInput: wordFilterInput,
    };
    const inputs = Object.values(schema.getTypeMap()).filter(isInputObjectType);
    expect(inputs.map((type) => type.name).sort()).toEqual(Object.keys(validated).sort());
    for (const type of inputs) {
      expect(Object.keys(type.getFields()).sort(), type.name).toEqual(
        Object.keys(validated[type.name]?.shape ?? {}).sort(),
      );
    }
  });

  it("gives every root field an explicit authorization decision", () => {
    const undecided: string[] = [];
    for (const root of [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()]) {
      for (const field of Object.values(root?.getFields() ?? {}) as GraphQLField<unknown, unknown>[]) {
        if (!scopesOf(field)) undecided.push(`${root?.name}.${field.name}`);
      }
    }
    expect(undecided).toEqual([]);
  });

  it("gives every object type (or each of its fields) an explicit authorization decision", () => {
    // Pagination wrappers only carry objects whose own types decide.
    const structural = (name: string) => name === "PageInfo" || /(Connection|Edge)$/.test(name);
    const roots = new Set(["Query", "Mutation", "Subscription"]);
    const undecided: string[] = [];
    for (const type of Object.values(schema.getTypeMap())) {
      if (!isObjectType(type) || BUILT_IN(type) || roots.has(type.name) || structural(type.name)) continue;
      if (scopesOf(type)) continue;
      for (const field of Object.values(type.getFields())) {
        if (!scopesOf(field)) undecided.push(`${type.name}.${field.name}`);
      }
    }
    expect(undecided).toEqual([]);
  });
});

function scopesOf(node: { extensions?: Record<string, unknown> | null }): unknown {
  const options = (node.extensions?.pothosOptions ?? {}) as { authScopes?: unknown };
  return options.authScopes;
}
