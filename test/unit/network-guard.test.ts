import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo, LookupFunction } from "node:net";
import type { LookupAddress } from "node:dns";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { loadEncryptionKey } from "../../services/app.js";
import { ConfigError, loadConfig } from "../../services/config.js";
import {
  BlockedDestinationError,
  blockedDestinationOf,
  classifyAddress,
  createNetworkGuard,
  parseAllowList,
  type NetworkGuard,
} from "../../services/net/network-guard.js";

/** Every range the guard refuses, with one or more addresses in it and the reason it gives. */
const BLOCKED: Array<[address: string, reason: string]> = [
  ["127.0.0.1", "loopback"],
  ["127.255.255.254", "loopback"],
  ["::1", "loopback"],
  ["10.0.0.1", "private"],
  ["10.255.255.255", "private"],
  ["172.16.0.1", "private"],
  ["172.31.255.255", "private"],
  ["192.168.0.1", "private"],
  ["192.168.255.255", "private"],
  ["fc00::1", "private"],
  ["fd00:ec2::254", "private"], // AWS's IPv6 metadata address
  ["fdff:ffff::1", "private"],
  ["169.254.169.254", "link-local"], // cloud metadata
  ["169.254.0.1", "link-local"],
  ["fe80::1", "link-local"],
  ["febf:ffff::1", "link-local"],
  ["fe80::1%eth0", "link-local"], // a zone id must not hide the address (BlockList alone misses it)
  ["100.64.0.1", "shared"], // CGNAT
  ["100.100.100.200", "shared"], // Alibaba Cloud metadata
  ["100.127.255.255", "shared"],
  ["0.0.0.0", "unspecified"],
  ["0.1.2.3", "unspecified"],
  ["::", "unspecified"],
  ["224.0.0.1", "multicast"],
  ["239.255.255.250", "multicast"],
  ["ff02::1", "multicast"],
  ["255.255.255.255", "reserved"],
  ["240.0.0.1", "reserved"],
  ["::7f00:1", "reserved"], // IPv4-compatible (deprecated)
  // IPv4-mapped IPv6, in both spellings, for each IPv4 range.
  ["::ffff:127.0.0.1", "loopback"],
  ["::ffff:7f00:1", "loopback"],
  ["::ffff:10.1.2.3", "private"],
  ["::ffff:172.16.0.1", "private"],
  ["::ffff:192.168.1.1", "private"],
  ["::ffff:169.254.169.254", "link-local"],
  ["::ffff:a9fe:a9fe", "link-local"],
  ["::ffff:100.64.0.1", "shared"],
  ["::ffff:0.0.0.0", "unspecified"],
  ["::ffff:224.0.0.1", "multicast"],
  ["0:0:0:0:0:ffff:7f00:0001", "loopback"],
  // Other IPv6 forms that reach an IPv4 host.
  ["64:ff9b::127.0.0.1", "loopback"], // NAT64
  ["64:ff9b::a9fe:a9fe", "link-local"],
  ["2002:7f00:1::1", "loopback"], // 6to4
  ["2002:c0a8:101::1", "private"],
];

const PUBLIC = [
  "8.8.8.8",
  "1.1.1.1",
  "11.0.0.1",
  "172.15.255.255",
  "172.32.0.1",
  "192.167.255.255",
  "192.169.0.1",
  "100.63.255.255",
  "100.128.0.1",
  "169.253.255.255",
  "169.255.0.1",
  "223.255.255.255",
  "2606:4700:4700::1111",
  "2a00:1450:4001:80b::200e",
  "::ffff:8.8.8.8",
  "64:ff9b::808:808",
  "2002:808:808::1",
  "fbff:ffff::1",
  "fe00::1", // outside fe80::/10
];

/** A resolver with fixed answers, counting its calls. */
function fakeDns(answers: Record<string, string[] | (() => string[])>) {
  const calls: string[] = [];
  const resolve = async (hostname: string): Promise<LookupAddress[]> => {
    calls.push(hostname);
    const entry = answers[hostname.toLowerCase().replace(/\.$/, "")];
    const addresses = typeof entry === "function" ? entry() : entry;
    if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: "ENOTFOUND" });
    return addresses.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
  };
  return { resolve, calls };
}

