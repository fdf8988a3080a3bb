// Client authentication for the hub: network token, per-client tokens, client certificates.
import { createHash, timingSafeEqual } from 'node:crypto';
import { isLeft, left, right, type Either } from 'fp-ts/lib/Either.js';
import type { AuthDecision, AuthRequest, Authenticator } from '../pipelines/ports.js';
import type { TrunkAuthenticator } from '../pipelines/trunks.js';
import { AddressAllocator } from '../pipelines/allocator.js';
import { closestMatch } from './config/decode.js';
import { parseJson, formatJsonPath } from './config/json.js';
import { CidrList, KEY_INFO } from './config/schema.js';
import { formatIpv4, formatPrefix, type Ipv4Prefix } from '../operators/core/address.js';
import { AddressCodec, decodeErrorLine } from '../operators/core/codecs.js';

/** One named client of a tokens file. */
export interface ClientToken {
  readonly name: string;
  readonly token: string;
  /** When set, this client may only use this address (and gets it when it asks to be assigned one). */
  readonly address?: number;
  /** When set, the only LANs this client may announce (each route must lie inside one of these). */
  readonly routes?: readonly Ipv4Prefix[];
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

/**
 * How a hub checks the trunks other hubs of its cluster dial to it (docs/cluster.md, "Trunks"): the
 * cluster token, compared as a SHA-256 digest with timingSafeEqual as client tokens are, always;
 * and, over mutual TLS, a verified certificate must name the dialing hub as well. A certificate
 * alone is not enough: members' certificates come from the same CA, and one naming a hub must not
 * make its holder that hub.
 */
export function makeTrunkAuthenticator(options: { readonly token: string }): TrunkAuthenticator {
  const expected = digest(options.token);
  return {
    token: options.token,
    check(hub, token, peerIdentity) {
      if (token === undefined || token === '') return 'no cluster token';
      if (!timingSafeEqual(digest(token), expected)) return 'wrong cluster token';
      return peerIdentity === undefined || peerIdentity === hub ? undefined : `its certificate names ${JSON.stringify(peerIdentity)}, not the hub ${hub}`;
    },
  };
}

/** The keys of one client's entry in a tokens file. */
const ENTRY_KEYS = ['token', 'address', 'routes'] as const;
const ENTRY_SHAPE = '{"token": "SECRET", "address": "10.0.0.2", "routes": ["CIDR", ...]}';
/** The shortest token a tokens file may give. */
const MIN_TOKEN_LENGTH = 8;

/** What kind of value `v` is, without showing it: a misplaced value may well be a secret. */
const shapeOf = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`);

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Parses a tokens file (`{"NAME": {"token": "...", "address": "10.0.0.2", "routes": ["192.168.10.0/24"]}}`)
 * for a hub on `tunnel` (its own address/prefix): the clients, or one line per problem
 * (`tokens_file: PATH: NAME.KEY: ...`). Refused: invalid JSON and duplicate keys, unknown keys,
 * short or shared tokens, pins the hub would refuse in a HELLO (outside the tunnel network, its
 * network or broadcast address, the hub's own) or that two clients share, routes that are not
 * network prefixes, and a file without clients.
 */
export function parseTokensFile(text: string, path: string, tunnel: Ipv4Prefix): Either<string[], readonly ClientToken[]> {
  const problem = (where: string, what: string): string => `tokens_file: ${path}: ${where === '' ? '' : `${where}: `}${what}`;
  const json = parseJson(text);
  if (isLeft(json)) return left([problem('', json.left.message)]);
  if (!isRecord(json.right)) return left([problem('', `expected {"NAME": ${ENTRY_SHAPE}, ...}, got ${shapeOf(json.right)}`)]);
  // The hub judges a pin as it judges the address of a HELLO, so a pin it would refuse is refused here.
  const hub = new AddressAllocator({ network: tunnel.address, prefix: tunnel.prefix, hub: tunnel.address });
  const errors: string[] = [];
  const clients: ClientToken[] = [];
  const tokenOwner = new Map<string, string>();
  const pinOwner = new Map<number, string>();
  const pinProblem = (name: string, address: number): string | undefined => {
    const claim = hub.claimStatic(name, address);
    if (!claim.ok) return `${claim.detail} (tunnel_addr ${formatPrefix(tunnel)})`;
    const other = pinOwner.get(address);
    if (other !== undefined) return `${formatIpv4(address)} is already pinned to ${other}; an address belongs to one client`;
    pinOwner.set(address, name);
    return undefined;
  };
  for (const [name, entry] of Object.entries(json.right)) {
    const at = (key: string): string => formatJsonPath([name, key]);
    if (!isRecord(entry)) {
      errors.push(problem(formatJsonPath([name]), `expected ${ENTRY_SHAPE}, got ${shapeOf(entry)}`));
      continue;
    }
    for (const key of Object.keys(entry)) {
      if ((ENTRY_KEYS as readonly string[]).includes(key)) continue;
      const near = closestMatch(key, ENTRY_KEYS);
      errors.push(problem(at(key), `unknown key (${near === undefined ? '' : `did you mean "${near}"? `}the keys are ${ENTRY_KEYS.join(', ')})`));
    }
    const { token, address: addressText, routes: routesValue } = entry;
    if (token === undefined) {
      errors.push(problem(at('token'), `missing (each client needs a secret of at least ${MIN_TOKEN_LENGTH} characters)`));
    } else if (typeof token !== 'string') {
      errors.push(problem(at('token'), `expected a string of at least ${MIN_TOKEN_LENGTH} characters, got ${shapeOf(token)}`));
    } else if (token.length < MIN_TOKEN_LENGTH) {
      errors.push(problem(at('token'), `expected at least ${MIN_TOKEN_LENGTH} characters, got ${token.length}`));
    } else {
      const other = tokenOwner.get(token);
      if (other !== undefined) errors.push(problem(at('token'), `the same token as ${other}; each client needs its own`));
      else tokenOwner.set(token, name);
    }
    let address: number | undefined;
    if (addressText !== undefined) {
      const decoded = AddressCodec.decode(addressText);
      address = isLeft(decoded) ? undefined : decoded.right;
      const why = address === undefined ? decodeErrorLine('', AddressCodec.name, addressText) : pinProblem(name, address);
      if (why !== undefined) errors.push(problem(at('address'), why));
    }
    let routes: readonly Ipv4Prefix[] | undefined;
    if (routesValue !== undefined) {
      // The same decoder as the `routes` config key, so both accept and refuse the same prefixes.
      const decoded = CidrList.decode(routesValue);
      if (isLeft(decoded)) errors.push(problem(at('routes'), decodeErrorLine('', decoded.left[0]?.message ?? KEY_INFO.routes.expected, routesValue)));
      else routes = decoded.right;
    }
    clients.push({ name, token: typeof token === 'string' ? token : '', ...(address === undefined ? {} : { address }), ...(routes === undefined ? {} : { routes }) });
  }
  if (clients.length === 0 && errors.length === 0) errors.push(problem('', 'no clients listed'));
  return errors.length > 0 ? left(errors) : right(clients);
}
