// The NAT lab on its own (test/helpers/nat.ts, lab.ts's `nat` option), before any VPN depends on
// it: hosts behind router namespaces that do nftables source NAT, measured with plain UDP sockets
// (test/fixtures/nat-udp.ts) run inside the namespaces, the test carrying the rendezvous's answers
// between them as a hub's control channel would. An endpoint-independent NAT keeps an inside
// socket's port toward every destination and two hosts behind such NATs punch holes to each
// other; a symmetric NAT gives each destination a new port, so a peer that aims at the endpoint a
// rendezvous saw is dropped; both routers drop what nobody inside asked for. The last test runs the
// real CLI through both kinds: members behind NATs join, move to UDP and reach each other via the hub.
import test, { type ExecutionContext } from 'ava';
import { fileURLToPath } from 'node:url';
import { Lab, type LabProcess, type NatKind } from './helpers/lab.js';
import { NAT_TABLE, UNSOLICITED_COUNTER } from './helpers/nat.js';
import { ECHO_PORT, startClient, startHub, statusOf } from './helpers/vpn.js';
import { DEADLINE_MS, waitUntil } from './helpers/wait.js';

const AGENT = fileURLToPath(new URL('./fixtures/nat-udp.js', import.meta.url));
const RENDEZVOUS_PORTS = [3478, 3479] as const;
/** Datagrams a router must have dropped before the test looks at what got through (a steady state, not a first race). */
const DROPS = 5;
const labTest = Lab.supported().ok ? test.serial : test.serial.skip;

// ---------------------------------------------------------------------------
// the lab and its UDP endpoints

/** A lab of `hosts` with the NAT routers of `nat`, disposed of when the test ends (also on failure). */
async function natLab(t: ExecutionContext, hosts: readonly string[], nat: Readonly<Record<string, NatKind>>): Promise<Lab> {
  const lab = await Lab.create({ hosts, nat, prefix: 'lwtn' });
  t.teardown(() => lab.dispose());
  return lab;
}

/** One datagram as an agent reported it. */
interface Arrival {
  readonly local: number;
  readonly from: string;
  readonly word: string;
}

/** A nat-udp agent in a lab host: its process and the ports it bound. */
interface Agent {
  readonly host: string;
  readonly proc: LabProcess;
  readonly ports: readonly number[];
}

/** Starts nat-udp in `host` on `ports` (0: any); resolves once it has bound them. */
async function agent(lab: Lab, host: string, ports: readonly number[], reflect = false): Promise<Agent> {
  const proc = lab.host(host).spawnNode(AGENT, [ports.join(','), ...(reflect ? ['reflect'] : [])], { stdin: 'pipe', label: `${host}:udp`, maxLines: 100_000 });
  const ready = await proc.waitForLine(/^READY /);
  return { host, proc, ports: ready.split(' ').slice(1).map(Number) };
}

/** Every datagram `a` has reported so far. */
const arrivals = (a: Agent): Arrival[] =>
  a.proc.stdout
    .filter((l) => l.startsWith('FROM '))
    .map((l) => {
      const [, local, from, word] = l.split(' ');
      return { local: Number(local), from: from!, word: word! };
    });

/** The sources `a` heard datagrams with `word` from. */
const sourcesOf = (a: Agent, word: string): string[] => [...new Set(arrivals(a).filter((x) => x.word === word).map((x) => x.from))];

/** Sends `word` to `to` from `a`'s first socket every `ms` until stop(a). */
const every = (a: Agent, ms: number, to: string, word: string): void => void a.proc.write(`EVERY ${ms} ${to} ${word}\n`);

/** Ends every EVERY of `a`; resolves once the agent has. */
async function stop(a: Agent): Promise<void> {
  const done = a.proc.waitForLine(/^STOPPED$/, DEADLINE_MS, { after: a.proc.mark() });
  a.proc.write('STOP\n');
  await done;
}

/**
 * Asks the rendezvous `rv` (reflecting on `rvEndpoint`) where it sees `a` come from, as a member's
 * first datagrams to a hub do; resolves with the answer, checked against what `rv` itself reported.
 */
