/**
 * `npm run bench`: the reproducible benchmark of lightweight-tunnel (issue 4).
 *
 * Builds a network-namespace lab (a hub and N clients on a bridge, test/helpers/lab.ts), starts
 * the real CLI in it and measures with iperf3 and ping: client→hub with 1 and 4 streams,
 * hub→client, client→client through the hub, all clients at once; ping RTT idle and under a bulk
 * transfer; CPU seconds per GB of the tunnel processes; their peak RSS; and the hub's memory per
 * idle member (bench/idle-members.ts). The bare underlay (the same namespaces over their veth and
 * bridge) is measured in the same run, and every tunnel figure is printed with its ratio to it.
 * Issue 14 adds the UDP data path (`-transport udp`, modes udp and udp-tls) and userspace
 * WireGuard (wireguard-go, bench/wireguard.ts) as a baseline: with it in the run, every figure
 * also gets its ratio to WireGuard's, and the issue's targets are checked against both. Issue 12
 * adds mode `direct` (`-transport udp`, clients with direct paths on): client→client over the
 * direct path between c1 and c2, against client→hub and the relayed `udp` mode of the same run.
 *
 *   npm run bench -- [--quick] [--duration S] [--repeat N] [--clients N] [--tls | --tls-only]
 *                    [--udp] [--direct] [--wireguard] [--modes LIST] [--members N] [--json FILE|-] [--verbose] [--cpu-prof DIR]
 *
 * Traffic goes only between namespaces this script creates; nothing is configured in the root
 * namespace. Everything is removed at the end, on errors and on SIGINT/SIGTERM/SIGHUP.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cleanupLabs, Lab, type LabProcess } from '../test/helpers/lab.js';
import { fmt, median, pairedRatio, parseIperfJson, parsePing, parseStatCpuTicks, parseStatusKiB, type IperfResult, type PingResult } from './stats.js';
import {
  CLI, cliHasTransport, cliHelp, directFlags, ensureCommands as ensureCommandsWith, makeHubCert, benchOptions, runBench, statusFlags, tcpBytesTo, relayedFlags, transportFlags,
  waitDirectPaths, writeJsonDocument,
} from './tools.js';
import { startWireGuard, wireGuardUnavailable, type WireGuardTunnel } from './wireguard.js';

const IDLE_TOOL = fileURLToPath(new URL('./idle-members.js', import.meta.url));
const PACKAGE_JSON = fileURLToPath(new URL('../../package.json', import.meta.url));
const LAB_PREFIX = 'lwtb';
const HUB_TUNNEL = '10.0.0.1';
const TUNNEL_PORT = 9000;
const IPERF_PORT = 5201;
const CLK_TCK = clockTicks();

// ---------------------------------------------------------------------------------------------
// options

/** `plain`/`tls`: every side offloads (the default CLI); `-nogso`: the clients run with
 * -offload=false, the path a 0.0.1-era peer gets (the hub still offloads, as it would in a mixed LAN).
 * These four pass `-transport tcp` once the CLI has the flag. `udp`/`udp-tls`: `-transport udp`
 * (data in sealed datagrams; the control connection plain or TLS). All of these keep the clients
 * relayed through the hub (`-direct=false`). `direct`: `-transport udp` with direct paths on, so
 * c1 and c2 talk straight to each other (issue 12). `wireguard`: wireguard-go. */
type Mode = 'underlay' | 'plain' | 'tls' | 'plain-nogso' | 'tls-nogso' | 'udp' | 'udp-tls' | 'direct' | 'wireguard';
type TunnelMode = Exclude<Mode, 'underlay'>;
const TUNNEL_MODES: readonly TunnelMode[] = ['plain', 'tls', 'plain-nogso', 'tls-nogso', 'udp', 'udp-tls', 'direct', 'wireguard'];
/** How long the direct mode waits for c1 and c2 to show each other's path as direct. */
const DIRECT_WAIT_MS = 15_000;
/** WireGuard's UDP port on the hub. */
const WG_PORT = 51820;
/** The tunnel MTU of every mode (the CLI's default; WireGuard is given the same). */
const TUNNEL_MTU = 1400;

interface Options {
  duration: number;
  repeat: number;
  /** Only the idle RTT figures (to the hub and client→client): many repeats of them, quickly. */
  rttOnly: boolean;
  /** The modes take turns, one repeat each in a fresh tunnel (always so with rttOnly). */
  turns: boolean;
  clients: number;
  modes: TunnelMode[];
  members: number;
  json: string | undefined;
  verbose: boolean;
  /** Run the tunnel processes under node --cpu-prof, writing their profiles into this directory. */
  cpuProf: string | undefined;
  quick: boolean;
  /** `-tls-workers N` for the hub in TLS modes (0: not given). */
  tlsWorkers: number;
}

