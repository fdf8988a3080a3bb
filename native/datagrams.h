// DatagramBatch: a reused arena of datagrams and the per-datagram tables that describe them, the
// one currency of lwt_udp. A socket receives into one, AeadKey::seal writes into one and
// AeadKey::open opens one in place, UdpSocket::sendBatch sends from one.
//
// The sealed datagram format (fixed here, built and checked only in aead.cc):
//   type (1) | epoch (1) | reserved (2, zero) | receiver id (4, BE) | counter (8, BE) | ciphertext | tag (16)
// The 16-byte header is the AAD; the nonce is 4 zero bytes followed by the 8-byte counter.
#ifndef LWT_NATIVE_DATAGRAMS_H_
#define LWT_NATIVE_DATAGRAMS_H_

#include <napi.h>

#include <cstddef>
#include <cstdint>

namespace lwt {

constexpr size_t kHeaderBytes = 16;
constexpr size_t kTagBytes = 16;
constexpr size_t kSealOverhead = kHeaderBytes + kTagBytes;
// The largest UDP payload over IPv4 (65535 - 20 - 8).
constexpr size_t kMaxUdpPayload = 65507;
constexpr uint32_t kMaxBatchCapacity = 1u << 16;
constexpr size_t kMaxBatchBytes = size_t{1} << 28;  // 256 MiB

// Values of DatagramBatch::status.
enum DatagramStatus : uint8_t {
  kPending = 0,    // not opened (as received, or not selected by open)
  kOpened = 1,     // authenticated and decrypted: offsets/lengths now describe the plaintext
  kBadTag = 2,     // failed authentication; its bytes are unchanged
  kMalformed = 3,  // cannot be a sealed datagram: too short, reserved bytes set, counter >= 2^53, out of the arena
};

class DatagramBatch : public Napi::ObjectWrap<DatagramBatch> {
 public:
  static Napi::Function Define(Napi::Env env);
  // The DatagramBatch wrapped by `value`, or nullptr when it is anything else.
  static DatagramBatch* From(Napi::Env env, Napi::Value value);

  // new DatagramBatch(capacity, bytes)
  explicit DatagramBatch(const Napi::CallbackInfo& info);

  // False when JS transferred one of its ArrayBuffers away: nothing may touch it then.
  bool Usable() const;
  // True when [offset, offset + length) lies inside the arena (the tables are writable from JS,
  // so every reader checks before it touches bytes).
  bool InArena(uint32_t offset, uint32_t length) const {
    return offset <= bytes && length <= bytes - offset;
  }

  uint8_t* arena = nullptr;
  uint32_t bytes = 0;
  uint32_t capacity = 0;
  double* counters = nullptr;    // counter of an opened datagram
  uint32_t* offsets = nullptr;   // datagram (after open: plaintext) start in the arena
  uint32_t* lengths = nullptr;   // datagram (after open: plaintext) length
  uint32_t* addrs = nullptr;     // IPv4 source (received) or destination (to send), host order
  uint32_t* receivers = nullptr; // header receiver id, 0 when shorter than a header
  uint16_t* ports = nullptr;     // UDP source or destination port
  uint16_t* segments = nullptr;  // GRO segment size when the kernel coalesced it with others, else 0
  uint8_t* types = nullptr;      // header type byte, 0 when empty
  uint8_t* status = nullptr;     // DatagramStatus

 private:
  napi_env env_;
  Napi::Reference<Napi::ArrayBuffer> arenaRef_;
  Napi::Reference<Napi::ArrayBuffer> tablesRef_;
};

// Reads a big-endian u32 / writes big-endian integers.
inline uint32_t ReadBe32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) | (static_cast<uint32_t>(p[2]) << 8) | p[3];
}
inline uint64_t ReadBe64(const uint8_t* p) {
  return (static_cast<uint64_t>(ReadBe32(p)) << 32) | ReadBe32(p + 4);
}
inline void WriteBe32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
inline void WriteBe64(uint8_t* p, uint64_t v) {
  WriteBe32(p, static_cast<uint32_t>(v >> 32));
  WriteBe32(p + 4, static_cast<uint32_t>(v));
}

// Fills the header columns (type, receiver id, status pending) of entry i from its bytes.
inline void NoteHeader(DatagramBatch* b, uint32_t i, const uint8_t* p, uint32_t length) {
  b->types[i] = length >= 1 ? p[0] : 0;
  b->receivers[i] = length >= kHeaderBytes ? ReadBe32(p + 4) : 0;
  b->status[i] = kPending;
  b->counters[i] = 0;
}

}  // namespace lwt

#endif  // LWT_NATIVE_DATAGRAMS_H_
