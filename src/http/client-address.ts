import { BlockList, isIP } from 'node:net';

/**
 * The proxies whose `X-Forwarded-For` the vault believes: addresses and CIDRs, IPv4 or IPv6
 * (`trustProxy` in the config). Empty by default: the socket peer is then the client.
 */
export class TrustedProxies {
  private readonly list = new BlockList();
  readonly size: number;

  /** Throws an Error naming the first entry that is not an address or a CIDR. */
  constructor(entries: readonly string[]) {
    for (const entry of entries) {
      const [address, prefix, extra] = entry.split('/');
      const family = isIP(address);
      const bits = family === 6 ? 128 : 32;
      if (family === 0 || extra !== undefined || (prefix !== undefined && !validPrefix(prefix, bits))) {
        throw new Error(`"${entry}" is not an IPv4 or IPv6 address or CIDR`);
      }
      const type = family === 6 ? 'ipv6' : 'ipv4';
      if (prefix === undefined) this.list.addAddress(address, type);
      else this.list.addSubnet(address, Number(prefix), type);
    }
    this.size = entries.length;
  }

  has(address: string): boolean {
    const family = isIP(address);
    return family !== 0 && this.list.check(address, family === 6 ? 'ipv6' : 'ipv4');
  }
}

function validPrefix(prefix: string, bits: number): boolean {
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= bits;
}

/**
 * The client's address: the socket peer, unless the peer is a trusted proxy; then the
 * `X-Forwarded-For` hops are read right to left (each proxy appends the address it saw), skipping
 * trusted ones, and the first untrusted hop is the client. Whatever a client writes into the header
 * itself lies to the left of that, and is never reached. A hop that is not an address stops the
 * walk at the last trusted hop.
 */
export function clientAddress(peer: string | undefined, forwardedFor: string | string[] | undefined, trusted: TrustedProxies): string {
  let client = plainAddress(peer ?? '');
  if (client === undefined) return 'unknown';
  if (trusted.size === 0 || forwardedFor === undefined) return client;
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',').reverse();
  for (const hop of hops) {
    if (!trusted.has(client)) break;
    const next = plainAddress(hop.trim());
    if (next === undefined) break;
    client = next;
  }
  return client;
}

/**
 * What failures are counted under: an IPv4 address, or an IPv6 address's /64 — one host (one
 * SLAAC interface, one customer) usually holds a whole /64 and can change addresses inside it at will.
 */
export function addressKey(address: string): string {
  if (isIP(address) !== 6) return address;
  return `${ipv6Groups(address)
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(':')}::/64`;
}

/**
 * An address without port, brackets or zone, IPv4-mapped IPv6 as IPv4 (a dual-stack socket reports
 * IPv4 clients as ::ffff:a.b.c.d); undefined when it is not an address.
 */
export function plainAddress(text: string): string | undefined {
  let address = text;
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(address);
  if (bracketed) address = bracketed[1];
  else if (/^[\d.]+:\d+$/.test(address)) address = address.slice(0, address.lastIndexOf(':'));
  address = address.replace(/%.*$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) address = mapped[1];
  return isIP(address) ? address.toLowerCase() : undefined;
}

/** The eight 16-bit groups of a valid IPv6 address (`::` expanded, a dotted IPv4 tail converted). */
function ipv6Groups(address: string): number[] {
  let text = address;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number);
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const parts = (s: string | undefined) => (s ? s.split(':') : []);
  const groups =
    tail === undefined ? parts(head) : [...parts(head), ...Array(8 - parts(head).length - parts(tail).length).fill('0'), ...parts(tail)];
  return groups.map((g) => parseInt(g, 16));
}
