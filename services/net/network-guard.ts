import dns from "node:dns";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import type { Duplex } from "node:stream";

/**
 * SSRF guard for every outbound connection to a host an API caller chose (an http origin's
 * base_url, an s3 origin's endpoint, an input_url): loopback, private, link-local (cloud
 * metadata), CGNAT, unspecified, multicast and reserved addresses are refused unless an operator
 * allowed them.
 *
 * The check runs where the connection is made, not before it:
 * - host names: `lookup` (a drop-in for `dns.lookup`, given to the http/https Agents) resolves
 *   the name once, checks every address and hands exactly those addresses to the socket, so a
 *   name that answers "public" to a pre-check and "127.0.0.1" to the connect (DNS rebinding)
 *   gains nothing;
 * - IP literals: Node never calls `lookup` for them (net.connect skips it), so the guarded Agents
 *   also check the host in `createConnection`.
 * `assertAllowed(url)` is an optional pre-check with the same verdict and message.
 */

/** The setting a refusal tells the operator to use. */
export const NETWORK_ALLOW_SETTING = "RENDITION_NETWORK_ALLOW";

export type BlockReason = "unspecified" | "loopback" | "private" | "link-local" | "shared" | "multicast" | "reserved";

export class BlockedDestinationError extends Error {
  override name = "BlockedDestinationError";
  readonly code = "EBLOCKEDDEST";
  constructor(
    /** The host as the caller named it (a name or an IP literal). */
    readonly host: string,
    /** The refused address it resolved to (the host itself for a literal). */
    readonly address: string,
    readonly reason: BlockReason,
    readonly options: { hint?: string; redirect?: boolean } = {},
  ) {
    const hint = options.hint ?? NETWORK_ALLOW_SETTING;
    // The resolved address stays out of the message (it is on the error for logs): naming it would
    // tell a caller what internal names resolve to.
    const target = options.redirect ? `a redirect to ${host}, which resolves` : `${host} resolves`;
    super(`refused: ${target} to a private or reserved address; allow it with ${hint}`);
  }

  /** The same refusal, worded for a destination reached through an HTTP redirect. */
  viaRedirect(): BlockedDestinationError {
    return new BlockedDestinationError(this.host, this.address, this.reason, { ...this.options, redirect: true });
  }
}

/** The BlockedDestinationError inside an error (its causes, or the parts of an AggregateError), if any. */
export function blockedDestinationOf(err: unknown, depth = 0): BlockedDestinationError | undefined {
  if (!err || typeof err !== "object" || depth > 8) return undefined;
  if (err instanceof BlockedDestinationError) return err;
  const e = err as { cause?: unknown; errors?: unknown };
  return (
    blockedDestinationOf(e.cause, depth + 1) ??
    (Array.isArray(e.errors) ? e.errors.map((inner) => blockedDestinationOf(inner, depth + 1)).find(Boolean) : undefined)
  );
}

type Resolver = (hostname: string, options: { hints?: number }) => Promise<dns.LookupAddress[]>;

export interface NetworkGuardOptions {
  /** CIDRs, IPs and host names that may be contacted even though they are not public. */
  allow?: readonly string[];
  /** Name resolution for `lookup` and `assertAllowed` (tests inject answers). Default: `dns.lookup`, all addresses. */
  resolve?: Resolver;
  /** The setting named in refusals; default RENDITION_NETWORK_ALLOW. */
  hint?: string;
}

export interface NetworkGuard {
  /**
   * `dns.lookup` that refuses (with BlockedDestinationError, code EBLOCKEDDEST) a name when ANY of
   * its addresses is not allowed. Use it as the `lookup` option of sockets and Agents.
   */
  readonly lookup: net.LookupFunction;
  /** Pre-check of a URL's host (literal or resolved); throws BlockedDestinationError. */
  assertAllowed(url: string | URL): Promise<void>;
  /** The refusal for one IP address, or undefined when it may be contacted. `host` names it in the message. */
  checkAddress(address: string, host?: string): BlockedDestinationError | undefined;
  /**
   * Whether RENDITION_NETWORK_ALLOW names this host: a listed host name, or an IP literal inside
   * a listed range ("localhost" counts as listed when the loopback addresses are).
   */
  lists(hostname: string): boolean;
  /** An http.Agent whose every connection goes through this guard. */
  createHttpAgent(options?: http.AgentOptions): http.Agent;
  /** An https.Agent whose every connection goes through this guard. */
  createHttpsAgent(options?: https.AgentOptions): https.Agent;
}

