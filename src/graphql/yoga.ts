import { blockFieldSuggestionsPlugin } from "@escape.tech/graphql-armor-block-field-suggestions";
import { maxAliasesPlugin } from "@escape.tech/graphql-armor-max-aliases";
import { maxDepthPlugin } from "@escape.tech/graphql-armor-max-depth";
import { maxDirectivesPlugin } from "@escape.tech/graphql-armor-max-directives";
import { maxTokensPlugin } from "@escape.tech/graphql-armor-max-tokens";
import { GraphQLError, NoSchemaIntrospectionCustomRule } from "graphql";
import { createYoga, type Plugin, type YogaServerInstance } from "graphql-yoga";
import { credentialsFromHeaders } from "../auth/credentials.ts";
import { type AppDeps, type Context, createContext } from "../context.ts";
import { corsPlugin } from "../http/cors.ts";
import { type GateContext, requestGuardPlugin } from "../http/request-guard.ts";
import { clientInfo, type NodeServerContext } from "../http/respond.ts";
import { type Route, routesPlugin } from "../http/routes.ts";
import { schema } from "../schema/index.ts";
import { queryCostPlugin } from "./cost.ts";
import { createErrorMasker, errorCodesPlugin } from "./errors.ts";
import { createGraphiQLRenderer, graphiqlOptions } from "./graphiql.ts";
import { inputGuardsPlugin } from "./input-guards.ts";
import { observePlugin, type RequestInfo, requestIdPlugin } from "./observe.ts";
import { sharedExecutionPlugin } from "./shared-execution.ts";
import { trustedDocumentsPlugins } from "./trusted-documents.ts";

export const GRAPHQL_ENDPOINT = "/graphql";

/** What the server passes to Yoga with each request; the WebSocket server brings its own context. */
export interface ServerContext extends NodeServerContext, GateContext {
  chatContext?: Context;
  /** The request's id and start (requestIdPlugin). */
  requestInfo?: RequestInfo;
}

export type ChatYoga = YogaServerInstance<ServerContext, object>;

function armorPlugins() {
  return [
    maxTokensPlugin({ n: 3000 }),
    maxDepthPlugin({ n: 12, flattenFragments: true }),
    maxAliasesPlugin({ n: 20 }),
    maxDirectivesPlugin({ n: 20 }),
    blockFieldSuggestionsPlugin(),
  ];
}

/**
 * A request Yoga could not even read (malformed JSON in GET parameters, a multipart map
 * of the wrong shape) is the client's fault: BAD_USER_INPUT, never a masked server error.
 */
const requestParseErrorsPlugin: Plugin = {
  onRequestParse({ requestParser, setRequestParser }) {
    if (!requestParser) return;
    setRequestParser(async (request) => {
      try {
        return await requestParser(request);
      } catch (error) {
        if (error instanceof GraphQLError || (error as Error)?.name === "AbortError") throw error;
        throw new GraphQLError("The request could not be parsed", {
          extensions: { code: "BAD_USER_INPUT", http: { status: 400 } },
        });
      }
    });
  },
};

/** INTROSPECTION=false (production's default without GraphiQL): `__schema` and `__type` fail validation. */
const noIntrospectionPlugin: Plugin = {
  onValidate({ addValidationRule }) {
    addValidationRule(NoSchemaIntrospectionCustomRule);
  },
};

/**
 * The GraphQL endpoint and the routes beside it, behind one pipeline: the same plugins
 * serve requests from Node's HTTP server (Yoga's own adapter) and from `fetch`.
 */
export function createGraphQLServer(deps: AppDeps, routes: readonly Route[]): ChatYoga {
  const { config, log } = deps;
  return createYoga<ServerContext>({
    schema,
    graphqlEndpoint: GRAPHQL_ENDPOINT,
    healthCheckEndpoint: "/health",
    landingPage: false,
    // CORS_ORIGINS, applied by corsPlugin to the routes beside GraphQL as well.
    cors: false,
    // Served from the package (no CDN); subscriptions take credentials from the headers tab.
    graphiql: config.graphiql ? graphiqlOptions : false,
    renderGraphiQL: createGraphiQLRenderer(),
    logging: {
      debug: (...args) => log.debug(args.map(String).join(" ")),
      info: (...args) => log.info(args.map(String).join(" ")),
      warn: (...args) => log.warn(args.map(String).join(" ")),
      // Yoga reports each unexpected error here as well; the masker has logged it once, with its id.
      error: (...args) => log.debug(args.map(String).join(" ")),
    },
    context: async ({ request, chatContext, req, verifiedPrincipal, requestInfo }) =>
      chatContext ??
      createContext(
        deps,
        credentialsFromHeaders(request.headers),
        requestInfo?.id,
        new URL(request.url).origin,
        clientInfo(config, request, { req }),
        verifiedPrincipal,
      ),
    // Never attach originalError details, whatever NODE_ENV says.
    maskedErrors: { isDev: false, maskError: createErrorMasker(log) },
    plugins: [
      requestIdPlugin,
      corsPlugin(config),
      routesPlugin(routes, log),
      requestGuardPlugin(deps, GRAPHQL_ENDPOINT),
      requestParseErrorsPlugin,
      ...(deps.trustedDocuments ? trustedDocumentsPlugins(deps, deps.trustedDocuments) : []),
      ...(config.introspection ? [] : [noIntrospectionPlugin]),
      ...armorPlugins(),
      queryCostPlugin({ maxCost: config.maxQueryNodes }),
      inputGuardsPlugin,
      sharedExecutionPlugin,
      errorCodesPlugin,
      observePlugin(deps),
    ],
  });
}
