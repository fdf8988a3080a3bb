// End to end (issue 12): direct paths between members behind NAT routers, with the real CLI in the
// NAT lab (test/helpers/nat.ts; test/nat-lab.test.ts proves the lab on its own). Direct paths are on
// by default where UDP is in use, so no flag is passed. A member asks for an introduction when it
// sends toward another member (or the hub offers one), both sides probe the candidates (the
// hub-observed endpoint first), and every member's status lists its peers:
// `peers: [{ address, path, endpoint, rx, tx, drops }]` with `path` `direct <ip:port>`,
// `relayed (probing)`, `relayed (no direct path)` or `relayed (no direct path: symmetric NAT)`
// (diagnosed from the INTRODUCTION, shown once 3 probing rounds found no path).
//
// Scenarios: both members behind endpoint-independent NATs → direct at the peer router's address
// and the peer socket's own port, a sha256-checked transfer goes router to router and not through
// the hub; one member behind a symmetric NAT, the other behind an EIM NAT → `relayed (no direct
// path: symmetric NAT)` on both, each router dropping the other's probes, traffic still flowing via
// the hub; one member behind a symmetric NAT, the other on the public segment → direct all the
// same, at the endpoint the public side saw the probes come from (directPath answers at the
// source): that one follows from the design rather than from the list.
import test, { type ExecutionContext } from 'ava';
import { fileURLToPath } from 'node:url';

import { STATUS } from './helpers/direct.js';
import { Lab, NFT_BIN, type LabProcess, type NatKind } from './helpers/lab.js';
import { NAT_TABLE, UNSOLICITED_COUNTER } from './helpers/nat.js';
import { ECHO_PORT, startClient, startHub, statusOf } from './helpers/vpn.js';
import { DEADLINE_MS, waitUntil } from './helpers/wait.js';

const C1 = '10.0.0.2';
const C2 = '10.0.0.3';
const BULK_PORT = 7100;
const MIB = 1024 * 1024;
const TCP_SHA = fileURLToPath(new URL('./fixtures/tcp-sha.js', import.meta.url));
const SYMMETRIC_NAT = 'relayed (no direct path: symmetric NAT)';

const labTest = Lab.supported().ok ? test.serial : test.serial.skip;

/** A NAT lab of hub, c1 and c2 (and `extra` hosts) with the routers of `nat`, gone when the test ends. */
async function natLab(t: ExecutionContext, nat: Readonly<Record<string, NatKind>>, extra: readonly string[] = []): Promise<Lab> {
  const lab = await Lab.create({ hosts: ['hub', 'c1', 'c2', ...extra], nat, prefix: 'lwtd' });
  t.teardown(() => lab.dispose());
  return lab;
}

/** Hub and both members, each serving its status on STATUS in its own namespace; resolves once both joined. */
async function startMembers(lab: Lab): Promise<{ hub: LabProcess; c1: LabProcess; c2: LabProcess }> {
  const hub = await startHub(lab, ['-status', STATUS]);
  const [c1, c2] = await Promise.all([startClient(lab, 'c1', C1, ['-status', STATUS]), startClient(lab, 'c2', C2, ['-status', STATUS])]);
  return { hub, c1, c2 };
}

/** The path `host`'s status shows toward peer `peer`, or undefined. */
async function pathOf(lab: Lab, host: string, peer: string): Promise<string | undefined> {
  const s = await statusOf(lab, host, STATUS);
  return s.peers.find((p) => p.address === peer)?.path;
}

/** Waits until `host`'s path toward `peer` satisfies `ok`; resolves with it. Every path seen on the way is logged. */
async function waitPath(t: ExecutionContext, lab: Lab, host: string, peer: string, what: string, ok: (path: string) => boolean): Promise<string> {
  const seen: string[] = [];
  let last: string | undefined;
  await waitUntil(
    async () => {
      last = await pathOf(lab, host, peer);
      if (seen.at(-1) !== (last ?? '(no peer)')) seen.push(last ?? '(no peer)');
      return last !== undefined && ok(last);
    },
    () => `${host}'s path toward ${peer} to be ${what} (seen: ${seen.join(' → ')})`,
    DEADLINE_MS,
    200,
  );
  t.log(`${host} → ${peer}: ${seen.join(' → ')}`);
  return last!;
}

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The UDP ports bound in member `host`'s namespace but the echo server's: its client's socket (ss). */
async function clientUdpPorts(lab: Lab, host: string): Promise<number[]> {
  const r = await lab.host(host).exec('ss', ['-H', '-u', '-a', '-n'], { check: true });
  return r.stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => Number(l.trim().split(/\s+/)[3]!.split(':').at(-1)))
    .filter((p) => Number.isInteger(p) && p > 0 && p !== ECHO_PORT);
}