const HELP = `usage: npm run bench -- [options]

  --quick          smoke run: 2 s per figure, 1 repeat (unless --duration/--repeat say otherwise)
  --duration S     seconds per iperf3 transfer (default 10)
  --repeat N       repeats of every figure; medians are reported (default 3)
  --rtt-only       only the idle RTT figures (c1→hub and client→client), to compare what transports
                   add to an idle round trip over many repeats (no transfers); the modes take
                   turns, one repeat each in a fresh tunnel
  --turns          the modes take turns for every figure too, one repeat each in a fresh tunnel
                   (a load that drifts over the run lands on all modes alike); the direct mode
                   also swaps the order of its client→hub and client→client transfers each turn
  --clients N      tunnel clients (default 3, 1 to 20)
  --tls            also measure with TLS (-tls on hub and clients, a throwaway self-signed cert)
  --tls-only       measure TLS only (and the underlay)
  --tls-workers N  give the hub -tls-workers N in the TLS modes (default 0: the flag is not given)
  --no-offload     also measure with -offload=false on the clients (the path a 0.0.1-era peer gets)
  --udp            also measure the UDP data path (-transport udp; with --tls/--tls-only also over TLS)
  --direct         also measure direct paths between c1 and c2 (mode direct, and udp for the relayed ratios)
  --wireguard      also measure userspace WireGuard (wireguard-go) as a baseline
  --modes LIST     exactly these modes, comma-separated, instead of the above: plain, tls,
                   plain-nogso, tls-nogso, udp, udp-tls, direct, wireguard (the underlay always runs)
  --members N      idle members for the hub memory figure (default 1000, 0 skips it)
  --json FILE      also write the JSON document to FILE ('-': JSON to stdout, table to stderr)
  --verbose        mirror the tunnel processes' log lines to stderr
  --cpu-prof DIR   run the tunnel processes under node --cpu-prof, profiles into DIR (figures get slower)
`;

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      duration: { type: 'string' },
      repeat: { type: 'string' },
      'rtt-only': { type: 'boolean', default: false },
      turns: { type: 'boolean', default: false },
      clients: { type: 'string', default: '3' },
      tls: { type: 'boolean', default: false },
      'tls-only': { type: 'boolean', default: false },
      'tls-workers': { type: 'string', default: '0' },
      'no-offload': { type: 'boolean', default: false },
      udp: { type: 'boolean', default: false },
      direct: { type: 'boolean', default: false },
      wireguard: { type: 'boolean', default: false },
      modes: { type: 'string' },
      members: { type: 'string', default: '1000' },
      json: { type: 'string' },
      verbose: { type: 'boolean', default: false },
      'cpu-prof': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const int = (name: string, s: string, min: number, max: number): number => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name}: expected an integer from ${min} to ${max}, got ${s}`);
    return n;
  };
  const quick = values.quick;
  return {
    quick,
    duration: int('duration', values.duration ?? (quick ? '2' : '10'), 1, 120),
    repeat: int('repeat', values.repeat ?? (quick ? '1' : '3'), 1, 20),
    rttOnly: values['rtt-only'],
    turns: values.turns || values['rtt-only'],
    clients: int('clients', values.clients, 1, 20),
    modes: ((): TunnelMode[] => {
      if (values.modes !== undefined) {
        const list = values.modes.split(',').map((m) => m.trim()).filter((m) => m !== '');
        const bad = list.filter((m) => !(TUNNEL_MODES as readonly string[]).includes(m));
        if (bad.length > 0 || list.length === 0) throw new UsageError(`--modes: expected some of ${TUNNEL_MODES.join(', ')}, got ${values.modes}`);
        return [...new Set(list as TunnelMode[])];
      }
      const tls: TunnelMode[] = values['tls-only'] ? ['tls'] : values.tls ? ['plain', 'tls'] : ['plain'];
      const tcp = values['no-offload'] ? tls.flatMap((m): TunnelMode[] => [m, m === 'tls' ? 'tls-nogso' : 'plain-nogso']) : tls;
      const udp: TunnelMode[] = !values.udp ? [] : values['tls-only'] ? ['udp-tls'] : values.tls ? ['udp', 'udp-tls'] : ['udp'];
      const direct: TunnelMode[] = !values.direct ? [] : udp.includes('udp') ? ['direct'] : ['udp', 'direct'];
      return [...tcp, ...udp, ...direct, ...(values.wireguard ? (['wireguard'] as const) : [])];
    })(),
    members: int('members', values.members, 0, 20000),
    tlsWorkers: int('tls-workers', values['tls-workers'], 0, 8),
    json: values.json,
    verbose: values.verbose,
    cpuProf: values['cpu-prof'],
  };
}

class UsageError extends Error {}

// ---------------------------------------------------------------------------------------------
// small utilities

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function clockTicks(): number {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isInteger(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
}

let logSink: NodeJS.WritableStream = process.stderr;
function say(msg: string): void {
  logSink.write(`[bench] ${msg}\n`);
}

/** Installs Debian packages for the commands that are missing (bench/tools.ts), reporting on stderr. */
function ensureCommands(wanted: { cmd: string; pkg: string }[]): void {
  ensureCommandsWith(wanted, say);
}

interface ProcSnapshot {
  cpuTicks: number;
  rssKiB: number;
  hwmKiB: number;
}

function sampleProc(pid: number): ProcSnapshot {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return { cpuTicks: parseStatCpuTicks(stat), rssKiB: parseStatusKiB(status, 'VmRSS'), hwmKiB: parseStatusKiB(status, 'VmHWM') };
}

/** Machine-wide jiffies from the first line of /proc/stat: all, and idle + iowait. */
function machineJiffies(): { total: number; idle: number } {
  const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already counted in user)
  const total = cpu.slice(0, 8).reduce((s, x) => s + x, 0);
  return { total, idle: cpu[3]! + cpu[4]! };
}

/** Total utime+stime of `pids` in seconds (pids that vanished count NaN). */
function cpuSeconds(pids: readonly number[]): number[] {
  return pids.map((pid) => {
    try {
      return sampleProc(pid).cpuTicks / CLK_TCK;
    } catch {
      return Number.NaN;
    }
  });
}

// ---------------------------------------------------------------------------------------------
// results

type Unit = 'Mb/s' | 'ms' | 'MiB' | 'KiB';

/** One measured figure over all repeats. */
interface Figure {
  values: number[];
  cpuSPerGB: number[];
  cpuHubSPerGB: number[];
  retransmits: number[];
  drops: number[];
  dropReasons: Record<string, number>;
  tunQueueDrops: number[];
  errors: string[];
  extra: Record<string, number[]>;
}

interface Row {
  id: string;
  mode: Mode;
  figure: string;
  unit: Unit;
  status: 'ok' | 'failed' | 'unavailable';
  median: number | null;
  values: number[];
  underlay: number | null;
  ratio: number | null;
  /** WireGuard's median of the same figure in this run, and this row's ratio to it (tunnel modes, when WireGuard ran). */
  wireguard?: number | null;
  vsWireguard?: number | null;
  cpuSPerGB?: { median: number | null; values: number[]; hubMedian: number | null };
  retransmits?: number[];
  tunnelDrops?: number[];
  tunnelDropReasons?: Record<string, number>;
  /** Packets the kernel dropped at the TUN devices (tx: the process did not read in time; rx: writes refused). */
  tunQueueDrops?: number[];
  extra?: Record<string, unknown>;
  note?: string;
}

/** The figures in table order: key, label, unit, whether the underlay has it. */
const FIGURES: { key: string; label: string; unit: Unit; throughput: boolean }[] = [
  { key: 'c2h-1', label: 'client→hub, 1 stream', unit: 'Mb/s', throughput: true },
  { key: 'c2h-4', label: 'client→hub, 4 streams', unit: 'Mb/s', throughput: true },
  { key: 'h2c', label: 'hub→client, 1 stream', unit: 'Mb/s', throughput: true },
  { key: 'c2c', label: 'client→client via hub, 1 stream', unit: 'Mb/s', throughput: true },
  { key: 'agg', label: 'all clients→hub at once (sum)', unit: 'Mb/s', throughput: true },
  { key: 'rtt-idle-p50', label: 'RTT idle p50', unit: 'ms', throughput: false },
  { key: 'rtt-idle-p99', label: 'RTT idle p99', unit: 'ms', throughput: false },
  { key: 'rtt-load-p50', label: 'RTT under bulk transfer p50', unit: 'ms', throughput: false },
  { key: 'rtt-load-p99', label: 'RTT under bulk transfer p99', unit: 'ms', throughput: false },
  { key: 'rtt-c2c-p50', label: 'RTT idle client→client p50', unit: 'ms', throughput: false },
  { key: 'rtt-c2c-p99', label: 'RTT idle client→client p99', unit: 'ms', throughput: false },
];

/** A figure's label in `mode` (client→client is direct over the underlay and in mode direct). */
function figureLabel(mode: Mode, key: string): string {
  if (key === 'c2c' && (mode === 'underlay' || mode === 'direct')) return 'client→client direct, 1 stream';
  return FIGURES.find((x) => x.key === key)?.label ?? key;
}

/** The figures the direct mode measures: client→client and, for the same run's ratios, client→hub; the rest would repeat udp's. */
const DIRECT_FIGURES: readonly string[] = ['c2h-1', 'c2c', 'rtt-idle-p50', 'rtt-idle-p99', 'rtt-c2c-p50', 'rtt-c2c-p99'];

/** The figures of --rtt-only. */
const IDLE_RTT_FIGURES: readonly string[] = ['rtt-idle-p50', 'rtt-idle-p99', 'rtt-c2c-p50', 'rtt-c2c-p99'];

/** Whether `mode` measures figure `key` with `clients` clients (client→client needs two), and with --rtt-only. */
function measures(mode: Mode, key: string, clients: number, rttOnly: boolean): boolean {
  if ((key === 'c2c' || key.startsWith('rtt-c2c')) && clients < 2) return false;
  if (rttOnly && !IDLE_RTT_FIGURES.includes(key)) return false;
  return mode !== 'direct' || DIRECT_FIGURES.includes(key);
}

/** The targets of issue 4: a row id, which of its numbers, the bound and its direction. */
const TARGETS: { id: string; of: 'median' | 'cpu'; atLeast?: number; atMost?: number; label: string }[] = [
  { id: 'tls.c2h-1', of: 'median', atLeast: 3000, label: 'TLS + offload, client→hub 1 stream ≥ 3000 Mb/s' },
  { id: 'tls.c2c', of: 'median', atLeast: 2000, label: 'TLS + offload, client→client ≥ 2000 Mb/s' },
  { id: 'tls.c2h-1', of: 'cpu', atMost: 5, label: 'TLS + offload, CPU ≤ 5 s/GB (hub + clients, client→hub)' },
  { id: 'plain.c2h-1', of: 'median', atLeast: 5000, label: 'plain + offload, client→hub 1 stream ≥ 5000 Mb/s' },
  { id: 'plain-nogso.c2h-1', of: 'median', atLeast: 1500, label: 'plain without offload, client→hub ≥ 1500 Mb/s' },
  { id: 'tls-nogso.c2h-1', of: 'median', atLeast: 1000, label: 'TLS without offload, client→hub ≥ 1000 Mb/s' },
  { id: 'plain.rtt-idle-p50', of: 'median', atMost: 0.25, label: 'RTT p50 through an idle tunnel ≤ 0.25 ms' },
  { id: 'plain.idle-member-kib', of: 'median', atMost: 64, label: 'hub memory per idle member ≤ 64 KiB' },
];

/** Each target with the measured value, whether it is met and the factor still missing (1 when met). */
function targetRows(rows: readonly Row[]): { target: string; measured: number | null; met: boolean | null; gap: number | null }[] {
  return TARGETS.map((t) => {
    const row = rows.find((r) => r.id === t.id);
    const v = row === undefined ? null : t.of === 'cpu' ? (row.cpuSPerGB?.median ?? null) : row.median;
    if (v === null) return { target: t.label, measured: null, met: null, gap: null };
    const met = t.atLeast !== undefined ? v >= t.atLeast : v <= t.atMost!;
    const gap = met ? 1 : t.atLeast !== undefined ? t.atLeast / v : v / t.atMost!;
    return { target: t.label, measured: round3(v), met, gap: round3(gap) };
  });
}

/** The targets of issue 14: a row and which of its numbers, against the same number of a baseline row of the same run. */
const RELATIVE_TARGETS: { id: string; of: 'median' | 'cpu'; than: string; want: 'atLeast' | 'atMost'; label: string }[] = (['udp', 'udp-tls'] as const).flatMap((m) => [
  { id: `${m}.c2h-1`, of: 'median' as const, than: 'wireguard.c2h-1', want: 'atLeast' as const, label: `${m}, client→hub 1 stream ≥ WireGuard's` },
  { id: `${m}.c2h-1`, of: 'median' as const, than: 'tls.c2h-1', want: 'atLeast' as const, label: `${m}, client→hub 1 stream ≥ TLS over TCP` },
  { id: `${m}.c2h-1`, of: 'cpu' as const, than: 'wireguard.c2h-1', want: 'atMost' as const, label: `${m}, CPU s/GB client→hub ≤ WireGuard's` },
  // The same tunnel ends over TCP: the underlay's RTT is in both, so comparing the RTTs compares what each adds.
  {
    id: `${m}.rtt-idle-p50`,
    of: 'median' as const,
    than: m === 'udp' ? 'plain.rtt-idle-p50' : 'tls.rtt-idle-p50',
    want: 'atMost' as const,
    label: `${m}, idle RTT p50 ≤ the TCP transport's (${m === 'udp' ? 'plain' : 'tls'})`,
  },
]);

