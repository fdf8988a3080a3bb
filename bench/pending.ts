/**
 * `node dist/bench/pending.js`: what connections that never finish joining cost a hub (issue 10).
 *
 * Builds a lab (hub, two members c1 and c2, an attacker `att`; test/helpers/lab.ts), starts the
 * real CLI hub with -status and the two members, and has c1 ping c2 through the hub (UDP echo, one
 * datagram every 100 ms: `ping` over the tunnel, without needing iputils). Then, per scenario, the
 * attacker opens --count connections that never finish joining (test/fixtures/pending-flood.ts):
 * `idle` (nothing sent), `partial` (a frame header and 10 bytes of a 1400-byte body) or
 * `tls-trickle` (a real TLS ClientHello, one byte per second, against a -tls hub), all from one
 * source address or spread over --sources extra addresses of the attacker's eth0 (inside the lab's
 * own 172.31.X.0/24). For each it reports the hub's RSS and file descriptors (/proc/PID/status,
 * /proc/PID/fd) and the members' RTT p50/p99 before the flood, during it (from its start until
 * --hold seconds after every connect finished) and after it (once the attacker closed everything),
 * with the hub's own count of pending and refused connections and the log lines it wrote meanwhile.
 * With --uncapped every scenario also runs with the caps lifted (-max-pending-per-source and
 * -max-pending 1000000): what the hub did before the caps.
 *
 *   node dist/bench/pending.js [--count 5000] [--sources 128] [--hold 3] [--flavours idle,partial,tls-trickle]
 *                              [--spread one,many] [--uncapped] [--json FILE] [--verbose]
 *
 * Traffic stays inside the lab's namespaces; nothing is configured in the root namespace. The lab
 * is removed at the end, on errors and on SIGINT/SIGTERM.
 */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { StatusSnapshot } from '../pipelines/status.js';
import type { PendingFloodReport } from '../test/fixtures/pending-flood.js';
import { Lab, type LabProcess, type PingSample } from '../test/helpers/lab.js';
import { createPki, type Pki } from '../test/helpers/pki.js';
import { ECHO_PORT } from '../test/helpers/vpn.js';
import { CLI } from './tools.js';
import { fmt, parseStatusKiB, percentile } from './stats.js';

const FLOOD = fileURLToPath(new URL('../test/fixtures/pending-flood.js', import.meta.url));
const STATUS = '127.0.0.1:9100';
const PORT = 9000;
const MEMBERS = { c1: '10.0.0.2', c2: '10.0.0.3' } as const;
const UNCAPPED = ['-max-pending-per-source', '1000000', '-max-pending', '1000000'];
const FLAVOURS = ['idle', 'partial', 'tls-trickle'] as const;
type Flavour = (typeof FLAVOURS)[number];
type Spread = 'one' | 'many';

interface Options {
  count: number;
  sources: number;
  holdS: number;
  flavours: Flavour[];
  spreads: Spread[];
  uncapped: boolean;
  json: string | undefined;
  verbose: boolean;
}

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      count: { type: 'string', default: '5000' },
      sources: { type: 'string', default: '128' },
      hold: { type: 'string', default: '3' },
      flavours: { type: 'string', default: FLAVOURS.join(',') },
      spread: { type: 'string', default: 'one,many' },
      uncapped: { type: 'boolean', default: false },
      json: { type: 'string' },
      verbose: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const int = (name: string, s: string, min: number, max: number): number => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name}: expected an integer from ${min} to ${max}, got ${s}`);
    return n;
  };
  const flavours = values.flavours.split(',') as Flavour[];
  if (!flavours.every((f) => FLAVOURS.includes(f))) throw new Error(`--flavours: expected some of ${FLAVOURS.join(',')}`);
  const spreads = values.spread.split(',') as Spread[];
  if (!spreads.every((s) => s === 'one' || s === 'many')) throw new Error('--spread: expected one, many or one,many');
  return {
    count: int('count', values.count, 1, 15_000),
    sources: int('sources', values.sources, 2, 150),
    holdS: int('hold', values.hold, 1, 60),
    flavours,
    spreads,
    uncapped: values.uncapped,
    json: values.json,
    verbose: values.verbose,
  };
}

const say = (msg: string): void => void process.stderr.write(`[pending] ${msg}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The hub process's resident memory (MiB) and open file descriptors now. */
function hubProc(pid: number): { rssMiB: number; fds: number } {
  return { rssMiB: parseStatusKiB(fs.readFileSync(`/proc/${pid}/status`, 'utf8'), 'VmRSS') / 1024, fds: fs.readdirSync(`/proc/${pid}/fd`).length };
}

/** RTT figures of the ping samples sent in [from, to) (ms since the pinger started). */
function rtt(samples: readonly PingSample[], from: number, to: number): { p50: number; p99: number; sent: number; lost: number } {
  const inWindow = samples.filter((s) => s.sentAtMs >= from && s.sentAtMs < to);
  const rtts = inWindow.flatMap((s) => (s.rttMs === undefined ? [] : [s.rttMs]));
  return { p50: percentile(rtts, 50), p99: percentile(rtts, 99), sent: inWindow.length, lost: inWindow.length - rtts.length };
}

