// The lwt_udp addon's surface (see native/udp.cc, aead.cc, datagrams.cc), loaded on first use so
// that importing the driver never fails on a machine without it.
import { loadAddon } from '../addon.js';
import type { DatagramColumns } from './aead.js';
import { UdpError } from './errors.js';

/** @internal The native batch: its columns are its own (enumerable) properties. */
export type NativeDatagramBatch = DatagramColumns;

/** @internal */
export interface NativeAeadKey {
  readonly nextCounter: number;
  readonly cipher: string;
  readonly destroyed: boolean;
  seal(payloads: readonly Uint8Array[], from: number, type: number, epoch: number, receiverId: number, counter: number, out: NativeDatagramBatch): number;
  open(batch: NativeDatagramBatch, from: number, to: number, type: number, epoch: number, receiverId: number): number;
  sealRaw(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array;
  openRaw(nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Uint8Array | null;
  destroy(): void;
}

/** @internal */
export interface NativeUdpSocketOptions {
  address: number;
  port: number;
  slots: number;
  slotSize: number;
  gro: boolean;
  gso: boolean;
  rcvbuf: number;
  sndbuf: number;
  receive: NativeDatagramBatch;
  send: NativeDatagramBatch;
}

/** @internal */
export interface NativeUdpSocket {
  readonly receive: NativeDatagramBatch;
  readonly stats: Float64Array;
  readonly sendErrors: Uint16Array;
  readonly localAddress: number;
  readonly localPort: number;
  readonly rcvbuf: number;
  readonly sndbuf: number;
  readonly gro: boolean;
  readonly gsoSupported: boolean;
  readonly maxSend: number;
  readonly gso: boolean;
  readonly closed: boolean;
  start(onBatch: (count: number) => void, onError: (err: Error) => void): void;
  stop(): void;
  sendBatch(batch: NativeDatagramBatch, from: number, to: number): number;
  send(datagrams: readonly Uint8Array[], from: number, address: number, port: number): number;
  sealAndSend(
    key: NativeAeadKey,
    payloads: readonly Uint8Array[],
    from: number,
    type: number,
    epoch: number,
    receiverId: number,
    counter: number,
    address: number,
    port: number,
    gso?: Uint32Array,
    maxPacket?: number,
  ): number;
  onWritable(cb: () => void): void;
  pathMtu(address: number, port: number): number;
  close(): void;
}

/** @internal */
export interface NativeUdp {
  DatagramBatch: new (capacity: number, bytes: number) => NativeDatagramBatch;
  AeadKey: new (cipher: string, key: Uint8Array, rawOnly?: boolean) => NativeAeadKey;
  UdpSocket: new (options: NativeUdpSocketOptions) => NativeUdpSocket;
  setTcpNotSentLowat(fd: number, bytes: number): number;
  tcpUnsentBytes(fd: number): number;
  tcpCongestion(fd: number, out: Float64Array): boolean;
  setMaxPacingRate(fd: number, bytesPerSecond: number): void;
  restartCongestion(fd: number): boolean;
}

let binding: NativeUdp | undefined;

/** @internal The addon, loaded once; throws a UdpError (ENOADDON) when it is not built. */
export function udpBinding(): NativeUdp {
  binding ??= loadAddon<NativeUdp>(
    'lwt_udp',
    (file, err) =>
      new UdpError(
        `the native UDP addon ${file} cannot be loaded; build it with \`npm rebuild\` or \`npm run install\` ` +
          `(${err instanceof Error ? err.message : String(err)})`,
        'ENOADDON',
        'load',
        { cause: err },
      ),
  );
  return binding;
}