/** Each issue-14 target with both measured values, the ratio and whether it is met (null: not both measured). */
function relativeTargetRows(rows: readonly Row[]): { target: string; measured: number | null; baseline: number | null; ratio: number | null; met: boolean | null }[] {
  const value = (id: string, of: 'median' | 'cpu'): number | null => {
    const row = rows.find((r) => r.id === id);
    return row === undefined ? null : of === 'cpu' ? (row.cpuSPerGB?.median ?? null) : row.median;
  };
  return RELATIVE_TARGETS.map((t) => {
    const v = value(t.id, t.of);
    const b = value(t.than, t.of);
    if (v === null || b === null || b === 0) return { target: t.label, measured: v, baseline: b, ratio: null, met: null };
    return { target: t.label, measured: v, baseline: b, ratio: round3(v / b), met: t.want === 'atLeast' ? v >= b : v <= b };
  });
}

/** Issue 12's hub CPU bound: "near zero" is at most this share of what relaying the same transfer costs the hub (mode udp). */
const HUB_CPU_SHARE = 0.05;
/** The fewest turns whose paired ratio judges issue 12's throughput target (fewer: the medians do). */
const MIN_PAIRED_TURNS = 4;

/** Issue 12's RTT margin over the underlay's client→client RTT plus the tunnel's own overhead, ms. */
const DIRECT_RTT_MARGIN_MS = 0.1;

/**
 * The targets of issue 12, each from figures of this run: the measured value, its bound, and
 * what the bound is made of. The tunnel's own overhead at both ends is what it adds to the
 * client→hub RTT (the same two ends, one seal and one open each way, no hub hop).
 */
function directTargetRows(
  rows: readonly Row[],
  turns: boolean,
): { target: string; measured: number | null; bound: number | null; want: 'atLeast' | 'atMost'; met: boolean | null; from: string; failed?: string }[] {
  const row = (id: string): Row | undefined => rows.find((r) => r.id === id);
  const v = (id: string): number | null => row(id)?.median ?? null;
  const hubCpu = (id: string): number | null => row(id)?.cpuSPerGB?.hubMedian ?? null;
  /** A target on row `id`'s number (`measured`); a failed row says why. */
  const target = (label: string, id: string, measured: number | null, want: 'atLeast' | 'atMost', bound: number | null, from: string) => {
    const r = row(id);
    return {
      target: label,
      measured,
      bound: bound === null ? null : round3(bound),
      want,
      met: measured === null || bound === null ? null : want === 'atLeast' ? measured >= bound : measured <= bound,
      from,
      ...(r?.status === 'failed' ? { failed: r.note ?? 'failed' } : {}),
    };
  };
  const relayedHub = hubCpu('udp.c2c');
  const [rttC2c, underlayC2c, rttHub, underlayHub] = [v('direct.rtt-c2c-p50'), v('underlay.rtt-c2c-p50'), v('direct.rtt-idle-p50'), v('underlay.rtt-idle-p50')];
  const overhead = rttHub === null || underlayHub === null ? null : rttHub - underlayHub;
  // With --turns each turn measured both transfers in one fresh tunnel (their order swapped every
  // other turn): the per-turn ratio takes out what the turn's load did to both.
  const paired = pairedRatio(row('direct.c2c')?.values ?? [], row('direct.c2h-1')?.values ?? []);
  const throughput =
    turns && paired.pairs >= MIN_PAIRED_TURNS
      ? target(
          'direct, client→client 1 stream ≥ client→hub 1 stream (paired by turn: geometric mean of client→client / client→hub)',
          'direct.c2c',
          round3(paired.geomean),
          'atLeast',
          1,
          `${paired.pairs} turns, client→client higher in ${paired.above}; medians ${fmt(v('direct.c2c'))} and ${fmt(v('direct.c2h-1'))}`,
        )
      : target('direct, client→client 1 stream ≥ client→hub 1 stream', 'direct.c2c', v('direct.c2c'), 'atLeast', v('direct.c2h-1'), 'direct.c2h-1');
  return [
    throughput,
    target(
      `direct, the hub's CPU during client→client ≤ ${HUB_CPU_SHARE * 100}% of its CPU relaying it (s/GB)`,
      'direct.c2c',
      hubCpu('direct.c2c'),
      'atMost',
      relayedHub === null ? null : HUB_CPU_SHARE * relayedHub,
      `${HUB_CPU_SHARE} × the hub's s/GB of udp.c2c (${fmt(relayedHub)})`,
    ),
    target(
      `direct, client→client RTT p50 ≤ underlay's + the tunnel's overhead + ${DIRECT_RTT_MARGIN_MS} ms`,
      'direct.rtt-c2c-p50',
      rttC2c,
      'atMost',
      underlayC2c === null || overhead === null ? null : underlayC2c + overhead + DIRECT_RTT_MARGIN_MS,
      `underlay.rtt-c2c-p50 ${fmt(underlayC2c)} + (direct.rtt-idle-p50 ${fmt(rttHub)} − underlay.rtt-idle-p50 ${fmt(underlayHub)}) + ${DIRECT_RTT_MARGIN_MS}`,
    ),
  ];
}

class Results {
  readonly figures = new Map<string, Figure>();
  readonly unavailable = new Map<Mode, string>();
  readonly rss = new Map<Mode, { name: string; hwmKiB: number }[]>();
  readonly warnings: string[] = [];

  fig(mode: Mode, key: string): Figure {
    const id = `${mode}.${key}`;
    let f = this.figures.get(id);
    if (f === undefined) {
      f = { values: [], cpuSPerGB: [], cpuHubSPerGB: [], retransmits: [], drops: [], dropReasons: {}, tunQueueDrops: [], errors: [], extra: {} };
      this.figures.set(id, f);
    }
    return f;
  }

  addExtra(mode: Mode, key: string, name: string, v: number): void {
    const f = this.fig(mode, key);
    (f.extra[name] ??= []).push(v);
  }
}

// ---------------------------------------------------------------------------------------------
// the bench

/** The pings of a set: c1 to the hub idle and under load, c1 to c2 idle (figures rtt-KIND-p50/p99). */
type PingKind = 'idle' | 'load' | 'c2c';

interface Tunnel {
  hub: LabProcess;
  clients: LabProcess[];
  pids: number[];
  /** Set for wireguard: stops wireguard-go and removes its sockets. */
  wireguard?: WireGuardTunnel;
}

interface Addresses {
  hub: string;
  client(i: number): string;
}

class Bench {
  lab: Lab | undefined;
  tmp: string | undefined;
  readonly results = new Results();
  private readonly started = new Date();
  private readonly loadStart = os.loadavg();

  constructor(readonly o: Options) {}

  private get hosts(): string[] {
    return ['hub', ...Array.from({ length: this.o.clients }, (_, i) => `c${i + 1}`)];
  }

  private host(name: string) {
    return this.lab!.host(name);
  }

  /** Share of the machine's CPU in use while nothing of this run is busy (other users' load). */
  async backgroundBusy(): Promise<number> {
    const a = machineJiffies();
    await sleep(2000);
    return busyPct(a, machineJiffies());
  }

  readonly background: number[] = [];

  async run(): Promise<void> {
    this.background.push(await this.backgroundBusy());
    say(`background CPU use before the run: ${Math.round(this.background[0]!)}% of ${os.cpus().length} CPUs`);
    const removed = cleanupLabs({ prefix: LAB_PREFIX });
    if (removed.removed.length > 0) say(`removed ${removed.removed.length} namespaces left by an earlier bench run that died`);
    say(
      `lab: hub + ${this.o.clients} clients; modes: underlay, ${this.o.modes.join(', ')}; ${this.o.duration} s per transfer, ${this.o.repeat} repeat(s)`,
    );
    this.lab = await Lab.create({ hosts: this.hosts, prefix: LAB_PREFIX });
    say(`lab ${this.lab.id} up: underlay ${this.lab.subnet}`);
    await this.startIperfServers();

    const underlay: Addresses = { hub: this.host('hub').ip, client: (i) => this.host(`c${i}`).ip };
    const tunnel: Addresses = { hub: HUB_TUNNEL, client: (i) => `10.0.0.${i + 1}` };
    // Every repeat of a mode in one tunnel, mode after mode; with --turns (and --rtt-only) the
    // modes take turns instead, one repeat each in a tunnel of its own, so a load that drifts over
    // the run lands on all of them alike (the figures being compared differ by less than such a drift).
    const rounds = this.o.turns ? this.o.repeat : 1;
    const perTunnel = this.o.turns ? 1 : this.o.repeat;
    for (let round = 1; round <= rounds; round++) {
      for (let r = 1; r <= perTunnel; r++) {
        say(`underlay, repeat ${(round - 1) * perTunnel + r}/${this.o.repeat}`);
        await this.runSet('underlay', underlay, undefined, (round - 1) * perTunnel + r);
      }
      for (const mode of this.o.modes) {
        if (this.results.unavailable.has(mode)) continue;
        const t = await this.startTunnel(mode);
        if (typeof t === 'string') {
          this.results.unavailable.set(mode, t);
          say(`${mode}: unavailable: ${t}`);
          continue;
        }
        try {
          for (let r = 1; r <= perTunnel; r++) {
            say(`${mode}, repeat ${(round - 1) * perTunnel + r}/${this.o.repeat}`);
            await this.runSet(mode, tunnel, t, (round - 1) * perTunnel + r);
          }
          this.results.rss.set(mode, [
            { name: 'hub', hwmKiB: sampleProc(t.hub.pid!).hwmKiB },
            ...t.clients.map((c, i) => ({ name: `c${i + 1}`, hwmKiB: sampleProc(c.pid!).hwmKiB })),
          ]);
        } finally {
          await this.stopTunnel(mode, t);
        }
      }
    }

    if (this.o.members > 0) await this.idleMembers(this.o.members);
    this.background.push(await this.backgroundBusy());
    say(`background CPU use after the run: ${Math.round(this.background[1]!)}%`);
  }

