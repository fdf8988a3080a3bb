/**
 * `npm run bench:wan`: lightweight-tunnel over an emulated WAN (issue 14), beside userspace
 * WireGuard and the bare underlay, in one run through one emulator.
 *
 *   npm run bench:wan -- [--duration S] [--rounds N] [--modes LIST] [--plain] [--delay-ms 15]
 *                        [--rate-mbit 200] [--queue-ms 10] [--near MS] [--json FILE|-] [--verbose]
 *
 * The lab (test/helpers/lab.ts, prefix `lwtw`): namespaces hub, c1 and wan. The bridge links the
 * lab makes are taken down; instead each of hub and c1 gets its own access link, a veth pair to the
 * router namespace `wan` (198.18.K.0/24, RFC 2544's benchmarking range: hub K=1, c1 K=2). In the
 * router every packet that arrives from an access link is policy-routed into the TUN device of
 * bench/wan-emu.ts, which delays it (15 ms one way per link) and rate-limits it (200 Mbit/s per link
 * and direction, a drop-tail queue of 10 ms) and writes it back for the kernel to forward to the
 * other link; nftables rules in the router drop a random share of the packets entering from and
 * leaving to each link (`numgen random mod 1000 < N`). So a packet from c1 to the hub crosses two
 * links: 30 ms one way, 60 ms round trip, and at a loss of p per link it is lost with 1 − (1 − p)².
 * Segmentation offloads are off on the access links, so that the loss rules and the emulator see
 * the packets that would be on the wire.
 *
 * Per mode (underlay: c1 to the hub's access address; tcp/tcp-tls: the CLI with -transport tcp;
 * udp/udp-tls: with -transport udp; wireguard: wireguard-go), one tunnel for all phases:
 *   loss 0%: a 50 packet/s UDP ping-pong c1→hub (test/helpers/probe.ts udp-ping), idle, then beside
 *            a bulk iperf3 transfer c1→hub;
 *   loss 1%: the same two;
 *   loss 3%: a bulk iperf3 transfer c1→hub, 1 stream.
 * The table gives medians over `--rounds`, with ratios to the underlay and to WireGuard, and the
 * targets of issue 14.
 *
 * `--near MS` (issue 12) is another topology and another set of phases: c2 gets an access link too,
 * and the links of c1 and c2 have MS ms one way each (the emulator's per-link delay), so c1 and c2
 * are 2 × MS apart and both MS + delay from the hub. Per mode (underlay, udp: relayed through the
 * hub with -direct=false, direct: -transport udp with direct paths on), at 0% loss: the ping-pong
 * c1→hub (idle0, for the RTT the tunnel adds) and c1→c2 (near0); the direct mode first waits until
 * both clients' status shows the other's path as direct. The target: the direct c1↔c2 RTT follows
 * their own link (the underlay's c1↔c2 RTT plus what the tunnel adds), not the hub's. Traffic stays between the namespaces this script creates; nothing is
 * configured in the root namespace; everything is removed at the end, on errors and on signals.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cleanupLabs, Lab, NFT_BIN, PROBE_SCRIPT, systemBinary, type LabHost, type LabProcess, type PingSample } from '../test/helpers/lab.js';
import { fmt, median, parseIperfJson, percentile, type IperfResult } from './stats.js';
import {
  CLI, cliHasTransport, cliHelp, directFlags, ensureCommands, makeHubCert, benchOptions, relayedFlags, runBench, statusDrops, statusFlags, tcpBytesTo, transportFlags, waitDirectPaths,
  writeJsonDocument,
} from './tools.js';
import type { EmuStats } from './wan-emu.js';
import { startWireGuard, wireGuardUnavailable, type WireGuardTunnel } from './wireguard.js';

const EMULATOR = fileURLToPath(new URL('./wan-emu.js', import.meta.url));
const LAB_PREFIX = 'lwtw';
const HUB_TUNNEL = '10.0.0.1';
const CLIENT_TUNNEL = '10.0.0.2';
/** c2's tunnel address (only with --near). */
const C2_TUNNEL = '10.0.0.3';
const TUNNEL_PORT = 9000;
const WG_PORT = 51820;
/** How long a transfer waits for an iperf3 server still busy with the previous test. */
const IPERF_BUSY_WAIT_MS = 30_000;
const IPERF_PORT = 5201;
const ECHO_PORT = 7000;
const TUNNEL_MTU = 1400;
/** The access links: host, router-side interface, the /24's third octet (the host is .2 in it). c2's only with --near. */
const LINKS = [
  { host: 'hub', ifname: 'w-hub', octet: 1 },
  { host: 'c1', ifname: 'w-c1', octet: 2 },
  { host: 'c2', ifname: 'w-c2', octet: 3 },
] as const;
type AccessLink = (typeof LINKS)[number];
const HUB_WAN = '198.18.1.2';
const C2_WAN = '198.18.3.2';
/** How long the direct mode waits for c1 and c2 to show each other's path as direct. */
const DIRECT_WAIT_MS = 15_000;
/** The margin of the --near target: direct c1↔c2 p50 ≤ the underlay's c1↔c2 p50 + the RTT the tunnel adds + this, ms. */
const NEAR_MARGIN_MS = 1;
const EMU_TUN = 'wemu0';
const EMU_TABLE = '100';
const NFT_TABLE = 'lwtw_wan';
/** Ping-pong interval: 50 packets per second. */
const PING_INTERVAL_MS = 20;
/** The loss settings, per mille per link. */
const LOSS_1 = 10;
const LOSS_3 = 30;

// ---------------------------------------------------------------------------------------------
// options

/**
 * underlay: no tunnel; tcp/tcp-tls: -transport tcp without/with TLS; udp/udp-tls: -transport udp;
 * these keep their clients relayed through the hub (-direct=false). direct: -transport udp with
 * direct paths on (only with --near, where there is a peer to go direct to). wireguard: wireguard-go.
 */
type Mode = 'underlay' | 'tcp' | 'tcp-tls' | 'udp' | 'udp-tls' | 'direct' | 'wireguard';
const MODES: readonly Mode[] = ['underlay', 'tcp', 'tcp-tls', 'udp', 'udp-tls', 'direct', 'wireguard'];

interface Options {
  duration: number;
  rounds: number;
  modes: Mode[];
  delayMs: number;
  rateMbit: number;
  queueMs: number;
  /** --near: c2 joins, c1's and c2's links have this one-way delay each (ms); undefined: the hub and c1 only. */
  near: number | undefined;
  /** Run the emulator, the echo server and the pinger at a real-time priority. */
  realtime: boolean;
  /** TCP congestion control of iperf3's connections (-C); undefined: the namespace's default. */
  cc: string | undefined;
  json: string | undefined;
  verbose: boolean;
}

const HELP = `usage: npm run bench:wan -- [options]

  --duration S     seconds per phase: each ping-pong, each bulk transfer (default 10)
  --rounds N       rounds of every mode; medians are reported (default 1)
  --modes LIST     comma-separated, from: ${MODES.join(', ')}
                   (default: underlay,tcp-tls,udp-tls,wireguard; the underlay always runs)
  --plain          the default modes without TLS: underlay,tcp,udp,wireguard
  --delay-ms MS    one-way delay per link (default 15)
  --rate-mbit R    rate per link and direction, Mbit/s (default 200)
  --queue-ms MS    drop-tail queue per link and direction, in ms at the rate (default 10)
  --near MS        issue 12's topology: c2 joins, and c1's and c2's links have MS ms one way each
                   (c1↔c2: 2 × MS; the hub's link keeps --delay-ms); phases: ping-pong c1→hub and
                   c1→c2 at 0% loss; default modes underlay,udp,direct (direct needs --near)
  --cc NAME        TCP congestion control of iperf3's connections (iperf3 -C, e.g. cubic, bbr;
                   default: the namespace's default, printed at the start). The tunnel's own TCP
                   connection keeps the default: a namespace may not pick a restricted one
  --no-rt          leave the emulator, the echo server and the pinger at normal priority
                   (by default they run SCHED_FIFO 10, so that other load on the machine delays
                   the tunnels, not the network or the measuring instruments)
  --json FILE      also write the JSON document to FILE ('-': JSON to stdout, table to stderr)
  --verbose        mirror the tunnel processes' log lines to stderr
`;

