// `npm run demo` end to end: the real script (node dist/scripts/demo.js), as root, in namespaces.
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { listNamespacesSync, PROBE_SCRIPT } from './helpers/lab.js';
import { BIN } from './helpers/vpn.js';
import { DEADLINE_MS, stopwatch } from './helpers/wait.js';

const DEMO = fileURLToPath(new URL('../scripts/demo.js', import.meta.url));
const MEMBERS: Record<string, string> = { hub: '10.0.0.1', alice: '10.0.0.2', bob: '10.0.0.3', carol: '10.0.0.4' };
const ESC = String.fromCharCode(27);

const canRun = process.platform === 'linux' && process.getuid?.() === 0 && fs.existsSync('/dev/net/tun');
const serial = canRun ? test.serial : test.serial.skip;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runDemo(args: readonly string[], o: { uid?: number; gid?: number; onStdout?: (all: string, kill: (s: NodeJS.Signals) => void) => void } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [DEMO, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FORCE_COLOR: '', NO_COLOR: '' },
      ...(o.uid !== undefined ? { uid: o.uid, gid: o.gid } : {}),
    });
    let stdout = '';
    let stderr = '';
    // A hang guard: the demo's own waits end at its WAIT_MS (scripts/demo/lan.ts).
    const timer = setTimeout(() => child.kill('SIGTERM'), 3 * DEADLINE_MS);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      o.onStdout?.(stdout, (sig) => child.kill(sig));
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function labId(output: string): string {
  const m = /\(lab ([a-z0-9]{4})\)/.exec(output);
  if (m === null) throw new Error(`no lab id in the output:\n${output}`);
  return m[1]!;
}

const namespacesOf = (id: string): string[] => listNamespacesSync().filter((ns) => ns.startsWith(`lwtdemo-${id}-`));