/** The unsolicited datagrams `host`'s NAT router has dropped. */
const unsolicited = async (lab: Lab, host: string): Promise<number> => (await lab.nftCounter(lab.natOf(host)!.router, `ip ${NAT_TABLE}`, UNSOLICITED_COUNTER)).packets;

/**
 * Starts counting, in `host`'s namespace, the packets at `hook` that `match` (an nft expression) in
 * table `ip NAME`; resolves with a reader of the counter. Kernel counters: no refresh to wait for.
 */
async function countPackets(lab: Lab, host: string, name: string, hook: 'input' | 'forward', match: string): Promise<() => Promise<{ packets: number; bytes: number }>> {
  if (NFT_BIN === undefined) throw new Error('nftables is not installed (.ci/run installs it)');
  const ruleset = `table ip ${name} { counter seen {}; chain count { type filter hook ${hook} priority -1; policy accept; ${match} counter name seen; }; }\n`;
  await lab.host(host).exec(NFT_BIN, ['-f', '-'], { input: ruleset, check: true });
  return () => lab.nftCounter(host, `ip ${name}`, 'seen');
}

/** Sends `bytes` random bytes from `from` to `to`:BULK_PORT through the tunnel; resolves once both ends agree (`BYTES SHA256`). */
async function transfer(t: ExecutionContext, lab: Lab, from: string, toHost: string, to: string, bytes: number): Promise<void> {
  const sink = lab.host(toHost).spawnNode(TCP_SHA, ['serve', String(BULK_PORT)], { label: `${toHost}:sink` });
  await sink.waitForLine(/^ready/);
  const source = lab.host(from).spawnNode(TCP_SHA, ['send', to, String(BULK_PORT), String(bytes)], { label: `${from}:source` });
  const sent = (await source.waitForLine(/^(sent|error)/)).replace(/^sent /, '');
  const got = (await sink.waitForLine(/^(received|error)/)).replace(/^received /, '');
  t.is(got, sent, 'every byte arrives, in order');
  t.regex(sent, new RegExp(`^${bytes} [0-9a-f]{64}$`));
  await sink.stop();
}

/** Both members reach each other through the tunnel (UDP and TCP echoes). */
async function reachEachOther(t: ExecutionContext, lab: Lab): Promise<void> {
  t.true(await lab.canReach('c1', C2, ECHO_PORT), 'c1 → c2 (UDP)');
  t.true(await lab.canReach('c2', C1, ECHO_PORT), 'c2 → c1 (UDP)');
  t.true(await lab.canReach('c1', C2, ECHO_PORT, { proto: 'tcp' }), 'c1 → c2 (TCP)');
}

// ---------------------------------------------------------------------------
// scenarios

/** c1 and c2 each behind an EIM NAT: hole punching succeeds, the path is direct at the peer router's address and the peer socket's port, and the traffic goes router to router. */
export async function bothBehindEim(t: ExecutionContext): Promise<void> {
  const lab = await natLab(t, { c1: 'eim', c2: 'eim' });
  await startMembers(lab);
  await Promise.all([lab.startEchoServers('c1', ECHO_PORT), lab.startEchoServers('c2', ECHO_PORT)]);
  // Traffic toward the peer is what makes a member ask for an introduction; it flows via the hub meanwhile.
  await reachEachOther(t, lab);
  const [pub1, pub2] = [lab.publicAddress('c1'), lab.publicAddress('c2')];
  const path1 = await waitPath(t, lab, 'c1', C2, `direct ${pub2}:…`, (p) => p.startsWith('direct '));
  const path2 = await waitPath(t, lab, 'c2', C1, `direct ${pub1}:…`, (p) => p.startsWith('direct '));
  t.regex(path1, new RegExp(`^direct ${esc(pub2)}:\\d+$`), "c1 goes direct to c2's router");
  t.regex(path2, new RegExp(`^direct ${esc(pub1)}:\\d+$`), "c2 goes direct to c1's router");
  // masquerade kept each client's port: the endpoint is the peer socket's own port.
  t.true((await clientUdpPorts(lab, 'c2')).map((p) => `direct ${pub2}:${p}`).includes(path1), "c1 uses c2's socket port at c2's router");
  t.true((await clientUdpPorts(lab, 'c1')).map((p) => `direct ${pub1}:${p}`).includes(path2), "c2 uses c1's socket port at c1's router");

  await reachEachOther(t, lab);
  // A transfer goes router to router: c1's router forwards it toward c2's, the hub gets next to none of it.
  const toPeer = await countPackets(lab, lab.natOf('c1')!.router, 'lwttopeer', 'forward', `ip daddr ${pub2} meta l4proto udp`);
  const atHub = await countPackets(lab, 'hub', 'lwtfromc1', 'input', `ip saddr ${pub1}`);
  const bytes = 4 * MIB;
  await transfer(t, lab, 'c1', 'c2', C2, bytes);
  const [forwarded, hub] = [await toPeer(), await atHub()];
  t.log(`4 MiB c1 → c2: c1's router forwarded ${forwarded.packets} datagrams (${forwarded.bytes} B) toward c2's router; the hub got ${hub.packets} packets (${hub.bytes} B) from c1's router`);
  t.true(forwarded.bytes >= bytes, "the transfer crossed c1's router toward c2's router");
  t.true(hub.bytes < bytes / 100, 'the hub got next to none of it');
  t.is(await pathOf(lab, 'c1', C2), path1, 'still direct after the transfer');
}