/** One phase of a scenario: the hub's peak memory and fds over it, and the members' RTT. */
interface Phase {
  rssMiB: number;
  fds: number;
  rttP50: number;
  rttP99: number;
  pings: number;
  lost: number;
}

interface Result {
  flavour: Flavour;
  spread: Spread;
  caps: 'default' | 'lifted';
  before: Phase;
  flood: Phase;
  after: Phase;
  /** The hub's /status at the end of the hold. */
  pending: number | null;
  refused: Record<string, number>;
  /** What the attacker saw at the end of the hold. */
  attacker: PendingFloodReport | undefined;
  /** Lines the hub logged from the flood's start to the end of the hold. */
  logLines: number;
  floodMs: number;
}

class PendingBench {
  private lab: Lab | undefined;
  private pki: Pki | undefined;
  private sourceAddrs: string[] = [];
  readonly results: Result[] = [];

  constructor(private readonly o: Options) {}

  async run(): Promise<void> {
    this.lab = await Lab.create({ hosts: ['hub', 'c1', 'c2', 'att'], prefix: 'lwtp' });
    const lab = this.lab;
    this.pki = await createPki({ hubIp: lab.host('hub').ip });
    await lab.startEchoServers('c2', ECHO_PORT);
    if (this.o.spreads.includes('many')) {
      const base = lab.subnet.split('.').slice(0, 3).join('.');
      this.sourceAddrs = Array.from({ length: this.o.sources }, (_, i) => `${base}.${100 + i}`);
      say(`adding ${this.sourceAddrs.length} source addresses to att's eth0 (${this.sourceAddrs[0]} to ${this.sourceAddrs.at(-1)})`);
      for (const a of this.sourceAddrs) await lab.host('att').exec('ip', ['addr', 'add', `${a}/24`, 'dev', 'eth0'], { check: true, timeoutMs: 5000 });
    }
    for (const caps of this.o.uncapped ? (['default', 'lifted'] as const) : (['default'] as const)) {
      for (const spread of this.o.spreads) {
        for (const flavour of this.o.flavours) this.results.push(await this.scenario(flavour, spread, caps));
      }
    }
  }

  private async scenario(flavour: Flavour, spread: Spread, caps: Result['caps']): Promise<Result> {
    const lab = this.lab!;
    const pki = this.pki!;
    const tls = flavour === 'tls-trickle';
    say(`${flavour}, ${spread === 'one' ? 'one source' : `${this.sourceAddrs.length} sources`}, caps ${caps}: starting the hub and two members`);
    const echo = this.o.verbose;
    const hub = lab.host('hub').spawn(
      process.execPath,
      [CLI, '-log-format', 'text', '-m', 'server', '-l', `0.0.0.0:${PORT}`, '-t', '10.0.0.1/24', '-status', STATUS,
        ...(tls ? ['-tls', '-tls-cert', pki.hub.cert, '-tls-key', pki.hub.key] : []), ...(caps === 'lifted' ? UNCAPPED : [])],
      { label: 'hub', maxLines: 1_000_000, echo },
    );
    const procs: LabProcess[] = [hub];
    try {
      await hub.waitForLine(/listening on/, 15_000);
      for (const [h, address] of Object.entries(MEMBERS)) {
        const c = lab.host(h).spawn(process.execPath, [CLI, '-log-format', 'text', '-m', 'client', '-r', `${lab.host('hub').ip}:${PORT}`, '-t', `${address}/24`, ...(tls ? ['-tls', '-tls-ca', pki.ca.cert] : [])], { label: h, echo });
        procs.push(c);
        await c.waitForLine(/joined the virtual LAN as/, 15_000);
      }
      await lab.waitReachable('c1', MEMBERS.c2, ECHO_PORT);
      const pid = hub.pid!;
      const status = async (): Promise<StatusSnapshot> => {
        const r = await lab.host('hub').exec(process.execPath, [CLI, 'status', STATUS, '--json'], { timeoutMs: 10_000 });
        return JSON.parse(r.stdout) as StatusSnapshot;
      };
      const pingStarted = Date.now();
      const pinger = lab.startPinger('c1', MEMBERS.c2, ECHO_PORT, 100);
      const since = (): number => Date.now() - pingStarted;
      try {
        /** Samples the hub every 250 ms for `ms`: the peaks. */
        const watch = async (ms: number): Promise<{ rssMiB: number; fds: number }> => {
          const end = Date.now() + ms;
          let peak = hubProc(pid);
          while (Date.now() < end) {
            await sleep(250);
            const now = hubProc(pid);
            peak = { rssMiB: Math.max(peak.rssMiB, now.rssMiB), fds: Math.max(peak.fds, now.fds) };
          }
          return peak;
        };
        const phase = (proc: { rssMiB: number; fds: number }, from: number, to: number): Phase => {
          const r = rtt(pinger.samples(), from, to);
          return { rssMiB: proc.rssMiB, fds: proc.fds, rttP50: r.p50, rttP99: r.p99, pings: r.sent, lost: r.lost };
        };

        const b0 = since();
        const before = phase(await watch(3000), b0, since());

        const f0 = since();
        const linesBefore = hub.stdout.length + hub.stderr.length;
        const sources = spread === 'one' ? [lab.host('att').ip] : this.sourceAddrs;
        const flood = lab.host('att').spawnNode(FLOOD, ['--connect', `${lab.host('hub').ip}:${PORT}`, '--count', String(this.o.count), '--flavour', flavour, '--sources', sources.join(',')], {
          label: 'flood',
          maxLines: 100_000,
          echo,
        });
        procs.push(flood);
        const floodStarted = Date.now();
        // Every connect finished (held or failed), sampling the hub meanwhile; then the hold.
        let peak = hubProc(pid);
        let settled = false;
        void flood.waitForLine(/"event":"settled"/, 120_000).then(() => (settled = true), () => (settled = true));
        while (!settled) {
          await sleep(250);
          const now = hubProc(pid);
          peak = { rssMiB: Math.max(peak.rssMiB, now.rssMiB), fds: Math.max(peak.fds, now.fds) };
        }
        const held = await watch(this.o.holdS * 1000);
        peak = { rssMiB: Math.max(peak.rssMiB, held.rssMiB), fds: Math.max(peak.fds, held.fds) };
        const snap = await status();
        const reports = flood.stdout.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as PendingFloodReport);
        const floodPhase = phase(peak, f0, since());
        const logLines = hub.stdout.length + hub.stderr.length - linesBefore;
        const floodMs = Date.now() - floodStarted;

        await flood.stop();
        // The hub lets go of what it held (fds back to where they were), then 3 s of quiet.
        const settleEnd = Date.now() + 15_000;
        while (hubProc(pid).fds > before.fds + 4 && Date.now() < settleEnd) await sleep(250);
        const a0 = since();
        const after = phase(await watch(3000), a0, since());
        const result: Result = {
          flavour,
          spread,
          caps,
          before,
          flood: floodPhase,
          after,
          pending: snap.pendingConnections,
          refused: { ...snap.refusedConnections },
          attacker: reports.at(-1),
          logLines,
          floodMs,
        };
        say(`  ${JSON.stringify(result)}`);
        return result;
      } finally {
        await pinger.stop();
      }
    } finally {
      for (const p of procs.reverse()) await p.stop();
      // The TUN devices go with their processes; give the kernel a moment before tun0 is made again.
      await sleep(300);
    }
  }

  async dispose(): Promise<void> {
    await this.lab?.dispose();
    this.pki?.dispose();
  }

  disposeSync(): void {
    this.lab?.disposeSync();
    this.pki?.dispose();
  }
}

