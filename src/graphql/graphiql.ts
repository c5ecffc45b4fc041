import type { GraphiQLOptions } from "graphql-yoga";

export const graphiqlOptions: GraphiQLOptions = {
  title: "Chat API",
  subscriptionsProtocol: "WS",
  defaultHeaders: JSON.stringify({ Authorization: "Bearer <access token>" }, null, 2),
};

/**
 * Runs in the page before GraphiQL starts. GraphiQL sends the headers tab with HTTP requests
 * only; a WebSocket carries credentials in its connection_init payload, which GraphiQL builds
 * from a static option. This gives it a function instead: at each connect it reads the active
 * tab's headers (GraphiQL keeps them in localStorage) and passes `Authorization` and
 * `X-API-Key` on as the `authorization` / `apiKey` the server reads from connection_init.
 * The socket closes when its last subscription ends, so the next one uses the tab's current
 * headers. A `connectionParams` object in the headers tab is passed on as it is.
 * Plain browser JavaScript, kept as text so no build step rewrites it.
 */
const CONNECTION_PARAMS_SCRIPT = `function () {
  var headers = {};
  try {
    var state = JSON.parse(window.localStorage.getItem("graphiql:tabState") || "null");
    var tab = state && state.tabs && state.tabs[state.activeTabIndex || 0];
    var text = tab && typeof tab.headers === "string" ? tab.headers.trim() : "";
    if (text) headers = JSON.parse(text);
  } catch (error) {
    // Headers that are not JSON are not sent over HTTP either.
  }
  var params = {};
  Object.keys(headers || {}).forEach(function (name) {
    var value = headers[name];
    var key = name.toLowerCase();
    if (key === "authorization" && typeof value === "string") params.authorization = value;
    else if (key === "x-api-key" && typeof value === "string") params.apiKey = value;
    else if (key === "connectionparams" && value && typeof value === "object") Object.assign(params, value);
  });
  return params;
}`;

const RENDER_CALL = "YogaGraphiQL.renderYogaGraphiQL(";

/**
 * GraphiQL from `@graphql-yoga/render-graphiql`: its scripts, styles and editor workers are
 * inlined in the page, so it works without a CDN or any internet access. The package (9 MB
 * of script) is loaded on the first request for the page, not at start, and each page is
 * rendered once.
 */
export function createGraphiQLRenderer(): (options: GraphiQLOptions) => Promise<string> {
  const pages = new Map<string, Promise<string>>();
  const render = async (options: GraphiQLOptions) => {
    const { renderGraphiQL } = await import("@graphql-yoga/render-graphiql");
    const page = renderGraphiQL(options);
    // The call that starts GraphiQL comes last, after the inlined bundle.
    const at = page.lastIndexOf(RENDER_CALL);
    if (at < 0) throw new Error("Unexpected GraphiQL page: its render call was not found");
    const wrapped = `((root, options) => ${RENDER_CALL}root, Object.assign(options, { connectionParams: ${CONNECTION_PARAMS_SCRIPT} })))(`;
    return page.slice(0, at) + wrapped + page.slice(at + RENDER_CALL.length);
  };
  return (options) => {
    const key = JSON.stringify(options);
    let page = pages.get(key);
    if (!page) {
      page = render(options);
      pages.set(key, page);
      page.catch(() => pages.delete(key));
    }
    return page;
  };
}
