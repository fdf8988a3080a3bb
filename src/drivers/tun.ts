// Driver: a TunDevice as a TunPort.
import { Observable } from 'rxjs';
import type { PacketBatch, TunPort } from '../../pipelines/ports.js';
import type { TunDevice } from '../tun/device.js';

/**
 * Wraps an open TunDevice. `packets$` reads while subscribed (one subscriber at a time) and errors
 * if the device fails; `setIpv4` changes the device's address; the sink writes directly (a short write means EAGAIN) and `ready$` emits
 * once the device is writable again. The device itself is released by its owner, not here.
 */
export function tunPort(device: TunDevice): TunPort {
  return {
    name: device.name,
    mtu: device.mtu,
    packets$: new Observable<PacketBatch>((subscriber) => {
      device.read(
        (batch) => subscriber.next(batch),
        (err) => subscriber.error(err),
      );
      return () => device.stopReading();
    }),
    setIpv4: (address, prefix) => device.setIpv4({ address, prefix }),
    sink: {
      write: (packets) => device.write(packets),
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
