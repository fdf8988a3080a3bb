// Errors of the TUN binding: one class, with the errno name and the failing call kept as fields and
// a message that says what to do about it.

/** The operations a TunError can come from (system calls, plus 'options' for rejected options and
 * 'load' when the native addon is missing). */
export type TunSyscall =
  | 'open'
  | 'ioctl(TUNSETIFF)'
  | 'ioctl(SIOCSIFADDR)'
  | 'ioctl(SIOCSIFNETMASK)'
  | 'ioctl(SIOCSIFMTU)'
  | 'ioctl(SIOCGIFFLAGS)'
  | 'ioctl(SIOCSIFFLAGS)'
  | 'read'
  | 'write'
  | 'poll'
  | 'uv_poll_start'
  | 'options'
  | 'load'
  | (string & {});

/** A failure of the TUN device: `code` is an errno name ('EBUSY', 'EPERM', ...) or 'ENOADDON',
 * `syscall` the failing operation, `device` the interface name when one is known. */
export class TunError extends Error {
  override readonly name = 'TunError';
  readonly code: string;
  readonly syscall: TunSyscall;
  readonly device: string | undefined;

  constructor(message: string, code: string, syscall: TunSyscall, device?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.syscall = syscall;
    this.device = device;
  }
}

/** Shape of the errors thrown by the native addon. */
interface NativeSystemError {
  readonly message: string;
  readonly code: string;
  readonly syscall: string;
}

function isNativeSystemError(err: unknown): err is NativeSystemError {
  return (
    err instanceof Error &&
    typeof (err as Partial<NativeSystemError>).code === 'string' &&
    typeof (err as Partial<NativeSystemError>).syscall === 'string'
  );
}

const IFNAMSIZ = 16;

const ioctlWhat: Record<string, string> = {
  'ioctl(SIOCSIFADDR)': 'setting the IPv4 address',
  'ioctl(SIOCSIFNETMASK)': 'setting the netmask',
  'ioctl(SIOCSIFMTU)': 'setting the MTU',
  'ioctl(SIOCGIFFLAGS)': 'reading the interface flags',
  'ioctl(SIOCSIFFLAGS)': 'bringing the interface up',
};

/** Converts an error thrown or reported by the native addon into a TunError with a message that
 * names the device and the remedy; a value that is already a TunError is returned as is. */
export function toTunError(err: unknown, device: string | undefined): TunError {
  if (err instanceof TunError) return err;
  if (!isNativeSystemError(err)) {
    const message = err instanceof Error ? err.message : String(err);
    return new TunError(`TUN binding failed: ${message}`, 'EUNKNOWN', 'options', device, { cause: err });
  }
  const { code, syscall } = err;
  const dev = device === undefined || device === '' ? 'the TUN device' : `TUN device ${device}`;
  const detail = err.message;
  let message: string;
  if ((code === 'EPERM' || code === 'EACCES') && (syscall === 'open' || syscall === 'ioctl(TUNSETIFF)')) {
    message = `creating a TUN device needs root or CAP_NET_ADMIN (${detail})`;
  } else if (code === 'EPERM' || code === 'EACCES') {
    message = `configuring ${dev} needs root or CAP_NET_ADMIN (${detail})`;
  } else if (syscall === 'open' && (code === 'ENOENT' || code === 'ENODEV' || code === 'ENXIO')) {
    message = `cannot open /dev/net/tun: no such device (load the tun module: modprobe tun) (${detail})`;
  } else if (syscall === 'ioctl(TUNSETIFF)' && code === 'EBUSY') {
    message = `TUN device name ${device ?? ''} is busy: another process (or queue) already holds it (${detail})`;
  } else if (syscall === 'ioctl(TUNSETIFF)' && code === 'EINVAL') {
    message =
      device !== undefined && Buffer.byteLength(device) >= IFNAMSIZ
        ? `TUN device name "${device}" is too long: at most ${IFNAMSIZ - 1} bytes (${detail})`
        : `cannot use "${device ?? ''}" as a TUN device: the name is invalid, or a device of that name ` +
          `exists and is not a TUN device with the same queue mode (${detail})`;
  } else if (syscall === 'ioctl(SIOCSIFMTU)' && code === 'EINVAL') {
    message = `${dev} does not accept this MTU (${detail})`;
  } else if (syscall in ioctlWhat) {
    message = `${ioctlWhat[syscall]} of ${dev} failed (${detail})`;
  } else if (syscall === 'read' || syscall === 'poll') {
    message =
      code === 'EBADFD' || code === 'EBADF'
        ? `reading from ${dev} failed: the device was deleted or closed (${detail})`
        : `reading from ${dev} failed (${detail})`;
  } else if (syscall === 'write') {
    message = `writing to ${dev} failed (${detail})`;
  } else {
    message = `${dev}: ${detail}`;
  }
  return new TunError(message, code, syscall, device, { cause: err });
}
