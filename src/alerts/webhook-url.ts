import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

/**
 * The SSRF guard for webhook URLs: http(s) only, and every address the host
 * resolves to must be public unless the allow-list (WEBHOOK_ALLOWED_HOSTS)
 * names the host or covers the address. Checked when an endpoint is created
 * and again before every attempt; the attempt then connects to exactly the
 * addresses checked (no second resolution a rebinding DNS server could answer
 * differently). No Nest, no database.
 */

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

export interface CheckedUrl {
  url: URL;
  /** The host without IPv6 brackets. */
  host: string;
  addresses: ResolvedAddress[];
}

export class UrlRefusedError extends Error {}

export type Resolver = (host: string) => Promise<ResolvedAddress[]>;

export const systemResolver: Resolver = async (host) =>
  (await lookup(host, { all: true, verbatim: true })).map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));

/** Special-purpose ranges (IANA registries, RFC 6890) a webhook may not reach, with the word the refusal uses. */
const BLOCKED: ReadonlyArray<readonly [string, number, 'ipv4' | 'ipv6', string]> = [
  ['0.0.0.0', 8, 'ipv4', 'unspecified ("this network")'],
  ['10.0.0.0', 8, 'ipv4', 'private'],
  ['100.64.0.0', 10, 'ipv4', 'CGNAT (shared address space)'],
  ['127.0.0.0', 8, 'ipv4', 'loopback'],
  ['169.254.0.0', 16, 'ipv4', 'link-local'],
  ['172.16.0.0', 12, 'ipv4', 'private'],
  ['192.0.0.0', 24, 'ipv4', 'reserved (IETF protocol assignments)'],
  ['192.0.2.0', 24, 'ipv4', 'reserved (documentation)'],
  ['192.88.99.0', 24, 'ipv4', 'reserved (6to4 relay)'],
  ['192.168.0.0', 16, 'ipv4', 'private'],
  ['198.18.0.0', 15, 'ipv4', 'reserved (benchmarking)'],
  ['198.51.100.0', 24, 'ipv4', 'reserved (documentation)'],
  ['203.0.113.0', 24, 'ipv4', 'reserved (documentation)'],
  ['224.0.0.0', 4, 'ipv4', 'multicast'],
  ['240.0.0.0', 4, 'ipv4', 'reserved (including broadcast)'],
  ['::', 128, 'ipv6', 'unspecified'],
  ['::1', 128, 'ipv6', 'loopback'],
  ['::', 96, 'ipv6', 'reserved (IPv4-compatible IPv6)'],
  ['64:ff9b:1::', 48, 'ipv6', 'private (local-use NAT64)'],
  ['100::', 64, 'ipv6', 'reserved (discard-only)'],
  ['2001::', 32, 'ipv6', 'reserved (Teredo tunnelling)'],
  ['2001:db8::', 32, 'ipv6', 'reserved (documentation)'],
  ['fc00::', 7, 'ipv6', 'private (unique local)'],
  ['fe80::', 10, 'ipv6', 'link-local'],
  ['fec0::', 10, 'ipv6', 'private (site-local)'],
  ['ff00::', 8, 'ipv6', 'multicast'],
];

const blockedLists = BLOCKED.map(([net, prefix, type, label]) => {
  const list = new BlockList();
  list.addSubnet(net, prefix, type);
  return { list, type, label };
});

/** The 16 bytes of a valid IPv6 address (with or without a trailing dotted quad). */
function ipv6Bytes(address: string): Uint8Array {
  let text = address;
  const tail: number[] = [];
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (quad) {
    const [a, b, c, d] = quad.slice(1).map(Number);
    tail.push((a << 8) | b, (c << 8) | d);
    text = text.slice(0, text.length - quad[0].length);
    if (text.endsWith(':') && !text.endsWith('::')) text = text.slice(0, -1);
  }
  const parse = (s: string) => (s === '' ? [] : s.split(':').map((h) => parseInt(h, 16)));
  const gap = text.indexOf('::');
  let groups: number[];
  if (gap >= 0) {
    const left = parse(text.slice(0, gap));
    const right = [...parse(text.slice(gap + 2)), ...tail];
    groups = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  } else {
    groups = [...parse(text), ...tail];
  }
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[i * 2] = g >> 8;
    bytes[i * 2 + 1] = g & 0xff;
  });
  return bytes;
}

