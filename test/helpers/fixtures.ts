import { randomBytes } from "node:crypto";
import { graphql } from "../generated/gql.ts";
import { ok } from "./client.ts";

export const CreateTenant = graphql(`
  mutation CreateTenant($input: CreateTenantInput!) {
    createTenant(input: $input) {
      apiKey
      tenant {
        id
        name
      }
    }
  }
`);

export const CreateUser = graphql(`
  mutation CreateUser($input: CreateUserInput!) {
    createUser(input: $input) {
      id
      name
      email
    }
  }
`);

export const IssueUserToken = graphql(`
  mutation IssueUserToken($userId: ID!, $expiresInSeconds: Int) {
    issueUserToken(userId: $userId, expiresInSeconds: $expiresInSeconds) {
      token
      expiresAt
    }
  }
`);

export const CreateGroup = graphql(`
  mutation CreateGroup($input: CreateGroupInput!) {
    createGroup(input: $input) {
      id
      kind
      name
      members {
        role
        user {
          id
        }
      }
    }
  }
`);

export const SendMessage = graphql(`
  mutation SendMessage($input: SendMessageInput!) {
    sendMessage(input: $input) {
      id
      seq
      cursor
      body
      type
      clientMessageId
      sender {
        id
      }
      conversation {
        id
        kind
      }
    }
  }
`);

export const OpenDirect = graphql(`
  mutation OpenDirect($userId: ID!) {
    openDirectConversation(userId: $userId) {
      id
      kind
      members {
        user {
          id
        }
      }
    }
  }
`);

export const Messages = graphql(`
  query Messages($conversationId: ID!, $first: Int, $after: String, $last: Int, $before: String) {
    messages(conversationId: $conversationId, first: $first, after: $after, last: $last, before: $before) {
      edges {
        cursor
        node {
          seq
          body
        }
      }
      pageInfo {
        hasNextPage
        hasPreviousPage
        startCursor
        endCursor
      }
    }
  }
`);

export const MarkRead = graphql(`
  mutation MarkRead($conversationId: ID!, $upToMessageId: ID!) {
    markRead(conversationId: $conversationId, upToMessageId: $upToMessageId) {
      lastReadSeq
      readAt
      user {
        id
      }
      lastReadMessage {
        id
      }
    }
  }
`);

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
