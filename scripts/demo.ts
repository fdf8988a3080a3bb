/**
 * `npm run demo`: a virtual LAN anyone can run (as root) in a few seconds.
 *
 *   node dist/scripts/demo.js              build a hub and three clients in network namespaces on one
 *                                          bridge, run the real CLI in each, show members, an RTT
 *                                          matrix through the tunnel, a throughput figure and the
 *                                          hub's view of its members (its status endpoint, as
 *                                          `lightweight-tunnel status` prints it); then remove everything
 *   node dist/scripts/demo.js --keep       the same, but leave the LAN up and print how to use it
 *   node dist/scripts/demo.js --down [ID]  remove kept LAN ID (without ID: every kept or orphaned one)
 *
 * Nothing is configured in the root namespace and all traffic stays inside the namespaces made here;
 * see scripts/demo/lan.ts for the rules. Exit codes: 0 done, 1 failed (or not root), 2 bad arguments,
 * 128+N interrupted by signal N (after removing the LAN).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PROBE_SCRIPT, type ProbeResult } from '../test/helpers/lab.js';
import { BIN, TEXT_LOGS } from '../test/helpers/vpn.js';
import type { StatusSnapshot } from '../pipelines/status.js';
import { formatStatusTable } from '../src/status/command.js';
import type { BulkResult } from './demo/bulk.js';
import { formatBitrate, formatBytes, formatMs, formatSeconds, median, styleFor, table, type Style } from './demo/format.js';
import { HUB_STATUS_ADDR, hubStatusAfter } from './demo/hubview.js';
import {
  DemoLan,
  IP_BIN,
  NS_PREFIX,
  isLabId,
  listNamespaces,
  listStates,
  ownerRunning,
  readState,
  stateDirs,
  teardownState,
  WAIT_MS,
  type Daemon,
  type LanState,
  type TeardownReport,
} from './demo/lan.js';

const BULK_SCRIPT = fileURLToPath(new URL('./demo/bulk.js', import.meta.url));
const DEMO_SCRIPT = fileURLToPath(import.meta.url);

interface Member {
  readonly name: string;
  readonly role: 'hub' | 'client';
  readonly tunnel: string;
}

const MEMBERS: readonly Member[] = [
  { name: 'hub', role: 'hub', tunnel: '10.0.0.1' },
  { name: 'alice', role: 'client', tunnel: '10.0.0.2' },
  { name: 'bob', role: 'client', tunnel: '10.0.0.3' },
  { name: 'carol', role: 'client', tunnel: '10.0.0.4' },
];
const PREFIX_LEN = 24;
const HUB_PORT = 9000;
/** UDP+TCP echo servers (test/helpers/probe.ts) listen here in every namespace. */
const ECHO_PORT = 7000;
const BULK_PORT = 5201;
const BULK_SECONDS = 2;
const BULK_FROM = 'alice';
const BULK_TO = 'carol';
/** UDP round trips per pair in the matrix. */
const PROBE_COUNT = 6;
/** The hub serves /status on its namespace's loopback; the demo reads it for the hub's view. */
const HUB_STATUS_FLAGS: readonly string[] = ['-status', HUB_STATUS_ADDR];

const out = (line = ''): void => void process.stdout.write(line + '\n');

/** How to call this node in printed commands: `node` when that is the one on PATH, else its full path. */
const NODE = ((): string => {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir === '') continue;
    try {
      if (fs.realpathSync(path.join(dir, 'node')) === fs.realpathSync(process.execPath)) return 'node';
    } catch {
      // not here
    }
  }
  return process.execPath;
})();
const s: Style = styleFor(process.stdout);
const OK = s.green('✓');
const BAD = s.red('✗');

// ---------------------------------------------------------------------------
// arguments and preconditions

interface Args {
  keep: boolean;
  down: boolean;
  downId: string | undefined;
  help: boolean;
}

const USAGE = `usage: node dist/scripts/demo.js [--keep] | --down [ID] | --help   (as root)

  (no flags)   build a virtual LAN (a hub and three clients, each in its own network namespace),
               run lightweight-tunnel in each, show members, RTTs, throughput and the hub's
               status; remove it all
  --keep       leave the LAN up afterwards and print the commands to use and remove it
  --down [ID]  remove the kept demo LAN ID; without ID every kept (or orphaned) demo LAN
`;

