// AeadKey: one AEAD key (AES-256-GCM or ChaCha20-Poly1305 through OpenSSL's EVP interface, the
// OpenSSL Node itself links) with a reusable EVP_CIPHER_CTX per direction, sealing and opening
// whole batches of datagrams in the format of datagrams.h without allocating per datagram.
#ifndef LWT_NATIVE_AEAD_H_
#define LWT_NATIVE_AEAD_H_

#include <napi.h>
#include <openssl/evp.h>

#include <cstdint>

#include "datagrams.h"

namespace lwt {

// Counters are JS Numbers, exact below 2^53; seal never uses one at or above, open calls a
// datagram carrying one malformed.
constexpr uint64_t kCounterLimit = uint64_t{1} << 53;

// The header fields a batch is sealed with.
struct SealHeader {
  uint8_t type = 0;
  uint8_t epoch = 0;
  uint32_t receiver = 0;
};

// How SealArray segments super-packets: payload i (absolute index) with gso[i] > 0 is a TCPv4
// super-packet of gso[i]-byte segments, sealed as one datagram per segment of at most maxPacket
// bytes (tcpseg.h). rowPayload[row] receives the index (relative to `from`) of the payload each
// sealed row came from; it holds maxRows entries, the most rows one call seals.
struct SegmentPlan {
  const uint32_t* gso = nullptr;
  size_t gsoCount = 0;
  uint32_t maxPacket = 0;
  uint32_t* rowPayload = nullptr;
  uint32_t maxRows = 0;
};

class AeadKey : public Napi::ObjectWrap<AeadKey> {
 public:
  static Napi::Function Define(Napi::Env env);
  // The AeadKey wrapped by `value`, or nullptr when it is anything else.
  static AeadKey* From(Napi::Env env, Napi::Value value);

  // new AeadKey(cipher: 'aes-256-gcm' | 'chacha20-poly1305', key: Uint8Array(32), rawOnly = false)
  // A rawOnly key takes only sealRaw/openRaw (test vectors); any other key only the batch calls.
  explicit AeadKey(const Napi::CallbackInfo& info);
  ~AeadKey() override;

  // Reads (type, epoch, receiverId, counter) from info[at..at+3]; counter undefined or -1 means
  // the key's next counter. False with a pending exception on a bad argument.
  bool SealArgs(const Napi::CallbackInfo& info, size_t at, SealHeader* header, uint64_t* counter);

  uint64_t NextCounter() const { return next_; }

  // Seals payloads[from..] (a JS array of Uint8Array) into `out`, packed from byte 0, as many as
  // fit in `out` and at most `max` payloads; row i gets counter + i. With a plan, super-packets become
  // one row per segment, and a super-packet is sealed whole or not at all (EMSGSIZE when even an
  // empty `out` cannot hold it). Refuses (ECOUNTER) a counter below the next unused one, so no nonce
  // is ever used twice under this key. Returns how many rows were sealed (out's offsets/lengths
  // describe them) and sets *consumed to how many payloads they hold, or -1 with a pending exception.
  int64_t SealArray(Napi::Env env, napi_value payloads, uint32_t from, const SealHeader& header, uint64_t counter,
                    DatagramBatch* out, uint32_t max, const SegmentPlan* plan, uint32_t* consumed);

 private:
  Napi::Value Seal(const Napi::CallbackInfo& info);
  Napi::Value Open(const Napi::CallbackInfo& info);
  Napi::Value Destroy(const Napi::CallbackInfo& info);
  Napi::Value GetNextCounter(const Napi::CallbackInfo& info);
  Napi::Value GetCipher(const Napi::CallbackInfo& info);
  Napi::Value GetDestroyed(const Napi::CallbackInfo& info);

  Napi::Value SealRaw(const Napi::CallbackInfo& info);
  Napi::Value OpenRaw(const Napi::CallbackInfo& info);
  Napi::Value Raw(const Napi::CallbackInfo& info, bool seal);

  bool Live(Napi::Env env, const char* operation, bool raw);
  bool SealOne(const uint8_t* nonce, const uint8_t* aad, size_t aadLength, const uint8_t* in, size_t length, uint8_t* out);
  // Seals the concatenation of two inputs (headers, then payload) without copying them together;
  // SealOne is its one-part case.
  bool SealTwo(const uint8_t* nonce, const uint8_t* aad, size_t aadLength, const uint8_t* a, size_t aLength,
               const uint8_t* b, size_t bLength, uint8_t* out);
  uint8_t OpenOne(const uint8_t* nonce, const uint8_t* aad, size_t aadLength, uint8_t* body, size_t length);
  void Free();

  EVP_CIPHER_CTX* seal_ = nullptr;
  EVP_CIPHER_CTX* open_ = nullptr;
  const char* cipherName_ = "";
  uint64_t next_ = 0;
  bool rawOnly_ = false;
};

}  // namespace lwt

#endif  // LWT_NATIVE_AEAD_H_
