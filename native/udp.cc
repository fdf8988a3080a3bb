// lwt_udp: batched UDP sockets and batched AEAD for the UDP data path (node-addon-api, N-API 8,
// C++ exceptions off).
//
// Exports:
//   class DatagramBatch(capacity, bytes)   an arena of datagrams + per-datagram tables (datagrams.h)
//   class AeadKey(cipher, key)             AES-256-GCM / ChaCha20-Poly1305 through OpenSSL EVP (aead.h)
//   class UdpSocket(options)               a non-blocking IPv4 UDP socket moving batches
//
// A UdpSocket reads with recvmmsg into the slots of its receive DatagramBatch, splitting what UDP
// GRO coalesced into single datagrams, and makes ONE call into JavaScript per batch. It sends with
// sendmmsg, each datagram to its own destination, and turns every run of equal-sized datagrams to
// one destination into a single UDP_SEGMENT (GSO) message when the kernel allows it. Every
// datagram leaves with DF set (IP_PMTUDISC_DO); one the path cannot carry is reported per datagram
// (EMSGSIZE), never as a failure of the batch.
//
// Errors carry `code` (errno name), `errno` (negative) and `syscall`, like Node's system errors.
// The libuv thread pool is never used; nothing here is shared between two sockets or two keys.

#include <napi.h>
#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <string.h>
#include <linux/inet_diag.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "aead.h"
#include "common.h"
#include "datagrams.h"