  /** Warns when other processes kept the machine busy around the run. */
  noteBackground(): void {
    if (this.background.some((b) => b > 20)) {
      this.results.warnings.push(
        `other processes used the CPU around the run (${this.background.map((b) => `${Math.round(b)}%`).join(' before, ')}${this.background.length > 1 ? ' after' : ' before'}): figures are noisy`,
      );
    }
  }

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

  // -- iperf3 and ping ---------------------------------------------------------------------------

  private async startIperfServers(): Promise<void> {
    const want: { host: string; port: number }[] = [];
    for (let i = 0; i < this.o.clients; i++) want.push({ host: 'hub', port: IPERF_PORT + i });
    for (let i = 1; i <= this.o.clients; i++) want.push({ host: `c${i}`, port: IPERF_PORT });
    for (const w of want) this.host(w.host).spawn('iperf3', ['-s', '-p', String(w.port)], { label: `${w.host}:iperf3:${w.port}` });
    for (const w of want) {
      const deadline = Date.now() + 5000;
      for (;;) {
        const r = await this.host(w.host).exec('ss', ['-Hltn', `sport = :${w.port}`], { timeoutMs: 5000 });
        if (r.stdout.trim() !== '') break;
        if (Date.now() > deadline) throw new Error(`iperf3 server on ${w.host}:${w.port} did not start`);
        await sleep(50);
      }
    }
  }

  private async iperf(from: string, to: string, port: number, opts: { parallel?: number; duration?: number } = {}): Promise<IperfResult> {
    const duration = opts.duration ?? this.o.duration;
    const args = ['-c', to, '-p', String(port), '-t', String(duration), '-J', '--connect-timeout', '3000'];
    if ((opts.parallel ?? 1) > 1) args.push('-P', String(opts.parallel));
    const r = await this.host(from).exec('iperf3', args, { timeoutMs: (duration + 30) * 1000 });
    if (r.timedOut) throw new Error(`iperf3 ${from}→${to} timed out`);
    return parseIperfJson(r.stdout);
  }

  private async ping(from: string, to: string, count: number): Promise<PingResult> {
    const deadline = Math.ceil(count * 0.01) + 5;
    const r = await this.host(from).exec('ping', ['-n', '-i', '0.01', '-c', String(count), '-W', '1', '-w', String(deadline), to], {
      timeoutMs: (deadline + 10) * 1000,
    });
    const p = parsePing(r.stdout);
    if (p.rttMs.length === 0) throw new Error(`ping ${from}→${to}: no replies (${(r.stderr || r.stdout).trim().slice(0, 200)})`);
    return p;
  }

  /**
   * Runs `transfer` while sampling the tunnel processes' CPU time and counting their drop reports;
   * records the throughput, CPU s/GB, retransmits and drops under `mode.key`.
   */
  private async measure(mode: Mode, key: string, t: Tunnel | undefined, transfer: () => Promise<IperfResult[]>): Promise<void> {
    const f = this.results.fig(mode, key);
    const label = figureLabel(mode, key);
    const linesBefore = t === undefined ? [] : [t.hub, ...t.clients].map((p) => p.stderr.length);
    const cpuBefore = t === undefined ? [] : cpuSeconds(t.pids);
    const machineBefore = machineJiffies();
    const tunBefore = t === undefined ? undefined : await this.tunCounters();
    const tcpBefore = t === undefined || t.wireguard !== undefined ? undefined : await this.clientTcpBytes();
    const udpBefore = await this.udpBufferErrors();
    let results: IperfResult[];
    try {
      results = await transfer();
    } catch (err) {
      f.values.push(Number.NaN);
      f.errors.push((err as Error).message);
      say(`  ${label}: FAILED: ${(err as Error).message}`);
      return;
    }
    const mbps = results.reduce((s, r) => s + r.mbps, 0);
    const bytes = results.reduce((s, r) => s + r.bytes, 0);
    const retr = results.reduce((s, r) => s + (r.retransmits ?? 0), 0);
    f.values.push(mbps);
    f.retransmits.push(retr);
    const machineAfter = machineJiffies();
    const busy = busyPct(machineBefore, machineAfter);
    this.results.addExtra(mode, key, 'machineBusyPct', busy);
    let cpuNote = '';
    const udpErrors = (await this.udpBufferErrors()) - udpBefore;
    this.results.addExtra(mode, key, 'udpBufferErrors', udpErrors);
    if (udpErrors > 0) cpuNote += `, UDP buffer errors ${udpErrors}`;
    if (t !== undefined) {
      const cpuAfter = cpuSeconds(t.pids);
      const deltas = cpuAfter.map((a, i) => a - cpuBefore[i]!);
      const total = deltas.reduce((s, d) => s + d, 0);
      const gb = bytes / 1e9;
      f.cpuSPerGB.push(total / gb);
      f.cpuHubSPerGB.push(deltas[0]! / gb);
      const drops = dropsSince(t, linesBefore);
      f.drops.push(drops.total);
      for (const [reason, n] of Object.entries(drops.byReason)) f.dropReasons[reason] = (f.dropReasons[reason] ?? 0) + n;
      const tunAfter = await this.tunCounters();
      const txDropped = tunAfter.txDropped - tunBefore!.txDropped;
      const rxDropped = tunAfter.rxDropped - tunBefore!.rxDropped;
      f.tunQueueDrops.push(txDropped + rxDropped);
      if (tcpBefore !== undefined) {
        // How much of the data the tunnel carried over its TCP connections (about 1 for the TCP
        // transport, about 0 once the UDP path carries it).
        const share = ((await this.clientTcpBytes()) - tcpBefore) / bytes;
        this.results.addExtra(mode, key, 'overTcpShare', share);
        if ((mode === 'udp' || mode === 'udp-tls' || mode === 'direct') && share > 0.5) {
          this.results.warnings.push(`${mode}: ${label}: ${Math.round(100 * share)}% of the bytes went over the TCP connection, not the UDP path`);
        }
      }
      this.results.addExtra(mode, key, 'tunTxDropped', txDropped);
      this.results.addExtra(mode, key, 'tunRxDropped', rxDropped);
      const perHost = Object.entries(tunAfter.byHost)
        .map(([h, n]) => [h, n - (tunBefore!.byHost[h] ?? 0)] as const)
        .filter(([, n]) => n > 0);
      for (const [h, n] of perHost) this.results.addExtra(mode, key, `tunDropped.${h}`, n);
      cpuNote +=
        `, CPU ${fmt(total / gb)} s/GB (hub ${fmt(deltas[0]! / gb)}), tunnel drops ${drops.total}${describeReasons(drops.byReason)}` +
        `, TUN queue drops ${txDropped + rxDropped}${perHost.length > 0 ? ` (${perHost.map(([h, n]) => `${h} ${n}`).join(', ')})` : ''}`;
    }
    say(`  ${label}: ${fmt(mbps)} Mb/s, ${fmt(bytes / 1e6)} MB, retransmits ${retr}${cpuNote}, machine ${Math.round(busy)}% busy`);
  }

