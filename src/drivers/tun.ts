// Driver: a TunDevice as a TunPort.
import { Observable } from 'rxjs';
import type { PacketBatch, TunPort } from '../../pipelines/ports.js';
import type { TunDevice } from '../tun/device.js';
import { coalesce } from '../../operators/core/wire/gro.js';

/**
 * Wraps an open TunDevice. `packets$` reads while subscribed (one subscriber at a time) and errors
 * if the device fails; `setIpv4` changes the device's address; the sink writes directly (a short
 * write means EAGAIN) and `ready$` emits once the device is writable again. On an offloading device
 * the sink first coalesces runs of one TCP flow into super-packets (operators/core/wire/gro.ts), so plain
 * segments from peers without offload cost one write per run instead of one per segment. The device
 * itself is released by its owner.
 */
export function tunPort(device: TunDevice): TunPort {
  const counts: number[] = [];
  const writeCoalesced = (packets: PacketBatch): number => {
    const merged = coalesce(packets, counts);
    if (merged === packets) return device.write(packets);
    const written = device.write(merged);
    let consumed = 0;
    for (let i = 0; i < written; i++) consumed += counts[i]!;
    return consumed;
  };
  return {
    name: device.name,
    mtu: device.mtu,
    offload: device.offload,
    packets$: new Observable<PacketBatch>((subscriber) => {
      device.read(
        (batch) => subscriber.next(batch),
        (err) => subscriber.error(err),
      );
      return () => device.stopReading();
    }),
    setIpv4: (address, prefix) => device.setIpv4({ address, prefix }),
    sink: {
      write: device.offload ? writeCoalesced : (packets) => device.write(packets),
      rejected: () => device.rejectedWrites,
      ready$: new Observable<void>((subscriber) => {
        let active = true;
        device.onWritable(() => {
          if (active) subscriber.next();
        });
        return () => {
          active = false;
        };
      }),
    },
  };
}
