import { graphql } from "../generated/gql.ts";

graphql(`
  fragment RoleFields on Role {
    id
    name
    description
    permissions
    system
  }
`);

export const Roles = graphql(`
  query Roles {
    roles {
      ...RoleFields
    }
  }
`);

export const Role = graphql(`
  query Role($id: ID!) {
    role(id: $id) {
      ...RoleFields
    }
  }
`);

export const PermissionCatalog = graphql(`
  query PermissionCatalog {
    permissionCatalog
  }
`);

export const CreateRole = graphql(`
  mutation CreateRole($input: CreateRoleInput!) {
    createRole(input: $input) {
      ...RoleFields
    }
  }
`);

export const UpdateRole = graphql(`
  mutation UpdateRole($id: ID!, $input: UpdateRoleInput!) {
    updateRole(id: $id, input: $input) {
      ...RoleFields
    }
  }
`);

export const DeleteRole = graphql(`
  mutation DeleteRole($id: ID!) {
    deleteRole(id: $id)
  }
`);

export const AssignRole = graphql(`
  mutation AssignRole($userId: ID!, $roleId: ID!) {
    assignRole(userId: $userId, roleId: $roleId) {
      id
      name
      email
      roles {
        id
        name
        permissions
      }
    }
  }
`);

export const UnassignRole = graphql(`
  mutation UnassignRole($userId: ID!, $roleId: ID!) {
    unassignRole(userId: $userId, roleId: $roleId) {
      id
      name
      email
      roles {
        id
        name
        permissions
      }
    }
  }
`);