  /** The figures of `mode` once, in its tunnel `t` (none for the underlay); `repeat` counts from 1. */
  private async runSet(mode: Mode, a: Addresses, t: Tunnel | undefined, repeat: number): Promise<void> {
    if (mode === 'direct' && !this.o.rttOnly) return this.runDirectSet(a, t!, this.o.turns && repeat % 2 === 0);
    const n = this.o.clients;
    if (this.o.rttOnly) {
      // The direct mode's client→client figures are the direct path's: wait for it (a failure is said, the figures still taken).
      const notDirect = mode === 'direct' ? await this.waitDirect() : undefined;
      if (notDirect !== undefined) this.results.warnings.push(`direct: not direct before the idle RTTs: ${notDirect}`);
      return this.idleRtts(mode, a);
    }
    await this.measure(mode, 'c2h-1', t, async () => [await this.iperf('c1', a.hub, IPERF_PORT)]);
    await this.measure(mode, 'c2h-4', t, async () => [await this.iperf('c1', a.hub, IPERF_PORT, { parallel: 4 })]);
    // hub→client: the iperf3 client runs on the hub and sends to the server in c1.
    await this.measure(mode, 'h2c', t, async () => [await this.iperf('hub', a.client(1), IPERF_PORT)]);
    if (n >= 2) await this.measure(mode, 'c2c', t, async () => [await this.iperf('c1', a.client(2), IPERF_PORT)]);
    await this.measure(mode, 'agg', t, () =>
      Promise.all(Array.from({ length: n }, (_, i) => this.iperf(`c${i + 1}`, a.hub, IPERF_PORT + i))),
    );

    await this.idleRtts(mode, a);

    // RTT while c1 sends a bulk transfer to the hub over the same path.
    const startDelayMs = Math.min(1000, (this.o.duration * 1000) / 4);
    const loadCount = Math.max(50, Math.min(1000, Math.floor((this.o.duration - startDelayMs / 1000 - 0.5) * 100)));
    const linesBefore = t === undefined ? [] : [t.hub, ...t.clients].map((p) => p.stderr.length);
    const tunBefore = t === undefined ? undefined : await this.tunCounters();
    const bulk = this.iperf('c1', a.hub, IPERF_PORT);
    bulk.catch(() => undefined);
    await sleep(startDelayMs);
    const pinged = this.ping('c1', a.hub, loadCount).then(
      (p) => ({ ok: true as const, p }),
      (err: Error) => ({ ok: false as const, err }),
    );
    const [bulkResult, pingResult] = await Promise.all([bulk.then((r) => r, (err: Error) => err), pinged]);
    if (t !== undefined) {
      const drops = dropsSince(t, linesBefore);
      for (const q of ['p50', 'p99']) {
        this.results.addExtra(mode, `rtt-load-${q}`, 'tunnelDrops', drops.total);
        const f = this.results.fig(mode, `rtt-load-${q}`);
        for (const [reason, n] of Object.entries(drops.byReason)) f.dropReasons[reason] = (f.dropReasons[reason] ?? 0) + n;
      }
      const tunAfter = await this.tunCounters();
      const tunDrops = tunAfter.txDropped + tunAfter.rxDropped - tunBefore!.txDropped - tunBefore!.rxDropped;
      for (const q of ['p50', 'p99']) this.results.addExtra(mode, `rtt-load-${q}`, 'tunQueueDrops', tunDrops);
      say(`  during the loaded ping: tunnel drops ${drops.total}${describeReasons(drops.byReason)}, TUN queue drops ${tunDrops}`);
    }
    if (pingResult.ok) {
      this.recordPing(mode, 'load', pingResult.p);
      if (!(bulkResult instanceof Error)) {
        this.results.addExtra(mode, 'rtt-load-p50', 'bulkMbps', bulkResult.mbps);
        this.results.addExtra(mode, 'rtt-load-p99', 'bulkMbps', bulkResult.mbps);
      } else {
        this.results.warnings.push(`${mode}: the bulk transfer under the loaded ping failed: ${bulkResult.message}`);
      }
    } else {
      this.pingFailed(mode, 'load', pingResult.err);
    }
  }

  /** RTT through an idle path: c1→hub and client→client. */
  private async idleRtts(mode: Mode, a: Addresses): Promise<void> {
    const idleCount = this.o.quick ? 100 : 300;
    try {
      const p = await this.ping('c1', a.hub, idleCount);
      this.recordPing(mode, 'idle', p);
    } catch (err) {
      this.pingFailed(mode, 'idle', err as Error);
    }
    if (this.o.clients >= 2) await this.pingC2c(mode, a);
  }

  /**
   * The direct mode's set (issue 12): client→hub for the ratio and, once c1 and c2 both show the
   * other's path as direct, client→client (in that order, or client→client first when `c2cFirst`:
   * --turns swaps them every other turn, so neither gains from going second); then the idle RTTs
   * to the hub and to c2. If the paths never go direct, the client→client figures fail with what
   * the statuses showed.
   */
  private async runDirectSet(a: Addresses, t: Tunnel, c2cFirst: boolean): Promise<void> {
    const toHub = (): Promise<void> => this.measure('direct', 'c2h-1', t, async () => [await this.iperf('c1', a.hub, IPERF_PORT)]);
    if (!c2cFirst) await toHub();
    const notDirect = await this.waitDirect();
    if (notDirect !== undefined) {
      for (const key of ['c2c', 'rtt-c2c-p50', 'rtt-c2c-p99']) {
        const f = this.results.fig('direct', key);
        f.values.push(Number.NaN);
        f.errors.push(notDirect);
      }
      say(`  client→client: FAILED: ${notDirect}`);
    } else {
      await this.measure('direct', 'c2c', t, async () => [await this.iperf('c1', a.client(2), IPERF_PORT)]);
      const after = await this.waitDirect(0);
      if (after !== undefined) this.results.warnings.push(`direct: after client→client the path was no longer direct (${after}): the figure may include relayed traffic`);
    }
    if (c2cFirst) await toHub();
    const idleCount = this.o.quick ? 100 : 300;
    try {
      this.recordPing('direct', 'idle', await this.ping('c1', a.hub, idleCount));
    } catch (err) {
      this.pingFailed('direct', 'idle', err as Error);
    }
    if (notDirect === undefined) await this.pingC2c('direct', a);
  }

  /** The idle RTT from c1 to c2 (through the hub, or direct: the mode says). */
  private async pingC2c(mode: Mode, a: Addresses): Promise<void> {
    try {
      this.recordPing(mode, 'c2c', await this.ping('c1', a.client(2), this.o.quick ? 100 : 300));
    } catch (err) {
      this.pingFailed(mode, 'c2c', err as Error);
    }
  }

  /** Undefined once c1 shows c2's path as direct and c2 shows c1's (waiting up to `timeoutMs`), else what they show. */
  private waitDirect(timeoutMs = DIRECT_WAIT_MS): Promise<string | undefined> {
    return waitDirectPaths(
      [
        { name: 'c1', host: this.host('c1'), peer: '10.0.0.3' },
        { name: 'c2', host: this.host('c2'), peer: '10.0.0.2' },
      ],
      timeoutMs,
    );
  }

  /** UDP datagrams dropped for want of socket buffer space so far, all lab hosts (RcvbufErrors + SndbufErrors of /proc/net/snmp). */
  private async udpBufferErrors(): Promise<number> {
    const outs = await Promise.all(this.hosts.map((h) => this.host(h).exec('cat', ['/proc/net/snmp'], { timeoutMs: 5000 })));
    return outs.reduce((sum, o) => sum + udpSnmp(o.stdout, 'RcvbufErrors') + udpSnmp(o.stdout, 'SndbufErrors'), 0);
  }

  /** Bytes all clients' tunnel TCP connections carried so far (bench/tools.ts tcpBytesTo). */
  private async clientTcpBytes(): Promise<number> {
    const each = await Promise.all(Array.from({ length: this.o.clients }, (_, i) => tcpBytesTo(this.host(`c${i + 1}`), TUNNEL_PORT)));
    return each.reduce((s, x) => s + x, 0);
  }

  /** Kernel drop counters of every TUN device in the lab (summed over hosts). */
  private async tunCounters(): Promise<{ txDropped: number; rxDropped: number; byHost: Record<string, number> }> {
    const outs = await Promise.all(this.hosts.map((h) => this.host(h).exec('ip', ['-j', '-s', 'link', 'show', 'type', 'tun'], { timeoutMs: 5000 })));
    let txDropped = 0;
    let rxDropped = 0;
    const byHost: Record<string, number> = {};
    for (const [i, o] of outs.entries()) {
      try {
        for (const link of JSON.parse(o.stdout) as { stats64?: { rx?: { dropped?: number }; tx?: { dropped?: number } } }[]) {
          const tx = link.stats64?.tx?.dropped ?? 0;
          const rx = link.stats64?.rx?.dropped ?? 0;
          txDropped += tx;
          rxDropped += rx;
          byHost[this.hosts[i]!] = (byHost[this.hosts[i]!] ?? 0) + tx + rx;
        }
      } catch {
        // no TUN device (yet) in this namespace
      }
    }
    return { txDropped, rxDropped, byHost };
  }

  private recordPing(mode: Mode, kind: PingKind, p: PingResult): void {
    const loss = p.transmitted > 0 ? (100 * (p.transmitted - p.received)) / p.transmitted : 0;
    for (const [q, v] of [['p50', p.p50], ['p99', p.p99]] as const) {
      const key = `rtt-${kind}-${q}`;
      this.results.fig(mode, key).values.push(v);
      this.results.addExtra(mode, key, 'maxMs', p.max);
      this.results.addExtra(mode, key, 'lossPct', loss);
      this.results.addExtra(mode, key, 'replies', p.received);
    }
    say(`  RTT ${kind === 'c2c' ? 'idle c1→c2' : kind}: p50 ${fmt(p.p50)} ms, p99 ${fmt(p.p99)} ms, max ${fmt(p.max)} ms, ${p.received}/${p.transmitted} replies`);
  }

  private pingFailed(mode: Mode, kind: PingKind, err: Error): void {
    for (const q of ['p50', 'p99']) {
      const f = this.results.fig(mode, `rtt-${kind}-${q}`);
      f.values.push(Number.NaN);
      f.errors.push(err.message);
    }
    say(`  RTT ${kind === 'c2c' ? 'idle c1→c2' : kind}: FAILED: ${err.message}`);
  }

