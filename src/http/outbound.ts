import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from "node:dns";
import { get as httpGet, request as httpRequest } from "node:http";
import { get as httpsGet, request as httpsRequest } from "node:https";
import { BlockList, isIP } from "node:net";

/**
 * The one place that decides which URLs the server may call on a tenant's behalf (JWKS of an
 * identity provider, webhooks): a tenant must not make the server reach its own network.
 *
 * - https always; plain http only to a loopback host, and only outside production mode;
 * - no credentials, fragments or unusual ports in the URL;
 * - in production mode, a host must not resolve to a loopback, private, link-local or
 *   otherwise non-public address (checked on every connection, by the socket's DNS lookup).
 */
export interface OutboundPolicy {
  production: boolean;
}

const LOOPBACK_NAMES = new Set(["localhost", "localhost."]);

const nonPublic = new BlockList();
for (const [net, prefix] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const) {
  nonPublic.addSubnet(net, prefix, "ipv4");
}
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are checked against the IPv4 rules by BlockList.
for (const [net, prefix] of [
  ["::", 128],
  ["::1", 128],
  ["64:ff9b::", 96],
  ["fc00::", 7],
  ["fe80::", 10],
  ["ff00::", 8],
] as const) {
  nonPublic.addSubnet(net, prefix, "ipv6");
}

function bareHost(hostname: string): string {
  return hostname.startsWith("[") && hostname.endsWith("]") ? hostname.slice(1, -1) : hostname;
}

/** Whether an IP address (v4 or v6) is loopback. */
export function isLoopbackAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return address.startsWith("127.");
  if (family === 6) return address === "::1" || /^::ffff:127\./i.test(address);
  return false;
}

/** Whether an IP address is one the server must not call in production mode. */
export function isNonPublicAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return true;
  return nonPublic.check(address, family === 4 ? "ipv4" : "ipv6");
}

function isLoopbackHost(hostname: string): boolean {
  const host = bareHost(hostname).toLowerCase();
  return LOOPBACK_NAMES.has(host) || isLoopbackAddress(host);
}

/**
 * Checks a URL's shape against the rules; returns why it is refused, or null when it may be
 * used. Does not resolve the host (outboundGetJson checks the addresses it connects to).
 */
export function outboundUrlProblem(raw: string, policy: OutboundPolicy): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return "must be an absolute URL";
  }
  if (url.username || url.password) return "must not carry credentials";
  if (url.hash) return "must not have a fragment";
  if (url.protocol === "https:") {
    if (policy.production && isIP(bareHost(url.hostname)) && isNonPublicAddress(bareHost(url.hostname))) {
      return "must not point to a private or loopback address";
    }
    if (policy.production && isLoopbackHost(url.hostname)) return "must not point to a loopback host";
    return null;
  }
  if (url.protocol === "http:") {
    if (policy.production) return "must use https";
    if (!isLoopbackHost(url.hostname)) return "must use https (plain http only to a loopback host)";
    return null;
  }
  return "must use https";
}

/** An outbound URL refused by the rules, or a call under them that failed. */
export class OutboundUrlError extends Error {}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A DNS lookup for outbound calls: in production mode it refuses a host that resolves to a
 * non-public address. Used as the socket's own lookup, so the address checked is the address
 * connected to (no window for a DNS answer that changes in between).
 */
export function guardedLookup(policy: OutboundPolicy) {
  return (hostname: string, options: LookupOptions, callback: LookupCallback): void => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, []);
      const list = addresses as LookupAddress[];
      if (policy.production && (list.length === 0 || list.some((entry) => isNonPublicAddress(entry.address)))) {
        return callback(
          new OutboundUrlError("URL resolves to a private or loopback address") as NodeJS.ErrnoException,
          [],
        );
      }
      if (options.all) return callback(null, list);
      const first = list[0] as LookupAddress;
      callback(null, first.address, first.family);
    });
  };
}

/**
 * GET of a JSON document under the rules: the URL's shape checked, in production mode every
 * address connected to public, no redirects followed (a redirect could lead anywhere), a
 * time limit and a size limit on the body.
 */
export async function outboundGetJson(
  raw: string,
  policy: OutboundPolicy,
  options: { timeoutMs?: number; maxBytes?: number } = {},
): Promise<unknown> {
  const problem = outboundUrlProblem(raw, policy);
  if (problem) throw new OutboundUrlError(`URL ${problem}`);
  const url = new URL(raw);
  const host = bareHost(url.hostname);
  if (policy.production && isIP(host) && isNonPublicAddress(host)) {
    throw new OutboundUrlError("URL points to a private or loopback address");
  }
  const maxBytes = options.maxBytes ?? 256 * 1024;
  const get = url.protocol === "https:" ? httpsGet : httpGet;
  const body = await new Promise<Buffer>((resolve, reject) => {
    const request = get(
      url,
      {
        headers: { accept: "application/json" },
        lookup: guardedLookup(policy) as never,
        signal: AbortSignal.timeout(options.timeoutMs ?? 5000),
      },
      (response) => {
        if (response.statusCode !== 200) {
          response.resume();
          reject(new OutboundUrlError(`${url.origin} answered ${response.statusCode}`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        response.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) {
            response.destroy();
            reject(new OutboundUrlError(`${url.origin} answered more than ${maxBytes} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        response.on("end", () => resolve(Buffer.concat(chunks)));
        response.on("error", reject);
      },
    );
    request.on("error", reject);
  });
  return JSON.parse(body.toString("utf8"));
}

/** What an outbound POST got back: the status and at most the first `maxBytes` of the body. */
export interface OutboundAnswer {
  status: number;
  body: string;
}

/**
 * POST under the rules (webhooks): the URL's shape checked, in production mode every address
 * connected to public (checked by the socket's own lookup, no connection reuse), no redirects
 * followed (a 3xx is just the answer), a time limit on the whole exchange, and the answer's body
 * read up to `maxBytes` only (the rest is dropped with the connection).
 */
export async function outboundPost(
  raw: string,
  policy: OutboundPolicy,
  request: { headers: Record<string, string>; body: string; timeoutMs: number; maxBytes?: number },
): Promise<OutboundAnswer> {
  const problem = outboundUrlProblem(raw, policy);
  if (problem) throw new OutboundUrlError(`URL ${problem}`);
  const url = new URL(raw);
  const maxBytes = request.maxBytes ?? 1024;
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  const body = Buffer.from(request.body, "utf8");
  return new Promise<OutboundAnswer>((resolve, reject) => {
    const outgoing = send(
      url,
      {
        method: "POST",
        headers: { ...request.headers, "content-length": String(body.length) },
        lookup: guardedLookup(policy) as never,
        // A fresh connection each time: a kept-alive socket would skip the address check.
        agent: false,
        signal: AbortSignal.timeout(request.timeoutMs),
      },
      (response) => {
        const chunks: Buffer[] = [];
        let size = 0;
        const finish = () => {
          resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") });
          response.destroy();
        };
        response.on("data", (chunk: Buffer) => {
          const room = maxBytes - size;
          if (room > 0) chunks.push(chunk.subarray(0, room));
          size += chunk.length;
          if (size >= maxBytes) finish();
        });
        response.on("end", finish);
        response.on("error", reject);
      },
    );
    outgoing.on("error", reject);
    outgoing.end(body);
  });
}
