// Client authentication for the hub: network token, per-client tokens, client certificates.
import { createHash, timingSafeEqual } from 'node:crypto';
import * as t from 'io-ts';
import { isLeft } from 'fp-ts/lib/Either.js';
import type { AuthDecision, AuthRequest, Authenticator } from '../pipelines/ports.js';
import { formatIpv4, parseIpv4 } from '../operators/wire/ipv4.js';
import { parseCidr } from './net/ipv4.js';
import type { Ipv4Cidr } from '../pipelines/settings.js';

/** One named client of a tokens file. */
export interface ClientToken {
  readonly name: string;
  readonly token: string;
  /** When set, this client may only use this address (and gets it when it asks to be assigned one). */
  readonly address?: number;
  /** When set, the only LANs this client may announce (each route must lie inside one of these). */
  readonly routes?: readonly Ipv4Cidr[];
}

/** What the hub requires. At least one of the three is set when a hub has an authenticator. */
export interface AuthPolicy {
  /** The shared network token. */
  readonly networkToken?: string;
  /** Per-client tokens (identities). */
  readonly clients?: readonly ClientToken[];
  /** Client certificates are required (and verified by TLS before the pipeline sees the connection). */
  readonly requireClientCert: boolean;
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/**
 * Builds the hub's authenticator. Tokens are compared as SHA-256 digests with timingSafeEqual, and
 * every stored token is compared on every attempt, so timing reveals neither a token's prefix nor
 * which client matched. A client passes when it satisfies everything the policy requires: the
 * certificate (when required) and a token (when any token is configured).
 */
export function makeAuthenticator(policy: AuthPolicy): Authenticator {
  const network = policy.networkToken === undefined ? undefined : digest(policy.networkToken);
  const clients = (policy.clients ?? []).map((c) => ({ ...c, digest: digest(c.token) }));
  const needToken = network !== undefined || clients.length > 0;
  /** Pinned addresses are reserved for their owner, even while the owner is offline. */
  const pinnedTo = new Map<number, string>();
  for (const c of clients) if (c.address !== undefined) pinnedTo.set(c.address, c.name);
  const reserved = (address: number | undefined, identity: string | undefined): AuthDecision | undefined => {
    if (address === undefined) return undefined;
    const owner = pinnedTo.get(address);
    return owner === undefined || owner === identity
      ? undefined
      : { ok: false, reason: 'address-not-allowed', detail: `${formatIpv4(address)} is reserved for client ${owner}` };
  };
  const byCertificate = (peerIdentity: string | undefined): AuthDecision =>
    peerIdentity === undefined ? { ok: true, identity: undefined, exclusive: false } : { ok: true, identity: peerIdentity, exclusive: true, source: 'certificate' };
  return {
    reserved: new Map([...pinnedTo]),
    authenticate(req: AuthRequest): AuthDecision {
      if (policy.requireClientCert && req.peerIdentity === undefined) {
        return { ok: false, reason: 'auth-failed', detail: 'no verified client certificate' };
      }
      if (!needToken) return byCertificate(req.peerIdentity);

      if (req.token === undefined || req.token === '') {
        return { ok: false, reason: 'auth-failed', detail: 'this hub requires a token (-token or -token-file on the client)' };
      }
      const given = digest(req.token);
      let networkMatch = false;
      let matched: (typeof clients)[number] | undefined;
      if (network !== undefined && timingSafeEqual(given, network)) networkMatch = true;
      for (const c of clients) if (timingSafeEqual(given, c.digest) && matched === undefined) matched = c;
      if (matched !== undefined) {
        if (matched.address !== undefined && req.address !== undefined && matched.address !== req.address) {
          return {
            ok: false,
            reason: 'address-not-allowed',
            detail: `client ${matched.name} may only use ${formatIpv4(matched.address)}, not ${formatIpv4(req.address)}`,
          };
        }
        return (
          reserved(req.address, matched.name) ?? {
            ok: true,
            identity: matched.name,
            exclusive: true,
            source: 'token',
            ...(matched.address === undefined ? {} : { pinned: matched.address }),
            ...(matched.routes === undefined ? {} : { routes: matched.routes }),
          }
        );
      }
      if (networkMatch) return reserved(req.address, undefined) ?? byCertificate(req.peerIdentity);
      return { ok: false, reason: 'auth-failed', detail: 'wrong token' };
    },
  };
}

const TokensFileCodec = t.record(
  t.string,
  t.intersection([t.type({ token: t.string }), t.partial({ address: t.string, routes: t.array(t.string) })]),
);

/** Parses a tokens file (`{"NAME": {"token": "...", "address": "10.0.0.2", "routes": ["192.168.10.0/24"]}}`); returns the clients or error lines. */
export function parseTokensFile(text: string, path: string): readonly ClientToken[] | string[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return [`${path}: invalid JSON (${(err as Error).message})`];
  }
  const decoded = TokensFileCodec.decode(json);
  if (isLeft(decoded)) return [`${path}: expected {"NAME": {"token": "SECRET", "address": "10.0.0.2", "routes": ["CIDR", ...]}, ...}`];
  const errors: string[] = [];
  const clients: ClientToken[] = [];
  const seen = new Map<string, string>();
  for (const [name, entry] of Object.entries(decoded.right)) {
    if (entry.token.length < 8) errors.push(`${path}: ${name}.token: expected at least 8 characters`);
    const other = seen.get(entry.token);
    if (other !== undefined) errors.push(`${path}: ${name}.token: the same token as ${other}; each client needs its own`);
    seen.set(entry.token, name);
    let address: number | undefined;
    if (entry.address !== undefined) {
      address = parseIpv4(entry.address);
      if (address === undefined) errors.push(`${path}: ${name}.address: expected an IPv4 address, got ${JSON.stringify(entry.address)}`);
    }
    let routes: Ipv4Cidr[] | undefined;
    if (entry.routes !== undefined) {
      routes = [];
      for (const text of entry.routes) {
        const cidr = parseCidr(text);
        if (cidr === undefined) errors.push(`${path}: ${name}.routes: expected CIDRs like "192.168.10.0/24", got ${JSON.stringify(text)}`);
        else routes.push(cidr);
      }
    }
    clients.push({ name, token: entry.token, ...(address === undefined ? {} : { address }), ...(routes === undefined ? {} : { routes }) });
  }
  if (clients.length === 0) errors.push(`${path}: no clients listed`);
  return errors.length > 0 ? errors : clients;
}