function parseArgs(argv: readonly string[]): Args | string {
  const a: Args = { keep: false, down: false, downId: undefined, help: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--keep') a.keep = true;
    else if (arg === '--help' || arg === '-h') a.help = true;
    else if (arg === '--down') {
      a.down = true;
      const next = argv[i + 1];
      if (next !== undefined && !next.startsWith('-')) {
        if (!isLabId(next)) return `--down: ${JSON.stringify(next)} is not a demo lab id (4 characters, a-z 0-9)`;
        a.downId = next;
        i++;
      }
    } else return `unknown argument ${JSON.stringify(arg)}`;
  }
  if (a.keep && a.down) return '--keep and --down do not go together';
  return a;
}

function preconditions(): string | undefined {
  if (process.platform !== 'linux') return 'the demo needs Linux (network namespaces and TUN devices)';
  if (process.getuid?.() !== 0) {
    return 'the demo needs root: it creates network namespaces and TUN devices.\n  run it as root, e.g.  sudo npm run demo';
  }
  if (IP_BIN === undefined) return 'the demo needs iproute2 (the `ip` command): install it (apt install iproute2)';
  return undefined;
}

function runPreconditions(): string | undefined {
  if (!fs.existsSync('/dev/net/tun')) return 'cannot find /dev/net/tun: load the TUN module (modprobe tun); in a container, pass the device';
  for (const f of [BIN, PROBE_SCRIPT, BULK_SCRIPT]) {
    if (!fs.existsSync(f)) return `missing ${f}: build first (npm ci, or npm run build)`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// interruption: Ctrl-C (and SIGTERM/SIGHUP) always removes the LAN, even with --keep, unless the
// run had finished and the LAN was handed over

let lan: DemoLan | undefined;
let handedOver = false;
let finishing: Promise<never> | undefined;

function signalExitCode(sig: NodeJS.Signals): number {
  return 128 + (os.constants.signals[sig] ?? 1);
}

/** Removes the LAN (unless handed over) and exits with `code`. Runs once. */
function finish(code: number, why?: string): Promise<never> {
  finishing ??= (async () => {
    if (why !== undefined) process.stderr.write(`\n${why}\n`);
    if (lan !== undefined && !handedOver) {
      try {
        const r = await lan.teardown();
        process.stderr.write(`removed demo LAN ${lan.id}: ${describeTeardown(r)}\n`);
      } catch (err) {
        process.stderr.write(`could not remove demo LAN ${lan.id} completely: ${(err as Error).message}\n`);
        process.stderr.write(`  retry with: ${NODE} ${DEMO_SCRIPT} --down ${lan.id}\n`);
        code = code === 0 ? 1 : code;
      }
    }
    process.exit(code);
  })();
  return finishing;
}

function installSignalHandlers(): void {
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => void finish(signalExitCode(sig), `${sig}: stopping the demo and removing its LAN…`));
  }
  process.on('uncaughtException', (err) => void finish(1, `demo failed: ${err.stack ?? err.message}`));
  process.on('unhandledRejection', (err) => void finish(1, `demo failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`));
}

function describeTeardown(r: TeardownReport): string {
  const parts = [`stopped ${r.stopped + r.killed} process${r.stopped + r.killed === 1 ? '' : 'es'}${r.killed > 0 ? ` (${r.killed} needed SIGKILL)` : ''}`];
  parts.push(`deleted ${r.namespaces.length} namespace${r.namespaces.length === 1 ? '' : 's'}`);
  let text = parts.join(', ');
  for (const f of r.foreign) {
    text += `\n  note: pid ${f.pid} (${f.command}) was not started by the demo and still runs in ${f.ns}: left alone (that namespace goes away when it exits)`;
  }
  return text;
}

// ---------------------------------------------------------------------------
// the run

function heading(title: string, note?: string): void {
  out();
  out(s.bold(title) + (note !== undefined ? s.dim(`  ${note}`) : ''));
}

/** Runs one step and prints `✓ label  detail  (time)` when it is done. */
async function timed<T>(label: string, f: () => Promise<T>, detail?: (t: T) => string): Promise<T> {
  const t0 = Date.now();
  const v = await f();
  const extra = detail !== undefined ? detail(v) : '';
  out(`  ${OK} ${label.padEnd(13)} ${extra} ${s.dim(`(${formatSeconds(Date.now() - t0)})`)}`);
  return v;
}

