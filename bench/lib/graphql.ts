/** A minimal GraphQL-over-HTTP client for seeding and driving benchmarks. */
export async function gql<T = Record<string, unknown>>(
  url: string,
  query: string,
  variables: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Promise<T> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ query, variables }),
  });
  const result = (await response.json()) as { data?: T; errors?: { message: string }[] };
  if (result.errors?.length || !result.data) {
    throw new Error(`GraphQL error: ${JSON.stringify(result.errors ?? result)}`);
  }
  return result.data;
}

export interface World {
  apiKey: string;
  conversationId: string;
  senderToken: string;
  /** Tokens of the group's members who subscribe. */
  memberTokens: string[];
}

/** A tenant with one group: a sender and `members` subscribing users. */
export async function seedGroup(url: string, members: number): Promise<World> {
  const tag = Math.random().toString(36).slice(2, 8);
  const { createTenant } = await gql<{ createTenant: { apiKey: string } }>(
    url,
    "mutation($input: CreateTenantInput!) { createTenant(input: $input) { apiKey } }",
    { input: { name: `bench-${tag}` } },
  );
  const auth = { "x-api-key": createTenant.apiKey };
  const createUser = async (name: string) => {
    const data = await gql<{ createUser: { id: string } }>(
      url,
      "mutation($input: CreateUserInput!) { createUser(input: $input) { id } }",
      { input: { name } },
      auth,
    );
    const token = await gql<{ issueUserToken: { token: string } }>(
      url,
      "mutation($id: ID!) { issueUserToken(userId: $id, expiresInSeconds: 86400) { token } }",
      { id: data.createUser.id },
      auth,
    );
    return { id: data.createUser.id, token: token.issueUserToken.token };
  };
  const sender = await createUser("sender");
  const users: { id: string; token: string }[] = [];
  for (let i = 0; i < members; i += 10) {
    users.push(
      ...(await Promise.all(Array.from({ length: Math.min(10, members - i) }, (_, j) => createUser(`m${i + j}`)))),
    );
  }
  const group = await gql<{ createGroup: { id: string } }>(
    url,
    "mutation($input: CreateGroupInput!) { createGroup(input: $input) { id } }",
    { input: { name: "bench", memberIds: [sender.id, ...users.map((user) => user.id)] } },
    auth,
  );
  return {
    apiKey: createTenant.apiKey,
    conversationId: group.createGroup.id,
    senderToken: sender.token,
    memberTokens: users.map((user) => user.token),
  };
}

export const SEND = "mutation($input: SendMessageInput!) { sendMessage(input: $input) { id } }";

/** Sends one message whose body carries the wall-clock send time in milliseconds. */
export function sendStamped(url: string, token: string, conversationId: string): Promise<unknown> {
  const body = `t=${(performance.timeOrigin + performance.now()).toFixed(3)};`;
  return gql(url, SEND, { input: { conversationId, body } }, { authorization: `Bearer ${token}` });
}
