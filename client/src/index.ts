export { type ChatApolloClient, createApolloClient, ResumableWsLink } from "./apollo.ts";
export * from "./generated/graphql.ts";
export type { ChatClientOptions } from "./options.ts";
export { cursorOf, type ResumeOptions, resumable, subscribeResumable } from "./resume.ts";
export { AuthSession, type Credentials, SessionEndedError, type SessionOptions } from "./session.ts";
export { type ChatUrqlClient, createUrqlClient } from "./urql.ts";
export { createWsClient, type WsOptions, wsUrlOf } from "./ws.ts";