interface Started {
  daemon: Daemon;
  /** The TUN device's name, from the CLI's first log line. */
  tun: string;
}

function startMember(l: DemoLan, m: Member): Daemon {
  const hubIp = l.host('hub').underlay;
  const args =
    m.role === 'hub'
      ? [BIN, ...TEXT_LOGS, '-m', 'server', '-l', `0.0.0.0:${HUB_PORT}`, '-t', `${m.tunnel}/${PREFIX_LEN}`, ...HUB_STATUS_FLAGS]
      : // The demo shows the hub relaying (its matrix, its throughput, its counters): members that
        // talk to each other would otherwise go direct (docs/direct.md), past the hub's counters.
        [BIN, ...TEXT_LOGS, '-m', 'client', '-r', `${hubIp}:${HUB_PORT}`, '-t', `${m.tunnel}/${PREFIX_LEN}`, '-direct=false'];
  return l.spawnNode(m.name, m.name, args);
}

async function tunInfo(d: Daemon): Promise<{ tun: string }> {
  const line = await d.waitFor(/TUN device \S+ up with/);
  return { tun: /TUN device (\S+) up with/.exec(line)?.[1] ?? '?' };
}

interface Cell {
  from: string;
  to: string;
  result: ProbeResult;
}

async function probe(l: DemoLan, from: Member, to: Member, count: number): Promise<ProbeResult> {
  const r = await l.runNode(from.name, [PROBE_SCRIPT, 'udp', to.tunnel, String(ECHO_PORT), String(count), '1000'], count * 1000 + WAIT_MS);
  const line = r.stdout
    .split('\n')
    .reverse()
    .find((x) => x.startsWith('{'));
  if (line !== undefined) return JSON.parse(line) as ProbeResult;
  return { ok: false, proto: 'udp', host: to.tunnel, port: ECHO_PORT, sent: 0, received: 0, rttMs: [], error: r.stderr.trim() || `probe exited with ${r.code}` };
}

/** UDP round trips between every ordered pair; one source at a time, its destinations in parallel. */
async function matrix(l: DemoLan): Promise<Cell[]> {
  const cells: Cell[] = [];
  for (const from of MEMBERS) {
    const row = await Promise.all(
      MEMBERS.filter((to) => to !== from).map(async (to) => {
        let result = await probe(l, from, to, PROBE_COUNT);
        // One more chance for a pair that got nothing back (a first packet racing a fresh route).
        if (result.received === 0) result = await probe(l, from, to, 3);
        return { from: from.name, to: to.name, result };
      }),
    );
    cells.push(...row);
  }
  return cells;
}

function printMatrix(cells: readonly Cell[]): boolean {
  const names = MEMBERS.map((m) => m.name);
  const rows: string[][] = [['from \\ to', ...names]];
  for (const from of names) {
    rows.push([
      from,
      ...names.map((to) => {
        if (to === from) return s.dim('·');
        const r = cells.find((c) => c.from === from && c.to === to)!.result;
        if (r.received === 0) return s.red('✗ no reply');
        // The first round trip warms up freshly started node processes; it is not the tunnel's figure.
        const rtt = formatMs(median(r.rttMs.length > 1 ? r.rttMs.slice(1) : r.rttMs));
        return r.received === r.sent ? s.green(rtt) : s.yellow(`${rtt} (${r.received}/${r.sent})`);
      }),
    ]);
  }
  for (const line of table(rows, { align: ['left', ...names.map(() => 'right' as const)], header: s.dim })) out(line);
  const reached = cells.filter((c) => c.result.received > 0).length;
  const all = reached === cells.length;
  out();
  out(
    `  ${all ? OK : BAD} ${reached}/${cells.length} pairs reachable` +
      s.dim(`  (median of ${PROBE_COUNT - 1} UDP echo round trips after one warm-up; client↔client goes through the hub)`),
  );
  for (const c of cells.filter((x) => x.result.received === 0)) out(`    ${BAD} ${c.from} → ${c.to}: ${c.result.error ?? 'no reply'}`);
  return all;
}

