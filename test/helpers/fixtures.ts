import { randomBytes } from "node:crypto";
import { CreateTenant } from "../operations/tenants.ts";
import { CreateUser, IssueUserToken } from "../operations/users.ts";
import { ok } from "./client.ts";

export interface TestUser {
  id: string;
  name: string;
  token: string;
}

export interface TestTenant {
  id: string;
  apiKey: string;
  users: TestUser[];
}

const suffix = () => randomBytes(4).toString("hex");

export async function createUserWithToken(url: string, apiKey: string, name: string): Promise<TestUser> {
  const { createUser } = await ok(
    url,
    CreateUser,
    { input: { name, email: `${name.toLowerCase()}-${suffix()}@example.com` } },
    { apiKey },
  );
  const { issueUserToken } = await ok(url, IssueUserToken, { userId: createUser.id }, { apiKey });
  return { id: createUser.id, name, token: issueUserToken.token };
}

/** A fresh tenant with named users, each with a token: cheap enough for every test. */
export async function createTenant(url: string, userNames: string[] = ["Alice", "Bob", "Carol"]): Promise<TestTenant> {
  const { createTenant } = await ok(url, CreateTenant, { input: { name: `Tenant ${suffix()}` } });
  const users: TestUser[] = [];
  for (const name of userNames) users.push(await createUserWithToken(url, createTenant.apiKey, name));
  return { id: createTenant.tenant.id, apiKey: createTenant.apiKey, users };
}