namespace lwt {

namespace {

// Most datagrams one send call takes (sendmmsg's vlen limit, UIO_MAXIOV).
constexpr uint32_t kMaxSend = 1024;
// Most segments in one UDP_SEGMENT message (the kernel's UDP_MAX_SEGMENTS is 64 on older kernels).
constexpr uint32_t kMaxGsoSegments = 64;
// Most datagrams UDP GRO coalesces into one (the kernel's UDP_GRO_CNT_MAX).
constexpr uint32_t kMaxGroSegments = 64;
constexpr uint32_t kMaxSlots = 1024;
constexpr uint32_t kMaxSlotSize = 65536;
constexpr int kDefaultBuffer = 4 << 20;
constexpr size_t kGroControl = CMSG_SPACE(sizeof(int));
constexpr size_t kGsoControl = CMSG_SPACE(sizeof(uint16_t));

// Indexes of UdpSocket's `stats` Float64Array (mirrored in src/udp/socket.ts).
enum Stat {
  kSent = 0,          // datagrams the kernel took
  kGsoMessages,       // messages sent with UDP_SEGMENT
  kTooBig,            // datagrams refused with EMSGSIZE (larger than the path MTU, DF set)
  kSendRejected,      // datagrams refused with another per-datagram error
  kSendCalls,         // sendmmsg/sendmsg system calls
  kSendBlocked,       // send calls cut short by EAGAIN
  kReceived,          // datagrams delivered to JS
  kGroMessages,       // received messages holding several coalesced datagrams
  kTruncated,         // received datagrams larger than a slot (dropped)
  kRecvErrors,        // ignorable receive errors (ICMP errors surfacing as ECONNREFUSED, ...)
  kRecvCalls,         // recvmmsg system calls
  kBatches,           // read callbacks made
  kLastRejected,      // datagrams rejected by the last send call (see sendErrors)
  kGsoFallbacks,      // UDP_SEGMENT messages the kernel refused, sent again one by one
  kDropped,           // received messages dropped because reading stopped inside a batch
  kStatCount
};

// Errors of a send that are about one datagram (its size or destination), not the socket.
bool IsFatalSendError(int err) {
  return err == EBADF || err == ENOTSOCK || err == EFAULT || err == EOPNOTSUPP || err == EDESTADDRREQ;
}

// Receive errors that only say something about an earlier datagram (ICMP errors surface this way).
bool IsIgnorableRecvError(int err) {
  return err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH || err == EHOSTDOWN || err == ENETDOWN ||
         err == EMSGSIZE || err == ENOBUFS || err == ENOMEM || err == ETIMEDOUT || err == EPROTO;
}

void FillSockaddr(struct sockaddr_in* sin, uint32_t addr, uint16_t port) {
  memset(sin, 0, sizeof *sin);
  sin->sin_family = AF_INET;
  sin->sin_addr.s_addr = htonl(addr);
  sin->sin_port = htons(port);
}

// Asks for `bytes` of socket buffer, forcing past the sysctl limit when allowed (CAP_NET_ADMIN);
// returns what the kernel granted (its doubled accounting figure), or -errno.
int SetBuffer(int fd, int force, int plain, int bytes) {
  if (bytes > 0 && setsockopt(fd, SOL_SOCKET, force, &bytes, sizeof bytes) < 0) {
    setsockopt(fd, SOL_SOCKET, plain, &bytes, sizeof bytes);  // capped at net.core.[rw]mem_max
  }
  int granted = 0;
  socklen_t len = sizeof granted;
  if (getsockopt(fd, SOL_SOCKET, plain, &granted, &len) < 0) return -errno;
  return granted;
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  int Release() {
    int f = fd;
    fd = -1;
    return f;
  }
};

// One datagram to send.
struct Entry {
  const uint8_t* data;
  uint32_t length;
  uint32_t addr;
  uint16_t port;
};

}  // namespace

class UdpSocket : public Napi::ObjectWrap<UdpSocket> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "UdpSocket",
                       {
                           InstanceMethod<&UdpSocket::Start>("start"),
                           InstanceMethod<&UdpSocket::Stop>("stop"),
                           InstanceMethod<&UdpSocket::SendBatch>("sendBatch"),
                           InstanceMethod<&UdpSocket::Send>("send"),
                           InstanceMethod<&UdpSocket::SealAndSend>("sealAndSend"),
                           InstanceMethod<&UdpSocket::OnWritable>("onWritable"),
                           InstanceMethod<&UdpSocket::PathMtu>("pathMtu"),
                           InstanceMethod<&UdpSocket::Close>("close"),
                           InstanceAccessor<&UdpSocket::GetGso>("gso"),
                           InstanceAccessor<&UdpSocket::GetClosed>("closed"),
                       });
  }

  // new UdpSocket({ address: u32, port, slots, slotSize, gro, gso, rcvbuf, sndbuf,
  //                 receive: DatagramBatch, send: DatagramBatch })
  // receive needs slots * slotSize bytes and room for slots (slots * 64 with GRO) datagrams; send
  // at least 64 KiB. Both stay owned by the socket's JS object.
  explicit UdpSocket(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<UdpSocket>(info), env_(info.Env()), watch_(info.Env(), this) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) {
      ThrowType(env, "new UdpSocket(options: object)");
      return;
    }
    Napi::Object o = info[0].As<Napi::Object>();
    double address = 0, port = 0, slots = 0, slotSize = 0, rcvbuf = 0, sndbuf = 0;
    if (!ToIndex(o.Get("address"), 4294967295.0, &address) || !ToIndex(o.Get("port"), 65535, &port) ||
        !ToIndex(o.Get("slots"), kMaxSlots, &slots) || !ToIndex(o.Get("slotSize"), kMaxSlotSize, &slotSize) ||
        !ToIndex(o.Get("rcvbuf"), 1 << 30, &rcvbuf) || !ToIndex(o.Get("sndbuf"), 1 << 30, &sndbuf) || slots < 1 ||
        slotSize < 1) {
      if (!env.IsExceptionPending()) ThrowRange(env, "UdpSocket options out of range");
      return;
    }
    const bool wantGro = o.Get("gro").ToBoolean().Value();
    const bool wantGso = o.Get("gso").ToBoolean().Value();
    Napi::Value receiveValue = o.Get("receive");
    Napi::Value sendValue = o.Get("send");
    if (env.IsExceptionPending()) return;
    receive_ = DatagramBatch::From(env, receiveValue);
    send_ = DatagramBatch::From(env, sendValue);
    slots_ = static_cast<uint32_t>(slots);
    slotSize_ = static_cast<uint32_t>(slotSize);
    if (receive_ == nullptr || send_ == nullptr || receive_ == send_) {
      ThrowType(env, "receive and send must be two DatagramBatch objects");
      return;
    }
    if (wantGro && slotSize_ < kMaxSlotSize) {
      ThrowRange(env, "with GRO every slot must hold 65536 bytes");
      return;
    }
    if (static_cast<uint64_t>(slots_) * slotSize_ > receive_->bytes ||
        receive_->capacity < slots_ * (wantGro ? kMaxGroSegments : 1) || send_->bytes < kMaxSlotSize) {
      ThrowRange(env, "the receive batch must hold slots * slotSize bytes and slots (x64 with GRO) datagrams; "
                      "the send batch at least 65536 bytes");
      return;
    }
    receiveRef_ = Napi::Persistent(receiveValue.As<Napi::Object>());
    sendRef_ = Napi::Persistent(sendValue.As<Napi::Object>());

    Fd sock;
    sock.fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (sock.fd < 0) {
      ThrowSystemError(env, errno, "socket", "AF_INET/SOCK_DGRAM");
      return;
    }
    int on = IP_PMTUDISC_DO;
    if (setsockopt(sock.fd, IPPROTO_IP, IP_MTU_DISCOVER, &on, sizeof on) < 0) {
      ThrowSystemError(env, errno, "setsockopt(IP_MTU_DISCOVER)", "UDP socket");
      return;
    }
    int r = SetBuffer(sock.fd, SO_RCVBUFFORCE, SO_RCVBUF, rcvbuf > 0 ? static_cast<int>(rcvbuf) : kDefaultBuffer);
    int s = SetBuffer(sock.fd, SO_SNDBUFFORCE, SO_SNDBUF, sndbuf > 0 ? static_cast<int>(sndbuf) : kDefaultBuffer);
    if (r < 0 || s < 0) {
      ThrowSystemError(env, r < 0 ? -r : -s, "getsockopt(SO_RCVBUF/SO_SNDBUF)", "UDP socket");
      return;
    }
    int one = 1;
    gro_ = wantGro && setsockopt(sock.fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
    int segment = 0;
    socklen_t segmentLength = sizeof segment;
    gsoSupported_ = wantGso && getsockopt(sock.fd, SOL_UDP, UDP_SEGMENT, &segment, &segmentLength) == 0;
    gso_ = gsoSupported_;
    struct sockaddr_in sin;
    FillSockaddr(&sin, static_cast<uint32_t>(address), static_cast<uint16_t>(port));
    if (bind(sock.fd, reinterpret_cast<struct sockaddr*>(&sin), sizeof sin) < 0) {
      char text[INET_ADDRSTRLEN] = "";
      inet_ntop(AF_INET, &sin.sin_addr, text, sizeof text);
      ThrowSystemError(env, errno, "bind", std::string(text) + ":" + std::to_string(static_cast<int>(port)));
      return;
    }
    socklen_t sinLength = sizeof sin;
    if (getsockname(sock.fd, reinterpret_cast<struct sockaddr*>(&sin), &sinLength) < 0) {
      ThrowSystemError(env, errno, "getsockname", "UDP socket");
      return;
    }

    // Every per-batch structure is allocated here, once.
    recvMsgs_.assign(slots_, {});
    recvIov_.resize(slots_);
    recvNames_.resize(slots_);
    recvControl_.assign(static_cast<size_t>(slots_) * kGroControl, 0);
    for (uint32_t k = 0; k < slots_; k++) {
      recvIov_[k].iov_base = receive_->arena + static_cast<size_t>(k) * slotSize_;
      recvIov_[k].iov_len = slotSize_;
      struct msghdr& h = recvMsgs_[k].msg_hdr;
      h.msg_iov = &recvIov_[k];
      h.msg_iovlen = 1;
      h.msg_name = &recvNames_[k];
    }
    entries_.resize(kMaxSend);
    sendMsgs_.assign(kMaxSend, {});
    sendIov_.resize(kMaxSend);
    sendNames_.resize(kMaxSend);
    sendControl_.assign(static_cast<size_t>(kMaxSend) * kGsoControl, 0);
    msgFirst_.resize(kMaxSend);
    rowErrors_.assign(kMaxSend, 0);
    rowPayload_.assign(kMaxSend, 0);
    msgCount_.resize(kMaxSend);

    Napi::ArrayBuffer statsBuffer = Napi::ArrayBuffer::New(env, sizeof(double) * kStatCount);
    Napi::ArrayBuffer errorsBuffer = Napi::ArrayBuffer::New(env, sizeof(uint16_t) * kMaxSend);
    if (env.IsExceptionPending()) return;
    stats_ = static_cast<double*>(statsBuffer.Data());
    sendErrors_ = static_cast<uint16_t*>(errorsBuffer.Data());
    statsRef_ = Napi::Persistent(statsBuffer);
    errorsRef_ = Napi::Persistent(errorsBuffer);
    Napi::Object self = info.This().As<Napi::Object>();
    self.DefineProperties({
        Napi::PropertyDescriptor::Value("receive", receiveValue, napi_enumerable),
        Napi::PropertyDescriptor::Value("stats", Napi::Float64Array::New(env, kStatCount, statsBuffer, 0), napi_enumerable),
        Napi::PropertyDescriptor::Value("sendErrors", Napi::Uint16Array::New(env, kMaxSend, errorsBuffer, 0),
                                        napi_enumerable),
        Napi::PropertyDescriptor::Value("localAddress", Napi::Number::New(env, ntohl(sin.sin_addr.s_addr)), napi_enumerable),
        Napi::PropertyDescriptor::Value("localPort", Napi::Number::New(env, ntohs(sin.sin_port)), napi_enumerable),
        Napi::PropertyDescriptor::Value("rcvbuf", Napi::Number::New(env, r), napi_enumerable),
        Napi::PropertyDescriptor::Value("sndbuf", Napi::Number::New(env, s), napi_enumerable),
        Napi::PropertyDescriptor::Value("gro", Napi::Boolean::New(env, gro_), napi_enumerable),
        Napi::PropertyDescriptor::Value("gsoSupported", Napi::Boolean::New(env, gsoSupported_), napi_enumerable),
        Napi::PropertyDescriptor::Value("maxSend", Napi::Number::New(env, kMaxSend), napi_enumerable),
    });
    if (env.IsExceptionPending() || !watch_.Init(env, "UdpSocket")) return;
    watch_.Adopt(sock.Release());  // nothing below can fail
  }

  ~UdpSocket() override { watch_.Shutdown(false); }

  // Called by the watch (see lwt::FdWatch). libuv stops the handle on EPOLLERR; for a UDP socket
  // that is a pending soft error (SO_ERROR, e.g. from an ICMP message): clear it, count it, go on.
  void OnPollError(int status) {
    int soft = 0;
    socklen_t len = sizeof soft;
    const int fd = watch_.fd();
    if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soft, &len) == 0 && (soft == 0 || IsIgnorableRecvError(soft))) {
      stats_[kRecvErrors] += 1;
      int err = watch_.Resume();
      if (err == 0) return;
      status = err;
    }
    watch_.Fail(-status, "poll", "UDP socket");
  }

  // One recvmmsg (retried after an ignorable error) into the slots, then one JS call per batch.
  void OnReadable() {
    if (!receive_->Usable() || IsDetached(env_, statsRef_)) {
      watch_.Fail(EFAULT, "recvmmsg", "UDP socket (its receive buffers were transferred away)");
      return;
    }
    int n = -1;
    for (int attempt = 0; attempt < 8; attempt++) {
      for (uint32_t k = 0; k < slots_; k++) {
        struct msghdr& h = recvMsgs_[k].msg_hdr;
        h.msg_namelen = sizeof(struct sockaddr_in);
        h.msg_control = gro_ ? &recvControl_[static_cast<size_t>(k) * kGroControl] : nullptr;
        h.msg_controllen = gro_ ? kGroControl : 0;
        h.msg_flags = 0;
      }
      stats_[kRecvCalls] += 1;
      n = recvmmsg(watch_.fd(), recvMsgs_.data(), slots_, MSG_DONTWAIT, nullptr);
      if (n >= 0) break;
      const int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      if (!IsIgnorableRecvError(err)) {
        watch_.Fail(err, "recvmmsg", "UDP socket");
        return;
      }
      stats_[kRecvErrors] += 1;
    }
    if (n > 0) Deliver(static_cast<uint32_t>(n));
  }

 private:
  // start(onBatch: (count) => void, onError: (err) => void), stop(), onWritable(cb), close(): see
  // lwt::FdWatch.
  Napi::Value Start(const Napi::CallbackInfo& info) { return watch_.Start(info, "UDP socket"); }
  Napi::Value Stop(const Napi::CallbackInfo& info) { return watch_.Stop(info); }
  Napi::Value OnWritable(const Napi::CallbackInfo& info) { return watch_.OnWritable(info, "UDP socket"); }
  Napi::Value Close(const Napi::CallbackInfo& info) { return watch_.Close(info); }

  // sendBatch(batch: DatagramBatch, from, to) => number
  // Sends batch[from..to) (at most 1024), datagram i to batch.addrs[i]:batch.ports[i].
  Napi::Value SendBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    double from = 0, to = 0;
    DatagramBatch* b = info.Length() >= 3 ? DatagramBatch::From(env, info[0]) : nullptr;
    if (b == nullptr || !ToIndex(info[1], 4294967295.0, &from) || !ToIndex(info[2], 4294967295.0, &to)) {
      return ThrowType(env, "sendBatch(batch: DatagramBatch, from: number, to: number)");
    }
    if (!Writable(env, "sendmmsg")) return env.Undefined();
    if (!b->Usable()) return ThrowCoded(env, "EFAULT", "sendmmsg", "the batch's buffers were transferred away");
    const uint32_t first = static_cast<uint32_t>(from);
    const uint32_t end = static_cast<uint32_t>(std::min<double>({to, static_cast<double>(b->capacity), from + kMaxSend}));
    uint32_t n = 0;
    for (uint32_t i = first; i < end; i++, n++) {
      if (!b->InArena(b->offsets[i], b->lengths[i])) {
        return ThrowCoded(env, "EINVAL", "sendmmsg", "datagram " + std::to_string(i) + " lies outside the batch's arena");
      }
      entries_[n] = {b->arena + b->offsets[i], b->lengths[i], b->addrs[i], b->ports[i]};
    }
    return SendEntries(env, n);
  }

  // send(datagrams: Uint8Array[], from, address: u32, port) => number
  // Sends datagrams[from..] (at most 1024) to one destination, straight from their memory.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    double from = 0;
    uint32_t addr = 0;
    uint16_t port = 0;
    bool isArray = false;
    uint32_t length = 0;
    if (info.Length() < 4 || napi_is_array(env, info[0], &isArray) != napi_ok || !isArray ||
        !ToIndex(info[1], 4294967295.0, &from) || !Destination(info, 2, &addr, &port) ||
        napi_get_array_length(env, info[0], &length) != napi_ok) {
      return ThrowType(env, "send(datagrams: Uint8Array[], from: number, address: u32, port: number)");
    }
    if (!Writable(env, "sendmmsg")) return env.Undefined();
    const uint32_t first = static_cast<uint32_t>(from);
    const uint32_t end = first < length ? std::min(length, first + kMaxSend) : first;
    uint32_t n = 0;
    for (uint32_t i = first; i < end; i++, n++) {
      napi_value element;
      uint8_t* data = nullptr;
      size_t size = 0;
      if (napi_get_element(env, info[0], i, &element) != napi_ok || !ByteView(env, element, &data, &size)) {
        return ThrowType(env, "every datagram must be a Uint8Array");
      }
      if (size > kMaxUdpPayload) return ThrowSystemError(env, EMSGSIZE, "sendmmsg", "a datagram over 65507 bytes");
      entries_[n] = {data, static_cast<uint32_t>(size), addr, port};
    }
    return SendEntries(env, n);
  }

  // sealAndSend(key: AeadKey, payloads: Uint8Array[], from, type, epoch, receiverId, counter, address, port,
  //             gso?: Uint32Array, maxPacket?: number) => number
  // Seals payloads[from..] (at most 1024) straight into the socket's send batch and sends them to
  // one destination; returns how many were consumed, fewer only at EAGAIN. With `gso`, payload i
  // with gso[i] > 0 is a TCPv4 super-packet: it leaves as one datagram per segment of at most
  // maxPacket bytes (segmented here, tcpseg.h), and counts as consumed once all of them left;
  // sendErrors[i] is then the first refusal among its segments. Every counter sealed with is
  // spent, also those of datagrams that EAGAIN kept from leaving.
  Napi::Value SealAndSend(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    double from = 0;
    uint32_t addr = 0;
    uint16_t port = 0;
    AeadKey* key = info.Length() >= 9 ? AeadKey::From(env, info[0]) : nullptr;
    if (key == nullptr || !ToIndex(info[2], 4294967295.0, &from) || !Destination(info, 7, &addr, &port)) {
      return ThrowType(env, "sealAndSend(key: AeadKey, payloads, from, type, epoch, receiverId, counter, address, port, gso?, maxPacket?)");
    }
    SegmentPlan plan;
    const bool segmenting = info.Length() >= 11 && info[9].IsTypedArray();
    if (segmenting) {
      napi_typedarray_type gtype;
      void* gdata = nullptr;
      double maxPacket = 0;
      if (napi_get_typedarray_info(env, info[9], &gtype, &plan.gsoCount, &gdata, nullptr, nullptr) != napi_ok ||
          gtype != napi_uint32_array || !ToIndex(info[10], 65535, &maxPacket)) {
        return ThrowType(env, "sealAndSend: gso must be a Uint32Array and maxPacket a number up to 65535");
      }
      plan.gso = static_cast<const uint32_t*>(gdata);
      plan.maxPacket = static_cast<uint32_t>(maxPacket);
      plan.rowPayload = rowPayload_.data();
      plan.maxRows = kMaxSend;
    }
    SealHeader header;
    uint64_t counter = 0;
    uint32_t length = 0;
    if (!key->SealArgs(info, 3, &header, &counter)) return env.Undefined();
    if (napi_get_array_length(env, info[1], &length) != napi_ok) return ThrowType(env, "payloads must be an array");
    if (!Writable(env, "sendmmsg")) return env.Undefined();
    stats_[kLastRejected] = 0;
    const uint32_t first = static_cast<uint32_t>(from);
    const uint32_t want = first < length ? std::min(length - first, kMaxSend) : 0;
    // The send arena holds ~180 sealed 1400-byte payloads: seal and send chunk by chunk, so that
    // fewer than `want` consumed always means EAGAIN.
    uint32_t done = 0;
    while (done < want) {
      uint32_t payloads = 0;
      int64_t sealed = key->SealArray(env, info[1], first + done, header, done == 0 ? counter : key->NextCounter(), send_,
                                      want - done, segmenting ? &plan : nullptr, &payloads);
      if (sealed < 0) return env.Undefined();
      const uint32_t n = static_cast<uint32_t>(sealed);
      for (uint32_t i = 0; i < n; i++) entries_[i] = {send_->arena + send_->offsets[i], send_->lengths[i], addr, port};
      if (!segmenting) {
        int64_t sent = Transmit(env, n, sendErrors_ + done);
        if (sent < 0) return env.Undefined();
        done += static_cast<uint32_t>(sent);
        if (sent < n || n == 0) break;
        continue;
      }
      int64_t sent = Transmit(env, n, rowErrors_.data());
      if (sent < 0) return env.Undefined();
      // A payload is consumed when every row of it was: the rows of a payload are contiguous.
      uint32_t whole = static_cast<uint32_t>(sent) == n ? payloads : (sent > 0 ? plan.rowPayload[sent] : 0);
      for (uint32_t p = 0; p < whole; p++) sendErrors_[done + p] = 0;
      for (uint32_t r = 0; r < static_cast<uint32_t>(sent); r++) {
        const uint32_t p = plan.rowPayload[r];
        if (p < whole && rowErrors_[r] != 0 && sendErrors_[done + p] == 0) sendErrors_[done + p] = rowErrors_[r];
      }
      done += whole;
      if (static_cast<uint32_t>(sent) < n || n == 0) break;
    }
    return Napi::Number::New(env, done);
  }

  // pathMtu(address: u32, port) => number: the MTU the kernel knows for the path to a destination
  // (the device MTU, or less after ICMP "fragmentation needed"), through a throwaway connected
  // socket: an unconnected one cannot ask (IP_MTU). Meant for the rare EMSGSIZE answer.
  Napi::Value PathMtu(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t addr = 0;
    uint16_t port = 0;
    if (!Destination(info, 0, &addr, &port)) return ThrowType(env, "pathMtu(address: u32, port: number)");
    Fd probe;
    probe.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (probe.fd < 0) return ThrowSystemError(env, errno, "socket", "AF_INET/SOCK_DGRAM");
    int mode = IP_PMTUDISC_DO;
    struct sockaddr_in sin;
    FillSockaddr(&sin, addr, port);
    if (setsockopt(probe.fd, IPPROTO_IP, IP_MTU_DISCOVER, &mode, sizeof mode) < 0 ||
        connect(probe.fd, reinterpret_cast<struct sockaddr*>(&sin), sizeof sin) < 0) {
      return ThrowSystemError(env, errno, "connect", "path MTU probe");
    }
    int mtu = 0;
    socklen_t len = sizeof mtu;
    if (getsockopt(probe.fd, IPPROTO_IP, IP_MTU, &mtu, &len) < 0) return ThrowSystemError(env, errno, "getsockopt(IP_MTU)", "");
    return Napi::Number::New(env, mtu);
  }

  Napi::Value GetGso(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), gso_); }
  Napi::Value GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), watch_.fd() < 0); }

  bool Destination(const Napi::CallbackInfo& info, size_t at, uint32_t* addr, uint16_t* port) {
    double a = 0, p = 0;
    if (info.Length() < at + 2 || !ToIndex(info[at], 4294967295.0, &a) || !ToIndex(info[at + 1], 65535, &p)) return false;
    *addr = static_cast<uint32_t>(a);
    *port = static_cast<uint16_t>(p);
    return true;
  }

  bool Writable(Napi::Env env, const char* syscall) {
    if (watch_.fd() >= 0 && !IsDetached(env_, statsRef_) && !IsDetached(env_, errorsRef_)) return true;
    if (watch_.fd() < 0) {
      ThrowSystemError(env, EBADF, syscall, "closed UDP socket");
    } else {
      ThrowCoded(env, "EFAULT", syscall, "the socket's stats or sendErrors buffer was transferred away");
    }
    return false;
  }

  // Sends entries_[0..n) for one JS call: the count consumed, or undefined with a pending exception.
  Napi::Value SendEntries(Napi::Env env, uint32_t n) {
    stats_[kLastRejected] = 0;
    const int64_t consumed = Transmit(env, n, sendErrors_);
    if (consumed < 0) return env.Undefined();
    return Napi::Number::New(env, static_cast<double>(consumed));
  }

  // How many of entries_[e..n) go out as one UDP_SEGMENT message: a run to one destination, every
  // datagram as long as the first but the last, which may be shorter (and not empty), within the
  // kernel's limits. 1 means a plain message.
  uint32_t RunAt(uint32_t e, uint32_t n) const {
    if (!gso_) return 1;
    const Entry& head = entries_[e];
    const uint32_t size = head.length;
    if (size == 0) return 1;
    const uint32_t limit = std::min<uint32_t>(kMaxGsoSegments, static_cast<uint32_t>(kMaxUdpPayload / size));
    uint32_t total = size;
    uint32_t j = e + 1;
    while (j < n && j - e < limit) {
      const Entry& next = entries_[j];
      if (next.addr != head.addr || next.port != head.port || next.length == 0 || next.length > size ||
          total + next.length > kMaxUdpPayload) {
        break;
      }
      total += next.length;
      j++;
      if (next.length < size) break;
    }
    return j - e;
  }

  // errors[i] receives entry i's outcome: 0 when sent, else the errno it was refused with.
  void MarkSent(uint16_t* errors, uint32_t first, uint32_t count) {
    for (uint32_t i = first; i < first + count; i++) errors[i] = 0;
    stats_[kSent] += count;
  }

  void MarkRejected(uint16_t* errors, uint32_t i, int err) {
    errors[i] = static_cast<uint16_t>(err);
    stats_[err == EMSGSIZE ? kTooBig : kSendRejected] += 1;
    stats_[kLastRejected] += 1;
  }

  // Sends entries_[first..first+count) one message each (after the kernel refused them as one
  // UDP_SEGMENT message). Returns how many were consumed before an EAGAIN (count when none), or -1
  // with a pending exception; *tooBig counts the EMSGSIZE refusals.
  int64_t SendEach(Napi::Env env, uint16_t* errors, uint32_t first, uint32_t count, uint32_t* tooBig) {
    for (uint32_t i = first; i < first + count; i++) {
      const Entry& e = entries_[i];
      struct sockaddr_in sin;
      FillSockaddr(&sin, e.addr, e.port);
      struct iovec iov = {const_cast<uint8_t*>(e.data), e.length};
      struct msghdr h = {};
      h.msg_name = &sin;
      h.msg_namelen = sizeof sin;
      h.msg_iov = &iov;
      h.msg_iovlen = 1;
      ssize_t r;
      do {
        stats_[kSendCalls] += 1;
        r = sendmsg(watch_.fd(), &h, MSG_DONTWAIT);
      } while (r < 0 && errno == EINTR);
      if (r >= 0) {
        MarkSent(errors, i, 1);
        continue;
      }
      const int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) return i - first;
      if (IsFatalSendError(err)) {
        ThrowSystemError(env, err, "sendmsg", "UDP socket");
        return -1;
      }
      if (err == EMSGSIZE) *tooBig += 1;
      MarkRejected(errors, i, err);
    }
    return count;
  }

  // Sends entries_[0..n) with as few sendmmsg calls as it takes. Returns how many datagrams were
  // consumed (sent, or refused on their own: errors[i] holds the errno, 0 when sent)
  // before the kernel said EAGAIN, or -1 with a pending exception for an error of the socket itself.
  int64_t Transmit(Napi::Env env, uint32_t n, uint16_t* errors) {
    uint32_t m = 0;
    for (uint32_t e = 0; e < n; m++) {
      const uint32_t run = RunAt(e, n);
      const Entry& head = entries_[e];
      FillSockaddr(&sendNames_[m], head.addr, head.port);
      for (uint32_t j = e; j < e + run; j++) sendIov_[j] = {const_cast<uint8_t*>(entries_[j].data), entries_[j].length};
      struct msghdr& h = sendMsgs_[m].msg_hdr;
      h.msg_name = &sendNames_[m];
      h.msg_namelen = sizeof(struct sockaddr_in);
      h.msg_iov = &sendIov_[e];
      h.msg_iovlen = run;
      h.msg_flags = 0;
      if (run > 1) {
        uint8_t* control = &sendControl_[static_cast<size_t>(m) * kGsoControl];
        h.msg_control = control;
        h.msg_controllen = kGsoControl;
        struct cmsghdr* c = CMSG_FIRSTHDR(&h);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t segment = static_cast<uint16_t>(head.length);
        memcpy(CMSG_DATA(c), &segment, sizeof segment);
      } else {
        h.msg_control = nullptr;
        h.msg_controllen = 0;
      }
      msgFirst_[m] = e;
      msgCount_[m] = run;
      e += run;
    }
    uint32_t k = 0;
    while (k < m) {
      stats_[kSendCalls] += 1;
      int r = sendmmsg(watch_.fd(), &sendMsgs_[k], m - k, MSG_DONTWAIT);
      if (r > 0) {
        for (uint32_t j = k; j < k + static_cast<uint32_t>(r); j++) {
          MarkSent(errors, msgFirst_[j], msgCount_[j]);
          if (msgCount_[j] > 1) stats_[kGsoMessages] += 1;
        }
        k += r;
        continue;
      }
      const int err = errno;
      if (r < 0 && err == EINTR) continue;
      if (r == 0 || err == EAGAIN || err == EWOULDBLOCK) {
        stats_[kSendBlocked] += 1;
        return msgFirst_[k];
      }
      if (IsFatalSendError(err)) {
        ThrowSystemError(env, err, "sendmmsg", "UDP socket");
        return -1;
      }
      // Message k was refused on its own. A UDP_SEGMENT message goes again datagram by datagram,
      // which tells which of them the path cannot carry (the kernel says EINVAL for a segment size
      // above the MTU). When they all pass one by one, the kernel cannot segment on this path:
      // UDP_SEGMENT is turned off for good.
      if (msgCount_[k] > 1) {
        stats_[kGsoFallbacks] += 1;
        uint32_t tooBig = 0;
        int64_t done = SendEach(env, errors, msgFirst_[k], msgCount_[k], &tooBig);
        if (done < 0) return -1;
        if (static_cast<uint32_t>(done) < msgCount_[k]) {
          stats_[kSendBlocked] += 1;
          return msgFirst_[k] + done;
        }
        if (tooBig == 0 && err != EMSGSIZE) gso_ = false;
      } else {
        MarkRejected(errors, msgFirst_[k], err);
      }
      k++;
    }
    return n;
  }

  // The GRO segment size the kernel attached to message k, or 0.
  uint32_t GroSegment(uint32_t k) {
    if (!gro_) return 0;
    struct msghdr& h = recvMsgs_[k].msg_hdr;
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
      if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
        int segment = 0;
        memcpy(&segment, CMSG_DATA(c), sizeof segment);
        return segment > 0 ? static_cast<uint32_t>(segment) : 0;
      }
    }
    return 0;
  }

  // Splits the n received messages into datagrams in the receive batch's tables and calls onBatch;
  // when the tables fill up (more coalesced datagrams than expected), calls it once per table.
  void Deliver(uint32_t n) {
    DatagramBatch* b = receive_;
    uint32_t count = 0;
    for (uint32_t k = 0; k < n; k++) {
      const struct msghdr& h = recvMsgs_[k].msg_hdr;
      if ((h.msg_flags & MSG_TRUNC) != 0) {
        stats_[kTruncated] += 1;
        continue;
      }
      const uint32_t length = std::min<uint32_t>(recvMsgs_[k].msg_len, slotSize_);
      uint32_t addr = 0;
      uint16_t port = 0;
      if (h.msg_namelen >= sizeof(struct sockaddr_in) && recvNames_[k].sin_family == AF_INET) {
        addr = ntohl(recvNames_[k].sin_addr.s_addr);
        port = ntohs(recvNames_[k].sin_port);
      }
      uint32_t segment = GroSegment(k);
      if (segment >= length) segment = 0;
      if (segment > 0) stats_[kGroMessages] += 1;
      const uint32_t base = k * slotSize_;
      uint32_t at = 0;
      do {
        if (count == b->capacity) {
          if (!Flush(count)) {
            stats_[kDropped] += n - k;  // messages left unread in the slots (a coalesced one counts once)
            return;
          }
          count = 0;
        }
        const uint32_t piece = segment > 0 ? std::min(segment, length - at) : length;
        b->offsets[count] = base + at;
        b->lengths[count] = piece;
        b->addrs[count] = addr;
        b->ports[count] = port;
        b->segments[count] = static_cast<uint16_t>(segment);
        NoteHeader(b, count, b->arena + base + at, piece);
        count++;
        at += piece;
      } while (at < length);
    }
    if (count > 0) Flush(count);
  }

  // One onBatch(count) call; false when reading cannot go on with this batch afterwards.
  bool Flush(uint32_t count) {
    stats_[kReceived] += count;
    stats_[kBatches] += 1;
    watch_.CallRead(count);
    return watch_.reading() && receive_->Usable() && !IsDetached(env_, statsRef_);
  }

  napi_env env_;
  uint32_t slots_ = 0;
  uint32_t slotSize_ = 0;
  bool gro_ = false;
  bool gsoSupported_ = false;
  bool gso_ = false;
  DatagramBatch* receive_ = nullptr;
  DatagramBatch* send_ = nullptr;
  Napi::ObjectReference receiveRef_;
  Napi::ObjectReference sendRef_;
  Napi::Reference<Napi::ArrayBuffer> statsRef_;
  Napi::Reference<Napi::ArrayBuffer> errorsRef_;
  double* stats_ = nullptr;
  uint16_t* sendErrors_ = nullptr;
  std::vector<struct mmsghdr> recvMsgs_;
  std::vector<struct iovec> recvIov_;
  std::vector<struct sockaddr_in> recvNames_;
  std::vector<uint8_t> recvControl_;
  std::vector<Entry> entries_;
  // sealAndSend with segmentation: each row's send outcome, and the payload it came from.
  std::vector<uint16_t> rowErrors_;
  std::vector<uint32_t> rowPayload_;
  std::vector<struct mmsghdr> sendMsgs_;
  std::vector<struct iovec> sendIov_;
  std::vector<struct sockaddr_in> sendNames_;
  std::vector<uint8_t> sendControl_;
  std::vector<uint32_t> msgFirst_;
  std::vector<uint32_t> msgCount_;
  FdWatch<UdpSocket> watch_;
};

}  // namespace lwt

