// The TUN binding: a Linux TUN device with batched, zero-copy reads and batched writes.
/** TunDevice opens/configures a device and moves packets; see device.ts for the contracts. */
export { TunDevice, slotSizeFor, formatIpv4Cidr, type TunOpenOptions } from './device.js';
/** TunError is the only error type the binding throws or reports. */
export { TunError, toTunError, type TunSyscall } from './errors.js';