/** Live processes carrying the demo's mark for lab `id`. */
function processesOf(id: string): number[] {
  const found: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/environ`, 'latin1').split('\0').includes(`LWT_DEMO_LAB=${id}`)) found.push(Number(d));
    } catch {
      // gone, or a kernel thread
    }
  }
  return found;
}

async function assertGone(t: ExecutionContext, id: string): Promise<void> {
  t.deepEqual(namespacesOf(id), [], 'no namespace of the demo is left');
  t.deepEqual(processesOf(id), [], 'no process of the demo is left');
  t.false(fs.existsSync(`/run/lwt-demo/${id}.json`), 'no state file is left');
  t.false(fs.existsSync(`/run/lwt-demo/${id}`), 'no log directory is left');
}

/** Removes whatever a failed assertion may have left behind. */
function cleanupAfter(t: ExecutionContext, id: () => string | undefined): void {
  t.teardown(async () => {
    const i = id();
    if (i !== undefined && (namespacesOf(i).length > 0 || processesOf(i).length > 0)) await runDemo(['--down', i]);
  });
}

/** The lines of the section that starts with a line beginning with `title`, up to the next blank line. */
function section(output: string, title: string): string[] {
  const lines = output.split('\n');
  const start = lines.findIndex((l) => l.startsWith(title));
  if (start < 0) return [];
  const end = lines.findIndex((l, i) => i > start && l.trim() === '');
  return lines.slice(start + 1, end < 0 ? undefined : end);
}

function checkReport(t: ExecutionContext, out: string, id: string): void {
  t.false(out.includes(ESC), 'no colour codes when stdout is not a terminal');
  // Members: name, namespace, underlay, tunnel address.
  for (const [name, addr] of Object.entries(MEMBERS)) {
    const role = name === 'hub' ? 'hub' : 'client';
    t.regex(out, new RegExp(`^ +${name} +${role} +lwtdemo-${id}-${name} +172\\.31\\.\\d+\\.\\d+ +tun0 ${addr.replace(/\./g, '\\.')}/24 +\\d+$`, 'm'), `member ${name}`);
  }
  // The matrix: every ordered pair answered.
  const matrix = section(out, 'Reachability through the tunnel');
  t.regex(matrix[0] ?? '', /from \\ to +hub +alice +bob +carol/);
  for (const from of Object.keys(MEMBERS)) {
    const row = matrix.find((l) => l.trim().startsWith(`${from} `));
    t.truthy(row, `matrix row ${from}`);
    const cells = (row ?? '').trim().split(/ {2,}/).slice(1);
    t.is(cells.length, 4, `matrix row ${from}: ${row}`);
    t.is(cells.filter((c) => c === '·').length, 1, `one diagonal cell in row ${from}`);
    t.is(cells.filter((c) => /^\d+(\.\d+)? ms$/.test(c)).length, 3, `row ${from}: ${row}`);
  }
  t.regex(out, /✓ 12\/12 pairs reachable/);
  // Throughput.
  const tp = /✓ ([\d.]+) (k|M|G)bit\/s/.exec(out);
  t.truthy(tp, 'a throughput figure');
  t.true(Number(tp?.[1]) > 0, `throughput ${tp?.[0]}`);
  // The hub's view: the table `lightweight-tunnel status` prints, with the three clients and the transfer in their counters.
  const view = section(out, "The hub's view of its members");
  t.regex(view[0] ?? '', /^ +lightweight-tunnel \S+ server, ready, up /, view.join('\n'));
  t.regex(view[1] ?? '', /^ +tunnel 10\.0\.0\.1\/24, listening on 0\.0\.0\.0:9000, 3 members$/);
  const rows = statusRows(out);
  t.deepEqual(
    rows.map((r) => r.address),
    Object.entries(MEMBERS)
      .filter(([n]) => n !== 'hub')
      .map(([, a]) => a),
    'the three clients, in address order',
  );
  for (const r of rows) {
    t.regex(r.remote, /^172\.31\.\d+\.\d+:\d+$/, `remote of ${r.address}`);
    t.true(r.rxPackets > 0 && r.txPackets > 0, `traffic of ${r.address}: ${r.line}`);
  }
  const alice = rows.find((r) => r.address === MEMBERS.alice);
  const carol = rows.find((r) => r.address === MEMBERS.carol);
  // The bulk transfer went alice → hub → carol: MiB at least, not the few KiB of the probes.
  t.regex(alice?.rx ?? '', /^[\d.]+ (MiB|GiB)$/, `bytes from alice: ${alice?.line}`);
  t.regex(carol?.tx ?? '', /^[\d.]+ (MiB|GiB)$/, `bytes to carol: ${carol?.line}`);
  t.regex(out, /^ +✓ 3 members: alice 10\.0\.0\.2, bob 10\.0\.0\.3, carol 10\.0\.0\.4/m);
  t.regex(out, /^ +✓ the transfer in the counters: /m);
  t.regex(out, /^ +drops: /m);
}

interface StatusRow {
  line: string;
  address: string;
  remote: string;
  rxPackets: number;
  rx: string;
  txPackets: number;
  tx: string;
}

/** The member rows of the status table in the demo's output. */
function statusRows(out: string): StatusRow[] {
  const lines = out.split('\n');
  const header = lines.findIndex((l) => /^ +MEMBER +IDENTITY +REMOTE +SINCE +LAST SEEN +RX PKTS +RX +TX PKTS +TX +QUEUE +RTT +DROPS$/.test(l));
  if (header < 0) return [];
  const rows: StatusRow[] = [];
  for (const line of lines.slice(header + 1)) {
    if (line.trim() === '') break;
    // MEMBER IDENTITY REMOTE SINCE LAST-SEEN RX-PKTS RX TX-PKTS TX QUEUE RTT DROPS, two spaces or more apart.
    const c = line.trim().split(/ {2,}/);
    rows.push({ line, address: c[0] ?? '', remote: c[2] ?? '', rxPackets: Number(c[5]), rx: c[6] ?? '', txPackets: Number(c[7]), tx: c[8] ?? '' });
  }
  return rows;
}

serial('npm run demo: four members, a full matrix, a throughput figure, and nothing left afterwards', async (t) => {
  let id: string | undefined;
  cleanupAfter(t, () => id);
  const clock = stopwatch();
  const r = await runDemo([]);
  const took = clock.elapsedMs();
  const unloaded = clock.unloadedMs();
  id = labId(r.stdout);
  t.is(r.code, 0, `exit code\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`);
  checkReport(t, r.stdout, id);
  t.regex(r.stdout, /✓ demo complete/);
  // "A few seconds": on a loaded machine only the time in which no task waited for a CPU counts.
  t.true(unloaded < 30_000, `took ${took} ms, ${unloaded} ms of it without a task waiting for a CPU`);
  t.log(`demo took ${took} ms (${unloaded} ms without a task waiting for a CPU)`);
  await assertGone(t, id);
});

serial('--keep leaves a working LAN and prints the commands; --down removes it all', async (t) => {
  let id: string | undefined;
  cleanupAfter(t, () => id);
  const r = await runDemo(['--keep']);
  id = labId(r.stdout);
  t.is(r.code, 0, `exit code\n${r.stdout}\n${r.stderr}`);
  checkReport(t, r.stdout, id);

  // Still up after the demo exited: five namespaces, the four members running.
  t.is(namespacesOf(id).length, 5);
  const pids = [...r.stdout.matchAll(new RegExp(`lwtdemo-${id}-\\S+ +\\S+ +tun0 \\S+ +(\\d+)$`, 'gm'))].map((m) => Number(m[1]));
  t.is(pids.length, 4);
  const live = processesOf(id);
  for (const pid of pids) t.true(live.includes(pid), `member pid ${pid} still runs`);

  // The printed commands.
  t.regex(r.stdout, new RegExp(`^ +ip netns exec lwtdemo-${id}-alice (ping -c 3 10\\.0\\.0\\.3|\\S*node \\S+probe\\.js udp 10\\.0\\.0\\.3 7000 3)$`, 'm'));
  t.regex(r.stdout, new RegExp(`^ +ip netns exec lwtdemo-${id}-bob (bash|sh)$`, 'm'));
  const statusCmd = new RegExp(`^ +ip netns exec lwtdemo-${id}-hub \\S*node (\\S+) status 127\\.0\\.0\\.1:9100$`, 'm').exec(r.stdout);
  t.truthy(statusCmd, "the hub's status command");
  t.is(statusCmd?.[1], BIN);
  const downCmd = new RegExp(`^ +\\S*node (\\S+) --down ${id}\\b`, 'm').exec(r.stdout);
  t.truthy(downCmd, 'the command that removes it all');
  t.is(downCmd?.[1], DEMO);

  // The LAN really works: alice reaches bob through the tunnel.
  const probe = await new Promise<string>((resolve) => {
    const p = spawn('ip', ['netns', 'exec', `lwtdemo-${id}-alice`, process.execPath, PROBE_SCRIPT, 'udp', '10.0.0.3', '7000', '3', '1000'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let o = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (o += d));
    p.on('close', () => resolve(o));
  });
  t.true((JSON.parse(probe.trim()) as { ok: boolean }).ok, probe);
  // The printed status command answers with the three members.
  const status = await new Promise<string>((resolve) => {
    const p = spawn('ip', ['netns', 'exec', `lwtdemo-${id}-hub`, process.execPath, BIN, 'status', '127.0.0.1:9100'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let o = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (o += d));
    p.on('close', () => resolve(o));
  });
  t.regex(status, /^tunnel 10\.0\.0\.1\/24, listening on 0\.0\.0\.0:9000, 3 members$/m, status);
  for (const addr of [MEMBERS.alice, MEMBERS.bob, MEMBERS.carol]) t.regex(status, new RegExp(`^${addr!.replace(/\./g, '\\.')} `, 'm'), status);

  const d = await runDemo(['--down', id]);
  t.is(d.code, 0, d.stdout + d.stderr);
  t.regex(d.stdout, new RegExp(`removed demo LAN ${id}: stopped \\d+ processes, deleted 5 namespaces`));
  await assertGone(t, id);
  // Nothing to remove twice.
  t.is((await runDemo(['--down', id])).code, 1);
});

serial('Ctrl-C while the demo runs removes the LAN and exits 130', async (t) => {
  let id: string | undefined;
  cleanupAfter(t, () => id);
  let sent = false;
  const r = await runDemo([], {
    onStdout(all, kill) {
      if (!sent && all.includes('\nMembers')) {
        sent = true;
        id = labId(all);
        kill('SIGINT');
      }
    },
  });
  t.true(sent, r.stdout);
  t.is(r.code, 130, r.stdout + r.stderr);
  t.regex(r.stderr, /SIGINT: stopping the demo/);
  t.regex(r.stderr, /removed demo LAN [a-z0-9]{4}: stopped \d+ processes, deleted 5 namespaces/);
  await assertGone(t, id!);
});

test('without root it says so and exits 1', async (t) => {
  const asRoot = process.getuid?.() === 0;
  const r = await runDemo([], asRoot ? { uid: 65534, gid: 65534 } : {});
  if (asRoot && /EACCES|ERR_MODULE_NOT_FOUND|Cannot find module/.test(r.stderr)) {
    t.log(`user nobody cannot read the checkout, so this cannot be shown here: ${r.stderr.split('\n')[0]}`);
    t.pass();
    return;
  }
  t.is(r.code, 1, r.stdout + r.stderr);
  t.regex(r.stderr, /the demo needs root/);
  t.is(r.stdout, '');
});

test('bad arguments exit 2 with the usage', async (t) => {
  const r = await runDemo(['--frobnicate']);
  t.is(r.code, 2);
  t.regex(r.stderr, /unknown argument "--frobnicate"/);
  t.regex(r.stderr, /usage: /);
});
