// The docs example (docs/examples/port-filter-client.ts) composes a custom client pipeline from the
// public API; this runs it for real against a hub and checks its extra operator takes effect.
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { Lab } from './helpers/lab.js';
import { ECHO_PORT, startClient, startHub } from './helpers/vpn.js';

const EXAMPLE = fileURLToPath(new URL('../docs/examples/port-filter-client.js', import.meta.url));

test('the port-filter example client joins the LAN and drops only UDP to the blocked port', async (t) => {
  const lab = await Lab.create({ hosts: ['hub', 'c1', 'c2'] });
  t.teardown(() => lab.dispose());
  await startHub(lab);
  const filtered = lab.host('c1').spawn('node', [EXAMPLE, `${lab.host('hub').ip}:9000`, '10.0.0.2/24', String(ECHO_PORT + 1)], { label: 'c1(example)' });
  await filtered.waitForLine(/joined the virtual LAN as 10\.0\.0\.2/);
  await startClient(lab, 'c2', '10.0.0.3');
  await lab.startEchoServers('c2', ECHO_PORT);
  await lab.startEchoServers('c2', ECHO_PORT + 1);
  t.true(await lab.canReach('c1', '10.0.0.3', ECHO_PORT));
  t.true(await lab.canReach('c1', '10.0.0.3', ECHO_PORT + 1, { proto: 'tcp' }), 'TCP to the port still passes');
  t.false(await lab.canReach('c1', '10.0.0.3', ECHO_PORT + 1, { timeoutMs: 1500 }), 'UDP to the blocked port is dropped');
});