// Ranges that are never "the internet". BlockList handles the prefix matching; embedded IPv4
// (mapped, NAT64, 6to4) is unpacked below and checked against the IPv4 ranges.
const BLOCKED_RANGES: Array<[network: string, prefix: number, reason: BlockReason]> = [
  ["0.0.0.0", 8, "unspecified"], // "this network"; 0.0.0.0 reaches the local host on Linux
  ["10.0.0.0", 8, "private"],
  ["100.64.0.0", 10, "shared"], // CGNAT (also Alibaba Cloud's metadata service, 100.100.100.200)
  ["127.0.0.0", 8, "loopback"],
  ["169.254.0.0", 16, "link-local"], // incl. the cloud metadata address 169.254.169.254
  ["172.16.0.0", 12, "private"],
  ["192.0.0.0", 24, "reserved"], // IETF protocol assignments
  ["192.168.0.0", 16, "private"],
  ["198.18.0.0", 15, "reserved"], // benchmarking
  ["224.0.0.0", 4, "multicast"],
  ["240.0.0.0", 4, "reserved"], // incl. broadcast 255.255.255.255
  ["::", 128, "unspecified"],
  ["::1", 128, "loopback"],
  ["::", 96, "reserved"], // IPv4-compatible (deprecated)
  ["64:ff9b:1::", 48, "reserved"], // local-use NAT64
  ["100::", 64, "reserved"], // discard-only
  ["fc00::", 7, "private"], // unique local (incl. AWS's IPv6 metadata fd00:ec2::254)
  ["fe80::", 10, "link-local"],
  ["fec0::", 10, "private"], // site-local (deprecated)
  ["ff00::", 8, "multicast"],
];

const blockLists = new Map<BlockReason, net.BlockList>();
for (const [network, prefix, reason] of BLOCKED_RANGES) {
  let list = blockLists.get(reason);
  if (!list) blockLists.set(reason, (list = new net.BlockList()));
  list.addSubnet(network, prefix, net.isIPv4(network) ? "ipv4" : "ipv6");
}

/** Why an address may not be contacted, or undefined when it is public. */
export function classifyAddress(address: string): BlockReason | undefined {
  const ip = stripZone(address);
  const family = net.isIP(ip);
  if (family === 0) throw new TypeError(`not an IP address: ${address}`);
  if (family === 6) {
    const embedded = embeddedIPv4(ip);
    if (embedded) {
      const reason = classifyAddress(embedded);
      if (reason) return reason;
    }
  }
  const type = family === 4 ? "ipv4" : "ipv6";
  for (const [reason, list] of blockLists) if (list.check(ip, type)) return reason;
  return undefined;
}

interface AllowList {
  addresses: net.BlockList;
  hostnames: Set<string>;
}

/**
 * Parses allow-list entries: an IP ("10.0.0.5", "::1"), a CIDR ("10.0.0.0/8", "fd00::/8") or a
 * host name ("minio", "storage.internal"). Throws a readable Error for anything else.
 */
export function parseAllowList(entries: readonly string[]): AllowList {
  const addresses = new net.BlockList();
  const hostnames = new Set<string>();
  for (const raw of entries) {
    const entry = raw.trim();
    if (!entry) continue;
    const slash = entry.indexOf("/");
    const ip = stripBrackets(slash === -1 ? entry : entry.slice(0, slash));
    const family = net.isIP(ip);
    if (slash !== -1 || family !== 0) {
      const max = family === 4 ? 32 : 128;
      const prefixText = slash === -1 ? String(max) : entry.slice(slash + 1);
      const prefix = Number(prefixText);
      if (family === 0 || !/^\d{1,3}$/.test(prefixText) || prefix > max) {
        throw new Error(`"${entry}" is not an IP address, CIDR or host name`);
      }
      addresses.addSubnet(ip, prefix, family === 4 ? "ipv4" : "ipv6");
      continue;
    }
    const name = normalizeHostname(entry);
    if (!/^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/.test(name)) {
      throw new Error(`"${entry}" is not an IP address, CIDR or host name`);
    }
    hostnames.add(name);
  }
  return { addresses, hostnames };
}

