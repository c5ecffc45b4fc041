import { describe, expect, it } from "vitest";
import { backends } from "../helpers/backends.ts";
import { ok, request } from "../helpers/client.ts";
import { createTenant, type TestUser } from "../helpers/fixtures.ts";
import {
  AddMembers,
  Conversation,
  CreateGroup,
  DeleteGroup,
  GroupMessages,
  Groups,
  OpenDirect,
  RemoveMember,
  SetMemberRole,
  UpdateGroupWithMessages,
} from "../operations/conversations.ts";
import { Messages, PinMessage, SendMessage } from "../operations/messages.ts";
import { AssignRole, Roles } from "../operations/roles.ts";
import { createTeam, expectNoLeak, fieldOf, firstError, useAccessWorld } from "./world.ts";

/** Tenant-level group administration: Query.groups for groups:read, management of groups one is not in. */
describe.each(backends())("group administration on %s", (backend) => {
  const w = useAccessWorld(backend);

  /** A team (Alice owns "Team" with Bob and Carol) where Dave, outside the group, holds the tenant's admin role. */
  async function adminTeam() {
    const team = await createTeam(w.url);
    const { roles } = await ok(w.url, Roles, {}, { apiKey: team.apiKey });
    const admin = roles.find((role) => role.name === "admin")?.id as string;
    await ok(w.url, AssignRole, { userId: team.dave.id, roleId: admin }, { apiKey: team.apiKey });
    const secret = `secret plans ${Math.random().toString(36).slice(2)}`;
    const { sendMessage } = await ok(
      w.url,
      SendMessage,
      { input: { conversationId: team.group, body: secret } },
      { token: team.alice.token },
    );
    await ok(w.url, PinMessage, { id: sendMessage.id }, { token: team.alice.token });
    return { ...team, secret };
  }

  it("the default member role cannot list the tenant's groups: FORBIDDEN", async () => {
    const team = await createTeam(w.url);
    const result = await request(w.url, Groups, {}, { token: team.bob.token });
    expect(firstError(result).extensions?.code).toBe("FORBIDDEN");
    expect(fieldOf(result, "groups")).toBeNull();
  });

  it("an admin lists every group with its members, not its messages; the API key sees everything", async () => {
    const team = await adminTeam();
    const { groups } = await ok(w.url, Groups, {}, { token: team.dave.token });
    const listed = groups.edges.map((edge) => edge.node);
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({
      id: team.group,
      name: "Team",
      kind: "GROUP",
      memberCount: 3,
      unreadCount: 0,
      lastMessage: null,
      pinnedMessages: [],
    });
    expect(listed[0]?.members.map((member) => member.user.id).sort()).toEqual(
      [team.alice.id, team.bob.id, team.carol.id].sort(),
    );
    expectNoLeak([team.secret], groups);

    const messages = await request(w.url, GroupMessages, {}, { token: team.dave.token });
    expect(firstError(messages).extensions?.code).toBe("FORBIDDEN");
    expectNoLeak([team.secret], messages);
    // Still not a member: the conversation itself and its history stay closed.
    const conversation = await request(w.url, Conversation, { id: team.group }, { token: team.dave.token });
    expect(firstError(conversation).extensions?.code).toBe("FORBIDDEN");
    const history = await request(w.url, Messages, { conversationId: team.group, last: 5 }, { token: team.dave.token });
    expect(firstError(history).extensions?.code).toBe("FORBIDDEN");
    expectNoLeak([team.secret], [conversation, history]);

    const byKey = await ok(w.url, Groups, {}, { apiKey: team.apiKey });
    expect(byKey.groups.edges[0]?.node.lastMessage?.body).toBe(team.secret);
    // A member of the group who holds groups:read sees its messages as usual.
    const { roles } = await ok(w.url, Roles, {}, { apiKey: team.apiKey });
    const admin = roles.find((role) => role.name === "admin")?.id as string;
    await ok(w.url, AssignRole, { userId: team.bob.id, roleId: admin }, { apiKey: team.apiKey });
    const asMember = await ok(w.url, Groups, {}, { token: team.bob.token });
    expect(asMember.groups.edges[0]?.node.lastMessage?.body).toBe(team.secret);
    expect(asMember.groups.edges[0]?.node.pinnedMessages.map((m) => m.body)).toEqual([team.secret]);
  });

  it("lists groups only (no direct conversations), searches names case-insensitively and pages", async () => {
    const tenant = await createTenant(w.url, ["Owner", "Other"]);
    const [owner, other] = tenant.users as [TestUser, TestUser];
    const apiKey = tenant.apiKey;
    for (const name of ["Alpha team", "Beta", "the ALPHA two"]) {
      await ok(w.url, CreateGroup, { input: { name, memberIds: [other.id] } }, { token: owner.token });
    }
    await ok(w.url, OpenDirect, { userId: other.id }, { token: owner.token });

    const all = await ok(w.url, Groups, { first: 10 }, { apiKey });
    expect(all.groups.edges.map((edge) => edge.node.name)).toEqual(["the ALPHA two", "Beta", "Alpha team"]);
    const found = await ok(w.url, Groups, { search: "alpha" }, { apiKey });
    expect(found.groups.edges.map((edge) => edge.node.name)).toEqual(["the ALPHA two", "Alpha team"]);
    const none = await ok(w.url, Groups, { search: "%" }, { apiKey });
    expect(none.groups.edges).toEqual([]);

    const first = await ok(w.url, Groups, { first: 2 }, { apiKey });
    expect(first.groups.pageInfo.hasNextPage).toBe(true);
    const rest = await ok(w.url, Groups, { first: 2, after: first.groups.pageInfo.endCursor }, { apiKey });
    expect(rest.groups.edges.map((edge) => edge.node.name)).toEqual(["Alpha team"]);
    expect(rest.groups.pageInfo.hasNextPage).toBe(false);

    const tooLong = await request(w.url, Groups, { search: "x".repeat(201) }, { apiKey });
    expect(firstError(tooLong).extensions?.code).toBe("BAD_USER_INPUT");
  });

  it("never lists another tenant's groups", async () => {
    const { groups } = await ok(w.url, Groups, { first: 100 }, { apiKey: w.home.apiKey });
    const ids = groups.edges.map((edge) => edge.node.id);
    expect(ids).toContain(w.home.group);
    expect(ids).not.toContain(w.intruder.group);
    const found = await ok(w.url, Groups, { first: 100, search: "Intruder" }, { apiKey: w.home.apiKey });
    expect(found.groups.edges.map((edge) => edge.node.id)).not.toContain(w.intruder.group);
  });

  it("holders of groups:update and groups:delete manage groups they are not in, and get no messages back", async () => {
    const team = await adminTeam();
    const asDave = { token: team.dave.token };
    const renamed = await ok(w.url, UpdateGroupWithMessages, { id: team.group, input: { name: "Renamed" } }, asDave);
    expect(renamed.updateGroup).toEqual({ id: team.group, name: "Renamed", lastMessage: null, pinnedMessages: [] });
    expectNoLeak([team.secret], renamed);

    await ok(w.url, SetMemberRole, { conversationId: team.group, userId: team.bob.id, role: "ADMIN" }, asDave);
    await ok(w.url, RemoveMember, { conversationId: team.group, userId: team.carol.id }, asDave);
    // Adding themselves makes them a member, with everything a member sees.
    await ok(w.url, AddMembers, { conversationId: team.group, userIds: [team.dave.id] }, asDave);
    const joined = await ok(w.url, Conversation, { id: team.group }, asDave);
    expect(joined.conversation?.id).toBe(team.group);
    await ok(w.url, RemoveMember, { conversationId: team.group, userId: team.dave.id }, asDave);
    expect(await ok(w.url, DeleteGroup, { id: team.group }, asDave)).toEqual({ deleteGroup: team.group });

    // A plain member of the tenant still cannot touch a group they are not in.
    const other = await createTeam(w.url);
    const refused = await request(w.url, DeleteGroup, { id: other.group }, { token: other.dave.token });
    expect(firstError(refused).extensions?.code).toBe("FORBIDDEN");
    // Direct conversations are never managed, not even by an admin.
    const { openDirectConversation } = await ok(
      w.url,
      OpenDirect,
      { userId: team.bob.id },
      { token: team.alice.token },
    );
    const direct = await request(w.url, DeleteGroup, { id: openDirectConversation.id }, asDave);
    expect(firstError(direct).extensions?.code).toBe("FORBIDDEN");
  });
});