function table(results: readonly Result[], o: Options): string {
  const header = ['scenario', 'caps', 'pending', 'refused', 'att open', 'RSS MiB before/flood/after', 'fds before/flood/after', 'RTT p50 ms b/f/a', 'RTT p99 ms b/f/a', 'lost f', 'log lines'];
  const rows = results.map((r) => [
    `${r.flavour}, ${r.spread === 'one' ? '1 source' : `${o.sources} sources`}`,
    r.caps,
    String(r.pending ?? '–'),
    String(Object.values(r.refused).reduce((s, n) => s + n, 0)),
    String(r.attacker?.open ?? '–'),
    [r.before.rssMiB, r.flood.rssMiB, r.after.rssMiB].map((x) => fmt(x)).join(' / '),
    [r.before.fds, r.flood.fds, r.after.fds].join(' / '),
    [r.before.rttP50, r.flood.rttP50, r.after.rttP50].map((x) => fmt(x, 2)).join(' / '),
    [r.before.rttP99, r.flood.rttP99, r.after.rttP99].map((x) => fmt(x, 2)).join(' / '),
    `${r.flood.lost}/${r.flood.pings}`,
    String(r.logLines),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [
    line(header),
    ...rows.map(line),
    '',
    `${o.count} connections per scenario; "flood" = from the first connect until ${o.holdS} s after the last; RSS and fds are peaks of 250 ms samples;`,
    'RTT = UDP echo c1 → c2 through the hub every 100 ms (lost f: lost/sent during the flood); pending, refused = the hub\'s /status at the end of the hold;',
    'att open = connections the attacker still held then; log lines = lines the hub logged meanwhile.',
  ].join('\n');
}

async function main(): Promise<number> {
  let o: Options;
  try {
    o = options(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`pending: ${(err as Error).message}\n`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('pending: needs root (network namespaces, TUN devices)\n');
    return 1;
  }
  const bench = new PendingBench(o);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      say(`${sig}: removing the lab`);
      bench.disposeSync();
      process.exit(130);
    });
  }
  let failed = false;
  try {
    await bench.run();
  } catch (err) {
    failed = true;
    say(`FAILED: ${(err as Error).stack ?? String(err)}`);
  } finally {
    await bench.dispose();
  }
  process.stdout.write(`\n${table(bench.results, o)}\n`);
  if (o.json !== undefined) fs.writeFileSync(o.json, `${JSON.stringify({ options: o, results: bench.results }, null, 2)}\n`);
  return failed ? 1 : 0;
}

process.exitCode = await main();