  // -- the tunnel ----------------------------------------------------------------------------------

  /** Starts the hub and the clients; returns the reason when the mode cannot be measured here (no TLS, no -transport, no WireGuard). */
  private async startTunnel(mode: TunnelMode): Promise<Tunnel | string> {
    if (mode === 'wireguard') return this.startWireGuard();
    let hubExtra: string[] = [];
    let clientExtra: string[] = [];
    const tlsMode = mode === 'tls' || mode === 'tls-nogso' || mode === 'udp-tls';
    const udpMode = mode === 'udp' || mode === 'udp-tls' || mode === 'direct';
    const transport = transportFlags(udpMode ? 'udp' : 'tcp');
    if (transport === undefined) return 'the CLI has no -transport flag yet (the UDP data path is not wired into it)';
    // Every mode but direct keeps its clients relayed: its client→client figures measure the hub.
    const paths = mode === 'direct' ? directFlags() : relayedFlags();
    if (typeof paths === 'string') return paths;
    if (mode === 'direct' && this.o.clients < 2) return 'needs at least 2 clients (--clients)';
    if (tlsMode) {
      const tls = this.tlsFlags();
      if (typeof tls === 'string') return tls;
      ({ hubExtra, clientExtra } = tls);
    }
    if (mode.endsWith('-nogso')) clientExtra = [...clientExtra, '-offload=false'];
    hubExtra = [...transport, ...hubExtra];
    // The direct mode reads the peers' paths from the clients' statuses.
    clientExtra = [...transport, ...paths, ...(mode === 'direct' ? statusFlags() : []), ...clientExtra];
    say(`${mode}: starting the hub and ${this.o.clients} clients${transport.length > 0 ? ` (${transport.join(' ')})` : ''}`);
    const spawnOpts = (label: string) => ({ label, maxLines: 100_000, echo: this.o.verbose });
    const hub = this.host('hub').spawn(
      process.execPath,
      [...this.nodeArgs(), CLI, '-m', 'server', '-l', `0.0.0.0:${TUNNEL_PORT}`, '-t', `${HUB_TUNNEL}/24`, ...hubExtra],
      spawnOpts(`${mode}:hub`),
    );
    try {
      await hub.waitForLine(/listening on/, 15_000);
    } catch (err) {
      await hub.stop(2000);
      if (tlsMode && /tls/i.test(hub.output())) return firstLine(hub.output(), /tls/i).replace(/^\[err\]\s*/, '');
      throw err;
    }
    const hubIp = this.host('hub').ip;
    const clients: LabProcess[] = [];
    const all = (): LabProcess[] => [hub, ...clients];
    try {
      for (let i = 1; i <= this.o.clients; i++) {
        clients.push(
          this.host(`c${i}`).spawn(
            process.execPath,
            [...this.nodeArgs(), CLI, '-m', 'client', '-r', `${hubIp}:${TUNNEL_PORT}`, '-t', `10.0.0.${i + 1}/24`, ...clientExtra],
            spawnOpts(`${mode}:c${i}`),
          ),
        );
      }
      await Promise.all(clients.map((c) => c.waitForLine(/joined the virtual LAN as/, 20_000)));
      await this.waitTunnel();
      if (udpMode) await this.waitUdpPath(mode);
      // Let the once-a-second drop summaries of the start-up (IPv6 of fresh devices, packets
      // before the session) come out before the first measurement counts them.
      await sleep(1500);
    } catch (err) {
      const out = all().map((p) => `--- ${p.label}\n${p.output(20)}`).join('\n');
      await Promise.all(all().map((p) => p.stop(2000)));
      if (tlsMode) return `the tunnel did not come up with TLS: ${(err as Error).message.split('\n')[0]}\n${out}`;
      throw err;
    }
    return { hub, clients, pids: all().map((p) => p.pid!) };
  }

  /** Waits until the tunnel carries traffic both ways between every client and the hub, and client to client. */
  private async waitTunnel(): Promise<void> {
    for (let i = 1; i <= this.o.clients; i++) await this.waitPing(`c${i}`, HUB_TUNNEL);
    if (this.o.clients >= 2) await this.waitPing('c1', '10.0.0.3');
  }

