// lwt_tun: the project's own Linux TUN binding (node-addon-api, N-API 8, C++ exceptions off).
//
// Exports:
//   openTun(name, { multiQueue?, offload? }) -> { fd, name, offload }
//   configure(name, { address?, prefix?, mtu?, up? })
//   interfaceFlags(name)                    -> number (IFF_* of the interface)
//   closeFd(fd)
//   class TunQueue(fd, slotSize, slots, vnetHdr?) one queue (fd) of a TUN device, read into a reused arena
//
// Offload (openTun's `offload`): the device is opened with IFF_VNET_HDR and TUNSETOFFLOAD
// (checksum + TCPv4 segmentation), so the kernel hands over and accepts TCP super-segments of up
// to 64 KiB, each behind a 10-byte virtio_net_hdr. A TunQueue made with vnetHdr = true strips that
// header on reads (reporting each packet's GSO segment size in `gso`, 0 for a plain packet whose
// checksum this binding completes) and writes one in front of every packet.
//
// Every failing system call throws (or reports) an Error carrying `code` (the errno name, e.g.
// 'EBUSY'), `errno` (negative, as in Node's own system errors) and `syscall`.
//
// Reading is event driven on the loop thread: a uv_poll_t watches the fd, and each wake-up
// drains up to `slots` packets with read(2) before making ONE call into JavaScript. The libuv
// thread pool is never used; JavaScript is crossed once per batch, never once per packet.

#include <napi.h>
#include <uv.h>

#include "common.h"
#include "tcpseg.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/if_tun.h>

#include <cstdint>
#include <string>

namespace {

constexpr uint32_t kMaxSlotSize = 1u << 20;  // 1 MiB: well above a 64 KiB super-packet
constexpr uint32_t kMaxSlots = 4096;

// struct virtio_net_hdr of <linux/virtio_net.h> (that header does not compile as C++): fields in
// the host's byte order, as TUN uses them unless TUNSETVNETBE/LE says otherwise.
struct virtio_net_hdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
};
constexpr uint8_t VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
constexpr uint8_t VIRTIO_NET_HDR_GSO_TCPV4 = 1;
constexpr uint8_t VIRTIO_NET_HDR_GSO_ECN = 0x80;
constexpr size_t kVnetHdr = sizeof(struct virtio_net_hdr);
static_assert(kVnetHdr == 10, "virtio_net_hdr is 10 bytes");

// Turns what the kernel read into a packet JS can use, and returns its GSO segment size (0: a
// plain packet). A plain packet with a partial checksum (NEEDS_CSUM: the field holds the
// pseudo-header sum) gets its checksum completed, as the kernel would before a NIC without
// offload. A TCPv4 super-segment keeps the partial checksum form; one marked valid instead is
// brought to that form (pseudo-header sum in the field), so every super-segment leaves here alike.
uint32_t PrepareRead(const struct virtio_net_hdr& h, uint8_t* pkt, size_t len) {
  uint8_t type = h.gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
  if (type == VIRTIO_NET_HDR_GSO_TCPV4 && h.gso_size > 0 && len >= 20 && (pkt[0] >> 4) == 4) {
    size_t ihl = static_cast<size_t>(pkt[0] & 0x0f) * 4;
    if (len >= ihl + 20 && pkt[9] == 6) {
      if ((h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) == 0) {
        uint8_t pseudo[4] = {0, 6, static_cast<uint8_t>((len - ihl) >> 8), static_cast<uint8_t>(len - ihl)};
        lwt::Put16Be(pkt + ihl + 16, lwt::AddSums(lwt::InternetSum(pkt + 12, 8), lwt::InternetSum(pseudo, 4)));
      }
      return h.gso_size;
    }
  }
  if ((h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) != 0) {
    size_t start = h.csum_start;
    size_t field = start + h.csum_offset;
    if (field + 2 <= len) {
      uint16_t c = static_cast<uint16_t>(~lwt::InternetSum(pkt + start, len - start));
      if (c == 0 && pkt[9] == 17) c = 0xffff;  // UDP sends a computed zero as all ones
      lwt::Put16Be(pkt + field, c);
    }
  }
  return 0;
}

