// End to end (issue 14): the UDP data path with the real CLI in lab namespaces. Data moves to
// sealed UDP datagrams once both sides hear each other (plain and TLS) and the TCP connection then
// carries only control; a UDP block in the middle of a transfer sends the data back over TCP within
// 2 s and the transfer completes intact; the path comes back when UDP does; a member whose underlay
// address changes keeps its session (roaming); forged, truncated, unknown and replayed datagrams
// are counted, never logged one by one, and cost the members nothing; -transport tcp and udp do
// what they say; a 0.0.1-era client still joins a hub with UDP on. Every nftables table, address
// and process lives in namespaces the test creates (and deletes, also on failure).
//
// The tests run one at a time (test.serial): the fallback figures are timings, and the hostile
// test's ping stream must not compete with another test's bulk transfer on a 2-core machine.
import test, { type ExecutionContext } from 'ava';
import { fileURLToPath } from 'node:url';
import { FORGE_SCRIPT } from './helpers/forge.js';
import { Lab, NFT_BIN, systemBinary, type LabProcess } from './helpers/lab.js';
import { NftShell } from './helpers/nft.js';
import { createPki } from './helpers/pki.js';
import { BIN, ECHO_PORT, HUB_TUNNEL, TEXT_LOGS, startClient, startHub } from './helpers/vpn.js';
import { DEADLINE_MS, SLACK_MS, stopwatch } from './helpers/wait.js';

const STATUS = '127.0.0.1:9100';
const C1 = '10.0.0.2';
const C2 = '10.0.0.3';
/** The port of tcp-sha's server inside the tunnel. */
const BULK_PORT = 7100;
const MIB = 1024 * 1024;
const TCP_SHA = fileURLToPath(new URL('./fixtures/tcp-sha.js', import.meta.url));
/** curl, when the machine has it: a status poll without starting a Node process. */
const CURL = systemBinary('curl');
/** These tests are about the hub's UDP path: members that talk to each other are kept relayed through the hub (no direct path between them, docs/direct.md; test/direct-e2e has those). */
const RELAYED: readonly string[] = ['-direct=false'];

// ---------------------------------------------------------------------------
// status

interface Traffic {
  readonly packets: number;
  readonly bytes: number;
}
interface Member {
  readonly address: string;
  readonly remote: string;
  readonly rx: Traffic;
  readonly tx: Traffic;
  readonly transport: string;
  readonly udp: { readonly rx: Traffic; readonly tx: Traffic } | null;
  readonly drops: Readonly<Record<string, number>>;
}
interface Status {
  readonly members: readonly Member[];
  readonly drops: Readonly<Record<string, number>>;
}

const FETCH = `fetch(process.argv[1]).then(async (r) => { if (!r.ok) process.exit(1); process.stdout.write(await r.text()); }).catch((e) => { console.error(String(e.cause ?? e)); process.exit(1); });`;

