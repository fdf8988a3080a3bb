// The boundary decoders every input shares (the config, the control messages, the tokens file, the
// lease file): io-ts codecs for an address, a prefix, host:port and an IPv4 endpoint, built on the one parser of
// address.ts, and the one error style: `path: expected X, got Y`.
import * as t from 'io-ts';
import { formatHostPort, formatIpv4, formatPrefix, networkAddress, parseHostPort, parseIpv4, parsePrefix, type HostPort, type Ipv4Prefix } from './address.js';

const isU32 = (u: unknown): u is number => typeof u === 'number' && Number.isInteger(u) && u >= 0 && u <= 0xffffffff;
const isPrefixValue = (u: unknown): u is Ipv4Prefix =>
  typeof u === 'object' && u !== null && isU32((u as Ipv4Prefix).address) && Number.isInteger((u as Ipv4Prefix).prefix) && (u as Ipv4Prefix).prefix >= 0 && (u as Ipv4Prefix).prefix <= 32;

/** "a.b.c.d" (a strict dotted quad) ⇄ the address as a u32. */
export const AddressCodec = new t.Type<number, string, unknown>(
  'an IPv4 address like 10.0.0.2',
  isU32,
  (u, c) => {
    const a = typeof u === 'string' ? parseIpv4(u) : undefined;
    return a === undefined ? t.failure(u, c) : t.success(a);
  },
  formatIpv4,
);

/** "a.b.c.d/n" ⇄ a prefix that keeps its host bits ("10.0.0.1/24": the address 10.0.0.1 on 10.0.0.0/24). */
export const PrefixCodec = new t.Type<Ipv4Prefix, string, unknown>(
  'a prefix like 10.0.0.0/24',
  isPrefixValue,
  (u, c) => {
    const p = typeof u === 'string' ? parsePrefix(u) : undefined;
    return p === undefined ? t.failure(u, c) : t.success(p);
  },
  formatPrefix,
);

/** Why `s` is not a network prefix (a prefix without host bits, as a route is), or the prefix. */
export function networkPrefix(s: string): Ipv4Prefix | string {
  const p = parsePrefix(s);
  if (p === undefined) return `CIDRs like "192.168.10.0/24" (${JSON.stringify(s)} is not one)`;
  const net = networkAddress(p);
  if (net !== p.address) return `network prefixes without host bits (${s} is ${formatPrefix({ address: net, prefix: p.prefix })})`;
  return p;
}

/** "a.b.c.d/n" without host bits (a LAN route) ⇄ the prefix. */
export const NetworkPrefixCodec = new t.Type<Ipv4Prefix, string, unknown>(
  'a network prefix like 192.168.10.0/24',
  (u): u is Ipv4Prefix => isPrefixValue(u) && networkAddress(u) === u.address,
  (u, c) => {
    if (typeof u !== 'string') return t.failure(u, c);
    const p = networkPrefix(u);
    return typeof p === 'string' ? t.failure(u, c, p) : t.success(p);
  },
  formatPrefix,
);

/** "host:port" or "[v6]:port" with a port from 1 to 65535 ⇄ {host, port}. */
export const HostPortCodec = new t.Type<HostPort, string, unknown>(
  'host:port',
  (u): u is HostPort => typeof u === 'object' && u !== null && typeof (u as HostPort).host === 'string' && Number.isInteger((u as HostPort).port) && (u as HostPort).port >= 1 && (u as HostPort).port <= 65535,
  (u, c) => {
    const hp = typeof u === 'string' ? parseHostPort(u) : undefined;
    return hp === undefined || hp.port === 0 ? t.failure(u, c) : t.success(hp);
  },
  formatHostPort,
);

/** "a.b.c.d:port" (a strict dotted quad, a port from 1 to 65535) ⇄ {host, port}: an IPv4 transport endpoint, as a UDP candidate is. */
export const Ipv4EndpointCodec = new t.Type<HostPort, string, unknown>(
  'an IPv4 endpoint like 192.0.2.7:41641',
  (u): u is HostPort => HostPortCodec.is(u) && parseIpv4(u.host) !== undefined,
  (u, c) => {
    const hp = HostPortCodec.validate(u, c);
    // An error line shows the text that was sent, not what host:port made of it.
    return hp._tag === 'Right' && parseIpv4(hp.right.host) !== undefined ? hp : t.failure(u, c);
  },
  formatHostPort,
);

const MAX_RENDERED = 80;

/** A value as JSON for an error line, shortened when long. */
export function renderValue(value: unknown): string {
  let text: string;
  try {
    text = value === undefined ? 'nothing' : (JSON.stringify(value) ?? String(value));
  } catch {
    text = String(value);
  }
  return text.length > MAX_RENDERED ? `${text.slice(0, MAX_RENDERED - 1)}…` : text;
}

/** The one error line of every decoder: `path: expected X, got Y` (no path: `expected X, got Y`). */
export function decodeErrorLine(path: string, expected: string, actual: unknown): string {
  return `${path === '' ? '' : `${path}: `}expected ${expected}, got ${renderValue(actual)}`;
}

/**
 * The error line of the first io-ts error: its path (object keys joined by dots, array indices
 * left out; `root` when the whole value is wrong), what the innermost codec expected (a failure's
 * message wins over the codec's name), and the value found there.
 */
export function firstErrorLine(errors: t.Errors, root = ''): string {
  const first = errors[0];
  if (first === undefined) return decodeErrorLine(root, 'a valid value', undefined);
  const keys = first.context.map((c) => c.key).filter((k) => k !== '' && !/^\d+$/.test(k));
  const path = keys.length > 0 ? keys.join('.') : root;
  const expected = first.message ?? first.context.at(-1)?.type.name ?? 'a valid value';
  return decodeErrorLine(path, expected, first.value);
}

const CLUSTER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Whether `s` may name a hub or a cluster: 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit (it becomes part of etcd keys and of trunk HELLOs). */
export function isClusterName(s: string): boolean {
  return CLUSTER_NAME.test(s);
}
