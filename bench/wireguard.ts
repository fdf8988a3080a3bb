// The userspace WireGuard baseline of the benches: wireguard-go (Debian's package) in lab
// namespaces, set up as a hub and spokes like lightweight-tunnel: the hub has one peer per client
// (allowed-ips its /32), every client has the hub as its only peer (allowed-ips the whole tunnel
// network), and the hub's kernel forwards client-to-client packets back into its WireGuard device.
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LabHost, LabProcess } from '../test/helpers/lab.js';
import { systemBinary } from '../test/helpers/lab.js';
import { formatIpv4, parseIpv4, prefixMask } from '../operators/core/address.js';

const WG_SOCKET_DIR = '/var/run/wireguard';

/** One side of the WireGuard tunnel: the host it runs on and its tunnel address. */
export interface WireGuardSide {
  readonly host: LabHost;
  readonly address: string;
}

/** Options of startWireGuard. */
export interface WireGuardOptions {
  readonly hub: WireGuardSide;
  /** The hub's underlay address the clients send to. */
  readonly hubEndpoint: string;
  readonly clients: readonly WireGuardSide[];
  /** Prefix length of the tunnel network (24: 10.0.0.0/24). */
  readonly prefix: number;
  /** The hub's UDP port. */
  readonly port: number;
  readonly mtu: number;
  /** Makes the interface names unique on the machine (the UAPI sockets live in one directory for
   * all namespaces): interfaces are `wg<tag>h` and `wg<tag>N`; at most 9 characters. */
  readonly tag: string;
  /** Mirror wireguard-go's output to stderr. */
  readonly echo?: boolean;
  /** Label prefix of the processes. */
  readonly label?: string;
}

/** A running WireGuard tunnel: its processes (hub first) and how to take it down. */
export interface WireGuardTunnel {
  readonly hub: LabProcess;
  readonly clients: LabProcess[];
  readonly interfaces: string[];
  /** Stops the processes and removes their UAPI sockets; resolves with their exit statuses. */
  stop(graceMs?: number): Promise<{ label: string; code: number | null; signal: NodeJS.Signals | null }[]>;
  /** Synchronous best effort for signal handlers: SIGKILL, remove the sockets. */
  disposeSync(): void;
}

/** Why WireGuard cannot be measured here (wireguard-go or wg missing), or undefined when it can. */
export function wireGuardUnavailable(): string | undefined {
  if (systemBinary('wireguard-go') === undefined) return 'wireguard-go is not installed (apt-get install wireguard-go)';
  if (systemBinary('wg') === undefined) return 'wg is not installed (apt-get install wireguard-tools)';
  return undefined;
}

/** A fresh X25519 key pair in WireGuard's base64 form. */
function keyPair(): { priv: string; pub: string } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const b64 = (jwk: string | undefined): string => Buffer.from(jwk ?? '', 'base64url').toString('base64');
  return { priv: b64(privateKey.export({ format: 'jwk' }).d), pub: b64(publicKey.export({ format: 'jwk' }).x) };
}

/** Waits until wireguard-go has made its UAPI socket (it then takes configuration). */
async function waitSocket(ifname: string, p: LabProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fs.existsSync(`${WG_SOCKET_DIR}/${ifname}.sock`)) {
    if (!p.running) throw new Error(`wireguard-go for ${ifname} exited: ${p.output(20)}`);
    if (Date.now() > deadline) throw new Error(`wireguard-go for ${ifname} made no UAPI socket within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Starts wireguard-go on the hub and every client (in the foreground, so that the processes are
 * ours to measure and stop), configures keys, peers, addresses and the MTU with `wg` and `ip`
 * inside each namespace, and turns on forwarding in the hub's namespace. Resolves once every
 * device is up (the handshakes happen with the first packets). On failure everything it started
 * is stopped before it rejects.
 */
export async function startWireGuard(o: WireGuardOptions): Promise<WireGuardTunnel> {
  const wgGo = systemBinary('wireguard-go');
  const wg = systemBinary('wg');
  if (wgGo === undefined || wg === undefined) throw new Error(wireGuardUnavailable());
  const sides = [o.hub, ...o.clients];
  const names = sides.map((_, i) => `wg${o.tag}${i === 0 ? 'h' : String(i)}`);
  const keys = sides.map(() => keyPair());
  const env = { ...process.env, WG_PROCESS_FOREGROUND: '1', WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1', LOG_LEVEL: 'error' };
  const procs = sides.map((s, i) =>
    s.host.spawn(wgGo, ['-f', names[i]!], { env, label: `${o.label ?? 'wireguard'}:${i === 0 ? 'hub' : `c${i}`}`, maxLines: 1000, echo: o.echo ?? false }),
  );
  const removeSockets = (): void => {
    for (const n of names) fs.rmSync(`${WG_SOCKET_DIR}/${n}.sock`, { force: true });
  };
  const tunnel: WireGuardTunnel = {
    hub: procs[0]!,
    clients: procs.slice(1),
    interfaces: names,
    stop: async (graceMs = 3000) => {
      const exits = await Promise.all(procs.map(async (p) => ({ label: p.label, ...(await p.stop(graceMs)) })));
      removeSockets();
      return exits.map((e) => ({ label: e.label, code: e.code, signal: e.signal }));
    },
    disposeSync: () => {
      for (const p of procs) p.kill('SIGKILL');
      removeSockets();
    },
  };
  try {
    await Promise.all(procs.map((p, i) => waitSocket(names[i]!, p, 10_000)));
    const check = { check: true, timeoutMs: 10_000 } as const;
    // `wg` reads private keys only from files (Node's stdio are sockets, which /dev/stdin cannot
    // open): one private directory, removed as soon as the keys are in.
    const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lwt-wg-'));
    try {
      const keyFiles = keys.map((k, i) => {
        const file = path.join(keyDir, `${i}.key`);
        fs.writeFileSync(file, `${k.priv}\n`, { mode: 0o600 });
        return file;
      });
      const hubPeers = o.clients.flatMap((c, i) => ['peer', keys[i + 1]!.pub, 'allowed-ips', `${c.address}/32`]);
      await o.hub.host.exec(wg, ['set', names[0]!, 'private-key', keyFiles[0]!, 'listen-port', String(o.port), ...hubPeers], check);
      const network = `${formatIpv4((parseIpv4(o.hub.address)! & prefixMask(o.prefix)) >>> 0)}/${o.prefix}`;
      await Promise.all(
        o.clients.map((_, i) =>
          o.clients[i]!.host.exec(
            wg,
            ['set', names[i + 1]!, 'private-key', keyFiles[i + 1]!, 'peer', keys[0]!.pub, 'allowed-ips', network, 'endpoint', `${o.hubEndpoint}:${o.port}`],
            check,
          ),
        ),
      );
    } finally {
      fs.rmSync(keyDir, { recursive: true, force: true });
    }
    await Promise.all(
      sides.map(async (s, i) => {
        await s.host.exec('ip', ['addr', 'add', `${s.address}/${o.prefix}`, 'dev', names[i]!], check);
        await s.host.exec('ip', ['link', 'set', names[i]!, 'mtu', String(o.mtu), 'up'], check);
      }),
    );
    // Client-to-client goes through the hub's kernel: forward, and do not send redirects back into the tunnel.
    await o.hub.host.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.send_redirects=0', `net.ipv4.conf.${names[0]!}.send_redirects=0`], check);
  } catch (err) {
    await tunnel.stop(1000);
    throw err;
  }
  return tunnel;
}

