import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { checkSchema } from "../scripts/schema-diff.ts";

const released = `
  type Query { users(first: Int): [User!]! node(id: ID!): User }
  type User { id: ID! name: String! email: String }
  enum Role { OWNER MEMBER }
  type Mutation { rename(name: String!): User! role: Role }
`;
const changelog = (breaking: string) =>
  `# Changelog\n\n## Unreleased\n\n### Breaking\n\n${breaking}\n\n### Added\n\n## 0.1.0\n\n- \`User.name\`\n`;
const paths = (changes: { path?: string }[]) => changes.map((change) => change.path);

describe("schema changes against the released contract", () => {
  it("a removed field and a changed field type are breaking, and fail until the changelog declares them", async () => {
    const current = released.replace("name: String! email: String", "email: Int");
    const check = await checkSchema(released, current, changelog("(none)"));
    expect(paths(check.breaking).sort()).toEqual(["User.email", "User.name"]);
    expect(paths(check.undeclared).sort()).toEqual(["User.email", "User.name"]);
    // Declared under Unreleased > Breaking: accepted. A mention under an older release is not a declaration.
    const partly = await checkSchema(released, current, changelog("- `User.email`: now an Int"));
    expect(paths(partly.undeclared)).toEqual(["User.name"]);
    const declared = await checkSchema(released, current, changelog("- `User.name`: removed\n- `User.email`: an Int"));
    expect(declared.undeclared).toEqual([]);
  });

  it("additions are safe, a new enum value is dangerous and printed, nothing fails", async () => {
    const current = released
      .replace("email: String }", "email: String avatarUrl: String }")
      .replace("OWNER MEMBER", "OWNER MEMBER GUEST");
    const check = await checkSchema(released, current, changelog("(none)"));
    expect(check.breaking).toEqual([]);
    expect(paths(check.dangerous)).toEqual(["Role.GUEST"]);
    expect(paths(check.safe)).toContain("User.avatarUrl");
    expect(check.undeclared).toEqual([]);
  });

  it("a new required argument is breaking", async () => {
    const current = released.replace("users(first: Int)", "users(first: Int, tenant: ID!)");
    const check = await checkSchema(released, current, changelog("(none)"));
    expect(paths(check.undeclared)).toEqual(["Query.users.tenant"]);
  });

  it("the committed schema has no undeclared breaking change against schema.released.graphql", async () => {
    const read = (name: string) => readFileSync(new URL(`../${name}`, import.meta.url), "utf8");
    const check = await checkSchema(read("schema.released.graphql"), read("schema.graphql"), read("CHANGELOG.md"));
    expect(check.undeclared.map((change) => `${change.path}: ${change.message}`)).toEqual([]);
  });
});
