// Driver: the host's underlay as its kernel sees it (addresses, connected networks, gateways), for
// the route guard (pipelines/routeGuard.ts). Read synchronously on every call: it is asked only when
// LAN routes change, and the answer must be current (a laptop roams).
import { readFileSync } from 'node:fs';
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import type { HostNetworkPort } from '../../pipelines/ports.js';
import type { GuardedPrefix } from '../../pipelines/routeGuard.js';
import { formatIpv4, networkAddress, parseIpv4, parsePrefix } from '../../operators/core/address.js';

/** Options of makeHostNetwork. */
export interface HostNetworkOptions {
  /** The TUN device of this side: its own addresses and routes are the tunnel's, not the underlay's. */
  readonly device: string;
  /** The interfaces (os.networkInterfaces by default; tests pass their own). */
  readonly interfaces?: () => NodeJS.Dict<NetworkInterfaceInfo[]>;
  /** The text of /proc/net/route (read from the file by default; tests pass their own). */
  readonly routeTable?: () => string;
}

/**
 * A HostNetworkPort over os.networkInterfaces() and /proc/net/route: every IPv4 address (as a /32)
 * and connected network of each interface but `device`, and every gateway of the main routing
 * table's routes through those interfaces; the addresses alone for direct paths' local endpoints.
 * Sources it cannot read give nothing (never throws).
 */
export function makeHostNetwork(options: HostNetworkOptions): HostNetworkPort {
  const interfaces = options.interfaces ?? networkInterfaces;
  const routeTable = options.routeTable ?? ((): string => readFileSync('/proc/net/route', 'utf8'));
  /** The IPv4 interfaces but `device`, as os.networkInterfaces() lists them (none when it throws). */
  const ipv4 = function* (): Generator<{ readonly name: string; readonly info: NetworkInterfaceInfo }> {
    let ifs: NodeJS.Dict<NetworkInterfaceInfo[]> = {};
    try {
      ifs = interfaces();
    } catch {
      // nothing known
    }
    for (const [name, infos] of Object.entries(ifs)) {
      if (name === options.device || infos === undefined) continue;
      for (const info of infos) if (info.family === 'IPv4') yield { name, info };
    }
  };
  return {
    addresses(): number[] {
      const out: number[] = [];
      for (const { info } of ipv4()) {
        const address = parseIpv4(info.address);
        if (address !== undefined && !out.includes(address)) out.push(address);
      }
      return out;
    },
    guarded(): GuardedPrefix[] {
      const out: GuardedPrefix[] = [];
      for (const { name, info } of ipv4()) {
        const address = parseIpv4(info.address);
        if (address === undefined) continue;
        out.push({ prefix: { address, prefix: 32 }, what: `address ${info.address} on ${name}` });
        const cidr = info.cidr === null ? undefined : parsePrefix(info.cidr);
        if (cidr !== undefined && cidr.prefix < 32) out.push({ prefix: cidr, what: `network ${formatIpv4(networkAddress(cidr))}/${cidr.prefix} on ${name}` });
      }
      let table = '';
      try {
        table = routeTable();
      } catch {
        // no /proc: no gateways known
      }
      for (const g of gatewaysOf(table, options.device)) out.push(g);
      return out;
    },
  };
}

/** The gateways in a /proc/net/route text (hex, little-endian fields), on interfaces other than `device`. */
export function gatewaysOf(text: string, device: string): GuardedPrefix[] {
  const out: GuardedPrefix[] = [];
  const seen = new Set<number>();
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 3 || f[0] === device || !/^[0-9A-Fa-f]{8}$/.test(f[2]!)) continue;
    const le = Number.parseInt(f[2]!, 16);
    const gateway = (((le & 0xff) << 24) | (((le >>> 8) & 0xff) << 16) | (((le >>> 16) & 0xff) << 8) | ((le >>> 24) & 0xff)) >>> 0;
    if (gateway === 0 || seen.has(gateway)) continue;
    seen.add(gateway);
    out.push({ prefix: { address: gateway, prefix: 32 }, what: `gateway ${formatIpv4(gateway)} on ${f[0]}` });
  }
  return out;
}