  /**
   * Waits (up to 10 s) until a burst of pings from each client to the hub no longer goes over the
   * client's TCP connection (the UDP path is up: the session probes before it moves data); warns
   * when it never does, and the figures then say what TCP did.
   */
  private async waitUdpPath(mode: TunnelMode): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (let i = 1; i <= this.o.clients; i++) {
      const host = this.host(`c${i}`);
      for (;;) {
        const before = await tcpBytesTo(host, TUNNEL_PORT);
        await host.exec('ping', ['-n', '-q', '-c', '20', '-i', '0.01', '-s', '1000', '-W', '1', HUB_TUNNEL], { timeoutMs: 10_000 });
        const overTcp = (await tcpBytesTo(host, TUNNEL_PORT)) - before;
        // 20 requests + 20 replies of 1028 bytes: far less than that over TCP means they took UDP.
        if (overTcp < 4000) break;
        if (Date.now() > deadline) {
          this.results.warnings.push(`${mode}: c${i}'s pings still went over TCP after 10 s (${overTcp} bytes for 40 kB of pings): the UDP path did not come up`);
          say(`  c${i}: the UDP path did not come up within 10 s`);
          break;
        }
        await sleep(500);
      }
    }
  }

  /** wireguard-go on the hub and every client (bench/wireguard.ts), or why it cannot run. */
  private async startWireGuard(): Promise<Tunnel | string> {
    try {
      ensureCommands([{ cmd: 'wireguard-go', pkg: 'wireguard-go' }, { cmd: 'wg', pkg: 'wireguard-tools' }]);
    } catch (err) {
      return (err as Error).message;
    }
    const missing = wireGuardUnavailable();
    if (missing !== undefined) return missing;
    say(`wireguard: starting wireguard-go on the hub and ${this.o.clients} clients`);
    let wg: WireGuardTunnel;
    try {
      wg = await startWireGuard({
        hub: { host: this.host('hub'), address: HUB_TUNNEL },
        hubEndpoint: this.host('hub').ip,
        clients: Array.from({ length: this.o.clients }, (_, i) => ({ host: this.host(`c${i + 1}`), address: `10.0.0.${i + 2}` })),
        prefix: 24,
        port: WG_PORT,
        mtu: TUNNEL_MTU,
        tag: this.lab!.id,
        echo: this.o.verbose,
      });
    } catch (err) {
      return `wireguard-go did not come up: ${(err as Error).message.split('\n')[0]}`;
    }
    this.wireguard = wg;
    try {
      await this.waitTunnel();
    } catch (err) {
      await wg.stop(2000);
      this.wireguard = undefined;
      throw err;
    }
    return { hub: wg.hub, clients: wg.clients, pids: [wg.hub, ...wg.clients].map((p) => p.pid!), wireguard: wg };
  }

  /** The WireGuard tunnel while it runs (for the signal handlers). */
  private wireguard: WireGuardTunnel | undefined;

  private async waitPing(from: string, to: string): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = await this.host(from).exec('ping', ['-n', '-c', '1', '-W', '1', to], { timeoutMs: 5000 });
      if (r.code === 0) return;
      if (Date.now() > deadline) throw new Error(`${from} cannot ping ${to} through the tunnel`);
      await sleep(200);
    }
  }

  private async stopTunnel(mode: Mode, t: Tunnel): Promise<void> {
    const exits =
      t.wireguard !== undefined
        ? await t.wireguard.stop(3000)
        : await Promise.all([t.hub, ...t.clients].map(async (p) => ({ label: p.label, ...(await p.stop(3000)) })));
    if (t.wireguard !== undefined) this.wireguard = undefined;
    for (const e of exits) {
      if (e.code !== 0) this.results.warnings.push(`${mode}: ${e.label} exited with ${e.signal ?? `code ${e.code}`} at shutdown`);
    }
    // Make sure the TUN devices are gone before the next hub claims tun0 in the same namespace.
    await sleep(200);
  }

  /** The TLS flags for the hub and clients, or why TLS cannot be measured. */
  /** Node options for the tunnel processes (--cpu-prof DIR). */
  private nodeArgs(): string[] {
    return this.o.cpuProf === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${path.resolve(this.o.cpuProf)}`];
  }

  private tlsFlags(): { hubExtra: string[]; clientExtra: string[] } | string {
    const help = cliHelp();
    if (!/-tls\b/.test(help)) return 'the CLI has no -tls flag';
    try {
      ensureCommands([{ cmd: 'openssl', pkg: 'openssl' }]);
    } catch (err) {
      return `no openssl to make a certificate: ${(err as Error).message}`;
    }
    this.tmp ??= fs.mkdtempSync(path.join(os.tmpdir(), 'lwt-bench-'));
    const made = makeHubCert(this.tmp, this.host('hub').ip);
    if (typeof made === 'string') return made;
    const { cert, key } = made;
    const workers = this.o.tlsWorkers > 0 ? ['-tls-workers', String(this.o.tlsWorkers)] : [];
    const hubExtra = ['-tls', '-tls-cert', cert, '-tls-key', key, ...workers];
    // Verify the hub against the throwaway certificate when the CLI can be told about a CA;
    // otherwise skip verification (the cost is the same: the handshake happens once).
    const clientExtra = /-tls-ca\b/.test(help) ? ['-tls', '-tls-ca', cert] : ['-tls', '-tls-skip-verify'];
    this.tlsSettings = { hub: ['-tls', '-tls-cert', 'FILE', '-tls-key', 'FILE', ...workers], client: clientExtra.map((f) => (f === cert ? 'FILE' : f)), key: 'ECDSA P-256, self-signed' };
    return { hubExtra, clientExtra };
  }

  // -- idle members --------------------------------------------------------------------------------

  private async idleMembers(count: number): Promise<void> {
    say(`idle members: a hub with -t 10.0.0.1/16 and ${count} sessions from bench/idle-members`);
    const hub = this.host('hub').spawn(
      process.execPath,
      [CLI, '-m', 'server', '-l', `0.0.0.0:${TUNNEL_PORT}`, '-t', `${HUB_TUNNEL}/16`, '-max-clients', String(count + 100), '-keepalive', '10', '-timeout', '120'],
      { label: 'idle:hub', maxLines: 100_000, echo: this.o.verbose },
    );
    let tool: LabProcess | undefined;
    try {
      await hub.waitForLine(/listening on/, 15_000);
      await sleep(2000);
      const before = sampleProc(hub.pid!);
      tool = this.host('c1').spawnNode(
        IDLE_TOOL,
        ['--connect', `${this.host('hub').ip}:${TUNNEL_PORT}`, '--count', String(count), '--first', '10.0.0.2', '--prefix', '16', '--keepalive', '5', '--hold', '600'],
        { label: 'idle-members', echo: this.o.verbose },
      );
      const readyLine = await tool.waitForLine(/"event":"ready"/, 180_000);
      const ready = JSON.parse(readyLine) as { welcomed: number; rejected: number; failed: number; ms: number; example?: string };
      // Let the hub settle: keepalives flow both ways, garbage from the join burst is collected.
      await sleep(6000);
      const after = sampleProc(hub.pid!);
      const stillOpen = tool.running;
      const welcomed = ready.welcomed;
      const perMember = welcomed > 0 ? (after.rssKiB - before.rssKiB) / welcomed : Number.NaN;
      this.idle = {
        members: count,
        welcomed,
        rejected: ready.rejected,
        failed: ready.failed,
        joinMs: ready.ms,
        hubRssBeforeKiB: before.rssKiB,
        hubRssAfterKiB: after.rssKiB,
        hubPeakRssKiB: after.hwmKiB,
        perMemberKiB: perMember,
        ...(ready.example !== undefined ? { example: ready.example } : {}),
      };
      if (welcomed < count) this.results.warnings.push(`idle members: only ${welcomed} of ${count} were welcomed (${ready.example ?? ''})`);
      if (!stillOpen) this.results.warnings.push('idle members: the tool ended before the measurement');
      say(
        `  ${welcomed}/${count} welcomed in ${ready.ms} ms; hub RSS ${fmt(before.rssKiB / 1024)} → ${fmt(after.rssKiB / 1024)} MiB: ${fmt(perMember)} KiB per member`,
      );
    } catch (err) {
      this.results.warnings.push(`idle members: failed: ${(err as Error).message.split('\n')[0]}`);
      say(`  FAILED: ${(err as Error).message}`);
    } finally {
      await tool?.stop(3000);
      await hub.stop(3000);
    }
  }

  idle: IdleResult | undefined;
  tlsSettings: { hub: string[]; client: string[]; key: string } | undefined;

  // -- report --------------------------------------------------------------------------------------

  rows(): Row[] {
    const rows: Row[] = [];
    const modes: Mode[] = ['underlay', ...this.o.modes];
    for (const mode of modes) {
      const unavailable = this.results.unavailable.get(mode);
      for (const def of FIGURES) {
        if (!measures(mode, def.key, this.o.clients, this.o.rttOnly)) continue;
        const id = `${mode}.${def.key}`;
        const label = figureLabel(mode, def.key);
        if (unavailable !== undefined) {
          rows.push({ id, mode, figure: label, unit: def.unit, status: 'unavailable', median: null, values: [], underlay: null, ratio: null, note: unavailable });
          continue;
        }
        const f = this.results.figures.get(id);
        const values = f?.values ?? [];
        const m = median(values);
        const u = median(this.results.figures.get(`underlay.${def.key}`)?.values ?? []);
        const row: Row = {
          id,
          mode,
          figure: label,
          unit: def.unit,
          status: Number.isFinite(m) ? 'ok' : 'failed',
          median: finite(m),
          values: values.map(round3),
          underlay: finite(u),
          ratio: finite(m / u),
        };
        if (this.o.modes.includes('wireguard') && mode !== 'underlay' && mode !== 'wireguard') {
          const w = median(this.results.figures.get(`wireguard.${def.key}`)?.values ?? []);
          row.wireguard = finite(w);
          row.vsWireguard = finite(m / w);
        }
        if (def.throughput && f !== undefined) {
          row.retransmits = f.retransmits;
          if (mode !== 'underlay') {
            row.cpuSPerGB = { median: finite(median(f.cpuSPerGB)), values: f.cpuSPerGB.map(round3), hubMedian: finite(median(f.cpuHubSPerGB)) };
            row.tunnelDrops = f.drops;
            row.tunnelDropReasons = f.dropReasons;
            row.tunQueueDrops = f.tunQueueDrops;
          }
        }
        if (f !== undefined && !def.throughput && mode !== 'underlay' && def.key.startsWith('rtt-load')) row.tunnelDropReasons = f.dropReasons;
        if (f !== undefined && Object.keys(f.extra).length > 0) {
          row.extra = Object.fromEntries(Object.entries(f.extra).map(([k, v]) => [k, v.map(round3)]));
        }
        if (f !== undefined && f.errors.length > 0) row.note = [...new Set(f.errors)].join('; ');
        rows.push(row);
      }
      for (const p of this.results.rss.get(mode) ?? []) {
        rows.push({
          id: `${mode}.rss-${p.name}`,
          mode,
          figure: `peak RSS ${p.name === 'hub' ? 'hub' : `client ${p.name}`}`,
          unit: 'MiB',
          status: 'ok',
          median: round3(p.hwmKiB / 1024),
          values: [round3(p.hwmKiB / 1024)],
          underlay: null,
          ratio: null,
        });
      }
    }
    if (this.idle !== undefined) {
      const i = this.idle;
      rows.push({
        id: 'plain.idle-member-kib',
        mode: 'plain',
        figure: `hub memory per idle member (${i.welcomed} members)`,
        unit: 'KiB',
        status: Number.isFinite(i.perMemberKiB) ? 'ok' : 'failed',
        median: finite(round3(i.perMemberKiB)),
        values: [round3(i.perMemberKiB)],
        underlay: null,
        ratio: null,
        extra: { ...i },
      });
    }
    return rows;
  }

  document(): object {
    const pkg = JSON.parse(fs.readFileSync(PACKAGE_JSON, 'utf8')) as { version: string };
    const cpus = os.cpus();
    return {
      bench: 'lightweight-tunnel',
      version: pkg.version,
      date: this.started.toISOString(),
      finished: new Date().toISOString(),
      machine: {
        cpus: cpus.length,
        cpuModel: cpus[0]?.model ?? 'unknown',
        memoryGiB: round3(os.totalmem() / 2 ** 30),
        kernel: os.release(),
        node: process.version,
        iperf3: firstLine(spawnSync('iperf3', ['--version'], { encoding: 'utf8' }).stdout ?? '', /iperf/),
        ...(this.o.modes.includes('wireguard')
          ? { wireguardGo: firstLine(spawnSync('wireguard-go', ['--version'], { encoding: 'utf8' }).stdout ?? '', /wireguard-go/) }
          : {}),
        loadavgAtStart: this.loadStart.map(round3),
        loadavgAtEnd: os.loadavg().map(round3),
        backgroundBusyPct: this.background.map(round3),
      },
      settings: {
        durationS: this.o.duration,
        repeat: this.o.repeat,
        clients: this.o.clients,
        modes: ['underlay', ...this.o.modes],
        tunnelMtu: TUNNEL_MTU,
        cliTransportFlag: cliHasTransport(),
        idleMembers: this.o.members,
        ...(this.tlsSettings !== undefined ? { tls: this.tlsSettings } : {}),
      },
      rows: this.rows(),
      targets: targetRows(this.rows()),
      relativeTargets: relativeTargetRows(this.rows()),
      directTargets: directTargetRows(this.rows(), this.o.turns),
      idleMembers: this.idle ?? null,
      warnings: this.results.warnings,
    };
  }
}

interface IdleResult {
  members: number;
  welcomed: number;
  rejected: number;
  failed: number;
  joinMs: number;
  hubRssBeforeKiB: number;
  hubRssAfterKiB: number;
  hubPeakRssKiB: number;
  perMemberKiB: number;
  example?: string;
}

function finite(x: number): number | null {
  return Number.isFinite(x) ? round3(x) : null;
}

function round3(x: number): number {
  if (!Number.isFinite(x)) return x;
  const a = Math.abs(x);
  const d = a >= 100 ? 1 : a >= 1 ? 3 : 4;
  return Number(x.toFixed(d));
}

function firstLine(text: string, re: RegExp): string {
  return text.split('\n').find((l) => re.test(l))?.trim() ?? text.trim().split('\n')[0] ?? '';
}

/** Packets reported dropped in the CLI's summary lines ("dropped 12 packets (queue-full 12) at ..."). */
function countDrops(lines: readonly string[]): { total: number; byReason: Record<string, number> } {
  let total = 0;
  const byReason: Record<string, number> = {};
  for (const l of lines) {
    const m = /dropped \d+ packets? \(([^)]*)\)/.exec(l);
    if (m === null) continue;
    for (const part of m[1]!.split(',')) {
      const r = /^\s*(\S+) (\d+)\s*$/.exec(part);
      if (r === null) continue;
      byReason[r[1]!] = (byReason[r[1]!] ?? 0) + Number(r[2]);
      // IPv6 packets the kernel sends on a fresh interface are not data-path losses.
      if (r[1] !== 'not-ipv4') total += Number(r[2]);
    }
  }
  return { total, byReason };
}

/** Drops the tunnel processes reported since `linesBefore` (their stderr line counts then). */
function dropsSince(t: Tunnel, linesBefore: readonly number[]): { total: number; byReason: Record<string, number> } {
  const all = [t.hub, ...t.clients].map((p, i) => countDrops(p.stderr.slice(linesBefore[i] ?? 0)));
  const byReason: Record<string, number> = {};
  for (const d of all) for (const [r, n] of Object.entries(d.byReason)) byReason[r] = (byReason[r] ?? 0) + n;
  return { total: all.reduce((s, d) => s + d.total, 0), byReason };
}

function describeReasons(byReason: Record<string, number>): string {
  const parts = Object.entries(byReason).map(([r, n]) => `${r} ${n}`);
  return parts.length === 0 ? '' : ` (${parts.join(', ')})`;
}

/** A counter of the `Udp:` lines of /proc/net/snmp (0 when absent). */
function udpSnmp(snmp: string, field: string): number {
  const [names, values] = snmp.split('\n').filter((l) => l.startsWith('Udp:')).map((l) => l.trim().split(/\s+/));
  const i = names?.indexOf(field) ?? -1;
  return i < 0 ? 0 : Number(values?.[i] ?? 0) || 0;
}

function busyPct(a: { total: number; idle: number }, b: { total: number; idle: number }): number {
  const total = b.total - a.total;
  return total > 0 ? (100 * (total - (b.idle - a.idle))) / total : Number.NaN;
}

// ---------------------------------------------------------------------------------------------
// the table

function renderTable(rows: readonly Row[], o: Options): string {
  const withWg = o.modes.includes('wireguard');
  const head = ['mode', 'figure', 'median', 'unit', 'repeats', 'underlay', '× underlay', ...(withWg ? ['× wg'] : []), 'CPU s/GB', 'retr', 'drops', 'TUN drops'];
  const body = rows.map((r) => {
    if (r.status === 'unavailable') return [r.mode, r.figure, 'unavailable', ...Array.from({ length: head.length - 3 }, () => '')];
    const vsWg = withWg ? [r.vsWireguard === undefined || r.vsWireguard === null ? '' : `${fmt(r.vsWireguard)}×`] : [];
    return [
      r.mode,
      r.figure,
      r.status === 'failed' ? 'FAILED' : fmt(r.median),
      r.unit,
      r.values.map((v) => fmt(v)).join(' '),
      r.mode === 'underlay' || r.underlay === null ? '' : fmt(r.underlay),
      r.mode === 'underlay' || r.ratio === null ? '' : `${fmt(r.ratio)}×`,
      ...vsWg,
      r.cpuSPerGB ? fmt(r.cpuSPerGB.median) : '',
      r.retransmits ? String(median(r.retransmits)) : '',
      r.tunnelDrops ? String(r.tunnelDrops.reduce((s, d) => s + d, 0)) : '',
      r.tunQueueDrops ? String(r.tunQueueDrops.reduce((s, d) => s + d, 0)) : '',
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => [...b[i]!].length)));
  const numeric = new Set(head.map((_, i) => i).filter((i) => i === 2 || i >= 5));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const out = [line(head), widths.map((w) => '-'.repeat(w)).join('  ')];
  let last: Mode | undefined;
  for (let i = 0; i < body.length; i++) {
    if (last !== undefined && rows[i]!.mode !== last) out.push('');
    last = rows[i]!.mode;
    out.push(line(body[i]!));
  }
  const notes = rows.filter((r) => r.status === 'unavailable').map((r) => r.mode);
  const unavailable = [...new Set(notes)].map((m) => `${m}: unavailable: ${rows.find((r) => r.mode === m)?.note?.split('\n')[0] ?? ''}`);
  out.push(
    '',
    `medians of ${o.repeat} repeat(s), ${o.duration} s per transfer; CPU s/GB = utime+stime of hub and client processes per 10^9 bytes delivered;`,
    ...(withWg ? ['× wg = ratio to WireGuard (wireguard-go) of the same figure in this run;'] : []),
    'retr = median TCP retransmissions of the sender (the inner connection); drops = packets the tunnel processes reported dropped',
    '(not counting IPv6), all repeats; TUN drops = packets the kernel dropped at the TUN devices (reader too slow), all repeats',
    ...unavailable,
  );
  return `${out.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// main

async function main(): Promise<number> {
  const o = benchOptions('bench', parseOptions, HELP);
  if (typeof o === 'number') return o;
  const jsonToStdout = o.json === '-';
  const tableSink = jsonToStdout ? process.stderr : process.stdout;
  logSink = process.stderr;
  ensureCommands([
    { cmd: 'iperf3', pkg: 'iperf3' },
    { cmd: 'ping', pkg: 'iputils-ping' },
    { cmd: 'ss', pkg: 'iproute2' },
  ]);

  const bench = new Bench(o);
  const t0 = Date.now();
  const failure = await runBench(bench, say);
  bench.noteBackground();
  const doc = bench.document();
  tableSink.write(`\n${renderTable(bench.rows(), o)}`);
  if (bench.idle !== undefined) {
    const i = bench.idle;
    tableSink.write(
      `idle members: ${i.welcomed}/${i.members} welcomed; hub RSS ${fmt(i.hubRssBeforeKiB / 1024)} → ${fmt(i.hubRssAfterKiB / 1024)} MiB = ${fmt(i.perMemberKiB)} KiB per member\n`,
    );
  }
  tableSink.write('\ntargets (issue 4):\n');
  for (const t of targetRows(bench.rows())) {
    const state = t.met === null ? 'not measured in this run' : t.met ? 'met' : `missed by ×${fmt(t.gap!)}`;
    tableSink.write(`  ${t.target}: ${t.measured === null ? '–' : fmt(t.measured)} — ${state}\n`);
  }
  if (o.modes.some((m) => m === 'udp' || m === 'udp-tls' || m === 'wireguard')) {
    tableSink.write('\ntargets (issue 14, against baselines of this run):\n');
    for (const t of relativeTargetRows(bench.rows())) {
      const state = t.met === null ? 'not measured in this run' : `×${fmt(t.ratio)} — ${t.met ? 'met' : 'missed'}`;
      tableSink.write(`  ${t.target}: ${fmt(t.measured)} against ${fmt(t.baseline)} ${state}\n`);
    }
  }
  if (o.modes.includes('direct')) {
    tableSink.write('\ntargets (issue 12, direct paths, from figures of this run):\n');
    for (const t of directTargetRows(bench.rows(), o.turns)) {
      const state = t.failed !== undefined ? `FAILED: ${t.failed}` : t.met === null ? 'not measured in this run' : t.met ? 'met' : 'missed';
      tableSink.write(`  ${t.target}: ${fmt(t.measured)} against ${fmt(t.bound)} (${t.from}) — ${state}\n`);
    }
    const rows = bench.rows();
    const v = (id: string): number | null => rows.find((r) => r.id === id)?.median ?? null;
    const ratio = (a: number | null, b: number | null): string => (a === null || b === null ? '–' : `×${fmt(a / b)}`);
    tableSink.write(
      `  (direct against relayed (udp): client→client ${ratio(v('direct.c2c'), v('udp.c2c'))}, RTT p50 ${ratio(v('direct.rtt-c2c-p50'), v('udp.rtt-c2c-p50'))}; ` +
        `the hub's CPU during client→client ${fmt(rows.find((r) => r.id === 'direct.c2c')?.cpuSPerGB?.hubMedian)} s/GB direct, ${fmt(rows.find((r) => r.id === 'udp.c2c')?.cpuSPerGB?.hubMedian)} relayed)\n`,
    );
  }
  for (const w of bench.results.warnings) tableSink.write(`warning: ${w}\n`);
  tableSink.write(`(${Math.round((Date.now() - t0) / 1000)} s)\n`);
  writeJsonDocument(doc, o.json, say);
  return failure === undefined ? 0 : 1;
}

process.exitCode = await main();