/** guard.lookup as a promise, with `dns.lookup`'s calling conventions. */
function lookup(fn: LookupFunction, hostname: string, options: object | number = {}): Promise<{ address: unknown; family?: number }> {
  return new Promise((resolve, reject) => {
    const lookupAny = fn as unknown as (h: string, o: object | number, cb: (err: Error | null, address?: unknown, family?: number) => void) => void;
    lookupAny(hostname, options, (err, address, family) => (err ? reject(err) : resolve({ address, family })));
  });
}

async function rejection(promise: Promise<unknown>): Promise<BlockedDestinationError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BlockedDestinationError);
  return err as BlockedDestinationError;
}

describe("address classification", () => {
  it.each(BLOCKED)("refuses %s (%s)", (address, reason) => {
    expect(classifyAddress(address)).toBe(reason);
    const refused = createNetworkGuard().checkAddress(address);
    expect(refused).toBeInstanceOf(BlockedDestinationError);
    expect(refused).toMatchObject({ code: "EBLOCKEDDEST", reason });
  });

  it.each(PUBLIC)("allows the public address %s", (address) => {
    expect(classifyAddress(address)).toBeUndefined();
    expect(createNetworkGuard().checkAddress(address)).toBeUndefined();
  });

  it("says plainly what was refused and how to allow it", () => {
    const refused = createNetworkGuard().checkAddress("127.0.0.1", "localhost")!;
    expect(refused.message).toBe("refused: localhost resolves to a private or reserved address; allow it with RENDITION_NETWORK_ALLOW");
    expect(refused.viaRedirect().message).toBe(
      "refused: a redirect to localhost, which resolves to a private or reserved address; allow it with RENDITION_NETWORK_ALLOW",
    );
    expect(createNetworkGuard({ hint: "WORKER_ALLOW" }).checkAddress("[::1]")!.message).toBe(
      "refused: ::1 resolves to a private or reserved address; allow it with WORKER_ALLOW",
    );
  });

  it("finds a refusal inside wrapping errors", () => {
    const refused = createNetworkGuard().checkAddress("10.0.0.1")!;
    expect(blockedDestinationOf(refused)).toBe(refused);
    expect(blockedDestinationOf(new TypeError("fetch failed", { cause: refused }))).toBe(refused);
    expect(blockedDestinationOf(new AggregateError([new Error("x"), refused]))).toBe(refused);
    expect(blockedDestinationOf(new Error("plain"))).toBeUndefined();
    expect(blockedDestinationOf(undefined)).toBeUndefined();
  });
});

describe("allow list", () => {
  it("allows by CIDR, by single IP and by IPv6 prefix, and nothing more", () => {
    const guard = createNetworkGuard({ allow: ["10.0.0.0/8", "192.168.1.7", "fd00::/8", "127.0.0.1/32"] });
    expect(guard.checkAddress("10.20.30.40")).toBeUndefined();
    expect(guard.checkAddress("192.168.1.7")).toBeUndefined();
    expect(guard.checkAddress("192.168.1.8")).toBeInstanceOf(BlockedDestinationError);
    expect(guard.checkAddress("fd12::1")).toBeUndefined();
    expect(guard.checkAddress("fc00::1")).toBeInstanceOf(BlockedDestinationError);
    expect(guard.checkAddress("127.0.0.1")).toBeUndefined();
    expect(guard.checkAddress("::ffff:127.0.0.1")).toBeUndefined(); // the same host, IPv4-mapped
    expect(guard.checkAddress("127.0.0.2")).toBeInstanceOf(BlockedDestinationError);
    expect(guard.checkAddress("::1")).toBeInstanceOf(BlockedDestinationError);
    expect(guard.checkAddress("169.254.169.254")).toBeInstanceOf(BlockedDestinationError);
  });

  it("allows a host name whatever it resolves to, matching case-insensitively and without a trailing dot", async () => {
    const dns = fakeDns({ "minio.internal": ["10.0.0.5"], "other.internal": ["10.0.0.6"] });
    const guard = createNetworkGuard({ allow: ["MinIO.internal."], resolve: dns.resolve });
    await expect(guard.assertAllowed("http://minio.internal:9000/bucket")).resolves.toBeUndefined();
    await expect(guard.assertAllowed("http://MINIO.INTERNAL./bucket")).resolves.toBeUndefined();
    expect(await lookup(guard.lookup, "minio.internal")).toEqual({ address: "10.0.0.5", family: 4 });
    const refused = await rejection(guard.assertAllowed("http://other.internal/"));
    expect(refused.message).toBe("refused: other.internal resolves to a private or reserved address; allow it with RENDITION_NETWORK_ALLOW");
    // A host name entry does not allow its addresses under other names.
    expect(guard.checkAddress("10.0.0.5")).toBeInstanceOf(BlockedDestinationError);
  });

  it.each(["10.0.0.0/33", "::1/129", "10.0.0.1/x", "not a host!", "10.0.0.0/", "http://example.com", "/8"])(
    "refuses the malformed entry %j",
    (entry) => {
      expect(() => parseAllowList([entry])).toThrow(/is not an IP address, CIDR or host name/);
      expect(() => createNetworkGuard({ allow: [entry] })).toThrow();
    },
  );

  it("ignores blanks and accepts bracketed IPv6", () => {
    const guard = createNetworkGuard({ allow: [" ", "", "[::1]", " 127.0.0.0/8 ", "storage_1"] });
    expect(guard.checkAddress("::1")).toBeUndefined();
    expect(guard.checkAddress("127.9.9.9")).toBeUndefined();
  });
});

