// End to end, operations: SIGHUP reloads the hub's config file live, and -log-format json writes
// JSON lines whose join lines name the member and its remote endpoint.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab } from './helpers/lab.js';
import { ECHO_PORT, HUB_TUNNEL, startClient, startHub } from './helpers/vpn.js';

const C1 = '10.0.0.2';
const C2 = '10.0.0.3';

test('SIGHUP turns client isolation on without dropping anyone; the hub logs JSON lines that name members', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'lwt-ops-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'hub.json');
  writeFileSync(file, JSON.stringify({ '// note': 'written by the test', client_isolation: false }));

  const lab = await Lab.create({ hosts: ['hub', 'c1', 'c2'] });
  t.teardown(() => lab.dispose());
  const hub = await startHub(lab, ['-c', file, '-log-format', 'json']);
  await startClient(lab, 'c1', C1);
  const c2 = await startClient(lab, 'c2', C2);
  await Promise.all(['hub', 'c2'].map((h) => lab.startEchoServers(h, ECHO_PORT)));
  t.true(await lab.canReach('c1', C2, ECHO_PORT), 'c1 reaches c2 before the reload');

  // A file that does not decode: the hub says so and keeps its settings.
  writeFileSync(file, JSON.stringify({ client_isolation: 'yes' }));
  hub.kill('SIGHUP');
  await hub.waitForLine(/reload failed, keeping the running settings: client_isolation: expected true or false/);
  t.true(await lab.canReach('c1', C2, ECHO_PORT), 'c1 still reaches c2 after a failed reload');

  writeFileSync(file, JSON.stringify({ client_isolation: true, keepalive: 5 }));
  hub.kill('SIGHUP');
  await hub.waitForLine(/reloaded: client_isolation true/);
  await hub.waitForLine(/keepalive changed: takes effect after a restart/);
  t.false(await lab.canReach('c1', C2, ECHO_PORT, { timeoutMs: 1000 }), 'c1 no longer reaches c2');
  t.true(await lab.canReach('c1', HUB_TUNNEL, ECHO_PORT), 'c1 still reaches the hub');
  t.true(hub.running);
  t.notRegex(hub.output(), /left/);
  t.notRegex(c2.output(), /disconnected/);

  const lines = hub.stderr.filter((l) => l.trim() !== '');
  const objects = lines.map((l) => {
    try {
      return JSON.parse(l) as Record<string, unknown>;
    } catch {
      return t.fail(`not a JSON line: ${l}`);
    }
  });
  for (const o of objects) {
    if (o === undefined) continue;
    t.true(typeof o.level === 'string' && typeof o.time === 'string' && typeof o.msg === 'string');
  }
  const joins = objects.filter((o) => o?.event === 'joined');
  t.deepEqual(joins.map((o) => o?.member).sort(), [C1, C2]);
  for (const o of joins) t.regex(String(o?.remote), new RegExp(`^${lab.host(o?.member === C1 ? 'c1' : 'c2').ip.replace(/\./g, '\\.')}:\\d+$`));
  t.true(objects.some((o) => o?.event === 'reloaded' && o.client_isolation === true));
});
