// The cluster's keys and values in the store (docs/cluster.md, "State in etcd"): one place that
// says what a key is named, what its value holds, and how a key or value read back from the store
// is decoded. The store is a network input: a key that is none of ours, a value larger than
// MAX_VALUE_LENGTH or one that does not decode is refused here (the caller counts it), never trusted.
import * as t from 'io-ts';
import { isLeft } from 'fp-ts/lib/Either.js';
import { formatIpv4, formatPrefix, networkAddress, parseIpv4, parsePrefix, type Ipv4Prefix } from '../operators/core/address.js';
import { AddressCodec, HostPortCodec, PrefixCodec, isClusterName } from '../operators/core/codecs.js';

/** The longest value the cluster writes or reads (bytes of JSON text). */
export const MAX_VALUE_LENGTH = 1024;
/** The longest identity a sticky lease or a claim records. */
export const MAX_IDENTITY_LENGTH = 256;

const Name = t.refinement(t.string, isClusterName, 'name');
const Identity = t.refinement(t.string, (s) => s.length > 0 && s.length <= MAX_IDENTITY_LENGTH, 'identity');
const Version = t.literal(1);

/** `hub/<name>`: a live hub, under its lease. */
export const HubValueCodec = t.exact(t.type({ v: Version, advertise: HostPortCodec, tunnel: PrefixCodec }));
/** `addr/<a.b.c.d>`: who holds an address and which hub serves it, under that hub's lease (`self`: the hub's own tunnel address). */
export const AddrValueCodec = t.exact(
  t.intersection([t.type({ v: Version, hub: Name }), t.partial({ remote: t.string, identity: Identity, lease: Identity, self: t.boolean })]),
);
/** `route/<a.b.c.d>/<n>`: a LAN behind a member, under the serving hub's lease. */
export const RouteValueCodec = t.exact(t.type({ v: Version, hub: Name, via: AddressCodec }));
/** `sticky/<a.b.c.d>`: the address is leased to an identity (a plain key: leases outlive hubs). */
export const StickyValueCodec = t.exact(t.type({ v: Version, identity: Identity }));

export type HubValue = t.TypeOf<typeof HubValueCodec>;
export type AddrValue = t.TypeOf<typeof AddrValueCodec>;
export type RouteValue = t.TypeOf<typeof RouteValueCodec>;
export type StickyValue = t.TypeOf<typeof StickyValueCodec>;

/** A key of the cluster, decoded. */
export type ClusterKey =
  | { readonly kind: 'hub'; readonly name: string }
  | { readonly kind: 'addr'; readonly address: number }
  | { readonly kind: 'route'; readonly prefix: Ipv4Prefix }
  | { readonly kind: 'sticky'; readonly address: number };

/** A key with its decoded value. */
export type ClusterEntry =
  | { readonly kind: 'hub'; readonly name: string; readonly value: HubValue }
  | { readonly kind: 'addr'; readonly address: number; readonly value: AddrValue }
  | { readonly kind: 'route'; readonly prefix: Ipv4Prefix; readonly value: RouteValue }
  | { readonly kind: 'sticky'; readonly address: number; readonly value: StickyValue };

/** The key names of one cluster. */
export interface ClusterKeys {
  /** `/lwt/<cluster>/`: every key of the cluster starts with it. */
  readonly prefix: string;
  hub(name: string): string;
  addr(address: number): string;
  route(prefix: Ipv4Prefix): string;
  sticky(address: number): string;
  /** The first key of every `route/` key, and the end of their range. */
  readonly routes: { readonly key: string; readonly rangeEnd: string };
  /** What `key` is, or undefined when it is not a key of this cluster's layout. */
  parse(key: string): ClusterKey | undefined;
}

/** The keys of cluster `cluster` (a name isClusterName accepts; throws RangeError otherwise). */
export function clusterKeys(cluster: string): ClusterKeys {
  if (!isClusterName(cluster)) throw new RangeError(`bad cluster name ${JSON.stringify(cluster)}`);
  const prefix = `/lwt/${cluster}/`;
  return {
    prefix,
    hub: (name) => `${prefix}hub/${name}`,
    addr: (a) => `${prefix}addr/${formatIpv4(a)}`,
    route: (p) => `${prefix}route/${formatPrefix({ address: networkAddress(p), prefix: p.prefix })}`,
    sticky: (a) => `${prefix}sticky/${formatIpv4(a)}`,
    routes: { key: `${prefix}route/`, rangeEnd: `${prefix}route0` },
    parse(key) {
      if (!key.startsWith(prefix)) return undefined;
      const rest = key.slice(prefix.length);
      const slash = rest.indexOf('/');
      if (slash < 0) return undefined;
      const kind = rest.slice(0, slash);
      const tail = rest.slice(slash + 1);
      switch (kind) {
        case 'hub':
          return isClusterName(tail) ? { kind, name: tail } : undefined;
        case 'addr':
        case 'sticky': {
          const address = parseIpv4(tail);
          return address === undefined ? undefined : { kind, address };
        }
        case 'route': {
          const p = parsePrefix(tail);
          return p === undefined || networkAddress(p) !== p.address ? undefined : { kind, prefix: p };
        }
        default:
          return undefined;
      }
    },
  };
}

const CODECS = { hub: HubValueCodec, addr: AddrValueCodec, route: RouteValueCodec, sticky: StickyValueCodec } as const;

/** The entry a key and its value make, or why they make none (a sentence for the count's log). */
export function decodeEntry(keys: ClusterKeys, key: string, value: string): ClusterEntry | string {
  const k = keys.parse(key);
  if (k === undefined) return `not a key of the cluster's layout: ${JSON.stringify(key.slice(0, 80))}`;
  if (value.length > MAX_VALUE_LENGTH) return `${key}: a value of ${value.length} bytes (at most ${MAX_VALUE_LENGTH})`;
  let json: unknown;
  try {
    json = JSON.parse(value);
  } catch {
    return `${key}: a value that is not JSON`;
  }
  const decoded = (CODECS[k.kind] as t.Type<unknown, unknown, unknown>).decode(json);
  if (isLeft(decoded)) return `${key}: a value of the wrong shape`;
  return { ...k, value: decoded.right } as ClusterEntry;
}

/** The text of a value to write (its codec's JSON form). */
export function encodeValue(entry: ClusterEntry): string {
  switch (entry.kind) {
    case 'hub':
      return JSON.stringify(HubValueCodec.encode(entry.value));
    case 'addr':
      return JSON.stringify(AddrValueCodec.encode(entry.value));
    case 'route':
      return JSON.stringify(RouteValueCodec.encode(entry.value));
    case 'sticky':
      return JSON.stringify(StickyValueCodec.encode(entry.value));
  }
}

/** The key of an entry. */
export function entryKey(keys: ClusterKeys, entry: ClusterEntry | ClusterKey): string {
  switch (entry.kind) {
    case 'hub':
      return keys.hub(entry.name);
    case 'addr':
      return keys.addr(entry.address);
    case 'route':
      return keys.route(entry.prefix);
    case 'sticky':
      return keys.sticky(entry.address);
  }
}