describe("lookup (dns.lookup for Agents)", () => {
  it("refuses localhost, which resolves to loopback (real resolver), in every calling form", async () => {
    const guard = createNetworkGuard();
    for (const options of [{}, { all: true }, { family: 4 }, 6, { all: true, hints: 32 }]) {
      const refused = await rejection(lookup(guard.lookup, "localhost", options));
      expect(refused.code).toBe("EBLOCKEDDEST");
      expect(refused.host).toBe("localhost");
      expect(["127.0.0.1", "::1"]).toContain(refused.address);
    }
    // The (hostname, callback) form as well.
    const cbOnly = await new Promise<unknown>((resolve) =>
      (guard.lookup as unknown as (h: string, cb: (err: unknown) => void) => void)("localhost", resolve),
    );
    expect(cbOnly).toBeInstanceOf(BlockedDestinationError);
  });

  it("resolves localhost once it is allowed", async () => {
    const guard = createNetworkGuard({ allow: ["127.0.0.1/32", "::1/128"] });
    const { address } = await lookup(guard.lookup, "localhost", { all: true });
    expect((address as LookupAddress[]).map((a) => a.address)).toContain("127.0.0.1");
    const byName = createNetworkGuard({ allow: ["localhost"] });
    expect((await lookup(byName.lookup, "localhost", { family: 4 })).address).toBe("127.0.0.1");
  });

  it("refuses a name when ANY of its addresses is private, even if the public one comes first", async () => {
    const dns = fakeDns({ "mixed.example": ["93.184.216.34", "10.0.0.1"], "public.example": ["93.184.216.34", "2606:2800:220:1::1"] });
    const guard = createNetworkGuard({ resolve: dns.resolve });
    const refused = await rejection(lookup(guard.lookup, "mixed.example", { family: 4 }));
    expect(refused.address).toBe("10.0.0.1");
    expect(await lookup(guard.lookup, "public.example")).toEqual({ address: "93.184.216.34", family: 4 });
    expect(await lookup(guard.lookup, "public.example", { family: 6 })).toEqual({ address: "2606:2800:220:1::1", family: 6 });
    expect((await lookup(guard.lookup, "public.example", { all: true })).address).toEqual([
      { address: "93.184.216.34", family: 4 },
      { address: "2606:2800:220:1::1", family: 6 },
    ]);
    // A name with no address of the wanted family is not found, as with dns.lookup.
    const v4only = createNetworkGuard({ resolve: fakeDns({ "v4.example": ["93.184.216.34"] }).resolve });
    await expect(lookup(v4only.lookup, "v4.example", { family: 6 })).rejects.toMatchObject({ code: "ENOTFOUND" });
    // Resolution errors pass through.
    await expect(lookup(guard.lookup, "nowhere.example")).rejects.toMatchObject({ code: "ENOTFOUND" });
  });

  it("checks IP literals without resolving them", async () => {
    const dns = fakeDns({});
    const guard = createNetworkGuard({ resolve: dns.resolve });
    await rejection(lookup(guard.lookup, "127.0.0.1"));
    await rejection(lookup(guard.lookup, "::ffff:169.254.169.254"));
    expect(await lookup(guard.lookup, "8.8.8.8")).toEqual({ address: "8.8.8.8", family: 4 });
    expect(dns.calls).toEqual([]);
  });
});

