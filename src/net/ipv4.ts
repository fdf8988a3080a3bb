// IPv4 and host:port text helpers. Pure functions, no DNS, no I/O.
//
// Addresses are unsigned 32-bit integers (10.0.0.1 is 0x0a000001), the form the router keys its Map
// by. Parsing is strict on purpose: "010.0.0.1" is refused because inet_aton(3) and ping read it as
// octal (8.0.0.1) while a human reads ten, and a config file must not mean two things.

import { isIPv6 } from 'node:net';
import type { Ipv4Cidr } from '../../pipelines/settings.js';
import { formatIpv4, parseIpv4, prefixMask } from '../../operators/wire/ipv4.js';

export type { Ipv4Cidr };

/** A transport endpoint. `host` is an IPv4 address, a DNS name or an IPv6 address without brackets. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

const PREFIX = /^(?:0|[1-9][0-9]?)$/;
const PORT = /^(?:0|[1-9][0-9]{0,4})$/;
const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const NUMERIC = /^[0-9]+$/;

// The dotted-quad and netmask arithmetic is the wire module's, so the config and the data path
// agree on every address.
export { formatIpv4, parseIpv4, prefixMask };

/** The first address of the block (host bits cleared). */
export const networkAddress = (cidr: Ipv4Cidr): number => (cidr.address & prefixMask(cidr.prefix)) >>> 0;

/** The last address of the block (host bits set). */
export const broadcastAddress = (cidr: Ipv4Cidr): number => (cidr.address | ~prefixMask(cidr.prefix)) >>> 0;

/** True when `address` lies inside the block of `cidr`. */
export const cidrContains = (cidr: Ipv4Cidr, address: number): boolean => {
  const mask = prefixMask(cidr.prefix);
  return ((address & mask) >>> 0) === ((cidr.address & mask) >>> 0);
};

/**
 * Parses "a.b.c.d/p" with a strict dotted quad and a prefix from 0 to 32 (no leading zeros).
 * The address keeps its host bits: "10.0.0.1/24" is the address 10.0.0.1 on the 10.0.0.0/24 LAN.
 */
export const parseCidr = (s: string): Ipv4Cidr | undefined => {
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const address = parseIpv4(s.slice(0, slash));
  const prefixText = s.slice(slash + 1);
  if (address === undefined || !PREFIX.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  return prefix <= 32 ? { address, prefix } : undefined;
};

/** Formats as "a.b.c.d/p". */
export const formatCidr = (cidr: Ipv4Cidr): string => `${formatIpv4(cidr.address)}/${cidr.prefix}`;

/**
 * True for a DNS name (RFC 1123 labels, at most 253 characters, an optional final dot) or a strict
 * dotted quad. A name whose last label is all digits must be a valid dotted quad, so "256.1.1.1"
 * and "010.0.0.1" are refused instead of being sent to the resolver as names.
 */
export const isValidHostName = (s: string): boolean => {
  const name = s.endsWith('.') ? s.slice(0, -1) : s;
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.split('.');
  if (!labels.every((label) => LABEL.test(label))) return false;
  return NUMERIC.test(labels[labels.length - 1] ?? '') ? parseIpv4(s) !== undefined : true;
};

/** Parses a decimal port from 0 to 65535 (no sign, no leading zeros). */
export const parsePort = (s: string): number | undefined => {
  if (!PORT.test(s)) return undefined;
  const port = Number(s);
  return port <= 65535 ? port : undefined;
};

/**
 * Parses "host:port", "[ipv6]:port" or ":port". The port is required and may be 0 (which asks the
 * OS for a free port when listening; a dialler should refuse it). An empty host takes
 * `defaultHost` and is refused when none is given. IPv6 addresses must be in brackets, because
 * "::1:9000" is itself a valid IPv6 address; the returned host has no brackets.
 */
export const parseHostPort = (s: string, defaultHost?: string): HostPort | undefined => {
  let hostText: string;
  let portText: string;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0 || s[close + 1] !== ':') return undefined;
    hostText = s.slice(1, close);
    portText = s.slice(close + 2);
    if (!isIPv6(hostText)) return undefined;
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
};

/**
 * Parses a host with no port: a DNS name, a dotted quad or a bracketed IPv6 address ("[::1]").
 * Returns the host without brackets.
 */
export const parseHost = (s: string): string | undefined => {
  if (s.startsWith('[') && s.endsWith(']')) {
    const inner = s.slice(1, -1);
    return isIPv6(inner) ? inner : undefined;
  }
  return isValidHostName(s) ? s : undefined;
};

/** Formats as "host:port", bracketing IPv6 hosts. */
export const formatHostPort = (hp: HostPort): string =>
  hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