// The virtio_net_hdr to write in front of `pkt`: a TCPv4 super-segment of `gsoSize`-byte segments
// (checksum partial), or all zeros for a plain packet (its checksum complete).
void HeaderFor(const uint8_t* pkt, size_t len, uint32_t gsoSize, struct virtio_net_hdr* h) {
  memset(h, 0, sizeof *h);
  if (gsoSize == 0 || len < 40 || (pkt[0] >> 4) != 4 || pkt[9] != 6) return;
  size_t ihl = static_cast<size_t>(pkt[0] & 0x0f) * 4;
  if (len < ihl + 20) return;
  size_t thl = static_cast<size_t>(pkt[ihl + 12] >> 4) * 4;
  if (len <= ihl + thl) return;
  h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  // A segment with CWR set needs the ECN variant, so that only the first segment keeps the flag.
  h->gso_type = VIRTIO_NET_HDR_GSO_TCPV4 | ((pkt[ihl + 13] & 0x80) != 0 ? VIRTIO_NET_HDR_GSO_ECN : 0);
  h->hdr_len = static_cast<uint16_t>(ihl + thl);
  h->gso_size = static_cast<uint16_t>(gsoSize);
  h->csum_start = static_cast<uint16_t>(ihl);
  h->csum_offset = 16;
}

using lwt::SystemError;
using lwt::ThrowSystemError;
using lwt::ThrowType;

// Reads an interface name argument; false (with a pending exception) when it is not a string.
// The length check is the caller's: it reports EINVAL like the kernel would.
bool GetName(const Napi::CallbackInfo& info, size_t index, std::string* out) {
  if (info.Length() <= index || !info[index].IsString()) {
    ThrowType(info.Env(), "interface name must be a string");
    return false;
  }
  *out = info[index].As<Napi::String>().Utf8Value();
  return true;
}

bool NameFits(const std::string& name) {
  return name.size() < IFNAMSIZ && name.find('\0') == std::string::npos;
}

void FillIfreq(struct ifreq* ifr, const std::string& name) {
  memset(ifr, 0, sizeof *ifr);
  memcpy(ifr->ifr_name, name.data(), name.size());  // NameFits() checked the size
}

// Optional numeric field of an options object: false (with a pending exception) on a wrong type.
bool GetOptionalUint(Napi::Object obj, const char* key, uint32_t max, bool* present, uint32_t* out) {
  Napi::Value v = obj.Get(key);
  if (obj.Env().IsExceptionPending()) return false;
  if (v.IsUndefined()) {
    *present = false;
    return true;
  }
  if (!v.IsNumber()) {
    ThrowType(obj.Env(), (std::string(key) + " must be a number").c_str());
    return false;
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= max) || d != static_cast<double>(static_cast<uint64_t>(d))) {
    Napi::RangeError::New(obj.Env(), std::string(key) + " is out of range").ThrowAsJavaScriptException();
    return false;
  }
  *present = true;
  *out = static_cast<uint32_t>(d);
  return true;
}

// openTun(name: string, options?: { multiQueue?: boolean }) => { fd: number, name: string }
Napi::Value OpenTun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  if (!GetName(info, 0, &name)) return env.Undefined();
  bool multiQueue = false;
  bool offload = false;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Value mq = info[1].As<Napi::Object>().Get("multiQueue");
    if (env.IsExceptionPending()) return env.Undefined();
    multiQueue = mq.ToBoolean().Value();
    Napi::Value off = info[1].As<Napi::Object>().Get("offload");
    if (env.IsExceptionPending()) return env.Undefined();
    offload = off.ToBoolean().Value();
  }
  if (!NameFits(name)) return ThrowSystemError(env, EINVAL, "ioctl(TUNSETIFF)", name);

  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return ThrowSystemError(env, errno, "open", "/dev/net/tun");

  struct ifreq ifr;
  FillIfreq(&ifr, name);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (multiQueue ? IFF_MULTI_QUEUE : 0) | (offload ? IFF_VNET_HDR : 0);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    return ThrowSystemError(env, err, "ioctl(TUNSETIFF)", name.empty() ? "/dev/net/tun" : name);
  }
  if (offload) {
    // A kernel that cannot offload keeps the plain device: offload is an optimisation, and the
    // caller learns from `offload: false` that it must not announce it.
    int hdrSize = sizeof(struct virtio_net_hdr);
    unsigned int features = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN;
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdrSize) < 0 || ioctl(fd, TUNSETOFFLOAD, features) < 0) {
      int err = errno;
      close(fd);
      return ThrowSystemError(env, err, "ioctl(TUNSETOFFLOAD)", name.empty() ? "/dev/net/tun" : name);
    }
  }

  Napi::Object result = Napi::Object::New(env);
  result.Set("fd", Napi::Number::New(env, fd));
  result.Set("name", Napi::String::New(env, ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ)));
  result.Set("offload", Napi::Boolean::New(env, offload));
  return result;
}