async function throughput(l: DemoLan): Promise<BulkResult> {
  const to = MEMBERS.find((m) => m.name === BULK_TO)!;
  const receiver = l.spawnNode(BULK_TO, 'bulk-receiver', [BULK_SCRIPT, 'receive', String(BULK_PORT)]);
  await receiver.waitFor(/^ready/);
  const r = await l.runNode(BULK_FROM, [BULK_SCRIPT, 'send', to.tunnel, String(BULK_PORT), String(BULK_SECONDS)], BULK_SECONDS * 1000 + WAIT_MS);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.code !== 0 || !line.startsWith('{')) throw new Error(`the bulk transfer ${BULK_FROM} → ${BULK_TO} failed: ${r.stderr.trim() || line || `exit ${r.code}`}`);
  return JSON.parse(line) as BulkResult;
}

/**
 * The hub's own idea of who is connected and what went through it: the table `lightweight-tunnel
 * status` prints, from the hub's status endpoint, after the bulk transfer.
 */
function printHubView(l: DemoLan, snap: StatusSnapshot, bulk: BulkResult): boolean {
  for (const line of formatStatusTable(snap)) out(line === '' ? '' : `  ${line}`);
  out();
  const byAddress = new Map(MEMBERS.map((m) => [m.tunnel, m.name]));
  const clients = MEMBERS.filter((m) => m.role === 'client');
  const allThere = clients.every((c) => snap.members.some((m) => m.address === c.tunnel)) && snap.members.length === clients.length;
  out(
    `  ${allThere ? OK : BAD} ${snap.members.length} member${snap.members.length === 1 ? '' : 's'}: ` +
      snap.members.map((m) => `${byAddress.get(m.address) ?? '?'} ${m.address}`).join(', ') +
      s.dim(`  (source: lightweight-tunnel status ${HUB_STATUS_ADDR} in ${l.host('hub').ns})`),
  );
  const from = MEMBERS.find((m) => m.name === BULK_FROM)!;
  const to = MEMBERS.find((m) => m.name === BULK_TO)!;
  const rx = snap.members.find((m) => m.address === from.tunnel)?.rx.bytes ?? 0;
  const tx = snap.members.find((m) => m.address === to.tunnel)?.tx.bytes ?? 0;
  const counted = rx >= bulk.bytes && tx >= bulk.bytes;
  out(
    `  ${counted ? OK : BAD} the transfer in the counters: ${formatBytes(rx)} in from ${BULK_FROM}, ${formatBytes(tx)} out to ${BULK_TO}` +
      s.dim(`  (${formatBytes(bulk.bytes)} of TCP data arrived; the counters also count headers and the other traffic)`),
  );
  const drops = Object.entries(snap.drops).filter(([, n]) => (n ?? 0) > 0);
  if (drops.length > 0) {
    out(
      `  ${s.dim('·')} packets not delivered: ${drops.map(([r, n]) => `${r} ${n}`).join(', ')}` +
        ((snap.drops['not-ipv4'] ?? 0) > 0 ? s.dim('  (not-ipv4: IPv6 the kernel sends on tun0 by itself; the tunnel carries IPv4)') : ''),
    );
  }
  return allThere && counted;
}

function printKeep(l: DemoLan): void {
  const ns = (name: string): string => l.host(name).ns;
  const bob = MEMBERS.find((m) => m.name === 'bob')!;
  const carol = MEMBERS.find((m) => m.name === 'carol')!;
  const hasPing = ['/usr/bin/ping', '/bin/ping', '/usr/sbin/ping', '/sbin/ping'].some((p) => fs.existsSync(p));
  const cmds: [string, string][] = [
    hasPing
      ? [`ip netns exec ${ns('alice')} ping -c 3 ${bob.tunnel}`, 'alice pings bob through the hub']
      : [`ip netns exec ${ns('alice')} ${NODE} ${PROBE_SCRIPT} udp ${bob.tunnel} ${ECHO_PORT} 3`, 'alice → bob, 3 UDP echoes (no ping here)'],
    [`ip netns exec ${ns('bob')} ${fs.existsSync('/bin/bash') ? 'bash' : 'sh'}`, `a shell on bob (tun0 = ${bob.tunnel}); exit to leave`],
    [`ip netns exec ${ns('carol')} ${NODE} ${PROBE_SCRIPT} tcp ${MEMBERS[0]!.tunnel} ${ECHO_PORT}`, 'carol → hub, one TCP echo'],
    [`ip netns exec ${ns('hub')} ip -s link show dev tun0`, "the hub's TUN device and its counters"],
    [`ip netns exec ${ns('hub')} ${NODE} ${BIN} status ${HUB_STATUS_ADDR}`, "the hub's members and their traffic (add --json for the JSON)"],
    [`tail -f ${path.join(l.state.logDir, 'hub.log')}`, "the hub's log (members joining and leaving)"],
  ];
  heading(`The LAN stays up (lab ${l.id})`, 'as root, try:');
  for (const [c, why] of cmds) {
    out(s.dim(`  # ${why}`));
    out(`  ${s.cyan(c)}`);
  }
  out();
  out(`  Every member runs a UDP+TCP echo server on port ${ECHO_PORT}; ${carol.name} is ${carol.tunnel}, logs are in ${l.state.logDir}/.`);
  heading('Remove it all with');
  out(`  ${s.cyan(`${NODE} ${DEMO_SCRIPT} --down ${l.id}`)}` + s.dim(`   # or: npm run demo -- --down ${l.id}`));
}