/** The /status document of the program with -status STATUS in `host`'s namespace. */
async function statusOf(lab: Lab, host: string): Promise<Status> {
  const url = `http://${STATUS}/status`;
  const r = CURL === undefined ? await lab.host(host).exec(process.execPath, ['-e', FETCH, url], { timeoutMs: DEADLINE_MS }) : await lab.host(host).exec(CURL, ['-sf', '--max-time', '5', url], { timeoutMs: DEADLINE_MS });
  if (r.code !== 0) throw new Error(`GET ${url} in ${host} failed (code ${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Status;
}

/** The member `address` of a status document, or undefined. */
const member = (s: Status, address: string): Member | undefined => s.members.find((m) => m.address === address);

/** Polls `check` (every 100 ms) until it returns a value; rejects after `timeoutMs` saying what did not happen and what was seen last. */
async function eventually<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>, last: () => string = () => ''): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms${last() === '' ? '' : `; last seen: ${last()}`}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Polls `host`'s /status until `ok` holds; resolves with that document. */
async function waitStatus(lab: Lab, host: string, what: string, ok: (s: Status) => boolean, timeoutMs = DEADLINE_MS): Promise<Status> {
  let seen: Status | undefined;
  return eventually(
    `${host}: ${what}`,
    timeoutMs,
    async () => {
      seen = await statusOf(lab, host);
      return ok(seen) ? seen : undefined;
    },
    () => JSON.stringify(seen?.members.map((m) => ({ address: m.address, transport: m.transport, rx: m.rx, udp: m.udp, drops: m.drops })) ?? null),
  );
}

/** Waits until every member in `addresses` travels over UDP in the hub's status. */
const allOnUdp = (lab: Lab, addresses: readonly string[]): Promise<Status> =>
  waitStatus(lab, 'hub', `${addresses.join(' and ')} on UDP`, (s) => addresses.every((a) => member(s, a)?.transport === 'udp'));

// ---------------------------------------------------------------------------
// logs

/** The time (ms) of a text log line: its first field is an ISO timestamp. */
const timeOf = (line: string): number => Date.parse(line.split(' ')[0]!);
/** Every line a process printed (both streams, as kept), in no particular order between them. */
const allLines = (p: LabProcess): string[] => [...p.stdout, ...p.stderr];
/** The log lines of `p` stamped in [from, to] (ms). */
const linesBetween = (p: LabProcess, from: number, to = Number.POSITIVE_INFINITY): string[] =>
  allLines(p).filter((l) => {
    const at = timeOf(l);
    return at >= from && at <= to;
  });
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** The hub's line saying member `address`'s data now travels over UDP (`udp`) or TCP. */
const hubTransportLine = (address: string, over: 'udp' | 'tcp'): RegExp => new RegExp(`member ${esc(address)}'s data now travels over ${over === 'udp' ? 'UDP' : 'the TCP connection'}`);

// ---------------------------------------------------------------------------
// nftables (inside the lab's namespaces only)

/** Loads `ruleset` (nft -f syntax) into `host`'s namespace in one transaction; resolves with the clock just before and just after nft ran. */
async function nft(t: ExecutionContext, lab: Lab, host: string, ruleset: string): Promise<{ readonly before: number; readonly after: number }> {
  if (NFT_BIN === undefined) throw new Error('nftables is not installed (.ci/run installs it)');
  const before = Date.now();
  const r = await lab.host(host).exec(NFT_BIN, ['-f', '-'], { input: ruleset, timeoutMs: DEADLINE_MS });
  const after = Date.now();
  if (r.code !== 0) t.fail(`nft in ${host} refused:\n${ruleset}\n${r.stderr}`);
  return { before, after };
}

/** Deletes table `table` (`FAMILY NAME`) in `host`'s namespace; resolves with the clock just before and just after. */
const dropTable = (t: ExecutionContext, lab: Lab, host: string, table: string): Promise<{ readonly before: number; readonly after: number }> => nft(t, lab, host, `delete table ${table}\n`);

/** Drops UDP to and from port 9000 (the data path) in the namespace it is loaded in: one line, one transaction (for nft -f and nft -i alike). */
const BLOCK_UDP = 'add table inet lwtblock { chain in { type filter hook input priority 0; policy accept; udp sport 9000 drop; udp dport 9000 drop; }; chain out { type filter hook output priority 0; policy accept; udp dport 9000 drop; udp sport 9000 drop; }; }';

// ---------------------------------------------------------------------------
// bulk transfers (test/fixtures/tcp-sha.ts)

/** Starts tcp-sha's server (with progress lines) on `host`:BULK_PORT; resolves once it listens. */
async function bulkSink(lab: Lab, host: string): Promise<LabProcess> {
  const p = lab.host(host).spawnNode(TCP_SHA, ['serve', String(BULK_PORT), 'progress'], { label: `${host}:sink`, maxLines: 100_000 });
  await p.waitForLine(/^ready/);
  return p;
}

/** Starts sending `bytes` random bytes from `host` to `to`:BULK_PORT, paced to `rate` bytes/s when given. */
const bulkSource = (lab: Lab, host: string, to: string, bytes: number, rate?: number): LabProcess =>
  lab.host(host).spawnNode(TCP_SHA, ['send', to, String(BULK_PORT), String(bytes), ...(rate === undefined ? [] : [String(rate)])], { label: `${host}:source` });

/** The bytes the sink has received on its open connection so far (its last progress line). */
function received(sink: LabProcess): number {
  for (let i = sink.stdout.length - 1; i >= 0; i--) {
    const m = /^progress (\d+)$/.exec(sink.stdout[i]!);
    if (m !== null) return Number(m[1]);
  }
  return 0;
}

/** Waits until the sink has received at least `bytes`. */
const receivedAtLeast = (sink: LabProcess, bytes: number, timeoutMs = DEADLINE_MS): Promise<true> =>
  eventually(`${bytes} bytes at the sink`, timeoutMs, async () => (received(sink) >= bytes ? true : undefined), () => `${received(sink)} bytes`);

/** Both ends of a finished transfer: `BYTES SHA256` as the sender and the receiver saw it. */
async function transferred(source: LabProcess, sink: LabProcess, timeoutMs = DEADLINE_MS): Promise<{ readonly sent: string; readonly received: string }> {
  const sent = await source.waitForLine(/^(sent|error)/, timeoutMs);
  const got = await sink.waitForLine(/^(received|error)/);
  return { sent: sent.replace(/^sent /, ''), received: got.replace(/^received /, '') };
}

// ---------------------------------------------------------------------------
// labs

/** A new lab of `hosts`, disposed of when the test ends (also on failure). */
async function newLab(t: ExecutionContext, hosts: readonly string[]): Promise<Lab> {
  const lab = await Lab.create({ hosts });
  t.teardown(() => lab.dispose());
  return lab;
}

/** Flags and clean-up of a throwaway PKI for a TLS hub and its clients. */
async function tlsFlags(t: ExecutionContext, lab: Lab): Promise<{ readonly hub: string[]; readonly client: string[] }> {
  const pki = await createPki({ hubIp: lab.host('hub').ip });
  t.teardown(() => pki.dispose());
  return { hub: ['-tls', '-tls-cert', pki.hub.cert, '-tls-key', pki.hub.key], client: ['-tls', '-tls-ca', pki.ca.cert] };
}

// ---------------------------------------------------------------------------
// 1. data moves to UDP

/** Hub and two clients (TLS or not): both move to UDP, c1 reaches c2, and a bulk transfer goes (nearly) all over UDP. */
async function dataMovesToUdp(t: ExecutionContext, tls: boolean): Promise<void> {
  const lab = await newLab(t, ['hub', 'c1', 'c2']);
  const flags = tls ? await tlsFlags(t, lab) : { hub: [], client: [] };
  const hub = await startHub(lab, ['-status', STATUS, ...flags.hub]);
  await hub.waitForLine(/UDP data path listening on 0\.0\.0\.0:9000/);
  const [c1] = await Promise.all([startClient(lab, 'c1', C1, [...flags.client, ...RELAYED]), startClient(lab, 'c2', C2, [...flags.client, ...RELAYED])]);
  const started = Date.now();
  await allOnUdp(lab, [C1, C2]);
  t.log(`both members on UDP ${Date.now() - started} ms after joining`);
  await hub.waitForLine(hubTransportLine(C1, 'udp'));
  await hub.waitForLine(hubTransportLine(C2, 'udp'));
  await c1.waitForLine(/data to the hub now travels over UDP/);

  await lab.startEchoServers('c2', ECHO_PORT);
  t.true(await lab.canReach('c1', C2, ECHO_PORT), 'c1 → c2 through the tunnel');

  // What the hub's underlay carries from here on, per protocol.
  await nft(t, lab, 'hub', `table inet lwtcount {
  counter tcp9000 {}
  counter udp9000 {}
  chain in { type filter hook input priority 0; policy accept; tcp dport 9000 counter name tcp9000; udp dport 9000 counter name udp9000; }
  chain out { type filter hook output priority 0; policy accept; tcp sport 9000 counter name tcp9000; udp sport 9000 counter name udp9000; }
}
`);
  // A member's UDP counters reach the status with its session's next stats tick (every second),
  // which may come after its transport changed: wait for both, or `before` has none.
  const before = await waitStatus(lab, 'hub', 'UDP counters of both members', (s) => [C1, C2].every((a) => member(s, a)?.udp != null));
  const sink = await bulkSink(lab, 'c2');
  const bytes = 8 * MIB;
  const { sent, received: got } = await transferred(bulkSource(lab, 'c1', C2, bytes), sink);
  t.is(got, sent, 'every byte arrives, in order');
  t.regex(sent, new RegExp(`^${bytes} [0-9a-f]{64}$`));

  // Counters are refreshed every second: wait until they cover the transfer.
  const after = await waitStatus(lab, 'hub', 'counters covering the transfer', (s) => member(s, C1)!.rx.bytes - member(before, C1)!.rx.bytes >= bytes && member(s, C2)!.tx.bytes - member(before, C2)!.tx.bytes >= bytes);
  const share = (d: 'rx' | 'tx', address: string): number => {
    const a = member(after, address)!;
    const b = member(before, address)!;
    return (a.udp![d].bytes - b.udp![d].bytes) / (a[d].bytes - b[d].bytes);
  };
  const tcp = await lab.nftCounter('hub', 'inet lwtcount', 'tcp9000');
  const udp = await lab.nftCounter('hub', 'inet lwtcount', 'udp9000');
  t.log(`UDP share: c1 rx ${(share('rx', C1) * 100).toFixed(2)} %, c2 tx ${(share('tx', C2) * 100).toFixed(2)} %; hub underlay port 9000: TCP ${tcp.packets} packets ${tcp.bytes} B, UDP ${udp.packets} packets ${udp.bytes} B`);
  t.true(share('rx', C1) >= 0.99, "c1's data to the hub went over UDP");
  t.true(share('tx', C2) >= 0.99, "the hub's data to c2 went over UDP");
  t.true(tcp.bytes < udp.bytes / 100, 'the TCP connections carried only control');
  for (const a of [C1, C2]) t.is(member(after, a)!.transport, 'udp');
  t.is(allLines(hub).filter((l) => /travels over the TCP connection/.test(l)).length, 0, 'nobody fell back');
}

test.serial('data moves to UDP: both members of a plain hub travel over UDP, c1 reaches c2, and 8 MiB go over UDP with control alone on TCP', (t) => dataMovesToUdp(t, false));

test.serial('data moves to UDP over TLS too (keys from the TLS exporter): both members on UDP, 8 MiB over UDP, control alone on TCP', (t) => dataMovesToUdp(t, true));

// ---------------------------------------------------------------------------
// 2. fallback to TCP and back

test.serial('UDP blocked in the middle of a 24 MiB transfer: the hub moves the member to TCP within 2 s, the transfer completes intact, and UDP comes back once unblocked', async (t) => {
  const lab = await newLab(t, ['hub', 'c1', 'c2']);
  const hub = await startHub(lab, ['-status', STATUS]);
  const [c1] = await Promise.all([startClient(lab, 'c1', C1, RELAYED), startClient(lab, 'c2', C2, RELAYED)]);
  await allOnUdp(lab, [C1, C2]);
  const shell = await NftShell.start(t, lab, 'c1');
  const sink = await bulkSink(lab, 'c2');
  const bytes = 24 * MIB;
  // Paced to 3 MiB/s: about 8 s, so the block falls well inside the transfer on any machine.
  const source = bulkSource(lab, 'c1', C2, bytes, 3 * MIB);
  await receivedAtLeast(sink, 4 * MIB);
  const tcpLine = hub.waitForLine(hubTransportLine(C1, 'tcp'), DEADLINE_MS, { after: hub.mark() });
  const clientLine = c1.waitForLine(/data to the hub now travels over the TCP connection/, DEADLINE_MS, { after: c1.mark() });
  const watch = stopwatch();
  const block = await shell.run(t, BLOCK_UDP);
  const atBlock = received(sink);
  const line = await tcpLine;
  // Time in which some task of the machine waited for a CPU, between the block and the line: what
  // a loaded machine adds to the hub's timers (0 on an idle one).
  const stalledMs = watch.elapsedMs() - watch.unloadedMs();
  const loggedAt = timeOf(line);
  // The status as polled (a poll takes a process start, so this is an upper bound).
  const blocked = await waitStatus(lab, 'hub', 'c1 off UDP', (s) => member(s, C1)?.transport !== 'udp');
  const seenAt = Date.now();
  const clientAt = timeOf(await clientLine);
  // The rule took effect in [before, after]: measured from `before`, the figure is an upper bound.
  const fallbackMs = loggedAt - block.before;
  t.log(`fallback: hub logged the move ${fallbackMs} ms after the rule went to nft (${loggedAt - block.after} ms after nft confirmed it, ${block.after - block.before} ms later; CPU contention ${stalledMs.toFixed(0)} ms); client ${clientAt - block.before} ms; status poll saw "${member(blocked, C1)!.transport}" ${seenAt - block.before} ms`);
  t.log(line);
  // The path goes down after 1.5 s of silence, noticed at the next 250 ms tick (≤ 1.75 s): within
  // the 2 s the issue asks, with 0.25 s for timers and the log line. A loaded machine's CPU
  // contention in the window is not the hub's doing and is left out.
  t.true(fallbackMs - stalledMs <= 2000, `the hub fell back to TCP ${fallbackMs} ms after the block (${stalledMs.toFixed(0)} ms of it CPU contention; at most 2 s without it)`);
  t.is(member(blocked, C1)!.transport, 'tcp (udp blocked)');
  t.is(member(blocked, C2)!.transport, 'udp', 'c2 is not affected');

  // The transfer goes on over TCP and completes intact.
  await receivedAtLeast(sink, atBlock + 4 * MIB);
  const { sent, received: got } = await transferred(source, sink);
  t.is(got, sent, 'every byte arrives, in order');
  t.regex(sent, new RegExp(`^${bytes} `));
  const during = await statusOf(lab, 'hub');
  t.is(member(during, C1)!.transport, 'tcp (udp blocked)', 'still blocked: still on TCP');
  t.notRegex(allLines(hub).join('\n'), /member 10\.0\.0\.2 .*left/, 'the session lived through it');

  // Unblocked: the path is probed again (1 s after it fell, doubling to 30 s) and comes back.
  const udpLine = hub.waitForLine(hubTransportLine(C1, 'udp'), DEADLINE_MS, { after: hub.mark() });
  const unblock = await shell.run(t, 'delete table inet lwtblock');
  const backAt = timeOf(await udpLine);
  t.log(`blocked for ${((unblock.before - block.before) / 1000).toFixed(1)} s; back on UDP ${backAt - unblock.before} ms after the unblock`);
  await allOnUdp(lab, [C1, C2]);
  t.true(hub.running && c1.running);
});

// ---------------------------------------------------------------------------
// 3. roaming

test.serial("roaming: a member's underlay address changes mid-transfer; the hub follows its datagrams to the new address and the transfer completes over UDP, intact", async (t) => {
  const lab = await newLab(t, ['hub', 'c1', 'c2']);
  const c1Host = lab.host('c1');
  const oldIp = c1Host.ip;
  // Lab hosts have .1 .. .N of the lab's own /24: .200 is free in it.
  const newIp = `${lab.subnet.split('.').slice(0, 3).join('.')}.200`;
  t.false(lab.hosts().some((h) => h.ip === newIp));
  const hub = await startHub(lab, ['-status', STATUS]);
  const [c1] = await Promise.all([startClient(lab, 'c1', C1, RELAYED), startClient(lab, 'c2', C2, RELAYED)]);
  await allOnUdp(lab, [C1, C2]);
  // The hub counts its UDP from and to the new address.
  await nft(t, lab, 'hub', `table inet lwtroam {
  counter fromNew {}
  counter toNew {}
  chain in { type filter hook input priority 0; policy accept; ip saddr ${newIp} udp dport 9000 counter name fromNew; }
  chain out { type filter hook output priority 0; policy accept; ip daddr ${newIp} udp sport 9000 counter name toNew; }
}
`);
  // Removing eth0's primary address would remove the secondary with it unless it is promoted.
  await c1Host.exec('sysctl', ['-q', '-w', 'net.ipv4.conf.eth0.promote_secondaries=1'], { check: true });

  const sink = await bulkSink(lab, 'c2');
  const bytes = 16 * MIB;
  const windowStart = Date.now();
  const source = bulkSource(lab, 'c1', C2, bytes, 2 * MIB);
  await receivedAtLeast(sink, 3 * MIB);
  await c1Host.exec('ip', ['addr', 'add', `${newIp}/24`, 'dev', 'eth0'], { check: true });
  await c1Host.exec('ip', ['addr', 'del', `${oldIp}/24`, 'dev', 'eth0'], { check: true });
  const moved = received(sink);
  const addrs = (await c1Host.exec('ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0'], { check: true })).stdout;
  t.regex(addrs, new RegExp(`inet ${esc(newIp)}/24`));
  t.notRegex(addrs, new RegExp(`inet ${esc(oldIp)}/`));

  const { sent, received: got } = await transferred(source, sink);
  const windowEnd = Date.now();
  t.is(got, sent, 'every byte arrives, in order');
  t.true(bytes - moved >= 4 * MIB, `most of the transfer came after the move (${moved} of ${bytes} bytes before it)`);
  const fromNew = await lab.nftCounter('hub', 'inet lwtroam', 'fromNew');
  const toNew = await lab.nftCounter('hub', 'inet lwtroam', 'toNew');
  t.log(`after the move the hub got ${fromNew.packets} datagrams (${fromNew.bytes} B) from ${newIp} and sent ${toNew.packets} (${toNew.bytes} B) to it`);
  t.true(fromNew.bytes >= 4 * MIB, 'the data came over UDP from the new address');
  t.true(toNew.packets > 100, "the hub followed the member's datagrams to its new address");

  // The TCP control connection was bound to the old address: it may die and the session may end
  // later by idle timeout (that is accepted). Over the transfer window, the session lived and its
  // data stayed on UDP.
  const hubWindow = linesBetween(hub, windowStart, windowEnd).join('\n');
  t.notRegex(hubWindow, /member 10\.0\.0\.2 .*left/);
  t.notRegex(hubWindow, hubTransportLine(C1, 'tcp'));
  t.notRegex(linesBetween(c1, windowStart, windowEnd).join('\n'), /disconnected from hub|travels over the TCP connection/);
  t.is(member(await statusOf(lab, 'hub'), C1)?.transport, 'udp');
});

// ---------------------------------------------------------------------------
// 4. hostile datagrams

test.serial('hostile datagrams (forged, truncated, unknown session, replayed) are counted by reason and summarized, never logged one by one; the members lose nothing and stay on UDP', async (t) => {
  const lab = await newLab(t, ['hub', 'c1', 'c2', 'mallory']);
  const hubIp = lab.host('hub').ip;
  const hub = await startHub(lab, ['-status', STATUS]);
  // One after the other: the hub numbers UDP sessions from 1, so c1's receiver id is 1 and c2's is 2
  // (the per-member bad-tag counts below check it).
  await startClient(lab, 'c1', C1, RELAYED);
  await startClient(lab, 'c2', C2, RELAYED);
  await allOnUdp(lab, [C1, C2]);
  await lab.startEchoServers('c2', ECHO_PORT);
  await lab.waitReachable('c1', C2, ECHO_PORT);
  // A reply counts as lost only after SLACK_MS: on a loaded machine an answer can be that late.
  const pinger = lab.startPinger('c1', C2, ECHO_PORT, 50, SLACK_MS);
  await eventually('10 pings answered', DEADLINE_MS, async () => (pinger.samples().filter((s) => s.rttMs !== undefined).length >= 10 ? true : undefined));
  const attackStart = Date.now();

  // Replays: c1's own datagrams to the hub, each sent a second time by its kernel.
  await nft(t, lab, 'c1', `table ip lwtdup {
  chain out { type filter hook output priority 0; policy accept; ip daddr ${hubIp} udp dport 9000 dup to ${hubIp}; }
}
`);
  const forge = async (args: readonly string[]): Promise<number> => {
    const r = await lab.host('mallory').exec(process.execPath, [FORGE_SCRIPT, 'datagrams', '--hub', `${hubIp}:9000`, ...args], { timeoutMs: DEADLINE_MS });
    if (r.code !== 0) throw new Error(`forge datagrams ${args.join(' ')} failed (code ${r.code}): ${r.stderr}`);
    return Number(/^sent (\d+)$/m.exec(r.stdout)?.[1] ?? NaN);
  };
  const sent = await Promise.all([
    forge(['--kind', 'forged', '--receiver', '1', '--count', '400']),
    forge(['--kind', 'forged', '--receiver', '2', '--count', '400']),
    forge(['--kind', 'truncated', '--receiver', '1', '--count', '310']),
    forge(['--kind', 'unknown', '--receiver', String(0x7fff0001), '--count', '400']),
  ]);
  t.deepEqual(sent, [400, 400, 310, 400], 'mallory sent every datagram');
  const reasons = ['bad-tag', 'malformed-datagram', 'unknown-session', 'replay'] as const;
  // Settled: every kind counted, and the same counts in two polls in a row (all of mallory's are in).
  let previous = '';
  const counted = await waitStatus(
    lab,
    'hub',
    'every hostile kind counted, settled',
    (s) => {
      const now = JSON.stringify(['bad-tag', 'malformed-datagram', 'unknown-session'].map((r) => s.drops[r] ?? 0));
      const settled = now === previous;
      previous = now;
      return settled && reasons.every((r) => (s.drops[r] ?? 0) > 0);
    },
  );
  const attackEnd = Date.now();
  await dropTable(t, lab, 'c1', 'ip lwtdup');
  const c1m = member(counted, C1)!;
  const c2m = member(counted, C2)!;
  t.log(`hub drops: ${JSON.stringify(counted.drops)}; c1: ${JSON.stringify(c1m.drops)}; c2: ${JSON.stringify(c2m.drops)}`);
  for (const r of reasons) t.true((counted.drops[r] ?? 0) > 0, `${r} counted`);
  // Each kind is counted once per datagram that arrived (the kernel may lose a few of a burst on a
  // loaded machine, never add one).
  const about = (n: number | undefined, sent: number): boolean => n !== undefined && n >= sent * 0.95 && n <= sent;
  t.true(about(c1m.drops['bad-tag'], 400), "the datagrams forged for c1's session are c1's bad-tag drops");
  t.true(about(c2m.drops['bad-tag'], 400), "the datagrams forged for c2's session are c2's bad-tag drops");
  t.true(about(counted.drops['malformed-datagram'], 310), 'every truncated datagram is malformed (whether it reached a session or not)');
  t.true(about(counted.drops['unknown-session'], 400));
  t.true((c1m.drops.replay ?? 0) > 0, "c1's replayed datagrams are c1's replay drops");

  // Every ping sent during the attack has had its answer or its 1 s timeout before the pinger stops.
  const lastSeq = pinger.samples().length;
  await eventually('pings past the attack', DEADLINE_MS, async () => (pinger.samples().length >= lastSeq + 30 ? true : undefined));
  await pinger.stop();
  const samples = pinger.samples();
  const lost = samples.filter((s) => s.rttMs === undefined);
  t.log(`${samples.length} pings c1 → c2, ${lost.length} lost, slowest ${Math.max(...samples.map((s) => s.rttMs ?? 0)).toFixed(1)} ms`);
  t.deepEqual(lost, [], 'the members lost nothing');

  const after = await statusOf(lab, 'hub');
  for (const a of [C1, C2]) t.is(member(after, a)?.transport, 'udp', `${a} stays on UDP`);
  const window = linesBetween(hub, attackStart, Date.now());
  const summaries = window.filter((l) => /dropped \d+ packets? \(/.test(l));
  const seconds = Math.ceil((Date.now() - attackStart) / 1000);
  t.log(`the hub logged ${window.length} lines in ${seconds} s of attack and after (${summaries.length} drop summaries) for ${1510 + (c1m.drops.replay ?? 0)} dropped datagrams`);
  t.log(summaries.slice(0, 6).join('\n'));
  // At most one summary per second for each of udp, c1 and c2, and nothing else.
  t.true(summaries.length <= 3 * (seconds + 1), `${summaries.length} summary lines in ${seconds} s`);
  t.deepEqual(window.filter((l) => !summaries.includes(l)), [], 'no other line');
  t.true(attackEnd > attackStart);
});

// ---------------------------------------------------------------------------
// 5. -transport tcp and -transport udp

test.serial('-transport tcp on a client: its session stays on TCP and it sends no UDP at all', async (t) => {
  const lab = await newLab(t, ['hub', 'c1']);
  await startHub(lab, ['-status', STATUS]);
  await nft(t, lab, 'hub', `table inet lwtcount {
  counter udp9000 {}
  chain in { type filter hook input priority 0; policy accept; udp dport 9000 counter name udp9000; }
}
`);
  const c1 = await startClient(lab, 'c1', C1, ['-transport', 'tcp']);
  await lab.startEchoServers('hub', ECHO_PORT);
  t.true(await lab.canReach('c1', HUB_TUNNEL, ECHO_PORT, { proto: 'tcp' }), 'c1 → hub through the tunnel');
  const s = await waitStatus(lab, 'hub', "c1's counters moving", (d) => (member(d, C1)?.rx.packets ?? 0) > 0);
  t.is(member(s, C1)!.transport, 'tcp');
  t.is(member(s, C1)!.udp, null);
  t.deepEqual(await lab.nftCounter('hub', 'inet lwtcount', 'udp9000'), { packets: 0, bytes: 0 }, 'no datagram reached the hub');
  // Nothing else in c1's namespace uses UDP (the probe above was TCP): the client opened no UDP socket.
  const sockets = await lab.host('c1').exec('ss', ['-H', '-u', '-a', '-n'], { check: true });
  t.is(sockets.stdout.trim(), '', `no UDP socket in c1:\n${sockets.stdout}`);
  t.notRegex(c1.output(), /UDP/);
});

test.serial('-transport udp on a client whose UDP is blocked: the session ends with udp-failed and the client tries again', async (t) => {
  const lab = await newLab(t, ['hub', 'c1']);
  const hub = await startHub(lab);
  await nft(t, lab, 'c1', `${BLOCK_UDP}\n`);
  const c1 = await startClient(lab, 'c1', C1, ['-transport', 'udp']);
  // The probing round lasts 5 s; then -transport udp ends the session.
  const ended = await c1.waitForLine(/disconnected from hub .*: udp-failed \(/);
  t.log(ended);
  t.regex(ended, /-transport udp allows no fall back/);
  await c1.waitForLine(/reconnecting in .*last: udp-failed/);
  await eventually('a second session', DEADLINE_MS, async () => (c1.stdout.concat(c1.stderr).filter((l) => /joined the virtual LAN as/.test(l)).length >= 2 ? true : undefined));
  t.true(c1.running, 'it keeps trying');
  t.true(hub.running);
});

test.serial('-transport udp on a hub whose UDP port is taken: it exits with one clear error (and under auto it warns and serves over TCP)', async (t) => {
  const lab = await newLab(t, ['hub', 'c1']);
  const squatter = lab.host('hub').spawn(process.execPath, ['-e', `require('node:dgram').createSocket('udp4').bind(9000, '0.0.0.0', () => console.log('bound'))`], { label: 'hub:squatter' });
  await squatter.waitForLine(/^bound/);
  const strict = lab.host('hub').spawn(process.execPath, [BIN, ...TEXT_LOGS, '-m', 'server', '-l', '0.0.0.0:9000', '-t', `${HUB_TUNNEL}/24`, '-transport', 'udp'], { label: 'hub(udp)' });
  const exit = await strict.exited;
  t.log(strict.output());
  t.is(exit.code, 1);
  t.regex(strict.output(), /cannot bind UDP port 9000: .*-transport udp needs it/);
  t.notRegex(strict.output(), /^\s+at /m, 'no stack trace');

  const auto = await startHub(lab);
  await auto.waitForLine(/no UDP data path: cannot bind UDP port 9000: .*; every member stays on TCP/);
  const c1 = await startClient(lab, 'c1', C1);
  await lab.startEchoServers('hub', ECHO_PORT);
  t.true(await lab.canReach('c1', HUB_TUNNEL, ECHO_PORT));
  t.true(auto.running);
  t.notRegex(c1.output(), /travels over UDP/);
});

// ---------------------------------------------------------------------------
// 6. a 0.0.1-era client

test.serial('a 0.0.1-era client (no HELLO, DATA only) joins a hub with UDP on and exchanges packets with a member that travels over UDP', async (t) => {
  const lab = await newLab(t, ['hub', 'c1', 'old']);
  const hub = await startHub(lab, ['-status', STATUS]);
  await startClient(lab, 'c1', C1);
  await allOnUdp(lab, [C1]);
  await lab.startEchoServers('c1', ECHO_PORT);
  const old = lab.host('old').spawnNode(FORGE_SCRIPT, ['session', '--hub', `${lab.host('hub').ip}:9000`, '--src', '10.0.0.66', '--dst', C1, '--dport', String(ECHO_PORT), '--count', '10', '--interval', '100', '--linger', '8000'], { label: 'old(0.0.1)' });
  await hub.waitForLine(/member 10\.0\.0\.66 joined .*0\.0\.1-era client/);
  await eventually('10 echoes back at the 0.0.1-era client', DEADLINE_MS, async () => (old.stdout.filter((l) => /^attempt 1 udp 10\.0\.0\.2:7000 forge \d+ from 10\.0\.0\.66$/.test(l)).length === 10 ? true : undefined), () => old.output(20));
  const s = await statusOf(lab, 'hub');
  t.like(member(s, '10.0.0.66'), { transport: 'tcp', udp: null });
  t.is(member(s, C1)?.transport, 'udp');
  t.true(old.running, 'still connected');
});