// A datagram socket for the SIOC* ioctls, closed on scope exit.
struct IoctlSocket {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ~IoctlSocket() {
    if (fd >= 0) close(fd);
  }
};

// configure(name, { address?: u32 host order, prefix?: 0..32, mtu?: number, up?: boolean })
// Applies, in this order, the address, the netmask, the MTU and the UP flag.
Napi::Value Configure(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  if (!GetName(info, 0, &name)) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsObject()) return ThrowType(env, "configuration must be an object");
  if (!NameFits(name)) return ThrowSystemError(env, EINVAL, "ioctl(SIOCGIFFLAGS)", name);
  Napi::Object cfg = info[1].As<Napi::Object>();

  bool hasAddress, hasPrefix, hasMtu;
  uint32_t address = 0, prefix = 0, mtu = 0;
  if (!GetOptionalUint(cfg, "address", 0xffffffffu, &hasAddress, &address)) return env.Undefined();
  if (!GetOptionalUint(cfg, "prefix", 32, &hasPrefix, &prefix)) return env.Undefined();
  if (!GetOptionalUint(cfg, "mtu", 0x7fffffff, &hasMtu, &mtu)) return env.Undefined();
  Napi::Value upValue = cfg.Get("up");
  if (env.IsExceptionPending()) return env.Undefined();

  IoctlSocket sock;
  if (sock.fd < 0) return ThrowSystemError(env, errno, "socket", "AF_INET");
  struct ifreq ifr;

  if (hasAddress) {
    FillIfreq(&ifr, name);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(address);
    memcpy(&ifr.ifr_addr, &sin, sizeof sin);
    if (ioctl(sock.fd, SIOCSIFADDR, &ifr) < 0) return ThrowSystemError(env, errno, "ioctl(SIOCSIFADDR)", name);
  }
  if (hasPrefix) {
    FillIfreq(&ifr, name);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(prefix == 0 ? 0 : 0xffffffffu << (32 - prefix));
    memcpy(&ifr.ifr_netmask, &sin, sizeof sin);
    if (ioctl(sock.fd, SIOCSIFNETMASK, &ifr) < 0) return ThrowSystemError(env, errno, "ioctl(SIOCSIFNETMASK)", name);
  }
  if (hasMtu) {
    FillIfreq(&ifr, name);
    ifr.ifr_mtu = static_cast<int>(mtu);
    if (ioctl(sock.fd, SIOCSIFMTU, &ifr) < 0) return ThrowSystemError(env, errno, "ioctl(SIOCSIFMTU)", name);
  }
  if (!upValue.IsUndefined()) {
    bool up = upValue.ToBoolean().Value();
    FillIfreq(&ifr, name);
    if (ioctl(sock.fd, SIOCGIFFLAGS, &ifr) < 0) return ThrowSystemError(env, errno, "ioctl(SIOCGIFFLAGS)", name);
    if (up) {
      ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    } else {
      ifr.ifr_flags &= ~IFF_UP;
    }
    if (ioctl(sock.fd, SIOCSIFFLAGS, &ifr) < 0) return ThrowSystemError(env, errno, "ioctl(SIOCSIFFLAGS)", name);
  }
  return env.Undefined();
}

