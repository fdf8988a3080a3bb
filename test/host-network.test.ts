// src/drivers/host-network.ts: what the route guard protects, read from the interfaces and the
// kernel's routing table: injected tables, and the real thing inside a lab namespace.
import test from 'ava';
import { makeHostNetwork, gatewaysOf } from '../src/drivers/host-network.js';
import { Lab } from './helpers/lab.js';

const ROUTE_TABLE = [
  'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
  'eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0',
  'eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
  'wg0\t0000000A\t0200000A\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0',
  'tun7\t0050A8C0\t0100000A\t0003\t0\t0\t0\t00FFFFFF\t0\t0\t0',
  'eth1\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0',
].join('\n');

test('gateways come from /proc/net/route (little-endian hex), once each, never through the TUN device itself', (t) => {
  t.deepEqual(
    gatewaysOf(ROUTE_TABLE, 'tun7').map((g) => g.what),
    ['gateway 192.168.1.1 on eth0', 'gateway 10.0.0.2 on wg0'],
  );
  t.deepEqual(gatewaysOf('', 'tun0'), []);
  t.deepEqual(gatewaysOf('Iface\tDestination\tGateway\ngarbage line\n', 'tun0'), []);
});

test('interface addresses and connected networks are guarded, the TUN device’s are not, and unreadable sources give nothing', (t) => {
  const host = makeHostNetwork({
    device: 'tun0',
    interfaces: () => ({
      eth0: [
        { address: '192.168.1.5', netmask: '255.255.255.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: false, cidr: '192.168.1.5/24' },
        { address: 'fe80::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '00:00:00:00:00:00', internal: false, cidr: 'fe80::1/64', scopeid: 2 },
      ],
      tun0: [{ address: '10.0.0.2', netmask: '255.255.255.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: false, cidr: '10.0.0.2/24' }],
    }),
    routeTable: () => ROUTE_TABLE,
  });
  t.deepEqual(
    host.guarded().map((g) => g.what),
    // tun7 is another tunnel's device: its gateway is guarded like any other interface's.
    ['address 192.168.1.5 on eth0', 'network 192.168.1.0/24 on eth0', 'gateway 192.168.1.1 on eth0', 'gateway 10.0.0.2 on wg0', 'gateway 10.0.0.1 on tun7'],
  );
  t.deepEqual(host.addresses?.(), [0xc0a80105], 'the addresses for direct paths: IPv4 only, not the TUN device’s');
  const broken = makeHostNetwork({
    device: 'tun0',
    interfaces: () => {
      throw new Error('no');
    },
    routeTable: () => {
      throw new Error('no /proc');
    },
  });
  t.deepEqual(broken.guarded(), []);
  t.deepEqual(broken.addresses?.(), []);
});

test('in a namespace, the real interfaces and the default gateway are what the driver reports', async (t) => {
  const lab = await Lab.create({ hosts: ['h'] });
  t.teardown(() => lab.dispose());
  const h = lab.host('h');
  const gateway = h.ip.replace(/\.\d+$/, '.254');
  await h.exec('ip', ['route', 'add', 'default', 'via', gateway], { check: true });
  const script = `import('${new URL('../src/drivers/host-network.js', import.meta.url).href}').then(m => console.log(JSON.stringify(m.makeHostNetwork({ device: 'tun9' }).guarded().map(g => g.what))))`;
  const r = await h.exec(process.execPath, ['--input-type=module', '-e', script], { check: true });
  const what = JSON.parse(r.stdout.trim()) as string[];
  const net = h.ip.replace(/\.\d+$/, '.0');
  t.true(what.includes(`address ${h.ip} on eth0`), what.join('; '));
  t.true(what.includes(`network ${net}/24 on eth0`), what.join('; '));
  t.true(what.includes(`gateway ${gateway} on eth0`), what.join('; '));
});
