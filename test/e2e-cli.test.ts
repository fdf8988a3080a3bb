// End to end: the real CLI as hub and clients, each in its own network namespace on one bridge.
import test from 'ava';
import { Lab } from './helpers/lab.js';
import { ECHO_PORT, HUB_TUNNEL, interrupt, logTime, nextAttemptAt, startClient, startHub } from './helpers/vpn.js';
import { SLACK_MS } from './helpers/wait.js';

const CLIENTS: Record<string, string> = { c1: '10.0.0.2', c2: '10.0.0.3', c3: '10.0.0.4' };

test('every member reaches every other member, a SIGKILLed client leaves within timeout, a restarted hub gets everyone back at their next attempt, Ctrl-C removes the TUN devices', async (t) => {
  const lab = await Lab.create({ hosts: ['hub', 'c1', 'c2', 'c3'] });
  t.teardown(() => lab.dispose());
  const timing = ['-keepalive', '1', '-timeout', '3'];
  let hub = await startHub(lab, timing);
  const clients = Object.fromEntries(
    await Promise.all(Object.entries(CLIENTS).map(async ([h, a]) => [h, await startClient(lab, h, a, timing)] as const)),
  );
  await Promise.all(['hub', ...Object.keys(CLIENTS)].map((h) => lab.startEchoServers(h, ECHO_PORT)));

  const members: Record<string, string> = { hub: HUB_TUNNEL, ...CLIENTS };
  const pairs = Object.keys(members).flatMap((from) => Object.keys(members).filter((to) => to !== from).map((to) => [from, to] as const));
  const results = await Promise.all(pairs.map(async ([from, to]) => [`${from}→${to}`, await lab.canReach(from, members[to]!, ECHO_PORT)] as const));
  t.deepEqual(
    results.filter(([, ok]) => !ok).map(([p]) => p),
    [],
    'pairs that could not reach each other',
  );
  // TCP through the tunnel as well (what ssh and curl use).
  t.true(await lab.canReach('c1', CLIENTS.c3!, ECHO_PORT, { proto: 'tcp' }));

  // SIGKILL: no FIN is sent if we cut the link first, so only idle detection can notice.
  await lab.blackhole('c3');
  clients.c3!.kill('SIGKILL');
  const killedAt = Date.now();
  const left = await hub.waitForLine(/member 10\.0\.0\.4 .* left: (idle|reset|closed)/);
  const noticedMs = logTime(left) - killedAt;
  t.true(noticedMs <= 3000 + SLACK_MS, `the hub noticed within the 3 s timeout (plus scheduling slack): ${noticedMs} ms`);
  await lab.restore('c3');
  t.false(await lab.canReach('c1', CLIENTS.c3!, ECHO_PORT, { timeoutMs: 800 }));

  // Restart the hub: both remaining clients are back once the new hub listens, at their next
  // reconnect attempt (1 s doubling: how long the hub took to start decides how long they wait).
  const marks = { c1: clients.c1!.mark(), c2: clients.c2!.mark() };
  t.is((await interrupt(hub)).code, 0);
  hub = await startHub(lab, timing);
  const listening = logTime(await hub.waitForLine(/listening on/));
  for (const h of ['c1', 'c2'] as const) {
    const joined = logTime(await clients[h]!.waitForLine(/joined the virtual LAN as/, undefined, { after: marks[h] }));
    const due = Math.max(listening, nextAttemptAt(clients[h]!) ?? listening);
    t.true(joined - due <= SLACK_MS, `${h} joined ${joined - due} ms after the hub listened and its next attempt was due:\n${clients[h]!.output()}`);
  }
  t.true(await lab.canReach('c1', CLIENTS.c2!, ECHO_PORT));

  // Ctrl-C on each process: exit 0 and the TUN device is gone.
  for (const h of ['c1', 'c2']) {
    t.deepEqual(await lab.tunDevices(h), ['tun0']);
    const exit = await interrupt(clients[h]!);
    t.is(exit.code, 0, `${h} exit code`);
    t.deepEqual(await lab.tunDevices(h), [], `${h} TUN device removed`);
  }
  t.is((await interrupt(hub)).code, 0);
  t.deepEqual(await lab.tunDevices('hub'), []);
});

