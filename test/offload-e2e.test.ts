// Segmentation offload end to end, in network namespaces the tests create (and delete, also on
// failure): a real offloading TUN device hands over super-packets of a local TCP transfer, and the
// real CLI carries TCP streams intact between an offloading client, a client with -offload=false
// and the hub, with super-packets on the offloading session only.
import test from 'ava';
import { fileURLToPath } from 'node:url';
import { Lab, type LabProcess } from './helpers/lab.js';
import type { StatusSnapshot } from '../pipelines/status.js';
import { HUB_TUNNEL, startClient, startHub, statusOf } from './helpers/vpn.js';
import { DEADLINE_MS, waitUntil } from './helpers/wait.js';
import type { TunTsoResult } from './fixtures/tun-tso.js';

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}.js`, import.meta.url));

test('an offloading TUN device delivers a local TCP transfer as super-packets that segment back into the exact stream', async (t) => {
  const lab = await Lab.create({ hosts: ['tso'] });
  t.teardown(() => lab.dispose());
  const p = lab.host('tso').spawnNode(fixture('tun-tso'), ['10.77.0.1/24', '10.77.0.2', '5201', String(2 * 1024 * 1024)]);
  const line = await p.waitForLine(/^\{/);
  const r = JSON.parse(line) as TunTsoResult;
  t.log(`${r.packets} packets, ${r.superPackets} super-packets, largest ${r.largest} B, gso ${r.gsoSizes.join(',')}`);
  t.true(r.offload, 'the kernel accepted IFF_VNET_HDR + TUNSETOFFLOAD');
  t.true(r.superPackets > 0, 'some reads are SuperPackets');
  t.true(r.largest > 1500, 'some packet is larger than the MTU');
  t.deepEqual(r.gsoSizes, [1460], 'segment size = the MSS the peer announced');
  t.is(r.badPlainChecksums, 0, 'plain packets arrive with complete checksums');
  t.is(r.badSegments, 0, 'segments of the super-packets have valid checksums');
  t.is(r.oversizeSegments, 0);
  t.is(r.receivedBytes, r.sentBytes);
  t.is(r.receivedSha, r.sentSha);
});

const CLIENTS = { c1: '10.0.0.2', c2: '10.0.0.3' } as const;
const MB = 4 * 1024 * 1024;

/** Starts a tcp-sha server on `host`:`port` and resolves once it listens. */
async function serve(lab: Lab, host: string, port: number): Promise<LabProcess> {
  const s = lab.host(host).spawnNode(fixture('tcp-sha'), ['serve', String(port)]);
  await s.waitForLine(/^ready/);
  return s;
}

/** Sends `bytes` random bytes from `from` to `to`:`port`; resolves with [sent sha, received sha]. */
async function transfer(lab: Lab, server: LabProcess, from: string, to: string, port: number, bytes: number): Promise<{ sent: string; received: string }> {
  const c = lab.host(from).spawnNode(fixture('tcp-sha'), ['send', to, String(port), String(bytes)]);
  const sent = await c.waitForLine(/^(sent|error)/);
  // Each server takes one transfer; it prints its line before closing its side.
  const received = await server.waitForLine(/^(received|error)/);
  return { sent, received };
}

const status = (lab: Lab, host: string): Promise<StatusSnapshot> => statusOf(lab, host, '127.0.0.1:9100');

const perPacket = (c: { packets: number; bytes: number }): number => (c.packets === 0 ? 0 : c.bytes / c.packets);

test('the CLI carries TCP streams intact between an offloading client, a client with -offload=false and the hub; only the offloading session carries super-packets', async (t) => {
  t.timeout(3 * DEADLINE_MS);
  const lab = await Lab.create({ hosts: ['hub', 'c1', 'c2'] });
  t.teardown(() => lab.dispose());
  const statusFlags = ['-status', '127.0.0.1:9100'];
  // SUPER frames are the TCP transport's: the hub keeps every member on TCP (a UDP path carries
  // segments; test/udp-e2e.test.ts).
  const hub = await startHub(lab, [...statusFlags, '-transport', 'tcp']);
  const c1 = await startClient(lab, 'c1', CLIENTS.c1, statusFlags);
  const c2 = await startClient(lab, 'c2', CLIENTS.c2, ['-offload=false', ...statusFlags]);
  t.regex(hub.output(), /segmentation offload on/);
  t.regex(c1.output(), /segmentation offload on/);
  t.notRegex(c2.output(), /segmentation offload/);

  const [s1, s2, sh, sh2] = await Promise.all([serve(lab, 'c1', 7101), serve(lab, 'c2', 7102), serve(lab, 'hub', 7103), serve(lab, 'hub', 7104)]);
  const expectIntact = (name: string, r: { sent: string; received: string }): void => {
    const sent = /^sent (\d+) ([0-9a-f]{64})$/.exec(r.sent);
    const received = /^received (\d+) ([0-9a-f]{64})$/.exec(r.received);
    t.truthy(sent, `${name}: sender said ${r.sent}`);
    t.truthy(received, `${name}: receiver said ${r.received}`);
    t.is(received?.[1], String(MB), `${name}: bytes received`);
    t.is(received?.[2], sent?.[2], `${name}: SHA-256 of what arrived`);
  };
  expectIntact('c1 → c2', await transfer(lab, s2, 'c1', CLIENTS.c2, 7102, MB));
  expectIntact('c2 → c1', await transfer(lab, s1, 'c2', CLIENTS.c1, 7101, MB));
  expectIntact('c1 → hub', await transfer(lab, sh, 'c1', HUB_TUNNEL, 7103, MB));
  // From a client without offload to the offloading hub: the hub's TUN driver coalesces the
  // segments (GRO) into super-packets whose checksums the kernel does not check, so only the
  // stream's hash can tell a wrong merge.
  expectIntact('c2 → hub (coalesced)', await transfer(lab, sh2, 'c2', HUB_TUNNEL, 7104, MB));

  // Counters reach the status servers once a second: wait until they hold the four transfers
  // (c1 sent two of them through the hub, c2 two, and c2 received one).
  let [hs, st1, st2] = await Promise.all([status(lab, 'hub'), status(lab, 'c1'), status(lab, 'c2')]);
  const member = (s: StatusSnapshot, address: string): StatusSnapshot['members'][number] | undefined => s.members.find((m) => m.address === address);
  await waitUntil(
    async () => {
      [hs, st1, st2] = await Promise.all([status(lab, 'hub'), status(lab, 'c1'), status(lab, 'c2')]);
      return (
        (member(hs, CLIENTS.c1)?.rx.bytes ?? 0) >= 2 * MB &&
        (member(hs, CLIENTS.c2)?.rx.bytes ?? 0) >= 2 * MB &&
        (st1.members[0]?.tx.bytes ?? 0) >= 2 * MB &&
        (st2.members[0]?.rx.bytes ?? 0) >= MB &&
        (st2.tun?.written.bytes ?? 0) >= MB
      );
    },
    'the transfers in the status counters',
    undefined,
    250,
  ).catch(() => undefined);
  const m1 = member(hs, CLIENTS.c1)!;
  const m2 = member(hs, CLIENTS.c2)!;
  t.log(`hub: from c1 ${perPacket(m1.rx).toFixed(0)} B/pkt, to c1 ${perPacket(m1.tx).toFixed(0)} B/pkt, from c2 ${perPacket(m2.rx).toFixed(0)} B/pkt`);
  t.log(`c2: from hub ${perPacket(st2.members[0]!.rx).toFixed(0)} B/pkt, TUN written ${perPacket(st2.tun!.written).toFixed(0)} B/pkt`);
  t.true(perPacket(m1.rx) > 3 * 1400, 'c1 sent the hub super-packets (bytes per packet well above the MTU)');
  t.true(perPacket(st1.members[0]!.tx) > 3 * 1400, 'c1 counts super-packets sent');
  t.true(perPacket(m2.rx) <= 1400, 'c2 sends packets of at most its MTU');
  // c2 takes only 0.0.1-era frames: a larger one would have ended its session (FrameError).
  t.true(perPacket(st2.members[0]!.rx) <= 1400, 'c2 got packets of at most its MTU from the hub');
  t.true(perPacket(st2.tun!.written) <= 1400, 'c2 wrote packets of at most its MTU to its TUN');
  t.true(st2.members[0]!.rx.packets >= MB / 1400, 'c2 received the stream as MTU-sized packets');
  t.notRegex(c2.output(), /disconnected|reconnecting/, 'c2 never lost its session');
  t.notRegex(c1.output(), /disconnected|reconnecting/, 'c1 never lost its session');
  t.is(st2.drops['tun-write-error'] ?? 0, 0);
  t.is(hs.drops['tun-write-error'] ?? 0, 0);
  t.is(hs.drops['malformed-super'] ?? 0, 0);
});
