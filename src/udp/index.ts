// The UDP data path's native layer: batched UDP sockets and batched AEAD (lwt_udp addon).
/** UdpSocket reads and sends batches of datagrams; see socket.ts for the contracts. */
export { UdpSocket, type Endpoint, type UdpSocketOptions, type UdpSocketStats } from './socket.js';
/** DatagramBatch and AeadKey seal and open batches; see aead.ts for the datagram format. */
export {
  AeadKey,
  AeadVectorKey,
  DatagramBatch,
  DatagramStatus,
  HEADER_BYTES,
  TAG_BYTES,
  SEAL_OVERHEAD,
  IPV4_DATAGRAM_OVERHEAD,
  MAX_SEALED_PAYLOAD,
  COUNTER_LIMIT,
  type AeadCipher,
  type SealHeader,
  type OpenSelector,
} from './aead.js';
/** UdpError (socket) and AeadError (keys) are the only errors the layer throws or reports. */
export { UdpError, AeadError, toUdpError, toAeadError, type AeadErrorCode } from './errors.js';