class UsageError extends Error {}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string', default: '10' },
      rounds: { type: 'string', default: '1' },
      modes: { type: 'string' },
      plain: { type: 'boolean', default: false },
      'delay-ms': { type: 'string', default: '15' },
      'rate-mbit': { type: 'string', default: '200' },
      'queue-ms': { type: 'string', default: '10' },
      near: { type: 'string' },
      'no-rt': { type: 'boolean', default: false },
      cc: { type: 'string' },
      json: { type: 'string' },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const num = (name: string, s: string, min: number, max: number, integer: boolean): number => {
    const n = Number(s);
    if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
      throw new UsageError(`--${name}: expected ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got ${s}`);
    }
    return n;
  };
  const near = values.near === undefined ? undefined : num('near', values.near, 0, 1000, false);
  let modes: Mode[];
  if (values.modes !== undefined) {
    const list = values.modes.split(',').map((m) => m.trim()).filter((m) => m !== '');
    const bad = list.filter((m) => !(MODES as readonly string[]).includes(m));
    if (bad.length > 0 || list.length === 0) throw new UsageError(`--modes: expected some of ${MODES.join(', ')}, got ${values.modes}`);
    modes = ['underlay', ...(list as Mode[]).filter((m) => m !== 'underlay')];
    if (modes.includes('direct') && near === undefined) throw new UsageError('--modes: direct needs --near (a peer near c1 to go direct to)');
  } else if (near !== undefined) {
    modes = ['underlay', 'udp', 'direct'];
  } else {
    modes = values.plain ? ['underlay', 'tcp', 'udp', 'wireguard'] : ['underlay', 'tcp-tls', 'udp-tls', 'wireguard'];
  }
  return {
    duration: num('duration', values.duration, 3, 300, true),
    rounds: num('rounds', values.rounds, 1, 20, true),
    modes: [...new Set(modes)],
    delayMs: num('delay-ms', values['delay-ms'], 0, 1000, false),
    rateMbit: num('rate-mbit', values['rate-mbit'], 1, 10_000, false),
    queueMs: num('queue-ms', values['queue-ms'], 0, 1000, false),
    near,
    realtime: !values['no-rt'],
    cc: ((): string | undefined => {
      if (values.cc !== undefined && !/^[a-z0-9_]+$/.test(values.cc)) throw new UsageError(`--cc: not a congestion control name: ${values.cc}`);
      return values.cc;
    })(),
    json: values.json,
    verbose: values.verbose,
  };
}

// ---------------------------------------------------------------------------------------------
// figures

type Unit = 'Mb/s' | 'ms' | '×' | '%';

/** The figures in table order; `derived` ones are computed from others of the same round. */
const FIGURES: { key: string; label: string; unit: Unit; derived?: boolean }[] = [
  { key: 'bulk3', label: 'bulk client→hub, 1 TCP stream, 3% loss per link', unit: 'Mb/s' },
  { key: 'idle0.p50', label: 'ping-pong idle, 0% loss, p50', unit: 'ms' },
  { key: 'idle0.p99', label: 'ping-pong idle, 0% loss, p99', unit: 'ms' },
  { key: 'added', label: 'idle RTT added by the tunnel (p50 − underlay p50), 0% loss', unit: 'ms', derived: true },
  { key: 'load0.p50', label: 'ping-pong beside a bulk transfer, 0% loss, p50', unit: 'ms' },
  { key: 'load0.p99', label: 'ping-pong beside a bulk transfer, 0% loss, p99', unit: 'ms' },
  { key: 'rise0', label: 'rise of the p50 under the bulk transfer, 0% loss', unit: 'ms', derived: true },
  { key: 'load0.bulk', label: 'the bulk transfer beside the ping-pong, 0% loss', unit: 'Mb/s' },
  { key: 'idle1.p50', label: 'ping-pong idle, 1% loss, p50', unit: 'ms' },
  { key: 'idle1.p99', label: 'ping-pong idle, 1% loss, p99', unit: 'ms' },
  { key: 'tail1', label: 'ping-pong idle, 1% loss, p99 / p50', unit: '×', derived: true },
  { key: 'idle1.loss', label: 'ping-pong idle, 1% loss, pings lost (or > 1 s)', unit: '%' },
  { key: 'load1.p50', label: 'ping-pong beside a bulk transfer, 1% loss, p50', unit: 'ms' },
  { key: 'load1.p99', label: 'ping-pong beside a bulk transfer, 1% loss, p99', unit: 'ms' },
  { key: 'load1.bulk', label: 'the bulk transfer beside the ping-pong, 1% loss', unit: 'Mb/s' },
  { key: 'near0.p50', label: 'ping-pong c1→c2 idle, 0% loss, p50 (--near)', unit: 'ms' },
  { key: 'near0.p99', label: 'ping-pong c1→c2 idle, 0% loss, p99 (--near)', unit: 'ms' },
];

/** The WAN targets of issue 14: a figure of some modes against a bound or against WireGuard's. */
const TARGETS: { key: string; modes: readonly Mode[]; atMost?: number; atMostWireguard?: boolean; atLeastWireguard?: boolean; label: string }[] = [
  { key: 'bulk3', modes: ['udp', 'udp-tls'], atLeastWireguard: true, label: "bulk client→hub at 3% loss per link ≥ WireGuard's" },
  { key: 'tail1', modes: ['udp', 'udp-tls'], atMost: 1.25, label: 'idle at 1% loss, p99 ≤ 1.25 × p50' },
  { key: 'load1.p99', modes: ['udp', 'udp-tls'], atMostWireguard: true, label: "beside a bulk transfer at 1% loss, p99 ≤ WireGuard's" },
  { key: 'rise0', modes: ['tcp', 'tcp-tls', 'udp', 'udp-tls', 'wireguard'], atMost: 15, label: 'p50 rise under a bulk transfer at 0% loss ≤ +15 ms' },
];

/** One row of the result: a figure of a mode over all rounds. */
interface Row {
  key: string;
  figure: string;
  mode: Mode;
  unit: Unit;
  status: 'ok' | 'failed' | 'unavailable';
  median: number | null;
  values: number[];
  underlay: number | null;
  ratio: number | null;
  wireguard: number | null;
  vsWireguard: number | null;
  note?: string;
}

/** What one phase of one round recorded besides its figures. */
interface PhaseRecord {
  round: number;
  mode: Mode;
  phase: string;
  lossPerMille: number;
  /** Packets the nftables loss rules dropped during the phase. */
  lossDrops: number;
  emulator: EmuStats | null;
  /** Share of the bulk transfer's bytes that went over the tunnel's TCP connection (our modes). */
  overTcpShare?: number;
  /** The ping-pong: how many, and the five slowest (sequence number, ms since the phase's first ping, RTT). */
  pings?: { sent: number; received: number; maxMs: number; slowest: { seq: number; sentAtMs: number; rttMs: number }[] };
  bulk?: { mbps: number; retransmits: number | null };
  /** What the tunnel's processes dropped during the phase, by reason (our modes, with a status server). */
  tunnelDrops?: { c1: Record<string, number> | string; hub: Record<string, number> | string };
  error?: string;
}