/** The IPv4 address an IPv6 address carries (IPv4-mapped, NAT64 well-known prefix, 6to4), if any. */
export function embeddedIpv4(address: string): string | undefined {
  const b = ipv6Bytes(address);
  const zero = (from: number, to: number) => b.slice(from, to).every((x) => x === 0);
  const v4 = (at: number) => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
  if (zero(0, 10) && b[10] === 0xff && b[11] === 0xff) return v4(12); // ::ffff:0:0/96
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zero(4, 12)) return v4(12); // 64:ff9b::/96
  if (b[0] === 0x20 && b[1] === 0x02) return v4(2); // 2002::/16
  return undefined;
}

const stripZone = (address: string) => address.replace(/%.*$/, '');

/**
 * Why the address may not be a webhook target ("loopback", "private"…), or
 * undefined for a public address. IPv6 addresses that embed an IPv4 address
 * are judged by it.
 */
export function blockedReason(rawAddress: string): string | undefined {
  const address = stripZone(rawAddress);
  const family = isIP(address);
  if (family === 0) return 'not an IP address';
  if (family === 6) {
    const v4 = embeddedIpv4(address);
    if (v4 !== undefined) {
      const inner = blockedReason(v4);
      return inner === undefined ? undefined : `${inner} (IPv4 ${v4} inside IPv6)`;
    }
  }
  const type = family === 4 ? 'ipv4' : 'ipv6';
  // the most specific range first: ::/128 and ::1/128 before ::/96
  return blockedLists.find((b) => b.type === type && b.list.check(address, type))?.label;
}

/** WEBHOOK_ALLOWED_HOSTS: host names (exact, or `*.example.com` for subdomains), IP addresses and CIDRs. */
export class AllowList {
  private readonly names = new Set<string>();
  private readonly suffixes: string[] = [];
  private readonly nets = new BlockList();

  constructor(entries: readonly string[]) {
    for (const raw of entries) {
      const entry = raw.trim().toLowerCase();
      if (!entry) continue;
      const [net, prefix] = entry.replace(/^\[|\]$/g, '').split('/');
      const family = isIP(net);
      if (family !== 0) {
        const type = family === 4 ? 'ipv4' : 'ipv6';
        this.nets.addSubnet(net, prefix === undefined ? (family === 4 ? 32 : 128) : Number(prefix), type);
      } else if (entry.startsWith('*.')) {
        this.suffixes.push(entry.slice(1));
      } else {
        this.names.add(entry.replace(/\.$/, ''));
      }
    }
  }

  allowsHost(host: string): boolean {
    const h = host.toLowerCase().replace(/\.$/, '');
    return this.names.has(h) || this.suffixes.some((s) => h.endsWith(s));
  }

  allowsAddress(rawAddress: string): boolean {
    const address = stripZone(rawAddress);
    const family = isIP(address);
    if (family === 0) return false;
    if (this.nets.check(address, family === 4 ? 'ipv4' : 'ipv6')) return true;
    const v4 = family === 6 ? embeddedIpv4(address) : undefined;
    return v4 !== undefined && this.nets.check(v4, 'ipv4');
  }
}

const HINT =
  'webhooks may not reach loopback, private, link-local, CGNAT, multicast, unspecified or reserved addresses; ' +
  'an operator can allow a host or network with WEBHOOK_ALLOWED_HOSTS';

/**
 * Parses and checks a webhook URL; resolves the host and checks every address.
 * Throws UrlRefusedError with a sentence that says why; never connects.
 */
export async function checkWebhookUrl(raw: string, allow: AllowList, resolve: Resolver = systemResolver): Promise<CheckedUrl> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UrlRefusedError('not an absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UrlRefusedError(`the scheme "${url.protocol.replace(/:$/, '')}" is not allowed; use http or https`);
  }
  if (url.username || url.password) throw new UrlRefusedError('credentials in the URL are not accepted');
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (!host) throw new UrlRefusedError('the URL has no host');
  const byName = allow.allowsHost(host);

  let addresses: ResolvedAddress[];
  if (isIP(host) !== 0) {
    addresses = [{ address: host, family: isIP(host) === 6 ? 6 : 4 }];
  } else {
    try {
      addresses = await resolve(host);
    } catch (err) {
      throw new UrlRefusedError(`the host "${host}" does not resolve (${(err as { code?: string }).code ?? 'DNS error'})`);
    }
    if (addresses.length === 0) throw new UrlRefusedError(`the host "${host}" does not resolve`);
  }
  if (!byName) {
    for (const a of addresses) {
      if (allow.allowsAddress(a.address)) continue;
      const reason = blockedReason(a.address);
      if (reason === undefined) continue;
      const what = a.address === host ? `the address ${host} is` : `the host "${host}" resolves to ${a.address}, which is`;
      throw new UrlRefusedError(`${what} ${/^[aeiou]/i.test(reason) ? 'an' : 'a'} ${reason} address; ${HINT}`);
    }
  }
  return { url, host, addresses };
}