// interfaceFlags(name) => number: the interface's IFF_* flags (IFF_UP = 1).
Napi::Value InterfaceFlags(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  if (!GetName(info, 0, &name)) return env.Undefined();
  if (!NameFits(name)) return ThrowSystemError(env, EINVAL, "ioctl(SIOCGIFFLAGS)", name);
  IoctlSocket sock;
  if (sock.fd < 0) return ThrowSystemError(env, errno, "socket", "AF_INET");
  struct ifreq ifr;
  FillIfreq(&ifr, name);
  if (ioctl(sock.fd, SIOCGIFFLAGS, &ifr) < 0) return ThrowSystemError(env, errno, "ioctl(SIOCGIFFLAGS)", name);
  return Napi::Number::New(env, static_cast<uint16_t>(ifr.ifr_flags));
}

// closeFd(fd): closes a descriptor returned by openTun that was never handed to a TunQueue.
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) return ThrowType(env, "fd must be a number");
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (fd >= 0 && close(fd) < 0 && errno != EINTR) return ThrowSystemError(env, errno, "close", "");
  return env.Undefined();
}

// One queue (file descriptor) of a TUN device.
//
// Lifetime: while the queue is reading or waiting for writability, it holds a strong reference to
// its own JS object and its poll handle is active (so, like a socket, it keeps the event loop
// alive); otherwise it can be garbage collected, and the finalizer closes it. close() stops
// polling, uv_close()s the handle (freed in the close callback) and close(2)s the fd.
class TunQueue : public Napi::ObjectWrap<TunQueue> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "TunQueue",
                       {
                           InstanceMethod<&TunQueue::Start>("start"),
                           InstanceMethod<&TunQueue::Stop>("stop"),
                           InstanceMethod<&TunQueue::WriteMany>("writeMany"),
                           InstanceMethod<&TunQueue::OnWritable>("onWritable"),
                           InstanceMethod<&TunQueue::Close>("close"),
                           InstanceAccessor<&TunQueue::GetFd>("fd"),
                           InstanceAccessor<&TunQueue::GetClosed>("closed"),
                           InstanceAccessor<&TunQueue::GetRejected>("rejectedWrites"),
                       });
  }

  // new TunQueue(fd, slotSize, slots, vnetHdr = false): takes ownership of fd. With vnetHdr, each
  // slot holds the 10-byte virtio_net_hdr followed by the packet (at offset `headerBytes`).
  explicit TunQueue(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<TunQueue>(info), env_(info.Env()), watch_(info.Env(), this) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
      ThrowType(env, "new TunQueue(fd: number, slotSize: number, slots: number, vnetHdr?: boolean)");
      return;
    }
    vnet_ = info.Length() > 3 && info[3].ToBoolean().Value();
    int fd = info[0].As<Napi::Number>().Int32Value();
    double slotSize = info[1].As<Napi::Number>().DoubleValue();
    double slots = info[2].As<Napi::Number>().DoubleValue();
    if (fd < 0) {
      Napi::RangeError::New(env, "fd must be a non-negative integer").ThrowAsJavaScriptException();
      return;
    }
    if (!(slotSize >= 1 + (vnet_ ? kVnetHdr : 0) && slotSize <= kMaxSlotSize) || !(slots >= 1 && slots <= kMaxSlots)) {
      Napi::RangeError::New(env, "slotSize must be in 1..1048576 and slots in 1..4096").ThrowAsJavaScriptException();
      return;
    }
    slotSize_ = static_cast<uint32_t>(slotSize);
    slots_ = static_cast<uint32_t>(slots);

    // The arena is allocated once; JS views into it stay valid for the queue's whole life.
    Napi::ArrayBuffer arena = Napi::ArrayBuffer::New(env, static_cast<size_t>(slotSize_) * slots_);
    if (env.IsExceptionPending()) return;
    Napi::ArrayBuffer lengthsBuffer = Napi::ArrayBuffer::New(env, sizeof(uint32_t) * slots_);
    if (env.IsExceptionPending()) return;
    Napi::Uint32Array lengths = Napi::Uint32Array::New(env, slots_, lengthsBuffer, 0);
    if (env.IsExceptionPending()) return;
    Napi::ArrayBuffer gsoBuffer = Napi::ArrayBuffer::New(env, sizeof(uint32_t) * slots_);
    if (env.IsExceptionPending()) return;
    Napi::Uint32Array gso = Napi::Uint32Array::New(env, slots_, gsoBuffer, 0);
    if (env.IsExceptionPending()) return;
    gso_ = static_cast<uint32_t*>(gsoBuffer.Data());
    gsoRef_ = Napi::Persistent(gsoBuffer);
    arena_ = static_cast<uint8_t*>(arena.Data());
    lengths_ = static_cast<uint32_t*>(lengthsBuffer.Data());
    arenaRef_ = Napi::Persistent(arena);
    lengthsRef_ = Napi::Persistent(lengthsBuffer);

    Napi::Object self = info.This().As<Napi::Object>();
    self.DefineProperties({
        Napi::PropertyDescriptor::Value("buffer", arena, napi_enumerable),
        Napi::PropertyDescriptor::Value("lengths", lengths, napi_enumerable),
        Napi::PropertyDescriptor::Value("gso", gso, napi_enumerable),
        Napi::PropertyDescriptor::Value("headerBytes", Napi::Number::New(env, vnet_ ? kVnetHdr : 0), napi_enumerable),
        Napi::PropertyDescriptor::Value("slotSize", Napi::Number::New(env, slotSize_), napi_enumerable),
        Napi::PropertyDescriptor::Value("slots", Napi::Number::New(env, slots_), napi_enumerable),
    });
    if (env.IsExceptionPending() || !watch_.Init(env, "TunQueue")) return;

    // Owned from here on: nothing below can fail, so a failed construction never closes the fd
    // (the caller still owns it then).
    watch_.Adopt(fd);
  }

  ~TunQueue() override { watch_.Shutdown(false); }

  // Called by the watch (see lwt::FdWatch).
  void OnReadable() {
    // A view handed to JS could have had its ArrayBuffer transferred (postMessage); never write
    // into memory that is no longer ours.
    if (lwt::IsDetached(env_, arenaRef_) || lwt::IsDetached(env_, lengthsRef_) || lwt::IsDetached(env_, gsoRef_)) {
      watch_.Fail(EFAULT, "read", "TUN queue (its read buffer was transferred away)");
      return;
    }
    const int fd = watch_.fd();
    uint32_t count = 0;
    int err = 0;
    while (count < slots_) {
      uint8_t* slot = arena_ + static_cast<size_t>(count) * slotSize_;
      ssize_t n = read(fd, slot, slotSize_);
      if (n >= 0) {
        if (!vnet_) {
          gso_[count] = 0;
          lengths_[count++] = static_cast<uint32_t>(n);
        } else if (static_cast<size_t>(n) > kVnetHdr) {
          struct virtio_net_hdr h;
          memcpy(&h, slot, kVnetHdr);
          size_t len = static_cast<size_t>(n) - kVnetHdr;
          gso_[count] = PrepareRead(h, slot + kVnetHdr, len);
          lengths_[count++] = static_cast<uint32_t>(len);
        }
        continue;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) err = errno;
      break;
    }
    if (count > 0) watch_.CallRead(count);
    if (err != 0 && watch_.reading()) watch_.Fail(err, "read", "TUN queue");
  }

  // libuv reports EPOLLERR as UV_EBADF and stops the handle; for a TUN fd this means the device was
  // detached (deleted) underneath us.
  void OnPollError(int status) { watch_.Fail(-status, "poll", "TUN queue"); }

 private:
  // start(onRead: (count) => void, onError: (err) => void), stop(), onWritable(cb), close(): see
  // lwt::FdWatch.
  Napi::Value Start(const Napi::CallbackInfo& info) { return watch_.Start(info, "TUN queue"); }
  Napi::Value Stop(const Napi::CallbackInfo& info) { return watch_.Stop(info); }
  Napi::Value OnWritable(const Napi::CallbackInfo& info) { return watch_.OnWritable(info, "TUN queue"); }
  Napi::Value Close(const Napi::CallbackInfo& info) { return watch_.Close(info); }

  // writeMany(packets: Uint8Array[], from = 0, gso?: Uint32Array) => number
  // Writes packets[from..] with one write(2) each; on a vnetHdr queue each goes behind a
  // virtio_net_hdr, a TCPv4 super-segment of gso[i]-byte segments where gso[i] > 0 (gso is indexed
  // like packets; absent means all plain). Stops at EAGAIN. Returns how many packets were
  // consumed: written, or rejected by the kernel as malformed (EINVAL, EMSGSIZE) or undeliverable
  // (EIO: the interface is down); rejected ones are counted in `rejectedWrites`. Any other error
  // throws (nothing after the failing packet was written).
  Napi::Value WriteMany(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsArray()) return ThrowType(env, "writeMany(packets: Uint8Array[], from?: number)");
    const int fd = watch_.fd();
    if (fd < 0) return ThrowSystemError(env, EBADF, "write", "closed TUN queue");
    napi_env e = env;
    napi_value array = info[0];
    uint32_t length = 0;
    if (napi_get_array_length(e, array, &length) != napi_ok) return ThrowType(env, "packets must be an array");
    uint32_t from = 0;
    if (info.Length() > 1 && info[1].IsNumber()) {
      double f = info[1].As<Napi::Number>().DoubleValue();
      from = f <= 0 ? 0 : (f >= length ? length : static_cast<uint32_t>(f));
    }
    uint32_t* gso = nullptr;
    size_t gsoCount = 0;
    if (info.Length() > 2 && info[2].IsTypedArray()) {
      napi_typedarray_type gtype;
      void* gdata;
      if (napi_get_typedarray_info(e, info[2], &gtype, &gsoCount, &gdata, nullptr, nullptr) == napi_ok && gtype == napi_uint32_array) {
        gso = static_cast<uint32_t*>(gdata);
      } else {
        return ThrowType(env, "gso must be a Uint32Array");
      }
    }
    uint32_t i = from;
    for (; i < length; i++) {
      napi_value element;
      if (napi_get_element(e, array, i, &element) != napi_ok) break;
      uint8_t* data;
      size_t count;
      if (!lwt::ByteView(e, element, &data, &count)) return ThrowType(env, "every packet must be a Uint8Array");
      ssize_t n;
      if (vnet_) {
        struct virtio_net_hdr h;
        HeaderFor(static_cast<const uint8_t*>(data), count, gso != nullptr && i < gsoCount ? gso[i] : 0, &h);
        struct iovec iov[2] = {{&h, kVnetHdr}, {data, count}};
        do {
          n = writev(fd, iov, 2);
        } while (n < 0 && errno == EINTR);
      } else {
        do {
          n = write(fd, data, count);
        } while (n < 0 && errno == EINTR);
      }
      if (n >= 0) continue;
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) break;
      if (err == EINVAL || err == EMSGSIZE || err == EIO) {
        rejected_ += 1;
        continue;
      }
      return ThrowSystemError(env, err, "write", "TUN queue");
    }
    if (env.IsExceptionPending()) return env.Undefined();
    return Napi::Number::New(env, i - from);
  }

  Napi::Value GetFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), watch_.fd()); }
  Napi::Value GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), watch_.fd() < 0); }
  Napi::Value GetRejected(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), rejected_); }

  napi_env env_;
  uint32_t slotSize_ = 0;
  uint32_t slots_ = 0;
  uint8_t* arena_ = nullptr;
  uint32_t* lengths_ = nullptr;
  Napi::Reference<Napi::ArrayBuffer> arenaRef_;
  Napi::Reference<Napi::ArrayBuffer> lengthsRef_;
  Napi::Reference<Napi::ArrayBuffer> gsoRef_;
  uint32_t* gso_ = nullptr;
  bool vnet_ = false;
  double rejected_ = 0;
  lwt::FdWatch<TunQueue> watch_;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("openTun", Napi::Function::New<OpenTun>(env, "openTun"));
  exports.Set("configure", Napi::Function::New<Configure>(env, "configure"));
  exports.Set("interfaceFlags", Napi::Function::New<InterfaceFlags>(env, "interfaceFlags"));
  exports.Set("closeFd", Napi::Function::New<CloseFd>(env, "closeFd"));
  exports.Set("TunQueue", TunQueue::Define(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(lwt_tun, Init)
