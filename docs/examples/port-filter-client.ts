// Example: a client that never sends UDP to one port across the virtual LAN — the standard client
// pipeline with one extra operator on the packets read from the TUN device.
//
//   node dist/docs/examples/port-filter-client.js HUB_HOST:PORT 10.0.0.2/24 7001
import { map, type OperatorFunction } from 'rxjs';
import {
  TunDevice,
  clientPipeline,
  describeClientEvent,
  makeNetDialer,
  parseIpv4,
  tunPort,
  type PacketBatch,
} from 'lightweight-tunnel';

/** Removes UDP packets to `port` from each batch. */
export function dropUdpTo(port: number): OperatorFunction<PacketBatch, PacketBatch> {
  return map((batch) =>
    batch.filter((p) => {
      if (p[9] !== 17) return true; // not UDP
      const ihl = (p[0]! & 0x0f) * 4;
      return p.length < ihl + 4 || ((p[ihl + 2]! << 8) | p[ihl + 3]!) !== port;
    }),
  );
}

const [hub = '', cidr = '', blocked = ''] = process.argv.slice(2);
const [hubHost = '', hubPort = '9000'] = hub.split(':');
const [addr = '', prefix = '24'] = cidr.split('/');
const address = parseIpv4(addr);
if (address === undefined || hubHost === '' || !/^\d+$/.test(blocked)) {
  console.error('usage: port-filter-client.js HUB_HOST:PORT ADDRESS/PREFIX UDP_PORT');
  process.exit(2);
}

const device = TunDevice.open({ mtu: 1400, ipv4: { address, prefix: Number(prefix) } });
const tun = tunPort(device);
const filtered = { ...tun, packets$: tun.packets$.pipe(dropUdpTo(Number(blocked))) };

const subscription = clientPipeline(
  {
    tunnel: { address, prefix: Number(prefix) },
    remotes: [{ host: hubHost, port: Number(hubPort) }],
    mtu: 1400,
    keepaliveMs: 10_000,
    timeoutMs: 30_000,
    sendQueueSize: 1000,
    recvQueueSize: 1000,
    backoff: { initialMs: 1000, maxMs: 30_000 },
  },
  { tun: filtered, dialer: makeNetDialer({ connectTimeoutMs: 10_000 }) },
).subscribe({
  next: (e) => {
    const line = describeClientEvent(e);
    if (line) console.error(`${line.level} ${line.message}`);
  },
  error: (err: unknown) => {
    console.error(`error ${String(err)}`);
    device.release();
    process.exitCode = 1;
  },
});

process.once('SIGINT', () => {
  subscription.unsubscribe();
  device.release();
});