namespace {

// setTcpNotSentLowat(fd, bytes): TCP_NOTSENT_LOWAT on a connected TCP socket, so the kernel holds at
// most about `bytes` of data not yet sent (the rest waits in the tunnel's own queue, where its age
// is managed). Returns the value the kernel reports back; throws a system error if it refuses.
Napi::Value SetTcpNotSentLowat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    return lwt::ThrowType(env, "setTcpNotSentLowat(fd, bytes)");
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  int bytes = info[1].As<Napi::Number>().Int32Value();
  if (setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &bytes, sizeof bytes) < 0) {
    return lwt::ThrowSystemError(env, errno, "setsockopt(TCP_NOTSENT_LOWAT)", "TCP socket");
  }
  int now = 0;
  socklen_t len = sizeof now;
  if (getsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &now, &len) < 0) {
    return lwt::ThrowSystemError(env, errno, "getsockopt(TCP_NOTSENT_LOWAT)", "TCP socket");
  }
  return Napi::Number::New(env, now);
}

// tcpUnsentBytes(fd): the bytes a TCP socket holds that the kernel has not sent yet (SIOCOUTQNSD).
// Throws a system error if the kernel refuses.
Napi::Value TcpUnsentBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) return lwt::ThrowType(env, "tcpUnsentBytes(fd)");
  int fd = info[0].As<Napi::Number>().Int32Value();
  int bytes = 0;
  if (ioctl(fd, SIOCOUTQNSD, &bytes) < 0) return lwt::ThrowSystemError(env, errno, "ioctl(SIOCOUTQNSD)", "TCP socket");
  return Napi::Number::New(env, bytes);
}