/** c1 behind a symmetric NAT, c2 behind an EIM NAT: hole punching fails, both show `relayed (no direct path: symmetric NAT)`, and traffic keeps flowing via the hub. */
export async function symmetricAgainstEim(t: ExecutionContext): Promise<void> {
  const lab = await natLab(t, { c1: 'symmetric', c2: 'eim' });
  await startMembers(lab);
  await Promise.all([lab.startEchoServers('c1', ECHO_PORT), lab.startEchoServers('c2', ECHO_PORT)]);
  const [drops1, drops2] = [await unsolicited(lab, 'c1'), await unsolicited(lab, 'c2')];
  await reachEachOther(t, lab);
  // 3 probing rounds of 5 s with backoff between them: well inside DEADLINE_MS.
  t.is(await waitPath(t, lab, 'c1', C2, SYMMETRIC_NAT, (p) => p === SYMMETRIC_NAT), SYMMETRIC_NAT);
  t.is(await waitPath(t, lab, 'c2', C1, SYMMETRIC_NAT, (p) => p === SYMMETRIC_NAT), SYMMETRIC_NAT);
  const [dropped1, dropped2] = [(await unsolicited(lab, 'c1')) - drops1, (await unsolicited(lab, 'c2')) - drops2];
  t.log(`c1's router dropped ${dropped1} datagrams from outside, c2's ${dropped2}`);
  t.true(dropped1 > 0, "c2's probes reached c1's router and were dropped there");
  t.true(dropped2 > 0, "c1's probes reached c2's router and were dropped there");
  // Relayed, and stated as such: the members still reach each other, through the hub.
  const atHub = await countPackets(lab, 'hub', 'lwtfromc1', 'input', `ip saddr ${lab.publicAddress('c1')}`);
  await transfer(t, lab, 'c1', 'c2', C2, MIB);
  const hub = await atHub();
  t.log(`1 MiB c1 → c2 relayed: the hub got ${hub.packets} packets (${hub.bytes} B) from c1's router`);
  t.true(hub.bytes >= MIB, 'the transfer went through the hub');
  await reachEachOther(t, lab);
  t.is(await pathOf(lab, 'c1', C2), SYMMETRIC_NAT);
}

/** c1 behind a symmetric NAT, c2 on the public segment: c2 answers c1's probes where they come from, so the pair goes direct at an endpoint no candidate listed. */
export async function symmetricAgainstPublic(t: ExecutionContext): Promise<void> {
  const lab = await natLab(t, { c1: 'symmetric' });
  await startMembers(lab);
  await Promise.all([lab.startEchoServers('c1', ECHO_PORT), lab.startEchoServers('c2', ECHO_PORT)]);
  await reachEachOther(t, lab);
  const pub1 = lab.publicAddress('c1');
  const path1 = await waitPath(t, lab, 'c1', C2, 'direct', (p) => p.startsWith('direct '));
  const path2 = await waitPath(t, lab, 'c2', C1, 'direct', (p) => p.startsWith('direct '));
  t.deepEqual(
    (await clientUdpPorts(lab, 'c2')).map((p) => `direct ${lab.address('c2')}:${p}`).filter((p) => p === path1),
    [path1],
    "c1 goes direct to c2's socket",
  );
  t.regex(path2, new RegExp(`^direct ${esc(pub1)}:\\d+$`), "c2 goes direct to c1's router, at the port c1's probes came from");
  await reachEachOther(t, lab);
}

labTest('direct paths behind NATs: c1 and c2 each behind an endpoint-independent NAT punch holes and go direct router to router', bothBehindEim);
labTest('direct paths behind NATs: c1 behind a symmetric NAT and c2 behind an EIM NAT stay relayed, stated as "no direct path: symmetric NAT", and still reach each other', symmetricAgainstEim);
labTest('direct paths behind NATs: c1 behind a symmetric NAT and c2 on the public segment go direct at the endpoint c2 saw (directPath answers at the source)', symmetricAgainstPublic);