test('with -client-isolation clients reach the hub but not each other', async (t) => {
  const lab = await Lab.create({ hosts: ['hub', 'c1', 'c2'] });
  t.teardown(() => lab.dispose());
  await startHub(lab, ['-client-isolation']);
  await startClient(lab, 'c1', CLIENTS.c1!);
  await startClient(lab, 'c2', CLIENTS.c2!);
  await Promise.all(['hub', 'c1', 'c2'].map((h) => lab.startEchoServers(h, ECHO_PORT)));
  t.true(await lab.canReach('c1', HUB_TUNNEL, ECHO_PORT));
  t.true(await lab.canReach('c2', HUB_TUNNEL, ECHO_PORT));
  t.true(await lab.canReach('hub', CLIENTS.c2!, ECHO_PORT));
  t.false(await lab.canReach('c1', CLIENTS.c2!, ECHO_PORT, { timeoutMs: 1000 }));
  t.false(await lab.canReach('c2', CLIENTS.c1!, ECHO_PORT, { timeoutMs: 1000 }));
});

test('-max-clients 2 refuses the third client with a clear reason while the first two keep working', async (t) => {
  const lab = await Lab.create({ hosts: ['hub', 'c1', 'c2', 'c3'] });
  t.teardown(() => lab.dispose());
  const hub = await startHub(lab, ['-max-clients', '2']);
  await startClient(lab, 'c1', CLIENTS.c1!);
  await startClient(lab, 'c2', CLIENTS.c2!);
  const third = await startClient(lab, 'c3', CLIENTS.c3!, [], /refused this client: max-clients/);
  await hub.waitForLine(/refused 10\.0\.0\.4 from .*: max-clients: the hub already has 2 members \(max_clients 2\)/);
  t.true(third.running, 'a refused client keeps retrying (the limit may change or a member leave)');
  await Promise.all(['c1', 'c2'].map((h) => lab.startEchoServers(h, ECHO_PORT)));
  t.true(await lab.canReach('c1', CLIENTS.c2!, ECHO_PORT));
  t.true(await lab.canReach('c2', CLIENTS.c1!, ECHO_PORT));
});

test('-multi-client=false refuses the second client', async (t) => {
  const lab = await Lab.create({ hosts: ['hub', 'c1', 'c2'] });
  t.teardown(() => lab.dispose());
  const hub = await startHub(lab, ['-multi-client=false']);
  await startClient(lab, 'c1', CLIENTS.c1!);
  await startClient(lab, 'c2', CLIENTS.c2!, [], /refused this client: single-client/);
  await hub.waitForLine(/refused 10\.0\.0\.3 .*single-client/);
  await lab.startEchoServers('hub', ECHO_PORT);
  t.true(await lab.canReach('c1', HUB_TUNNEL, ECHO_PORT));
});

test('two clients claiming one address: the second is refused and the first keeps working', async (t) => {
  const lab = await Lab.create({ hosts: ['hub', 'c1', 'c2'] });
  t.teardown(() => lab.dispose());
  const hub = await startHub(lab);
  await startClient(lab, 'c1', CLIENTS.c1!);
  const second = await startClient(lab, 'c2', CLIENTS.c1!, [], /refused this client: ip-conflict/);
  await hub.waitForLine(/refused 10\.0\.0\.2 from .*: ip-conflict: 10\.0\.0\.2 is in use by/);
  t.true(second.running);
  await lab.startEchoServers('hub', ECHO_PORT);
  t.true(await lab.canReach('c1', HUB_TUNNEL, ECHO_PORT));
  // Still the first member after the second retried a few times.
  await second.waitForLine(/reconnecting in/);
  t.true(await lab.canReach('c1', HUB_TUNNEL, ECHO_PORT));
  t.notRegex(hub.output(), /member 10\.0\.0\.2 .* left/);
});