const defaultResolve: Resolver = (hostname, options) => dns.promises.lookup(hostname, { all: true, hints: options.hints });

export function createNetworkGuard(options: NetworkGuardOptions = {}): NetworkGuard {
  const allow = parseAllowList(options.allow ?? []);
  const resolve = options.resolve ?? defaultResolve;
  const hint = options.hint;

  function addressAllowed(ip: string): boolean {
    if (allow.addresses.check(ip, net.isIPv4(ip) ? "ipv4" : "ipv6")) return true;
    const embedded = net.isIPv6(ip) ? embeddedIPv4(ip) : undefined;
    return embedded !== undefined && allow.addresses.check(embedded, "ipv4");
  }

  function checkAddress(address: string, host?: string): BlockedDestinationError | undefined {
    const ip = stripZone(stripBrackets(address));
    const reason = classifyAddress(ip);
    if (!reason || addressAllowed(ip)) return undefined;
    return new BlockedDestinationError(host ?? ip, ip, reason, { hint });
  }

  /** All addresses of `hostname`, after checking every one of them. */
  async function resolveChecked(hostname: string, hints?: number): Promise<dns.LookupAddress[]> {
    const host = stripBrackets(hostname);
    const family = net.isIP(stripZone(host));
    if (family !== 0) {
      const blocked = checkAddress(host);
      if (blocked) throw blocked;
      return [{ address: host, family }];
    }
    const addresses = await resolve(host, { hints });
    if (allow.hostnames.has(normalizeHostname(host))) return addresses;
    for (const { address } of addresses) {
      const blocked = checkAddress(address, host);
      if (blocked) throw blocked;
    }
    return addresses;
  }

  const lookup = ((hostname: string, optionsOrCallback: unknown, maybeCallback?: unknown) => {
    const callback = (typeof optionsOrCallback === "function" ? optionsOrCallback : maybeCallback) as (
      err: NodeJS.ErrnoException | null,
      address?: string | dns.LookupAddress[],
      family?: number,
    ) => void;
    const opts: dns.LookupOptions =
      typeof optionsOrCallback === "number"
        ? { family: optionsOrCallback }
        : typeof optionsOrCallback === "object" && optionsOrCallback !== null
          ? (optionsOrCallback as dns.LookupOptions)
          : {};
    const wanted = familyNumber(opts.family);
    // Every address is checked (any refused one refuses the name); only the wanted family is returned.
    resolveChecked(hostname, opts.hints).then(
      (all) => {
        const addresses = wanted ? all.filter((a) => a.family === wanted) : all;
        if (addresses.length === 0) {
          const err: NodeJS.ErrnoException = Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), {
            code: "ENOTFOUND",
            hostname,
          });
          process.nextTick(callback, err);
        } else if (opts.all) {
          process.nextTick(callback, null, addresses);
        } else {
          process.nextTick(callback, null, addresses[0]!.address, addresses[0]!.family);
        }
      },
      (err: NodeJS.ErrnoException) => process.nextTick(callback, err),
    );
  }) as net.LookupFunction;

  function lists(hostname: string): boolean {
    const host = stripZone(stripBrackets(hostname));
    if (net.isIP(host)) return addressAllowed(host);
    const name = normalizeHostname(host);
    if (allow.hostnames.has(name)) return true;
    return (name === "localhost" || name.endsWith(".localhost")) && (addressAllowed("127.0.0.1") || addressAllowed("::1"));
  }

  const guard: NetworkGuard = {
    lookup,
    checkAddress,
    lists,
    async assertAllowed(target) {
      const url = typeof target === "string" ? new URL(target) : target;
      if (!url.hostname) throw new TypeError(`URL has no host: ${url.href}`);
      await resolveChecked(url.hostname);
    },
    createHttpAgent: (agentOptions = {}) => new GuardedHttpAgent(guard, agentOptions),
    createHttpsAgent: (agentOptions = {}) => new GuardedHttpsAgent(guard, agentOptions),
  };
  return guard;
}