// tcpCongestion(fd, out): what the kernel's congestion control of a TCP socket reports, into
// `out` (a Float64Array of at least 6): [pacing gain, bandwidth estimate in bytes/s, min RTT in us,
// segments retransmitted in all, smoothed RTT in us, sending MSS]. Returns true when the control is BBR (the
// first three are BBR's own: TCP_CC_INFO), false for any other (then only the last two are set).
Napi::Value TcpCongestion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsTypedArray()) return lwt::ThrowType(env, "tcpCongestion(fd, out)");
  Napi::TypedArray arr = info[1].As<Napi::TypedArray>();
  if (arr.TypedArrayType() != napi_float64_array || arr.ElementLength() < 6) return lwt::ThrowType(env, "tcpCongestion: out must be a Float64Array of at least 6");
  Napi::Float64Array out = arr.As<Napi::Float64Array>();
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct tcp_info ti;
  memset(&ti, 0, sizeof ti);
  socklen_t len = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0) return lwt::ThrowSystemError(env, errno, "getsockopt(TCP_INFO)", "TCP socket");
  out[3] = ti.tcpi_total_retrans;
  out[4] = ti.tcpi_rtt;
  out[5] = ti.tcpi_snd_mss;
  char name[16] = {0};
  len = sizeof name - 1;
  if (getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, &len) < 0 || strncmp(name, "bbr", 4) != 0) {
    out[0] = 0; out[1] = 0; out[2] = 0;
    return Napi::Boolean::New(env, false);
  }
  union tcp_cc_info cc;
  memset(&cc, 0, sizeof cc);
  len = sizeof cc;
  if (getsockopt(fd, IPPROTO_TCP, TCP_CC_INFO, &cc, &len) < 0) return lwt::ThrowSystemError(env, errno, "getsockopt(TCP_CC_INFO)", "TCP socket");
  if (len < sizeof cc.bbr) return Napi::Boolean::New(env, false);
  out[0] = cc.bbr.bbr_pacing_gain / 256.0;
  out[1] = static_cast<double>((static_cast<uint64_t>(cc.bbr.bbr_bw_hi) << 32) | cc.bbr.bbr_bw_lo);
  out[2] = cc.bbr.bbr_min_rtt;
  return Napi::Boolean::New(env, true);
}

