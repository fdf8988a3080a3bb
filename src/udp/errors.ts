// Errors of the UDP data path's native addon (lwt_udp): UdpError for the socket, AeadError for keys.

/** Codes an AeadError can carry besides an errno name: ECOUNTER (a counter already used under the
 * key, or the counters are exhausted: rekey), EDESTROYED (the key was destroyed), ECRYPTO
 * (OpenSSL failed), EMSGSIZE (a payload larger than a datagram carries), EINVAL (bad argument or
 * key), EFAULT (a batch's buffer was transferred away), ENOADDON (the addon is not built). */
export type AeadErrorCode = 'ECOUNTER' | 'EDESTROYED' | 'ECRYPTO' | 'EMSGSIZE' | 'EINVAL' | 'EFAULT' | 'ENOADDON' | (string & {});

/** An error of the lwt_udp layer: `code` names what went wrong, `syscall` the failing call. */
abstract class UdpLayerError extends Error {
  readonly code: string;
  readonly syscall: string;

  constructor(message: string, code: string, syscall: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.syscall = syscall;
  }
}

/** A failure of the UDP socket: `code` is an errno name ('EADDRINUSE', 'EBADF', ...), EINVAL for
 * rejected options or ENOADDON; `syscall` the failing call ('bind', 'sendmmsg', 'recvmmsg', ...). */
export class UdpError extends UdpLayerError {
  override readonly name = 'UdpError';
}

/** A refusal of an AEAD key (see AeadErrorCode); `syscall` is 'seal', 'open', 'AeadKey' or 'load'. */
export class AeadError extends UdpLayerError {
  override readonly name = 'AeadError';
  declare readonly code: AeadErrorCode;
}

/** Shape of the errors the addon throws (`code` and `syscall` set; TypeError/RangeError have none). */
function nativeFields(err: unknown): { code: string; syscall: string } {
  const e = err as { code?: unknown; syscall?: unknown };
  return {
    code: typeof e?.code === 'string' ? e.code : 'EINVAL',
    syscall: typeof e?.syscall === 'string' ? e.syscall : 'arguments',
  };
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Converts what the addon threw or reported into a UdpError (a UdpError is returned as is). */
export function toUdpError(err: unknown): UdpError {
  if (err instanceof UdpError) return err;
  const { code, syscall } = nativeFields(err);
  return new UdpError(`UDP socket: ${messageOf(err)}`, code, syscall, { cause: err });
}

/** Converts what the addon threw into an AeadError (an AeadError is returned as is). */
export function toAeadError(err: unknown): AeadError {
  if (err instanceof AeadError) return err;
  const { code, syscall } = nativeFields(err);
  return new AeadError(`AEAD: ${messageOf(err)}`, code, syscall, { cause: err });
}
