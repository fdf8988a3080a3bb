// Addresses and prefixes: the one prefix type, its one parser and formatter, the one containment and
// overlap check, and host:port text. Pure functions, no DNS, no I/O.
//
// An IPv4 address is an unsigned 32-bit integer (10.0.0.1 is 0x0a000001), the form the router keys
// its Map by. Parsing is strict on purpose: "010.0.0.1" is refused because inet_aton(3) and ping
// read it as octal (8.0.0.1) while a human reads ten, and a config file must not mean two things.
//
// IPv6 later: `Prefix` becomes `Ipv4Prefix | Ipv6Prefix`, the two told apart by the type of
// `address` (a number for IPv4, a bigint for IPv6); the functions below that take a `Prefix` grow a
// branch, and no signature that uses `Prefix` has to change.

/** An IPv4 prefix: `address` as an unsigned 32-bit integer and `prefix` its length, 0..32. The
 * address may keep host bits (`10.0.0.1/24` is the address 10.0.0.1 on the 10.0.0.0/24 LAN). */
export interface Ipv4Prefix {
  readonly address: number;
  readonly prefix: number;
}

/** A prefix of any address family this program speaks (IPv4 today). */
export type Prefix = Ipv4Prefix;

/** A transport endpoint. `host` is an IPv4 address, a DNS name or an IPv6 address without brackets. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

const QUAD = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const PREFIX_LENGTH = /^(?:0|[1-9][0-9]?)$/;
const PORT = /^(?:0|[1-9][0-9]{0,4})$/;
const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const NUMERIC = /^[0-9]+$/;
const HEX_GROUP = /^[0-9A-Fa-f]{1,4}$/;

/** Dotted-quad text to an unsigned 32-bit address, or undefined when it is not exactly four 0..255 decimals without leading zeros. */
export function parseIpv4(s: string): number | undefined {
  const m = QUAD.exec(s);
  if (m === null) return undefined;
  let a = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i]!;
    if (part.length > 1 && part[0] === '0') return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    a = a * 256 + n;
  }
  return a;
}

/** Dotted-quad text of an unsigned (or signed) 32-bit address. */
export function formatIpv4(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
}

/** The netmask of a prefix length (clamped to 0..32) as an unsigned 32-bit integer: 24 gives 0xffffff00. */
export function prefixMask(prefix: number): number {
  return prefix <= 0 ? 0 : prefix >= 32 ? 0xffffffff : (0xffffffff << (32 - prefix)) >>> 0;
}

/** "a.b.c.d/n" (strict dotted quad, length 0..32 without leading zeros) to a prefix that keeps its host bits, or undefined. */
export function parsePrefix(s: string): Prefix | undefined {
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const address = parseIpv4(s.slice(0, slash));
  const lengthText = s.slice(slash + 1);
  if (address === undefined || !PREFIX_LENGTH.test(lengthText)) return undefined;
  const prefix = Number(lengthText);
  return prefix <= 32 ? { address, prefix } : undefined;
}

/** "a.b.c.d/n" text of a prefix (host bits as they are). */
export function formatPrefix(p: Prefix): string {
  return `${formatIpv4(p.address >>> 0)}/${p.prefix}`;
}

/** The first address of the prefix's block (host bits cleared). */
export function networkAddress(p: Prefix): number {
  return (p.address & prefixMask(p.prefix)) >>> 0;
}

/** The last address of the prefix's block (host bits set): its directed broadcast address. */
export function broadcastAddress(p: Prefix): number {
  return (p.address | ~prefixMask(p.prefix)) >>> 0;
}

/** The prefix with its host bits cleared; throws RangeError when the length is not an integer 0..32. */
export function normalizePrefix(p: Prefix): Prefix {
  if (!Number.isInteger(p.prefix) || p.prefix < 0 || p.prefix > 32) throw new RangeError(`prefix length ${p.prefix} is not an integer 0..32`);
  return { address: networkAddress(p), prefix: p.prefix };
}

/** True when `address` (a u32) lies inside the block of `p`. */
export function prefixHas(p: Prefix, address: number): boolean {
  const m = prefixMask(p.prefix);
  return ((address & m) >>> 0) === ((p.address & m) >>> 0);
}

/** True when the block of `inner` lies inside the block of `outer` (or equals it). */
export function prefixContains(outer: Prefix, inner: Prefix): boolean {
  return inner.prefix >= outer.prefix && prefixHas(outer, inner.address);
}