let defaultGuard: NetworkGuard | undefined;

/** The guard used when none is configured: nothing private is allowed. */
export function defaultNetworkGuard(): NetworkGuard {
  return (defaultGuard ??= createNetworkGuard());
}

type ConnectionCallback = (err: Error | null, stream: Duplex) => void;

/**
 * The check for connections that never reach `lookup`: IP-literal hosts (and unix sockets,
 * which an outbound request to a caller's host never needs). Also pins `lookup` to the guard's,
 * whatever the request options said. Returns true when it refused the connection; the Agent then
 * passes the callback's error to the request's "error" event.
 */
function refuseConnection(guard: NetworkGuard, options: http.ClientRequestArgs, callback?: ConnectionCallback): boolean {
  let refused: Error | undefined;
  if (options.socketPath) {
    refused = new Error("refused: connections to unix sockets are not allowed here");
  } else {
    options.lookup = guard.lookup;
    const host = stripBrackets(String(options.host ?? options.hostname ?? "localhost"));
    if (net.isIP(stripZone(host))) refused = guard.checkAddress(host);
  }
  if (refused) process.nextTick(() => callback?.(refused, undefined as unknown as Duplex));
  return refused !== undefined;
}

class GuardedHttpAgent extends http.Agent {
  constructor(
    private readonly guard: NetworkGuard,
    options: http.AgentOptions,
  ) {
    super({ ...options, lookup: guard.lookup } as http.AgentOptions);
  }

  override createConnection(options: http.ClientRequestArgs, callback?: ConnectionCallback): Duplex | null | undefined {
    return refuseConnection(this.guard, options, callback) ? undefined : super.createConnection(options, callback);
  }
}

class GuardedHttpsAgent extends https.Agent {
  constructor(
    private readonly guard: NetworkGuard,
    options: https.AgentOptions,
  ) {
    super({ ...options, lookup: guard.lookup } as https.AgentOptions);
  }

  override createConnection(options: http.ClientRequestArgs, callback?: ConnectionCallback): Duplex | null | undefined {
    return refuseConnection(this.guard, options, callback) ? undefined : super.createConnection(options, callback);
  }
}

function familyNumber(family: dns.LookupOptions["family"]): 0 | 4 | 6 {
  if (family === 4 || family === "IPv4") return 4;
  if (family === 6 || family === "IPv6") return 6;
  return 0;
}

function stripBrackets(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

/** "fe80::1%eth0" → "fe80::1": BlockList does not match scoped addresses at all. */
function stripZone(address: string): string {
  const percent = address.indexOf("%");
  return percent === -1 ? address : address.slice(0, percent);
}

function normalizeHostname(host: string): string {
  return host.toLowerCase().replace(/\.$/, "");
}

/** The eight 16-bit groups of an IPv6 address. */
function ipv6Groups(address: string): number[] {
  // The WHATWG URL parser writes IPv6 canonically: lower-case hex, no dotted quad, one "::".
  const canonical = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  const [head = "", tail] = canonical.split("::");
  const headGroups = head ? head.split(":") : [];
  const tailGroups = tail ? tail.split(":") : [];
  const zeros = tail === undefined ? [] : Array<string>(8 - headGroups.length - tailGroups.length).fill("0");
  return [...headGroups, ...zeros, ...tailGroups].map((group) => parseInt(group, 16));
}

/**
 * The IPv4 address an IPv6 address stands for: IPv4-mapped (::ffff:a.b.c.d), NAT64
 * (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::/48) all reach an IPv4 host.
 */
function embeddedIPv4(address: string): string | undefined {
  const g = ipv6Groups(address);
  const quad = (hi: number, lo: number) => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  const zeroUpTo = (n: number) => g.slice(0, n).every((x) => x === 0);
  if (zeroUpTo(5) && g[5] === 0xffff) return quad(g[6]!, g[7]!);
  if (g[0] === 0x64 && g[1] === 0xff9b && g.slice(2, 6).every((x) => x === 0)) return quad(g[6]!, g[7]!);
  if (g[0] === 0x2002) return quad(g[1]!, g[2]!);
  return undefined;
}
