import { lookup } from "node:dns/promises";
import { BlockList, isIP } from "node:net";

/**
 * The one place that decides which URLs the server may call on a tenant's behalf (JWKS of an
 * identity provider, webhooks): a tenant must not make the server reach its own network.
 *
 * - https always; plain http only to a loopback host, and only outside production mode;
 * - no credentials, fragments or unusual ports in the URL;
 * - in production mode, a host must not resolve to a loopback, private, link-local or
 *   otherwise non-public address (checked when the URL is set and again before each call).
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
 * used. Does not resolve the host (see assertReachable for that).
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

/** An outbound URL refused by the rules. */
export class OutboundUrlError extends Error {}

/**
 * Checks a URL right before calling it: its shape, and in production mode every address its
 * host resolves to.
 */
export async function assertReachable(raw: string, policy: OutboundPolicy): Promise<URL> {
  const problem = outboundUrlProblem(raw, policy);
  if (problem) throw new OutboundUrlError(`URL ${problem}`);
  const url = new URL(raw);
  if (policy.production) {
    const host = bareHost(url.hostname);
    const addresses = isIP(host) ? [{ address: host }] : await lookup(host, { all: true, verbatim: true });
    if (addresses.length === 0 || addresses.some((entry) => isNonPublicAddress(entry.address))) {
      throw new OutboundUrlError("URL resolves to a private or loopback address");
    }
  }
  return url;
}

/**
 * GET under the rules: no redirects followed (a redirect could lead anywhere), a time limit
 * and a size limit on the body.
 */
export async function outboundGetJson(
  raw: string,
  policy: OutboundPolicy,
  options: { timeoutMs?: number; maxBytes?: number } = {},
): Promise<unknown> {
  const url = await assertReachable(raw, policy);
  const maxBytes = options.maxBytes ?? 256 * 1024;
  const response = await fetch(url, {
    redirect: "manual",
    signal: AbortSignal.timeout(options.timeoutMs ?? 5000),
    headers: { accept: "application/json" },
  });
  if (response.status !== 200) {
    await response.body?.cancel().catch(() => {});
    throw new OutboundUrlError(`${url.origin} answered ${response.status}`);
  }
  const declared = Number(response.headers.get("content-length") ?? "0");
  if (declared > maxBytes) {
    await response.body?.cancel().catch(() => {});
    throw new OutboundUrlError(`${url.origin} answered more than ${maxBytes} bytes`);
  }
  const reader = response.body?.getReader();
  if (!reader) throw new OutboundUrlError(`${url.origin} answered no body`);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => {});
      throw new OutboundUrlError(`${url.origin} answered more than ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}