async function runDemo(keep: boolean): Promise<number> {
  const t0 = Date.now();
  installSignalHandlers();
  out(s.bold('lightweight-tunnel demo') + s.dim(' · a hub and three clients, each in its own network namespace, joined by a bridge'));

  heading('Setting up');
  const l = await DemoLan.allocate(MEMBERS.map((m) => m.name));
  lan = l;
  await timed('network', () => l.build(), () => `${l.state.namespaces.length} namespaces (lab ${l.id}), underlay ${l.state.subnet} on a bridge`);
  const hubMember = MEMBERS[0]!;
  const started = new Map<string, Started>();
  await timed(
    'hub',
    async () => {
      const daemon = startMember(l, hubMember);
      const info = await tunInfo(daemon);
      await daemon.waitFor(/listening on/);
      await daemon.waitFor(/status on http:\/\//);
      started.set('hub', { daemon, ...info });
    },
    () => `listening on ${l.host('hub').underlay}:${HUB_PORT}, tunnel ${hubMember.tunnel}/${PREFIX_LEN}`,
  );
  const clients = MEMBERS.filter((m) => m.role === 'client');
  await timed(
    `${clients.length} clients`,
    async () => {
      await Promise.all(
        clients.map(async (m) => {
          const daemon = startMember(l, m);
          const info = await tunInfo(daemon);
          await daemon.waitFor(/joined the virtual LAN as/);
          started.set(m.name, { daemon, ...info });
        }),
      );
      const hub = started.get('hub')!.daemon;
      await Promise.all(clients.map((m) => hub.waitFor(new RegExp(`member ${m.tunnel.replace(/\./g, '\\.')} joined`))));
    },
    () => `joined: ${clients.map((m) => m.name).join(', ')}`,
  );
  await timed(
    'echo servers',
    () =>
      Promise.all(
        MEMBERS.map(async (m) => {
          const d = l.spawnNode(m.name, `echo-${m.name}`, [PROBE_SCRIPT, 'echo-server', String(ECHO_PORT)]);
          await Promise.all([d.waitFor(/^ready udp/), d.waitFor(/^ready tcp/)]);
        }),
      ),
    () => `UDP+TCP port ${ECHO_PORT} on every member`,
  );

  heading('Members');
  const rows = [['name', 'role', 'namespace', 'underlay (eth0)', 'tunnel', 'pid']];
  for (const m of MEMBERS) {
    const st = started.get(m.name)!;
    rows.push([s.bold(m.name), m.role, l.host(m.name).ns, l.host(m.name).underlay, `${st.tun} ${m.tunnel}/${PREFIX_LEN}`, String(st.daemon.pid)]);
  }
  for (const line of table(rows, { header: s.dim })) out(line);

  heading('Reachability through the tunnel', 'UDP round-trip times between members');
  const allReachable = printMatrix(await matrix(l));

  heading('Throughput', `TCP bulk transfer, ${BULK_FROM} → ${BULK_TO} via the hub, ${BULK_SECONDS} s`);
  const bulk = await throughput(l);
  out(`  ${bulk.bytes > 0 ? OK : BAD} ${s.bold(formatBitrate(bulk.bitsPerSecond))}` + s.dim(`  (${formatBytes(bulk.bytes)} in ${formatSeconds(bulk.ms)})`));

  heading("The hub's view of its members", `its status endpoint, ${HUB_STATUS_ADDR} in the hub's namespace`);
  const from = MEMBERS.find((m) => m.name === BULK_FROM)!;
  const to = MEMBERS.find((m) => m.name === BULK_TO)!;
  const snap = await hubStatusAfter(l, 'hub', { from: from.tunnel, to: to.tunnel, bytes: bulk.bytes });
  const hubViewOk = printHubView(l, snap, bulk);

  const healthy = allReachable && bulk.bytes > 0 && hubViewOk;
  if (keep) {
    l.keep();
    handedOver = true;
    printKeep(l);
    out();
    out(s.dim(`set up and measured in ${formatSeconds(Date.now() - t0)}`));
    return healthy ? 0 : 1;
  }
  heading('Tearing down');
  await timed('cleaned up', () => l.teardown(), (x) => describeTeardown(x) + ', logs and state file');
  out();
  out(`${healthy ? OK : BAD} ${healthy ? 'demo complete' : 'demo finished with problems'}` + s.dim(` in ${formatSeconds(Date.now() - t0)}`));
  return healthy ? 0 : 1;
}

// ---------------------------------------------------------------------------
// --down

async function down(id: string | undefined): Promise<number> {
  const targets: { state: LanState; file: string | undefined }[] = [];
  const nsIds = new Set(
    (await listNamespaces()).map((ns) => new RegExp(`^${NS_PREFIX}-([a-z0-9]{4})-`).exec(ns)?.[1]).filter((x): x is string => x !== undefined),
  );
  /** A state for namespaces whose state file is gone (processes are found through the namespaces). */
  const orphan = async (oid: string): Promise<LanState> => ({
    version: 1,
    id: oid,
    createdAt: '',
    ownerPid: 0,
    kept: true,
    subnet: '',
    namespaces: (await listNamespaces()).filter((ns) => ns.startsWith(`${NS_PREFIX}-${oid}-`)),
    hosts: [],
    processes: [],
    logDir: path.join(stateDirs()[0]!, oid),
  });
  if (id !== undefined) {
    const found = readState(id);
    if (found !== undefined) targets.push(found);
    else if (nsIds.has(id)) targets.push({ state: await orphan(id), file: undefined });
    else {
      process.stderr.write(`demo: there is no demo LAN ${id} (nothing recorded, no namespace ${NS_PREFIX}-${id}-*)\n`);
      return 1;
    }
  } else {
    const states = listStates();
    let skipped = 0;
    for (const st of states) {
      if (ownerRunning(st.state)) {
        skipped++;
        out(`skipping demo LAN ${st.state.id}: the demo that built it (pid ${st.state.ownerPid}) is still running and removes it when done`);
      } else targets.push(st);
    }
    for (const oid of nsIds) if (!states.some((x) => x.state.id === oid)) targets.push({ state: await orphan(oid), file: undefined });
    if (targets.length === 0) {
      if (skipped === 0) out('no demo LAN is up');
      return 0;
    }
  }
  let code = 0;
  for (const t of targets) {
    try {
      const r = await teardownState(t.state, t.file);
      out(`${OK} removed demo LAN ${t.state.id}: ${describeTeardown(r)}`);
    } catch (err) {
      process.stderr.write(`${BAD} could not remove demo LAN ${t.state.id}: ${(err as Error).message}\n`);
      code = 1;
    }
  }
  return code;
}

// ---------------------------------------------------------------------------

async function main(argv: readonly string[]): Promise<number> {
  const args = parseArgs(argv);
  if (typeof args === 'string') {
    process.stderr.write(`demo: ${args}\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const problem = preconditions() ?? (args.down ? undefined : runPreconditions());
  if (problem !== undefined) {
    process.stderr.write(`demo: ${problem}\n`);
    return 1;
  }
  if (args.down) return down(args.downId);
  try {
    return await runDemo(args.keep);
  } catch (err) {
    if (finishing !== undefined) return finishing; // interrupted: the signal handler removes the LAN and exits
    return finish(1, `${BAD} demo failed: ${(err as Error).message}`);
  }
}

process.exitCode = await main(process.argv.slice(2));
