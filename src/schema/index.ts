import { lexicographicSortSchema } from "graphql";
import { builder } from "./builder.ts";
import "./tenant.ts";
import "./viewer.ts";
import "./auth.ts";
import "./user.ts";
import "./conversation.ts";
import "./message.ts";
import "./attachment.ts";
import "./events.ts";
import "./role.ts";
import "./audit.ts";
import "./account.ts";
import "./presence.ts";
import "./webhook.ts";
import "./safety.ts";

export const schema = lexicographicSortSchema(builder.toSchema());
