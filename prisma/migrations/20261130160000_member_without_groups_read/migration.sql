-- The default member role no longer lists every group of the tenant (Query.groups needs
-- groups:read, which is administration). Only member roles still holding exactly the old
-- default permissions change; a tenant that edited its member role keeps its choice.
UPDATE "Role"
   SET "permissions" = array_remove("permissions", 'groups:read'),
       "updatedAt" = now()
 WHERE "systemKey" = 'member'
   AND "permissions" @> ARRAY['users:read', 'groups:create', 'groups:read', 'chats:create', 'chats:read', 'chats:update', 'chats:delete']
   AND "permissions" <@ ARRAY['users:read', 'groups:create', 'groups:read', 'chats:create', 'chats:read', 'chats:update', 'chats:delete'];