async function observe(t: ExecutionContext, rv: Agent, a: Agent, rvEndpoint: string): Promise<string> {
  const word = `hello-${a.host}-${rvEndpoint.split(':')[1]}`;
  every(a, 100, rvEndpoint, word);
  await waitUntil(() => arrivals(a).some((x) => x.from === rvEndpoint && x.word.startsWith('SEEN:')), `${a.host} to hear from the rendezvous at ${rvEndpoint}`);
  await stop(a);
  const seen = [...new Set(arrivals(a).filter((x) => x.from === rvEndpoint && x.word.startsWith('SEEN:')).map((x) => x.word.slice('SEEN:'.length)))];
  t.deepEqual(sourcesOf(rv, word), seen, `the rendezvous reported ${a.host} where it told ${a.host} it saw it`);
  t.is(seen.length, 1, `${a.host} has one endpoint toward ${rvEndpoint}`);
  return seen[0]!;
}

/** The new datagrams `host`'s NAT router has dropped because nobody inside asked for them (its `unsolicited` counter). */
const unsolicited = async (lab: Lab, host: string): Promise<number> => (await lab.nftCounter(lab.natOf(host)!.router, `ip ${NAT_TABLE}`, UNSOLICITED_COUNTER)).packets;

/** Waits until `host`'s router has dropped `n` more unsolicited datagrams than `base`. */
async function droppedAtRouter(lab: Lab, host: string, base: number, n: number): Promise<void> {
  let last = base;
  await waitUntil(
    async () => (last = await unsolicited(lab, host)) >= base + n,
    () => `${host}'s router to drop ${n} unsolicited datagrams (dropped ${last - base})`,
    DEADLINE_MS,
    100,
  );
}

const ipOf = (endpoint: string): string => endpoint.split(':')[0]!;
const portOf = (endpoint: string): number => Number(endpoint.split(':')[1]);

// ---------------------------------------------------------------------------
// mapping

labTest('a NAT for a host the lab does not have, or a router name a host has, is refused before anything is created', async (t) => {
  await t.throwsAsync(Lab.create({ hosts: ['a'], nat: { b: 'eim' } }), { message: /"b" is not a host of the lab/ });
  await t.throwsAsync(Lab.create({ hosts: ['a', 'a-nat'], nat: { a: 'eim' } }), { message: /a-nat is taken/ });
  await t.throwsAsync(Lab.create({ hosts: ['a'], nat: { a: 'cone' as NatKind } }), { message: /bad kind "cone"/ });
});

labTest('mapping: behind the EIM router a socket keeps its port toward both rendezvous ports; behind the symmetric router it gets a new port for each', async (t) => {
  const lab = await natLab(t, ['rv', 'e', 's'], { e: 'eim', s: 'symmetric' });
  t.deepEqual(lab.hostNames, ['rv', 'e', 's', 'e-nat', 's-nat']);
  t.is(lab.natOf('rv'), undefined);
  t.like(lab.natOf('e'), { kind: 'eim', router: 'e-nat', publicIp: lab.host('e-nat').ip, privateIp: lab.host('e').ip });
  t.is(lab.publicAddress('s'), lab.host('s-nat').ip);
  t.not(lab.publicAddress('s'), lab.address('s'));

  const rvIp = lab.address('rv');
  const rv = await agent(lab, 'rv', RENDEZVOUS_PORTS, true);
  // A fixed inside port, so that what the routers do with it shows.
  const [e, s] = await Promise.all([agent(lab, 'e', [41641]), agent(lab, 's', [41641])]);
  const seen = async (a: Agent): Promise<string[]> => {
    const out: string[] = [];
    for (const port of RENDEZVOUS_PORTS) out.push(await observe(t, rv, a, `${rvIp}:${port}`));
    return out;
  };
  const eSeen = await seen(e);
  const sSeen = await seen(s);
  t.log(`inside port 41641: EIM router → ${eSeen.join(', ')}; symmetric router → ${sSeen.join(', ')}`);

  t.deepEqual(eSeen, [`${lab.publicAddress('e')}:41641`, `${lab.publicAddress('e')}:41641`], 'EIM: the inside port, toward both destinations');
  t.deepEqual(sSeen.map(ipOf), [lab.publicAddress('s'), lab.publicAddress('s')], "symmetric: the router's address");
  t.not(portOf(sSeen[0]!), portOf(sSeen[1]!), 'symmetric: a new port for the second destination');
});

// ---------------------------------------------------------------------------
// hole punching