describe("assertAllowed", () => {
  const dns = fakeDns({ "cdn.example": ["93.184.216.34"], "rebind.example": ["127.0.0.1"] });
  const guard = createNetworkGuard({ resolve: dns.resolve });

  it.each([
    ["http://127.0.0.1:9000/x", "127.0.0.1"],
    ["https://[::1]/", "::1"],
    ["http://169.254.169.254/latest/meta-data/", "169.254.169.254"],
    ["http://[::ffff:169.254.169.254]/", "::ffff:a9fe:a9fe"],
    ["http://0x7f.1/", "127.0.0.1"], // the URL parser normalises odd IPv4 spellings first
    ["http://2130706433/", "127.0.0.1"],
    ["http://0177.0.0.1/", "127.0.0.1"],
    ["http://0/", "0.0.0.0"],
    ["http://[fe80::1]/", "fe80::1"],
    ["http://rebind.example/", "127.0.0.1"],
  ])("refuses %s", async (url, address) => {
    const refused = await rejection(guard.assertAllowed(url));
    expect(refused.address).toBe(address);
  });

  it("allows public hosts and takes URL objects", async () => {
    await expect(guard.assertAllowed("https://cdn.example/videos/a.mp4")).resolves.toBeUndefined();
    await expect(guard.assertAllowed(new URL("http://8.8.8.8/"))).resolves.toBeUndefined();
  });
});

describe("guarded Agents", () => {
  let server: http.Server;
  let port: number;
  let connections = 0;

  beforeAll(async () => {
    server = http.createServer((_req, res) => res.end("hello"));
    server.on("connection", () => connections++);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  function get(url: string, agent: http.Agent, lookupOverride?: LookupFunction): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = http.get(url, { agent, ...(lookupOverride ? { lookup: lookupOverride } : {}) }, (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve(body)).on("error", reject);
      });
      req.on("error", reject);
    });
  }

  it("Node skips an Agent's lookup for IP literals, which is why the guarded Agent checks them itself", async () => {
    let looked = 0;
    const plain = new http.Agent({
      lookup: ((_h: string, _o: unknown, cb: (err: Error) => void) => {
        looked++;
        cb(new Error("lookup was called"));
      }) as unknown as LookupFunction,
    });
    await expect(get(`http://127.0.0.1:${port}/`, plain)).resolves.toBe("hello");
    expect(looked).toBe(0);
    plain.destroy();
  });

  it("refuses IP literals and names on loopback without opening a connection", async () => {
    const guard = createNetworkGuard();
    const agent = guard.createHttpAgent();
    const before = connections;
    for (const url of [`http://127.0.0.1:${port}/`, `http://localhost:${port}/`, `http://[::ffff:127.0.0.1]:${port}/`]) {
      const refused = await rejection(get(url, agent));
      expect(refused.code).toBe("EBLOCKEDDEST");
    }
    // A request-level lookup cannot override the guard's.
    const permissive = ((_h: string, _o: unknown, cb: (e: null, a: string, f: number) => void) => cb(null, "127.0.0.1", 4)) as unknown as LookupFunction;
    await rejection(get(`http://localhost:${port}/`, agent, permissive));
    expect(connections).toBe(before);
    agent.destroy();
  });

  it("refuses on https too, before any TLS handshake", async () => {
    const agent = createNetworkGuard().createHttpsAgent();
    const refused = await rejection(
      new Promise((resolve, reject) => {
        https.get("https://169.254.169.254/", { agent }, resolve).on("error", reject);
      }),
    );
    expect(refused.address).toBe("169.254.169.254");
    agent.destroy();
  });

  it("connects when loopback is allowed", async () => {
    const guard = createNetworkGuard({ allow: ["127.0.0.1/32", "::1/128"] });
    const agent = guard.createHttpAgent({ keepAlive: false });
    await expect(get(`http://127.0.0.1:${port}/`, agent)).resolves.toBe("hello");
    await expect(get(`http://localhost:${port}/`, agent)).resolves.toBe("hello");
    agent.destroy();
  });

  it("connects to exactly the addresses it checked: a rebinding name cannot pass a pre-check and then connect to loopback", async () => {
    let answers = 0;
    // First answer public, every later one loopback: what a rebinding DNS server does.
    const dns = fakeDns({ "rebind.example": () => (answers++ === 0 ? ["93.184.216.34"] : ["127.0.0.1"]) });
    const guard: NetworkGuard = createNetworkGuard({ resolve: dns.resolve });
    await expect(guard.assertAllowed(`http://rebind.example:${port}/`)).resolves.toBeUndefined();
    const agent = guard.createHttpAgent();
    const before = connections;
    const refused = await rejection(get(`http://rebind.example:${port}/`, agent));
    expect(refused.address).toBe("127.0.0.1");
    expect(connections).toBe(before);
    agent.destroy();

    // And an allowed name really connects to the address the guard's lookup returned.
    const pinned = createNetworkGuard({ allow: ["127.0.0.1"], resolve: fakeDns({ "storage.test": ["127.0.0.1"] }).resolve });
    const pinnedAgent = pinned.createHttpAgent();
    await expect(get(`http://storage.test:${port}/`, pinnedAgent)).resolves.toBe("hello");
    pinnedAgent.destroy();
  });
});

