// End to end (issue 10): the real CLI hub in a lab, flooded with 2000 idle connections from one
// source (test/fixtures/pending-flood.ts in its own namespace) while two members ping each other
// through it. The hub keeps at most max_pending_per_source of them, its file descriptors stay
// bounded, the members keep talking, and the refusals take a few log lines, not 2000.
import test from 'ava';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { PendingFloodReport } from './fixtures/pending-flood.js';
import type { StatusSnapshot } from '../pipelines/status.js';
import { Lab, type PingSample } from './helpers/lab.js';
import { ECHO_PORT, startClient, startHub, statusOf } from './helpers/vpn.js';
import { SLACK_MS, waitUntil } from './helpers/wait.js';
import { REPEATS_AT_ONCE } from '../src/describe.js';

const FLOOD = fileURLToPath(new URL('./fixtures/pending-flood.js', import.meta.url));
const STATUS = '127.0.0.1:9100';
const PER_SOURCE = 64; // the default max_pending_per_source
const FLOOD_COUNT = 2000;

const fds = (pid: number): number => fs.readdirSync(`/proc/${pid}/fd`).length;

test('2000 idle connections from one source: the hub holds at most max_pending_per_source, its fds stay bounded, members keep pinging, the log stays short', async (t) => {
  const lab = await Lab.create({ hosts: ['hub', 'c1', 'c2', 'att'] });
  t.teardown(() => lab.dispose());
  const hub = await startHub(lab, ['-status', STATUS]);
  await startClient(lab, 'c1', '10.0.0.2');
  await startClient(lab, 'c2', '10.0.0.3');
  await lab.startEchoServers('c2', ECHO_PORT);
  await lab.waitReachable('c1', '10.0.0.3', ECHO_PORT);
  const status = (): Promise<StatusSnapshot> => statusOf(lab, 'hub', STATUS);
  const pid = hub.pid!;
  const fdsBefore = fds(pid);
  // A ping counts as lost when no echo comes within SLACK_MS: a loaded machine may delay one for
  // a second or more; a hub that the flood stops answers none.
  const pinger = lab.startPinger('c1', '10.0.0.3', ECHO_PORT, 100, SLACK_MS);
  await waitUntil(() => pinger.samples().some((s) => s.rttMs !== undefined), 'the first ping reply');

  const floodStarted = Date.now();
  const flood = lab.host('att').spawnNode(FLOOD, ['--connect', `${lab.host('hub').ip}:9000`, '--count', String(FLOOD_COUNT), '--flavour', 'idle']);
  const settled = JSON.parse(await flood.waitForLine(/"event":"settled"/)) as PendingFloodReport;
  // The hub has seen every connection once its counts add up (refusals are counted as they happen).
  let during = await status();
  const seenAll = async (): Promise<boolean> => {
    during = await status();
    return (during.refusedConnections['pending-source-limit'] ?? 0) + (during.pendingConnections ?? 0) >= settled.attempted - settled.failed;
  };
  await waitUntil(seenAll, 'the hub to count every connection of the flood').catch(() => undefined);
  const floodMs = Date.now() - floodStarted;
  const fdsDuring = fds(pid);
  const samples: PingSample[] = pinger.samples().filter((s) => s.sentAtMs >= 0);
  const replies = samples.filter((s) => s.rttMs !== undefined);
  const lost = samples.length - replies.length;
  const rtts = replies.map((s) => s.rttMs!).sort((a, b) => a - b);
  const refusalLines = hub.stdout.concat(hub.stderr).filter((l) => /refused (a connection|\d+ more connections)/.test(l));
  t.log(
    `flood ${JSON.stringify(settled)}; hub: pending ${during.pendingConnections}, refused ${JSON.stringify(during.refusedConnections)}, ` +
      `fds ${fdsBefore} → ${fdsDuring}, ${refusalLines.length} refusal log lines in ${floodMs} ms; ` +
      `ping: ${replies.length} replies, ${lost} lost, p50 ${rtts[Math.floor(rtts.length / 2)]?.toFixed(2)} ms, max ${rtts.at(-1)?.toFixed(2)} ms`,
  );

  t.true(during.pendingConnections !== null && during.pendingConnections <= PER_SOURCE, `the hub holds ${during.pendingConnections} pending connections`);
  t.true((during.refusedConnections['pending-source-limit'] ?? 0) >= FLOOD_COUNT - PER_SOURCE - settled.failed, 'the rest were refused and counted');
  t.true(fdsDuring <= fdsBefore + PER_SOURCE + 16, `hub fds ${fdsBefore} before, ${fdsDuring} during the flood`);
  t.is(during.members.length, 2, 'both members stay');
  t.true(refusalLines.length <= REPEATS_AT_ONCE + 2 + Math.ceil(floodMs / 1000), `refusals took ${refusalLines.length} log lines:\n${refusalLines.join('\n')}`);
  t.true(replies.length > 0 && lost <= Math.max(2, samples.length / 5), `ping: ${replies.length} replies, ${lost} lost`);

  // The members still reach each other, and once the flood ends the hub is back where it started.
  t.true(await lab.canReach('c1', '10.0.0.3', ECHO_PORT));
  await flood.stop();
  await pinger.stop();
  let after = await status();
  await waitUntil(async () => ((after = await status()).pendingConnections ?? 0) === 0, 'the pending connections to go').catch(() => undefined);
  t.is(after.pendingConnections, 0);
  await waitUntil(() => fds(pid) <= fdsBefore + 4, () => `hub fds back near ${fdsBefore} (now ${fds(pid)})`);
});