labTest('two EIM NATs: a stranger and a lone sender are dropped at the routers; once both send to the endpoints the rendezvous saw, both hear each other from exactly those', async (t) => {
  const lab = await natLab(t, ['rv', 'x', 'c1', 'c2'], { c1: 'eim', c2: 'eim' });
  const rvEndpoint = `${lab.address('rv')}:${RENDEZVOUS_PORTS[0]}`;
  const rv = await agent(lab, 'rv', [RENDEZVOUS_PORTS[0]], true);
  const [c1, c2, x] = await Promise.all([agent(lab, 'c1', [0]), agent(lab, 'c2', [0]), agent(lab, 'x', [0])]);
  const e1 = await observe(t, rv, c1, rvEndpoint);
  const e2 = await observe(t, rv, c2, rvEndpoint);
  t.log(`c1's socket ${c1.ports[0]} seen at ${e1}; c2's socket ${c2.ports[0]} seen at ${e2}`);
  t.is(e1, `${lab.publicAddress('c1')}:${c1.ports[0]}`, 'masquerade kept the port');
  t.is(e2, `${lab.publicAddress('c2')}:${c2.ports[0]}`);

  // A stranger on the public side aims at c1's mapped port: its router drops it.
  const base1 = await unsolicited(lab, 'c1');
  every(x, 100, e1, 'stranger');
  await droppedAtRouter(lab, 'c1', base1, DROPS);
  await stop(x);

  // c1 alone sends to c2's endpoint: c2's router drops it, c2 hears nothing.
  const base2 = await unsolicited(lab, 'c2');
  every(c1, 50, e2, 'punch-c1');
  await droppedAtRouter(lab, 'c2', base2, DROPS);
  t.deepEqual(sourcesOf(c2, 'punch-c1'), [], 'nothing gets through before c2 sent toward c1');

  // c2 sends too: each side's datagrams are now answers to a flow the other opened.
  every(c2, 50, e1, 'punch-c2');
  await waitUntil(() => sourcesOf(c1, 'punch-c2').length > 0 && sourcesOf(c2, 'punch-c1').length > 0, () => `both to hear each other (c1 heard ${JSON.stringify(sourcesOf(c1, 'punch-c2'))}, c2 ${JSON.stringify(sourcesOf(c2, 'punch-c1'))})`);
  await Promise.all([stop(c1), stop(c2)]);
  const heard1 = arrivals(c1).filter((a) => a.word === 'punch-c2').length;
  const heard2 = arrivals(c2).filter((a) => a.word === 'punch-c1').length;
  t.log(`c2's router dropped ${(await unsolicited(lab, 'c2')) - base2} of c1's datagrams before c2 sent; then c1 heard ${heard1}, c2 heard ${heard2}`);
  t.deepEqual(sourcesOf(c1, 'punch-c2'), [e2], 'c1 hears c2 from the endpoint the rendezvous saw');
  t.deepEqual(sourcesOf(c2, 'punch-c1'), [e1], 'c2 hears c1 from the endpoint the rendezvous saw');
  t.deepEqual(sourcesOf(c1, 'stranger'), [], "the stranger's datagrams never reached c1");
});