describe("configuration", () => {
  it("reads RENDITION_NETWORK_ALLOW as a comma-separated list, empty by default", () => {
    expect(loadConfig({}).networkAllow).toEqual([]);
    expect(loadConfig({ RENDITION_NETWORK_ALLOW: "" }).networkAllow).toEqual([]);
    expect(loadConfig({ RENDITION_NETWORK_ALLOW: " 10.0.0.0/8, minio ,::1/128," }).networkAllow).toEqual(["10.0.0.0/8", "minio", "::1/128"]);
    expect(() => loadConfig({ RENDITION_NETWORK_ALLOW: "10.0.0.0/40" })).toThrow(ConfigError);
    expect(() => loadConfig({ RENDITION_NETWORK_ALLOW: "10.0.0.0/40" })).toThrow(
      'RENDITION_NETWORK_ALLOW: "10.0.0.0/40" is not an IP address, CIDR or host name',
    );
  });

  it("warns that replicas must share the key when PostgreSQL is used with a key file", () => {
    const dataDir = mkdtempSync(join(tmpdir(), "rendition-key-"));
    try {
      const logged: string[] = [];
      const log = (msg: string) => logged.push(msg);
      const shared = loadConfig({ RENDITION_DATA_DIR: dataDir, DATABASE_URL: "postgres://db/rendition" });
      const key = loadEncryptionKey(shared, log);
      expect(key).toHaveLength(32);
      expect(logged.at(-1)).toMatch(/^warning: RENDITION_ENCRYPTION_KEY is not set.*every API and worker replica must use the same key/);
      // Every start says it, not only the one that created the file.
      logged.length = 0;
      expect(loadEncryptionKey(shared, log).equals(key)).toBe(true);
      expect(logged).toHaveLength(1);
      expect(logged[0]).toMatch(/^warning: /);

      // Embedded mode (one process) and an explicit key stay quiet.
      logged.length = 0;
      loadEncryptionKey(loadConfig({ RENDITION_DATA_DIR: dataDir }), log);
      loadEncryptionKey(
        loadConfig({ RENDITION_DATA_DIR: dataDir, DATABASE_URL: "postgres://db/rendition", RENDITION_ENCRYPTION_KEY: Buffer.alloc(32, 1).toString("base64") }),
        log,
      );
      expect(logged).toEqual([]);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