/** True when two blocks share an address (blocks are nested or disjoint). */
export function prefixesOverlap(a: Prefix, b: Prefix): boolean {
  return prefixContains(a, b) || prefixContains(b, a);
}

/** True for IPv6 text (RFC 4291 section 2.2: eight groups, one `::`, an optional dotted-quad tail), without brackets or a zone. */
export function isIpv6Text(s: string): boolean {
  let text = s;
  let tailGroups = 0;
  const lastColon = text.lastIndexOf(':');
  if (lastColon >= 0 && text.slice(lastColon + 1).includes('.')) {
    if (parseIpv4(text.slice(lastColon + 1)) === undefined) return false;
    text = `${text.slice(0, lastColon + 1)}0`;
    tailGroups = 1;
  }
  const halves = text.split('::');
  if (halves.length > 2) return false;
  const groups = (h: string): string[] | undefined => (h === '' ? [] : h.split(':'));
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (head === undefined || tail === undefined) return false;
  if (![...head, ...tail].every((g) => HEX_GROUP.test(g))) return false;
  const count = head.length + tail.length + tailGroups;
  return halves.length === 2 ? count <= 7 : count === 8;
}

/**
 * True for a DNS name (RFC 1123 labels, at most 253 characters, an optional final dot) or a strict
 * dotted quad. A name whose last label is all digits must be a valid dotted quad, so "256.1.1.1"
 * and "010.0.0.1" are refused instead of being sent to the resolver as names.
 */
export function isValidHostName(s: string): boolean {
  const name = s.endsWith('.') ? s.slice(0, -1) : s;
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.split('.');
  if (!labels.every((label) => LABEL.test(label))) return false;
  return NUMERIC.test(labels[labels.length - 1] ?? '') ? parseIpv4(s) !== undefined : true;
}

/** A decimal port from 0 to 65535 (no sign, no leading zeros), or undefined. */
export function parsePort(s: string): number | undefined {
  if (!PORT.test(s)) return undefined;
  const port = Number(s);
  return port <= 65535 ? port : undefined;
}

/**
 * Parses "host:port", "[ipv6]:port" or ":port". The port is required and may be 0 (which asks the
 * OS for a free port when listening; a dialler should refuse it). An empty host takes
 * `defaultHost` and is refused when none is given. IPv6 addresses must be in brackets, because
 * "::1:9000" is itself a valid IPv6 address; the returned host has no brackets.
 */
export function parseHostPort(s: string, defaultHost?: string): HostPort | undefined {
  let hostText: string;
  let portText: string;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0 || s[close + 1] !== ':') return undefined;
    hostText = s.slice(1, close);
    portText = s.slice(close + 2);
    if (!isIpv6Text(hostText)) return undefined;
  } else {
    const colon = s.lastIndexOf(':');
    if (colon < 0) return undefined;
    hostText = s.slice(0, colon);
    portText = s.slice(colon + 1);
    if (hostText === '') {
      if (defaultHost === undefined) return undefined;
      hostText = defaultHost;
    } else if (!isValidHostName(hostText)) {
      return undefined;
    }
  }
  const port = parsePort(portText);
  return port === undefined ? undefined : { host: hostText, port };
}

/** Parses a host with no port: a DNS name, a dotted quad or a bracketed IPv6 address ("[::1]"); the host without brackets. */
export function parseHost(s: string): string | undefined {
  if (s.startsWith('[') && s.endsWith(']')) {
    const inner = s.slice(1, -1);
    return isIpv6Text(inner) ? inner : undefined;
  }
  return isValidHostName(s) ? s : undefined;
}

/** "host:port", bracketing IPv6 hosts. */
export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** The IPv4 host of an `ip:port` endpoint as a u32, or undefined when it is not IPv4 (a bracketed IPv6 endpoint). */
export function endpointIpv4(endpoint: string): number | undefined {
  const i = endpoint.lastIndexOf(':');
  return parseIpv4(i < 0 ? endpoint : endpoint.slice(0, i));
}

/** Whether `host` is an address (IPv4 dotted quad, or IPv6: it has a colon), not a name to resolve. */
export function isAddress(host: string): boolean {
  return parseIpv4(host) !== undefined || host.includes(':');
}