// ---------------------------------------------------------------------------------------------
// small utilities

/** The drops counted between two readings, reasons that did not move left out; a reading that failed says why. */
function dropsDelta(before: Record<string, number> | string, after: Record<string, number> | string): Record<string, number> | string {
  if (typeof after === 'string') return after;
  if (typeof before === 'string') return before;
  return Object.fromEntries(Object.entries(after).flatMap(([k, v]) => (v - (before[k] ?? 0) > 0 ? [[k, v - (before[k] ?? 0)]] : [])));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let logSink: NodeJS.WritableStream = process.stderr;
function say(msg: string): void {
  logSink.write(`[wan] ${msg}\n`);
}

function finite(x: number): number | null {
  return Number.isFinite(x) ? round3(x) : null;
}

function round3(x: number): number {
  if (!Number.isFinite(x)) return x;
  const a = Math.abs(x);
  return Number(x.toFixed(a >= 100 ? 1 : a >= 1 ? 3 : 4));
}

/** A client's tunnel address. */
function tunnelAddress(client: string): string {
  return client === 'c2' ? C2_TUNNEL : CLIENT_TUNNEL;
}

/** A running tunnel of one mode: its processes, and how to stop it. */
interface Tunnel {
  procs: LabProcess[];
  wireguard?: WireGuardTunnel;
}

// ---------------------------------------------------------------------------------------------
// the bench

class WanBench {
  lab: Lab | undefined;
  tmp: string | undefined;
  emulator: LabProcess | undefined;
  wireguard: WireGuardTunnel | undefined;
  /** values[mode][figure key] = one value per round. */
  readonly values = new Map<Mode, Map<string, number[]>>();
  readonly errors = new Map<string, string[]>();
  readonly unavailable = new Map<Mode, string>();
  readonly phases: PhaseRecord[] = [];
  readonly warnings: string[] = [];
  readonly started = new Date();
  readonly loadStart = os.loadavg();
  tlsSettings: { hub: string[]; client: string[] } | undefined;

  constructor(readonly o: Options) {}

  private host(name: string): LabHost {
    return this.lab!.host(name);
  }

  /** The tunnel clients: c1, and c2 with --near. */
  private get clients(): string[] {
    return this.o.near === undefined ? ['c1'] : ['c1', 'c2'];
  }

  /** The access links of this topology. */
  private get links(): AccessLink[] {
    return LINKS.filter((l) => this.clients.includes(l.host) || l.host === 'hub');
  }

  /** A link's one-way delay: --delay-ms, or --near's for the clients' links. */
  private delayOf(l: AccessLink): number {
    return l.host === 'hub' || this.o.near === undefined ? this.o.delayMs : this.o.near;
  }

  private push(mode: Mode, key: string, v: number): void {
    let m = this.values.get(mode);
    if (m === undefined) this.values.set(mode, (m = new Map()));
    const list = m.get(key) ?? [];
    list.push(v);
    m.set(key, list);
  }

  private fail(mode: Mode, keys: readonly string[], err: Error): void {
    for (const key of keys) {
      this.push(mode, key, Number.NaN);
      const id = `${mode}.${key}`;
      this.errors.set(id, [...(this.errors.get(id) ?? []), err.message.split('\n')[0]!]);
    }
  }

  async run(): Promise<void> {
    const removed = cleanupLabs({ prefix: LAB_PREFIX });
    if (removed.removed.length > 0) say(`removed ${removed.removed.length} namespaces left by an earlier run that died`);
    say(
      `WAN: ${this.o.delayMs} ms one way per link, ${this.o.rateMbit} Mbit/s per link and direction, drop-tail queue ${this.o.queueMs} ms; ` +
        `modes ${this.o.modes.join(', ')}; ${this.o.duration} s per phase, ${this.o.rounds} round(s); load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`,
    );
    this.lab = await Lab.create({ hosts: ['hub', ...this.clients, 'wan'], prefix: LAB_PREFIX });
    say(`lab ${this.lab.id} up`);
    await this.buildWan();
    await this.startServers();
    await this.checkEmulator();

    for (let r = 1; r <= this.o.rounds; r++) {
      for (const mode of this.o.modes) {
        if (this.unavailable.has(mode)) continue;
        say(`${mode}, round ${r}/${this.o.rounds}`);
        await this.setLoss(0);
        let t: Tunnel | string;
        try {
          t = await this.startTunnel(mode);
        } catch (err) {
          t = (err as Error).message.split('\n')[0]!;
        }
        if (typeof t === 'string') {
          this.unavailable.set(mode, t);
          say(`${mode}: unavailable: ${t}`);
          continue;
        }
        try {
          await this.runMode(mode, r);
        } finally {
          await this.setLoss(0);
          await this.stopTunnel(mode, t);
        }
      }
    }
  }

  // -- the emulated WAN ----------------------------------------------------------------------------

  /** Access links, router, emulator and the (empty) loss table; see the file comment. */
  private async buildWan(): Promise<void> {
    const lab = this.lab!;
    const wan = this.host('wan');
    const check = { check: true, timeoutMs: 10_000 } as const;
    const ethtool = systemBinary('ethtool')!;
    // Only the access links below carry traffic: take the lab's bridge links down.
    for (const h of ['hub', ...this.clients, 'wan']) await lab.cut(h);
    await wan.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0',
      'net.ipv4.conf.all.send_redirects=0', 'net.ipv4.conf.default.send_redirects=0'], check);
    for (const l of this.links) {
      const h = this.host(l.host);
      await wan.exec('ip', ['link', 'add', l.ifname, 'type', 'veth', 'peer', 'name', 'wan0', 'netns', h.ns], check);
      await wan.exec('sysctl', ['-qw', `net.ipv6.conf.${l.ifname}.disable_ipv6=1`], check);
      await h.exec('sysctl', ['-qw', 'net.ipv6.conf.wan0.disable_ipv6=1'], check);
      await wan.exec('ip', ['addr', 'add', `198.18.${l.octet}.1/24`, 'dev', l.ifname], check);
      await h.exec('ip', ['addr', 'add', `198.18.${l.octet}.2/24`, 'dev', 'wan0'], check);
      // The loss rules and the emulator must see wire-sized packets, not 64 KiB GSO/GRO aggregates.
      await wan.exec(ethtool, ['-K', l.ifname, 'tso', 'off', 'gso', 'off', 'gro', 'off'], check);
      await h.exec(ethtool, ['-K', 'wan0', 'tso', 'off', 'gso', 'off', 'gro', 'off'], check);
      await wan.exec('ip', ['link', 'set', l.ifname, 'up'], check);
      await h.exec('ip', ['link', 'set', 'wan0', 'up'], check);
      await h.exec('ip', ['route', 'add', '198.18.0.0/16', 'via', `198.18.${l.octet}.1`], check);
    }
    this.emulator = wan.spawnNode(
      EMULATOR,
      ['--tun', EMU_TUN, ...this.links.flatMap((l) => ['--link', `${l.host}=198.18.${l.octet}.0/24@${this.delayOf(l)}`]),
        '--delay-ms', String(this.o.delayMs), '--rate-mbit', String(this.o.rateMbit), '--queue-ms', String(this.o.queueMs)],
      { label: 'wan-emu', maxLines: 10_000, echo: this.o.verbose },
    );
    await this.emulator.waitForLine(/^ready /, 10_000);
    this.instrument(this.emulator);
    await wan.exec('sysctl', ['-qw', `net.ipv4.conf.${EMU_TUN}.rp_filter=0`, `net.ipv4.conf.${EMU_TUN}.forwarding=1`], check);
    await wan.exec('ip', ['route', 'add', 'default', 'dev', EMU_TUN, 'table', EMU_TABLE], check);
    for (const [i, l] of this.links.entries()) {
      await wan.exec('ip', ['rule', 'add', 'iif', l.ifname, 'lookup', EMU_TABLE, 'pref', String(100 + i)], check);
    }
    await this.setLoss(0);
    const cc = await this.host('c1').exec('sysctl', ['-n', 'net.ipv4.tcp_congestion_control'], check);
    this.congestionControl = cc.stdout.trim();
    say(`TCP congestion control: ${this.o.cc ?? this.congestionControl} for iperf3 and the namespace's default (the table says what ss saw for the tunnel's connection)`);
  }

  /** The congestion control of c1's tunnel TCP connection as the kernel reports it (ss -ti), recorded once per run. */
  private async recordTunnelCongestion(): Promise<void> {
    if (this.tunnelCongestionControl !== '') return;
    const r = await this.host('c1').exec('ss', ['-Htin', `dport = :${TUNNEL_PORT}`], { timeoutMs: 5000 });
    this.tunnelCongestionControl = /\b([a-z0-9_]+)\s+wscale:/.exec(r.stdout)?.[1] ?? '';
    if (this.tunnelCongestionControl !== '') say(`TCP congestion control of the tunnel's TCP connection: ${this.tunnelCongestionControl}`);
  }

  /** The namespaces' default TCP congestion control (the tunnel's own TCP connection; iperf3's too without --cc). */
  congestionControl = '';
  /** What ss reported for the tunnel's TCP connection ('' until a CLI mode ran). */
  tunnelCongestionControl = '';

  /** Replaces the loss rules: each packet entering from or leaving to an access link is dropped with probability perMille/1000. */
  private async setLoss(perMille: number): Promise<void> {
    const rules =
      perMille <= 0
        ? ''
        : this.links.flatMap((l) => [
            `    iifname "${l.ifname}" numgen random mod 1000 < ${perMille} counter drop`,
            `    oifname "${l.ifname}" numgen random mod 1000 < ${perMille} counter drop`,
          ]).join('\n');
    const script = [
      `table inet ${NFT_TABLE}`,
      `delete table inet ${NFT_TABLE}`,
      `table inet ${NFT_TABLE} {`,
      '  chain forward {',
      '    type filter hook forward priority 0; policy accept;',
      rules,
      '  }',
      '}',
      '',
    ].join('\n');
    await this.host('wan').exec(NFT_BIN!, ['-f', '-'], { input: script, check: true, timeoutMs: 10_000 });
  }

  /** Packets the loss rules dropped since they were last set. */
  private async lossDrops(): Promise<number> {
    const r = await this.host('wan').exec(NFT_BIN!, ['list', 'table', 'inet', NFT_TABLE], { timeoutMs: 10_000 });
    let n = 0;
    for (const m of r.stdout.matchAll(/counter packets (\d+)/g)) n += Number(m[1]);
    return n;
  }

  /** The emulator's counters (and, for its maxima, a new period). */
  private async emulatorStats(): Promise<EmuStats | null> {
    const emu = this.emulator;
    if (emu === undefined || !emu.running) return null;
    const line = emu.waitForLine(/^\{/, 5000, { after: emu.mark(), stream: 'stdout' });
    emu.kill('SIGUSR1');
    try {
      return JSON.parse(await line) as EmuStats;
    } catch {
      return null;
    }
  }

  /** The underlay's RTT through the emulator must be twice the delays of the links crossed (4 × delay without --near), or nothing measured here means anything. */
  private async checkEmulator(): Promise<void> {
    const [hub, c1, c2] = LINKS;
    const paths = [{ name: 'c1→hub', to: HUB_WAN, expected: 2 * (this.delayOf(c1) + this.delayOf(hub)) }];
    if (this.o.near !== undefined) paths.push({ name: 'c1→c2', to: C2_WAN, expected: 2 * (this.delayOf(c1) + this.delayOf(c2)) });
    for (const p of paths) {
      const r = await this.host('c1').exec('ping', ['-n', '-c', '5', '-i', '0.2', '-W', '2', p.to], { timeoutMs: 20_000 });
      const rtts = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
      if (rtts.length === 0) throw new Error(`the emulated WAN does not carry pings ${p.name} (${p.to}): ${r.stdout}${r.stderr}`);
      const low = Math.min(...rtts);
      say(`emulated WAN: ping ${p.name} ${rtts.map((x) => fmt(x)).join(' ')} ms (expected ${p.expected} ms + serialization)`);
      if (low < p.expected - 1 || low > p.expected + 10) this.warnings.push(`the emulated WAN's RTT ${p.name} is ${fmt(low)} ms, not about ${p.expected} ms`);
    }
    await this.emulatorStats();
  }

  // -- servers, tunnels ----------------------------------------------------------------------------

  private async startServers(): Promise<void> {
    const hub = this.host('hub');
    hub.spawn('iperf3', ['-s', '-p', String(IPERF_PORT)], { label: 'hub:iperf3' });
    this.instrument(await this.lab!.startEchoServers('hub', ECHO_PORT));
    if (this.o.near !== undefined) this.instrument(await this.lab!.startEchoServers('c2', ECHO_PORT));
    const deadline = Date.now() + 5000;
    for (;;) {
      const r = await hub.exec('ss', ['-Hltn', `sport = :${IPERF_PORT}`], { timeoutMs: 5000 });
      if (r.stdout.trim() !== '') break;
      if (Date.now() > deadline) throw new Error('the iperf3 server did not start');
      await sleep(50);
    }
  }

  /**
   * Puts an instrument (emulator, echo server, pinger) at SCHED_FIFO priority 10, all its threads,
   * unless --no-rt: on a shared machine the network and the measuring must not wait for other
   * processes' time slices. They sleep between packets, so this costs others little.
   */
  private instrument(p: LabProcess): void {
    if (!this.o.realtime || p.pid === undefined) return;
    const r = spawnSync(systemBinary('chrt') ?? 'chrt', ['-a', '-f', '-p', '10', String(p.pid)], { encoding: 'utf8' });
    if (r.status !== 0 && !this.warnings.some((w) => w.startsWith('could not raise'))) {
      this.warnings.push(`could not raise ${p.label} to SCHED_FIFO: ${(r.stderr ?? r.error?.message ?? '').trim()}`);
    }
  }

  /** The address of the hub (or of c2) as `mode` reaches it from c1. */
  private target(mode: Mode, to: 'hub' | 'c2' = 'hub'): string {
    if (to === 'c2') return mode === 'underlay' ? C2_WAN : C2_TUNNEL;
    return mode === 'underlay' ? HUB_WAN : HUB_TUNNEL;
  }

  /** Starts the tunnel of `mode` and waits until it carries pings (over UDP for the udp modes); a string says why the mode cannot run. */
  private async startTunnel(mode: Mode): Promise<Tunnel | string> {
    if (mode === 'underlay') return { procs: [] };
    if (mode === 'wireguard') {
      try {
        ensureCommands([{ cmd: 'wireguard-go', pkg: 'wireguard-go' }, { cmd: 'wg', pkg: 'wireguard-tools' }], say);
      } catch (err) {
        return (err as Error).message;
      }
      const missing = wireGuardUnavailable();
      if (missing !== undefined) return missing;
      const wg = await startWireGuard({
        hub: { host: this.host('hub'), address: HUB_TUNNEL },
        hubEndpoint: HUB_WAN,
        clients: this.clients.map((c) => ({ host: this.host(c), address: tunnelAddress(c) })),
        prefix: 24,
        port: WG_PORT,
        mtu: TUNNEL_MTU,
        tag: this.lab!.id,
        echo: this.o.verbose,
      });
      this.wireguard = wg;
      const t: Tunnel = { procs: [wg.hub, ...wg.clients], wireguard: wg };
      try {
        await this.waitPing(HUB_TUNNEL);
      } catch (err) {
        await this.stopTunnel(mode, t);
        throw err;
      }
      return t;
    }
    const udp = mode === 'udp' || mode === 'udp-tls' || mode === 'direct';
    const transport = transportFlags(udp ? 'udp' : 'tcp');
    if (transport === undefined) return 'the CLI has no -transport flag yet (the UDP data path is not wired into it)';
    // Every mode but direct keeps its clients relayed: with --near, c1↔c2 then crosses the hub.
    const paths = mode === 'direct' ? directFlags() : relayedFlags();
    if (typeof paths === 'string') return paths;
    // Every process has a status server (in its own namespace): the phases record the tunnel's drops.
    let hubExtra = [...transport, ...statusFlags()];
    let clientExtra = [...transport, ...paths, ...statusFlags()];
    if (mode === 'tcp-tls' || mode === 'udp-tls') {
      const tls = this.tlsFlags();
      if (typeof tls === 'string') return tls;
      hubExtra = [...hubExtra, ...tls.hub];
      clientExtra = [...clientExtra, ...tls.client];
    }
    this.tmp ??= fs.mkdtempSync(path.join(os.tmpdir(), 'lwt-wan-'));
    const stateDir = (name: string): string[] => (/-state-dir\b/.test(cliHelp()) ? ['-state-dir', path.join(this.tmp!, `${mode}-${name}`)] : []);
    const spawnOpts = (label: string) => ({ label, maxLines: 100_000, echo: this.o.verbose });
    const hub = this.host('hub').spawn(
      process.execPath,
      [CLI, '-m', 'server', '-l', `0.0.0.0:${TUNNEL_PORT}`, '-t', `${HUB_TUNNEL}/24`, '-mtu', String(TUNNEL_MTU), ...stateDir('hub'), ...hubExtra],
      spawnOpts(`${mode}:hub`),
    );
    const t: Tunnel = { procs: [hub] };
    try {
      await hub.waitForLine(/listening on/, 15_000);
      for (const c of this.clients) {
        t.procs.push(
          this.host(c).spawn(
            process.execPath,
            [CLI, '-m', 'client', '-r', `${HUB_WAN}:${TUNNEL_PORT}`, '-t', `${tunnelAddress(c)}/24`, '-mtu', String(TUNNEL_MTU), ...stateDir(c), ...clientExtra],
            spawnOpts(`${mode}:${c}`),
          ),
        );
      }
      await Promise.all(t.procs.slice(1).map((c) => c.waitForLine(/joined the virtual LAN as/, 20_000)));
      await this.waitPing(HUB_TUNNEL);
      // c1 talking to c2 is also what makes the hub introduce them in the direct mode.
      if (this.o.near !== undefined) await this.waitPing(C2_TUNNEL);
      if (udp) await this.waitUdpPath(mode);
      else await this.recordTunnelCongestion();
    } catch (err) {
      const out = t.procs.map((p) => `--- ${p.label}\n${p.output(20)}`).join('\n');
      await this.stopTunnel(mode, t);
      throw new Error(`${(err as Error).message.split('\n')[0]}\n${out}`);
    }
    return t;
  }

  private async waitPing(to: string): Promise<void> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const r = await this.host('c1').exec('ping', ['-n', '-c', '1', '-W', '1', to], { timeoutMs: 5000 });
      if (r.code === 0) return;
      if (Date.now() > deadline) throw new Error(`c1 cannot ping ${to}`);
      await sleep(200);
    }
  }

  /** Waits (up to 10 s) until pings no longer go over the client's TCP connection: the UDP path is up. */
  private async waitUdpPath(mode: Mode): Promise<void> {
    const c1 = this.host('c1');
    const deadline = Date.now() + 10_000;
    for (;;) {
      const before = await tcpBytesTo(c1, TUNNEL_PORT);
      await c1.exec('ping', ['-n', '-q', '-c', '20', '-i', '0.01', '-s', '1000', '-W', '2', HUB_TUNNEL], { timeoutMs: 15_000 });
      const overTcp = (await tcpBytesTo(c1, TUNNEL_PORT)) - before;
      if (overTcp < 4000) return;
      if (Date.now() > deadline) {
        this.warnings.push(`${mode}: pings still went over TCP after 10 s (${overTcp} bytes for 40 kB of pings): the UDP path did not come up`);
        return;
      }
      await sleep(500);
    }
  }

  private async stopTunnel(mode: Mode, t: Tunnel): Promise<void> {
    const exits = t.wireguard !== undefined ? await t.wireguard.stop(3000) : await Promise.all(t.procs.map(async (p) => ({ label: p.label, ...(await p.stop(3000)) })));
    if (t.wireguard !== undefined) this.wireguard = undefined;
    for (const e of exits) if (e.code !== 0) this.warnings.push(`${mode}: ${e.label} exited with ${e.signal ?? `code ${e.code}`} at shutdown`);
    for (const p of t.procs) {
      const retries = p.stderr.filter((l) => /retrying|reconnect/i.test(l)).length;
      if (retries > 0) this.warnings.push(`${mode}: ${p.label} logged ${retries} reconnect line(s)`);
    }
    await sleep(200);
  }

  /** TLS flags (a throwaway certificate, the client verifying it), or why TLS cannot be used. */
  private tlsFlags(): { hub: string[]; client: string[] } | string {
    const help = cliHelp();
    if (!/-tls\b/.test(help)) return 'the CLI has no -tls flag';
    try {
      ensureCommands([{ cmd: 'openssl', pkg: 'openssl' }], say);
    } catch (err) {
      return `no openssl to make a certificate: ${(err as Error).message}`;
    }
    this.tmp ??= fs.mkdtempSync(path.join(os.tmpdir(), 'lwt-wan-'));
    const made = makeHubCert(this.tmp, HUB_WAN);
    if (typeof made === 'string') return made;
    const client = /-tls-ca\b/.test(help) ? ['-tls', '-tls-ca', made.cert] : ['-tls', '-tls-skip-verify'];
    this.tlsSettings = { hub: ['-tls', '-tls-cert', 'FILE', '-tls-key', 'FILE'], client: client.map((f) => (f === made.cert ? 'FILE' : f)) };
    return { hub: ['-tls', '-tls-cert', made.cert, '-tls-key', made.key], client };
  }

  // -- measurements --------------------------------------------------------------------------------

  private async runMode(mode: Mode, round: number): Promise<void> {
    if (this.o.near !== undefined) return this.runNear(mode, round);
    // 0% loss: idle ping-pong, then beside a bulk transfer.
    await this.phase(mode, round, 'idle0', 0, async (rec) => this.recordPings(mode, 'idle0', rec, await this.pingPong(mode)));
    await this.phase(mode, round, 'load0', 0, (rec) => this.pingBesideBulk(mode, 'load0', rec));
    // 1% loss per link.
    await this.phase(mode, round, 'idle1', LOSS_1, async (rec) => this.recordPings(mode, 'idle1', rec, await this.pingPong(mode)));
    await this.phase(mode, round, 'load1', LOSS_1, (rec) => this.pingBesideBulk(mode, 'load1', rec));
    // 3% loss per link: bulk throughput.
    await this.phase(mode, round, 'bulk3', LOSS_3, async (rec) => {
      const r = await this.iperf(mode, this.o.duration);
      rec.bulk = { mbps: r.mbps, retransmits: r.retransmits };
      this.push(mode, 'bulk3', r.mbps);
      say(`  bulk at ${LOSS_3 / 10}% loss: ${fmt(r.mbps)} Mb/s, retransmits ${r.retransmits ?? '–'}`);
    });
    // Derived figures of this round.
    const last = (key: string): number => this.values.get(mode)?.get(key)?.at(-1) ?? Number.NaN;
    this.push(mode, 'rise0', last('load0.p50') - last('idle0.p50'));
    this.push(mode, 'tail1', last('idle1.p99') / last('idle1.p50'));
    const underlay = this.values.get('underlay')?.get('idle0.p50')?.at(-1) ?? Number.NaN;
    if (mode !== 'underlay') this.push(mode, 'added', last('idle0.p50') - underlay);
  }

  /**
   * --near's phases at 0% loss: the ping-pong c1→hub (for the RTT the tunnel adds) and c1→c2. In
   * the direct mode c1→c2 is measured only once both clients show the other's path as direct;
   * otherwise the phase fails with what their statuses showed.
   */
  private async runNear(mode: Mode, round: number): Promise<void> {
    await this.phase(mode, round, 'idle0', 0, async (rec) => this.recordPings(mode, 'idle0', rec, await this.pingPong(mode)));
    await this.phase(mode, round, 'near0', 0, async (rec) => {
      if (mode === 'direct') {
        const notDirect = await this.waitDirect(DIRECT_WAIT_MS);
        if (notDirect !== undefined) throw new Error(notDirect);
      }
      this.recordPings(mode, 'near0', rec, await this.pingPong(mode, this.o.duration, 'c2'));
      if (mode === 'direct') {
        const after = await this.waitDirect(0);
        if (after !== undefined) this.warnings.push(`direct, round ${round}: after the c1→c2 ping-pong the path was no longer direct (${after})`);
      }
    });
    const underlay = this.values.get('underlay')?.get('idle0.p50')?.at(-1) ?? Number.NaN;
    if (mode !== 'underlay') this.push(mode, 'added', (this.values.get(mode)?.get('idle0.p50')?.at(-1) ?? Number.NaN) - underlay);
  }

  /** Undefined once c1 shows c2's path as direct and c2 shows c1's (waiting up to `timeoutMs`), else what they show. */
  private waitDirect(timeoutMs: number): Promise<string | undefined> {
    return waitDirectPaths(
      [
        { name: 'c1', host: this.host('c1'), peer: C2_TUNNEL },
        { name: 'c2', host: this.host('c2'), peer: CLIENT_TUNNEL },
      ],
      timeoutMs,
    );
  }

  /** Runs one phase at `lossPerMille`, recording the loss rules' drops and the emulator's counters; failures become NaN figures. */
  private async phase(mode: Mode, round: number, phase: string, lossPerMille: number, body: (rec: PhaseRecord) => Promise<void>): Promise<void> {
    await this.setLoss(lossPerMille);
    await this.emulatorStats();
    const rec: PhaseRecord = { round, mode, phase, lossPerMille, lossDrops: 0, emulator: null };
    const ours = mode !== 'underlay' && mode !== 'wireguard';
    const tcpBefore = ours ? await tcpBytesTo(this.host('c1'), TUNNEL_PORT) : undefined;
    const dropsBefore = ours ? await this.tunnelDrops() : undefined;
    try {
      await body(rec);
    } catch (err) {
      rec.error = (err as Error).message.split('\n')[0]!;
      this.fail(mode, FIGURES.filter((f) => !f.derived && f.key.startsWith(phase)).map((f) => f.key), err as Error);
      say(`  ${phase}: FAILED: ${rec.error}`);
    }
    rec.lossDrops = await this.lossDrops();
    rec.emulator = await this.emulatorStats();
    if (dropsBefore !== undefined) {
      const after = await this.tunnelDrops();
      rec.tunnelDrops = { c1: dropsDelta(dropsBefore.c1, after.c1), hub: dropsDelta(dropsBefore.hub, after.hub) };
      const show = (d: Record<string, number> | string): string =>
        typeof d === 'string' ? d : Object.entries(d).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
      say(`  (${phase}: the tunnel dropped: c1 ${show(rec.tunnelDrops.c1)}; hub ${show(rec.tunnelDrops.hub)})`);
    }
    if (tcpBefore !== undefined && rec.bulk !== undefined) {
      const bytes = (rec.bulk.mbps * 1e6 * this.o.duration) / 8;
      rec.overTcpShare = round3(((await tcpBytesTo(this.host('c1'), TUNNEL_PORT)) - tcpBefore) / bytes);
      if ((mode === 'udp' || mode === 'udp-tls') && rec.overTcpShare > 0.5) {
        this.warnings.push(`${mode}: ${phase}: about ${Math.round(100 * rec.overTcpShare)}% of the bulk bytes went over the TCP connection, not the UDP path`);
      }
    }
    const emu = rec.emulator;
    if (emu !== null) {
      const queueDrops = emu.pipes.reduce((s, p) => s + p.queueDrops, 0);
      const over5 = emu.released > 0 ? (100 * emu.lateOver5Ms) / emu.released : 0;
      if (over5 > 1) this.warnings.push(`${mode} ${phase}: the emulator released ${fmt(over5)}% of the packets more than 5 ms late (the machine was busy)`);
      say(
        `  (${phase}: loss rules dropped ${rec.lossDrops}, emulator queue drops so far ${queueDrops}; packets late > 2 ms ` +
          `${emu.lateOver2Ms}/${emu.released}, > 5 ms ${emu.lateOver5Ms}, at most ${fmt(emu.lateMaxMs)} ms)`,
      );
    }
    this.phases.push(rec);
  }

  /** The drops c1's and the hub's tunnel processes counted so far (their statuses). */
  private async tunnelDrops(): Promise<{ c1: Record<string, number> | string; hub: Record<string, number> | string }> {
    const [c1, hub] = await Promise.all([statusDrops(this.host('c1')), statusDrops(this.host('hub'))]);
    return { c1, hub };
  }

  /** A ping-pong of `duration` s from c1 to the echo server of the hub (or c2), 50 packets per second. */
  private async pingPong(mode: Mode, durationS = this.o.duration, to: 'hub' | 'c2' = 'hub'): Promise<PingSample[]> {
    // Lab.startPinger's program (test/helpers/probe.ts udp-ping), started here to know its pid.
    const pinger = this.host('c1').spawnNode(PROBE_SCRIPT, ['udp-ping', this.target(mode, to), String(ECHO_PORT), String(PING_INTERVAL_MS)], {
      label: `${mode}:ping`,
      maxLines: 1_000_000,
    });
    this.instrument(pinger);
    await sleep(durationS * 1000);
    // Give the last pings their second to come back or be counted lost.
    await sleep(1100);
    const samples = pinger.stdout.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as PingSample);
    await pinger.stop();
    // Only pings sent during the phase whose fate is known.
    return samples.filter((s) => s.sentAtMs <= durationS * 1000);
  }

  private recordPings(mode: Mode, phase: string, rec: PhaseRecord, samples: readonly PingSample[]): void {
    const rtts = samples.flatMap((s) => (s.rttMs === undefined ? [] : [s.rttMs]));
    if (rtts.length === 0) throw new Error(`no ping-pong replies (${samples.length} sent)`);
    const p50 = percentile(rtts, 50);
    const p99 = percentile(rtts, 99);
    const lossPct = (100 * (samples.length - rtts.length)) / samples.length;
    this.push(mode, `${phase}.p50`, p50);
    this.push(mode, `${phase}.p99`, p99);
    this.push(mode, `${phase}.loss`, lossPct);
    const slowest = samples
      .flatMap((s) => (s.rttMs === undefined ? [] : [{ seq: s.seq, sentAtMs: Math.round(s.sentAtMs), rttMs: round3(s.rttMs) }]))
      .sort((a, b) => b.rttMs - a.rttMs)
      .slice(0, 5);
    rec.pings = { sent: samples.length, received: rtts.length, maxMs: round3(Math.max(...rtts)), slowest };
    say(`  ${phase}: ping-pong p50 ${fmt(p50)} ms, p99 ${fmt(p99)} ms, max ${fmt(Math.max(...rtts))} ms, ${rtts.length}/${samples.length} answered`);
  }

  /** A bulk transfer c1→hub with the ping-pong starting 1 s into it and ending before it does. */
  private async pingBesideBulk(mode: Mode, phase: string, rec: PhaseRecord): Promise<void> {
    const bulk = this.iperf(mode, this.o.duration + 2);
    bulk.catch(() => undefined);
    await sleep(1000);
    const samples = await this.pingPong(mode, this.o.duration - 0.5);
    const b = await bulk.then((r) => r, (err: Error) => err);
    this.recordPings(mode, phase, rec, samples);
    if (b instanceof Error) {
      this.warnings.push(`${mode} ${phase}: the bulk transfer failed: ${b.message.split('\n')[0]}`);
      this.fail(mode, [`${phase}.bulk`], b);
      return;
    }
    rec.bulk = { mbps: b.mbps, retransmits: b.retransmits };
    this.push(mode, `${phase}.bulk`, b.mbps);
    say(`  ${phase}: the bulk transfer beside it: ${fmt(b.mbps)} Mb/s, retransmits ${b.retransmits ?? '–'}`);
  }

  private async iperf(mode: Mode, duration: number): Promise<IperfResult> {
    const args = ['-c', this.target(mode), '-p', String(IPERF_PORT), '-t', String(duration), '-J', '--connect-timeout', '10000'];
    if (this.o.cc !== undefined) args.push('-C', this.o.cc);
    // Over a lossy link the server may still be closing the previous test: it says so, and is asked again.
    const deadline = Date.now() + IPERF_BUSY_WAIT_MS;
    for (;;) {
      const r = await this.host('c1').exec('iperf3', args, { timeoutMs: (duration + 60) * 1000 });
      if (r.timedOut) throw new Error(`iperf3 timed out`);
      if (!/server is busy/.test(r.stdout) || Date.now() > deadline) return parseIperfJson(r.stdout);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  // -- cleanup -------------------------------------------------------------------------------------

  async dispose(): Promise<void> {
    await this.wireguard?.stop(2000);
    await this.lab?.dispose();
    if (this.tmp !== undefined) fs.rmSync(this.tmp, { recursive: true, force: true });
  }

  /** Synchronous cleanup for signal handlers. */
  disposeSync(): void {
    this.wireguard?.disposeSync();
    this.lab?.disposeSync();
    if (this.tmp !== undefined) fs.rmSync(this.tmp, { recursive: true, force: true });
  }

  // -- report --------------------------------------------------------------------------------------

  rows(): Row[] {
    const rows: Row[] = [];
    const med = (mode: Mode, key: string): number => median(this.values.get(mode)?.get(key) ?? []);
    for (const def of FIGURES) {
      // A figure no mode measured belongs to the other topology (--near or not).
      if (this.o.modes.every((mode) => (this.values.get(mode)?.get(def.key) ?? []).length === 0)) continue;
      for (const mode of this.o.modes) {
        if (def.key === 'added' && mode === 'underlay') continue;
        const unavailable = this.unavailable.get(mode);
        const values = this.values.get(mode)?.get(def.key) ?? [];
        const m = med(mode, def.key);
        const relative = def.key !== 'added' && def.key !== 'rise0' && def.unit !== '%';
        const u = relative && mode !== 'underlay' ? med('underlay', def.key) : Number.NaN;
        const w = this.o.modes.includes('wireguard') && mode !== 'wireguard' && mode !== 'underlay' ? med('wireguard', def.key) : Number.NaN;
        const row: Row = {
          key: def.key,
          figure: def.label,
          mode,
          unit: def.unit,
          status: unavailable !== undefined && values.length === 0 ? 'unavailable' : Number.isFinite(m) ? 'ok' : 'failed',
          median: finite(m),
          values: values.map(round3),
          underlay: finite(u),
          ratio: finite(m / u),
          wireguard: finite(w),
          vsWireguard: def.key === 'added' || def.unit === '%' ? null : finite(m / w),
        };
        const errs = this.errors.get(`${mode}.${def.key}`);
        if (unavailable !== undefined) row.note = unavailable.split('\n')[0]!;
        else if (errs !== undefined) row.note = [...new Set(errs)].join('; ');
        rows.push(row);
      }
    }
    return rows;
  }

  targets(): { target: string; mode: Mode; measured: number | null; bound: number | null; met: boolean | null }[] {
    const rows = this.rows();
    const value = (mode: Mode, key: string): number | null => rows.find((r) => r.mode === mode && r.key === key)?.median ?? null;
    if (this.o.near !== undefined) return this.nearTargets(value);
    return TARGETS.flatMap((t) =>
      t.modes.filter((mode) => this.o.modes.includes(mode)).map((mode) => {
        const v = value(mode, t.key);
        const bound = t.atMost ?? (t.atMostWireguard === true || t.atLeastWireguard === true ? value('wireguard', t.key) : null);
        const met = v === null || bound === null ? null : t.atLeastWireguard === true ? v >= bound : v <= bound;
        return { target: t.label, mode, measured: v, bound, met };
      }),
    );
  }

  /**
   * --near's targets (issue 12): the direct c1↔c2 RTT follows their own link, i.e. at most the
   * underlay's c1↔c2 p50 plus what the tunnel adds (its idle0 p50 over the underlay's, the same two
   * tunnel ends per round trip) plus NEAR_MARGIN_MS; a relayed mode's crosses the hub, i.e. at
   * least twice the underlay's c1↔hub p50.
   */
  private nearTargets(value: (mode: Mode, key: string) => number | null): { target: string; mode: Mode; measured: number | null; bound: number | null; met: boolean | null }[] {
    const underlayNear = value('underlay', 'near0.p50');
    const underlayHub = value('underlay', 'idle0.p50');
    return this.o.modes
      .filter((m) => m !== 'underlay')
      .map((mode) => {
        const v = value(mode, 'near0.p50');
        if (mode === 'direct') {
          const added = value(mode, 'added');
          const bound = underlayNear === null || added === null ? null : round3(underlayNear + added + NEAR_MARGIN_MS);
          const target = `c1↔c2 p50 ≤ the underlay's c1↔c2 p50 + the RTT the tunnel adds (c1↔hub) + ${NEAR_MARGIN_MS} ms: follows their own link`;
          return { target, mode, measured: v, bound, met: v === null || bound === null ? null : v <= bound };
        }
        const bound = underlayHub === null ? null : round3(2 * underlayHub);
        return { target: "relayed, c1↔c2 p50 ≥ 2 × the underlay's c1↔hub p50: goes via the hub", mode, measured: v, bound, met: v === null || bound === null ? null : v >= bound };
      });
  }

  document(): object {
    const cpus = os.cpus();
    return {
      bench: 'lightweight-tunnel WAN',
      date: this.started.toISOString(),
      finished: new Date().toISOString(),
      machine: {
        cpus: cpus.length,
        cpuModel: cpus[0]?.model ?? 'unknown',
        kernel: os.release(),
        node: process.version,
        loadavgAtStart: this.loadStart.map(round3),
        loadavgAtEnd: os.loadavg().map(round3),
        iperf3: (spawnSync('iperf3', ['--version'], { encoding: 'utf8' }).stdout ?? '').split('\n')[0]?.trim() ?? '',
        wireguardGo: (spawnSync('wireguard-go', ['--version'], { encoding: 'utf8' }).stdout ?? '').split('\n')[0]?.trim() ?? '',
      },
      settings: {
        durationS: this.o.duration,
        rounds: this.o.rounds,
        modes: this.o.modes,
        wan: {
          delayMsPerLink: this.o.delayMs,
          rateMbitPerLink: this.o.rateMbit,
          queueMs: this.o.queueMs,
          lossPerMille: this.o.near === undefined ? [0, LOSS_1, LOSS_3] : [0],
          ...(this.o.near !== undefined ? { near: { clients: this.clients, delayMsPerClientLink: this.o.near } } : {}),
        },
        pingIntervalMs: PING_INTERVAL_MS,
        realtimeInstruments: this.o.realtime,
        tcpCongestionControl: { iperf3: this.o.cc ?? this.congestionControl, tunnel: this.tunnelCongestionControl || this.congestionControl },
        tunnelMtu: TUNNEL_MTU,
        cliTransportFlag: cliHasTransport(),
        ...(this.tlsSettings !== undefined ? { tls: this.tlsSettings } : {}),
      },
      rows: this.rows(),
      targets: this.targets(),
      phases: this.phases,
      unavailable: Object.fromEntries(this.unavailable),
      warnings: this.warnings,
    };
  }
}

// ---------------------------------------------------------------------------------------------
// the table

function renderTable(rows: readonly Row[], o: Options, cc: { readonly iperf3: string; readonly tunnel: string }): string {
  const withWg = o.modes.includes('wireguard');
  const head = ['figure', 'mode', 'median', 'unit', 'rounds', '× underlay', ...(withWg ? ['× wg'] : [])];
  const out: string[][] = [];
  let last = '';
  for (const r of rows) {
    const figure = r.key === last ? '' : r.figure;
    last = r.key;
    if (r.status === 'unavailable') {
      out.push([figure, r.mode, 'unavailable', '', '', '', ...(withWg ? [''] : [])]);
      continue;
    }
    out.push([
      figure,
      r.mode,
      r.status === 'failed' ? 'FAILED' : fmt(r.median),
      r.unit,
      r.values.map((v) => fmt(v)).join(' '),
      r.ratio === null ? '' : `${fmt(r.ratio)}×`,
      ...(withWg ? [r.vsWireguard === null ? '' : `${fmt(r.vsWireguard)}×`] : []),
    ]);
  }
  const widths = head.map((h, i) => Math.max(h.length, ...out.map((b) => [...b[i]!].length)));
  const numeric = new Set([2, 5, 6]);
  const line = (cells: string[]): string => cells.map((c, i) => (numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const lines = [line(head), widths.map((w) => '-'.repeat(w)).join('  ')];
  for (const [i, cells] of out.entries()) {
    if (i > 0 && cells[0] !== '') lines.push('');
    lines.push(line(cells));
  }
  const notes = [...new Map(rows.filter((r) => r.status === 'unavailable').map((r) => [r.mode, r.note ?? ''])).entries()].map(([m, n]) => `${m}: unavailable: ${n}`);
  const topology =
    o.near === undefined
      ? [`medians of ${o.rounds} round(s), ${o.duration} s per phase; WAN: ${o.delayMs} ms one way and ${o.rateMbit} Mbit/s per link (c1→hub crosses 2 links),`]
      : [
          `medians of ${o.rounds} round(s), ${o.duration} s per phase; --near: the hub's link ${o.delayMs} ms one way, c1's and c2's ${o.near} ms each, ${o.rateMbit} Mbit/s per link;`,
          `c1↔c2 crosses their two links (${2 * o.near} ms one way), c1↔hub ${o.near + o.delayMs} ms one way; ping-pong c1→c2: UDP, 50/s, to c2's echo server`,
          `(direct: straight to c2; the other modes relayed through the hub);`,
        ];
  lines.push(
    '',
    ...topology,
    `drop-tail queues of ${o.queueMs} ms, loss per link; ping-pong: UDP, 50/s, c1→hub echo; bulk: iperf3 -c hub from c1, 1 stream;`,
    `TCP congestion control: iperf3 ${o.cc ?? (cc.iperf3 || '?')}, the tunnel's TCP connection ${cc.tunnel || '?'};`,
    `× underlay / × wg: ratio to the same figure over the bare emulated WAN / through wireguard-go in this run`,
    ...notes,
  );
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// main

async function main(): Promise<number> {
  const o = benchOptions('bench:wan', parseOptions, HELP);
  if (typeof o === 'number') return o;
  const jsonToStdout = o.json === '-';
  const tableSink = jsonToStdout ? process.stderr : process.stdout;
  logSink = process.stderr;
  ensureCommands(
    [
      { cmd: 'iperf3', pkg: 'iperf3' },
      { cmd: 'ping', pkg: 'iputils-ping' },
      { cmd: 'ss', pkg: 'iproute2' },
      { cmd: 'ethtool', pkg: 'ethtool' },
    ],
    say,
  );
  if (NFT_BIN === undefined) {
    process.stderr.write('bench:wan: needs nftables (the system `nft`, for the loss rules): apt-get install nftables\n');
    return 1;
  }

  const bench = new WanBench(o);
  const t0 = Date.now();
  const failure = await runBench(bench, say);
  const rows = bench.rows();
  tableSink.write(`\n${renderTable(rows, o, { iperf3: bench.congestionControl, tunnel: bench.tunnelCongestionControl || bench.congestionControl })}`);
  tableSink.write(`\ntargets (${o.near === undefined ? 'issue 14, WAN' : 'issue 12, WAN, --near'}):\n`);
  for (const t of bench.targets()) {
    const state = t.met === null ? 'not measured in this run' : t.met ? 'met' : 'missed';
    tableSink.write(`  ${t.mode}: ${t.target}: ${fmt(t.measured)} (bound ${fmt(t.bound)}) — ${state}\n`);
  }
  for (const w of bench.warnings) tableSink.write(`warning: ${w}\n`);
  const load = os.loadavg();
  tableSink.write(`(${Math.round((Date.now() - t0) / 1000)} s; load average at start ${bench.loadStart.map((x) => x.toFixed(1)).join(' ')}, at end ${load.map((x) => x.toFixed(1)).join(' ')})\n`);
  writeJsonDocument(bench.document(), o.json, say);
  return failure === undefined ? 0 : 1;
}

process.exitCode = await main();