labTest("a symmetric NAT: c1 meets a public peer from a new port, the peer's datagrams to the rendezvous's endpoint are dropped (those to the one it saw arrive), and hole punching with a host behind an EIM NAT fails both ways", async (t) => {
  const lab = await natLab(t, ['rv', 'p', 'c1', 'c2'], { c1: 'symmetric', c2: 'eim' });
  const rvEndpoint = `${lab.address('rv')}:${RENDEZVOUS_PORTS[0]}`;
  const rv = await agent(lab, 'rv', [RENDEZVOUS_PORTS[0]], true);
  const [c1, c2, p] = await Promise.all([agent(lab, 'c1', [0]), agent(lab, 'c2', [0]), agent(lab, 'p', [0])]);
  const e1 = await observe(t, rv, c1, rvEndpoint);
  const e2 = await observe(t, rv, c2, rvEndpoint);
  t.is(ipOf(e1), lab.publicAddress('c1'));
  t.is(e2, `${lab.publicAddress('c2')}:${c2.ports[0]}`);

  // Toward the public peer c1's socket leaves from another port than toward the rendezvous.
  const pEndpoint = `${lab.address('p')}:${p.ports[0]}`;
  every(c1, 50, pEndpoint, 'to-p');
  await waitUntil(() => sourcesOf(p, 'to-p').length > 0, 'p to hear c1');
  await stop(c1);
  const towardP = sourcesOf(p, 'to-p');
  t.log(`c1's socket ${c1.ports[0]}: seen by the rendezvous at ${e1}, by p at ${towardP.join(', ')}`);
  t.is(towardP.length, 1);
  t.is(ipOf(towardP[0]!), lab.publicAddress('c1'));
  t.not(portOf(towardP[0]!), portOf(e1), 'a new port for a new destination');

  // p aims at the endpoint the rendezvous saw: dropped at c1's router.
  const base1 = await unsolicited(lab, 'c1');
  every(p, 50, e1, 'via-rendezvous');
  await droppedAtRouter(lab, 'c1', base1, DROPS);
  await stop(p);
  // p answers where it saw c1 come from: that is c1's flow toward p, and it arrives.
  every(p, 50, towardP[0]!, 'via-seen');
  await waitUntil(() => sourcesOf(c1, 'via-seen').length > 0, 'c1 to hear p at the endpoint p saw');
  await stop(p);
  t.deepEqual(sourcesOf(c1, 'via-seen'), [pEndpoint]);
  t.deepEqual(sourcesOf(c1, 'via-rendezvous'), [], "nothing aimed at the rendezvous's endpoint reached c1");

  // c1 and c2 punch with the endpoints the rendezvous saw: each side's router drops the other's datagrams.
  const [b1, b2] = [await unsolicited(lab, 'c1'), await unsolicited(lab, 'c2')];
  every(c1, 50, e2, 'punch-c1');
  every(c2, 50, e1, 'punch-c2');
  await Promise.all([droppedAtRouter(lab, 'c1', b1, DROPS), droppedAtRouter(lab, 'c2', b2, DROPS)]);
  await Promise.all([stop(c1), stop(c2)]);
  t.log(`while both punched: c1's router dropped ${(await unsolicited(lab, 'c1')) - b1} of c2's datagrams, c2's router ${(await unsolicited(lab, 'c2')) - b2} of c1's`);
  t.deepEqual(sourcesOf(c1, 'punch-c2'), [], 'c1 heard nothing of c2');
  t.deepEqual(sourcesOf(c2, 'punch-c1'), [], 'c2 heard nothing of c1');
});

// ---------------------------------------------------------------------------
// the VPN through the lab

labTest('the CLI through the NAT lab: members behind an EIM and a symmetric router join, the hub sees the routers, both move to UDP and reach each other via the hub', async (t) => {
  const lab = await natLab(t, ['hub', 'c1', 'c2'], { c1: 'eim', c2: 'symmetric' });
  const STATUS = '127.0.0.1:9100';
  const [C1, C2] = ['10.0.0.2', '10.0.0.3'];
  await startHub(lab, ['-status', STATUS]);
  await Promise.all([startClient(lab, 'c1', C1), startClient(lab, 'c2', C2)]);
  let last = '';
  await waitUntil(
    async () => {
      const s = await statusOf(lab, 'hub', STATUS);
      last = JSON.stringify(s.members.map((m) => ({ address: m.address, remote: m.remote, transport: m.transport })));
      return [C1, C2].every((a) => s.members.find((m) => m.address === a)?.transport === 'udp');
    },
    () => `both members on UDP (last seen: ${last})`,
    DEADLINE_MS,
    200,
  );
  const s = await statusOf(lab, 'hub', STATUS);
  t.log(last);
  t.is(ipOf(s.members.find((m) => m.address === C1)!.remote), lab.publicAddress('c1'), "the hub sees c1 at its router's address");
  t.is(ipOf(s.members.find((m) => m.address === C2)!.remote), lab.publicAddress('c2'));
  await lab.startEchoServers('c2', ECHO_PORT);
  await lab.startEchoServers('c1', ECHO_PORT);
  t.true(await lab.canReach('c1', C2, ECHO_PORT), 'c1 → c2 through the tunnel');
  t.true(await lab.canReach('c2', C1, ECHO_PORT, { proto: 'tcp' }), 'c2 → c1 through the tunnel (TCP)');
});