// setMaxPacingRate(fd, bytesPerSecond): SO_MAX_PACING_RATE, the most a socket's pacing may send;
// a negative rate lifts the cap. Throws a system error if the kernel refuses.
Napi::Value SetMaxPacingRate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) return lwt::ThrowType(env, "setMaxPacingRate(fd, bytesPerSecond)");
  int fd = info[0].As<Napi::Number>().Int32Value();
  double want = info[1].As<Napi::Number>().DoubleValue();
  uint64_t rate = want < 0 ? ~0ULL : static_cast<uint64_t>(want);
  if (setsockopt(fd, SOL_SOCKET, SO_MAX_PACING_RATE, &rate, sizeof rate) < 0) {
    return lwt::ThrowSystemError(env, errno, "setsockopt(SO_MAX_PACING_RATE)", "TCP socket");
  }
  return env.Undefined();
}

// restartCongestion(fd): starts a TCP socket's congestion control afresh (BBR back in STARTUP, its
// estimates forgotten) by switching it to "reno" and back: setting the control a socket already
// has is a no-op in the kernel, a switch re-initialises it. Returns false, touching nothing, when
// the socket's control is reno itself. Throws a system error if the kernel refuses either switch
// (the socket is then left on whichever it last accepted, reported in the message).
Napi::Value RestartCongestion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) return lwt::ThrowType(env, "restartCongestion(fd)");
  int fd = info[0].As<Napi::Number>().Int32Value();
  char name[16] = {0};
  socklen_t len = sizeof name - 1;
  if (getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, &len) < 0) return lwt::ThrowSystemError(env, errno, "getsockopt(TCP_CONGESTION)", "TCP socket");
  name[sizeof name - 1] = 0;
  static const char kAside[] = "reno";
  if (strncmp(name, kAside, sizeof kAside) == 0) return Napi::Boolean::New(env, false);
  if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, kAside, sizeof kAside - 1) < 0) {
    return lwt::ThrowSystemError(env, errno, "setsockopt(TCP_CONGESTION, reno)", "TCP socket");
  }
  if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, strlen(name)) < 0) {
    return lwt::ThrowSystemError(env, errno, "setsockopt(TCP_CONGESTION) back from reno", "TCP socket");
  }
  return Napi::Boolean::New(env, true);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("tcpUnsentBytes", Napi::Function::New<TcpUnsentBytes>(env, "tcpUnsentBytes"));
  exports.Set("tcpCongestion", Napi::Function::New<TcpCongestion>(env, "tcpCongestion"));
  exports.Set("setMaxPacingRate", Napi::Function::New<SetMaxPacingRate>(env, "setMaxPacingRate"));
  exports.Set("restartCongestion", Napi::Function::New<RestartCongestion>(env, "restartCongestion"));
  exports.Set("setTcpNotSentLowat", Napi::Function::New<SetTcpNotSentLowat>(env, "setTcpNotSentLowat"));
  exports.Set("DatagramBatch", lwt::DatagramBatch::Define(env));
  exports.Set("AeadKey", lwt::AeadKey::Define(env));
  exports.Set("UdpSocket", lwt::UdpSocket::Define(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(lwt_udp, Init)
