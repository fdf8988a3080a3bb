// AeadKey (see aead.h). Only OpenSSL's EVP AEAD interface does cryptography here: this file
// builds nonces and headers, bounds lengths, and keeps the counter rule.
#include "aead.h"

#include <openssl/err.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "common.h"
#include "tcpseg.h"

namespace lwt {

namespace {

constexpr napi_type_tag kKeyTag = {0x6c77745f61656164ULL, 0x6b65790000000001ULL};
constexpr size_t kKeyBytes = 32;
constexpr size_t kNonceBytes = 12;
constexpr size_t kMaxPayload = kMaxUdpPayload - kSealOverhead;

// Nonce = 4 zero bytes + the header's 8-byte big-endian counter.
void NonceOf(const uint8_t* header, uint8_t nonce[kNonceBytes]) {
  memset(nonce, 0, 4);
  memcpy(nonce + 4, header + 8, 8);
}

// Drops what a failed EVP call left in this thread's OpenSSL error queue (Node's crypto shares it).
void ClearOpenSslErrors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

// A `-1 = any` selector byte: -1..255.
bool SelectorArg(Napi::Value v, int* out) {
  if (!v.IsNumber()) return false;
  double d = v.As<Napi::Number>().DoubleValue();
  if (d == -1) {
    *out = -1;
    return true;
  }
  double index = 0;
  if (!ToIndex(v, 255, &index)) return false;
  *out = static_cast<int>(index);
  return true;
}

}  // namespace

Napi::Function AeadKey::Define(Napi::Env env) {
  return DefineClass(env, "AeadKey",
                     {
                         InstanceMethod<&AeadKey::Seal>("seal"),
                         InstanceMethod<&AeadKey::Open>("open"),
                         InstanceMethod<&AeadKey::Destroy>("destroy"),
                         InstanceMethod<&AeadKey::SealRaw>("sealRaw"),
                         InstanceMethod<&AeadKey::OpenRaw>("openRaw"),
                         InstanceAccessor<&AeadKey::GetNextCounter>("nextCounter"),
                         InstanceAccessor<&AeadKey::GetCipher>("cipher"),
                         InstanceAccessor<&AeadKey::GetDestroyed>("destroyed"),
                     });
}

AeadKey* AeadKey::From(Napi::Env env, Napi::Value value) {
  if (!value.IsObject()) return nullptr;
  bool tagged = false;
  if (napi_check_object_type_tag(env, value, &kKeyTag, &tagged) != napi_ok || !tagged) return nullptr;
  return Unwrap(value.As<Napi::Object>());
}

AeadKey::AeadKey(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AeadKey>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString()) {
    ThrowType(env, "new AeadKey(cipher: 'aes-256-gcm' | 'chacha20-poly1305', key: Uint8Array)");
    return;
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  const EVP_CIPHER* cipher = nullptr;
  if (name == "aes-256-gcm") {
    cipher = EVP_aes_256_gcm();
    cipherName_ = "aes-256-gcm";
  } else if (name == "chacha20-poly1305") {
    cipher = EVP_chacha20_poly1305();
    cipherName_ = "chacha20-poly1305";
  } else {
    ThrowCoded(env, "EINVAL", "AeadKey", "unknown cipher " + name + " (aes-256-gcm or chacha20-poly1305)");
    return;
  }
  rawOnly_ = info.Length() > 2 && info[2].ToBoolean().Value();
  uint8_t* key = nullptr;
  size_t keyLength = 0;
  if (!ByteView(env, info[1], &key, &keyLength) || keyLength != kKeyBytes) {
    ThrowCoded(env, "EINVAL", "AeadKey", "the key must be a Uint8Array of 32 bytes");
    return;
  }
  seal_ = EVP_CIPHER_CTX_new();
  open_ = EVP_CIPHER_CTX_new();
  // The key schedule is computed once here; each datagram only sets its nonce.
  if (seal_ == nullptr || open_ == nullptr || EVP_EncryptInit_ex(seal_, cipher, nullptr, key, nullptr) != 1 ||
      EVP_DecryptInit_ex(open_, cipher, nullptr, key, nullptr) != 1 ||
      EVP_CIPHER_CTX_get_iv_length(seal_) != static_cast<int>(kNonceBytes)) {
    Free();
    ClearOpenSslErrors();
    ThrowCoded(env, "ECRYPTO", "AeadKey", std::string("OpenSSL cannot set up ") + cipherName_);
    return;
  }
  if (napi_type_tag_object(env, info.This(), &kKeyTag) != napi_ok) return;
}

AeadKey::~AeadKey() { Free(); }

// EVP_CIPHER_CTX_free wipes the key schedule.
void AeadKey::Free() {
  EVP_CIPHER_CTX_free(seal_);
  EVP_CIPHER_CTX_free(open_);
  seal_ = nullptr;
  open_ = nullptr;
}

bool AeadKey::Live(Napi::Env env, const char* operation, bool raw) {
  if (seal_ == nullptr) {
    ThrowCoded(env, "EDESTROYED", operation, std::string("the ") + cipherName_ + " key was destroyed");
    return false;
  }
  if (raw != rawOnly_) {
    ThrowCoded(env, "EINVAL", operation,
               raw ? "only a vector key (made with rawOnly) takes caller-chosen nonces"
                   : "a vector key (made with rawOnly) seals and opens single messages only");
    return false;
  }
  return true;
}

bool AeadKey::SealArgs(const Napi::CallbackInfo& info, size_t at, SealHeader* header, uint64_t* counter) {
  Napi::Env env = info.Env();
  double type = 0, epoch = 0, receiver = 0;
  if (info.Length() < at + 3 || !ToIndex(info[at], 255, &type) || !ToIndex(info[at + 1], 255, &epoch) ||
      !ToIndex(info[at + 2], 4294967295.0, &receiver)) {
    ThrowRange(env, "type and epoch must be integers in 0..255 and receiverId in 0..2^32-1");
    return false;
  }
  header->type = static_cast<uint8_t>(type);
  header->epoch = static_cast<uint8_t>(epoch);
  header->receiver = static_cast<uint32_t>(receiver);
  Napi::Value c = info.Length() > at + 3 ? info[at + 3] : env.Undefined();
  double value = 0;
  if (c.IsUndefined() || (c.IsNumber() && c.As<Napi::Number>().DoubleValue() == -1)) {
    *counter = next_;
  } else if (ToIndex(c, static_cast<double>(kCounterLimit - 1), &value)) {
    *counter = static_cast<uint64_t>(value);
  } else {
    ThrowRange(env, "counter must be an integer in 0..2^53-1 (or -1 for the next one)");
    return false;
  }
  return true;
}

// Encrypts `length` bytes of `in` into `out` (the tag goes to out + length) under `nonce`,
// authenticating `aad`.
bool AeadKey::SealOne(const uint8_t* nonce, const uint8_t* aad, size_t aadLength, const uint8_t* in, size_t length,
                      uint8_t* out) {
  return SealTwo(nonce, aad, aadLength, in, length, nullptr, 0, out);
}

// Authenticates and decrypts `bodyLength` bytes in place, the tag following them. On failure the
// keystream is applied once more, which turns the bytes back into exactly what arrived: a forged
// datagram costs a second pass and no allocation, and leaves no unauthenticated plaintext behind.
uint8_t AeadKey::OpenOne(const uint8_t* nonce, const uint8_t* aad, size_t aadLength, uint8_t* body, size_t length) {
  const int bodyLength = static_cast<int>(length);
  uint8_t* tag = body + bodyLength;
  int n = 0;
  int tail = 0;
  bool decrypted = false;
  bool ok = EVP_DecryptInit_ex(open_, nullptr, nullptr, nullptr, nonce) == 1 &&
            (aadLength == 0 || EVP_DecryptUpdate(open_, nullptr, &n, aad, static_cast<int>(aadLength)) == 1);
  if (ok && bodyLength > 0) {
    ok = EVP_DecryptUpdate(open_, body, &n, body, bodyLength) == 1 && n == bodyLength;
    decrypted = ok;
  }
  ok = ok && EVP_CIPHER_CTX_ctrl(open_, EVP_CTRL_AEAD_SET_TAG, kTagBytes, tag) == 1 &&
       EVP_DecryptFinal_ex(open_, body + bodyLength, &tail) == 1 && tail == 0;
  if (ok) return kOpened;
  if (decrypted) {
    // Same nonce, same keystream: XOR-ing it in again restores the ciphertext.
    if (EVP_DecryptInit_ex(open_, nullptr, nullptr, nullptr, nonce) != 1 ||
        EVP_DecryptUpdate(open_, body, &n, body, bodyLength) != 1 || n != bodyLength) {
      // Cannot happen with a stream-mode AEAD; never leave unauthenticated plaintext readable.
      memset(body, 0, static_cast<size_t>(bodyLength));
    }
  }
  ClearOpenSslErrors();
  return kBadTag;
}

bool AeadKey::SealTwo(const uint8_t* nonce, const uint8_t* aad, size_t aadLength, const uint8_t* a, size_t aLength,
                      const uint8_t* b, size_t bLength, uint8_t* out) {
  int n = 0;
  int m = 0;
  int tail = 0;
  if (EVP_EncryptInit_ex(seal_, nullptr, nullptr, nullptr, nonce) != 1) return false;
  if (aadLength > 0 && EVP_EncryptUpdate(seal_, nullptr, &n, aad, static_cast<int>(aadLength)) != 1) return false;
  n = 0;
  if (aLength > 0 && EVP_EncryptUpdate(seal_, out, &n, a, static_cast<int>(aLength)) != 1) return false;
  if (static_cast<size_t>(n) != aLength) return false;
  if (bLength > 0 && EVP_EncryptUpdate(seal_, out + n, &m, b, static_cast<int>(bLength)) != 1) return false;
  if (static_cast<size_t>(m) != bLength) return false;
  const size_t length = aLength + bLength;
  if (EVP_EncryptFinal_ex(seal_, out + length, &tail) != 1 || tail != 0) return false;
  return EVP_CIPHER_CTX_ctrl(seal_, EVP_CTRL_AEAD_GET_TAG, kTagBytes, out + length) == 1;
}

int64_t AeadKey::SealArray(Napi::Env env, napi_value payloads, uint32_t from, const SealHeader& header,
                           uint64_t counter, DatagramBatch* out, uint32_t max, const SegmentPlan* plan,
                           uint32_t* consumed) {
  *consumed = 0;
  if (!Live(env, "seal", false)) return -1;
  if (!out->Usable()) {
    ThrowCoded(env, "EFAULT", "seal", "the output batch's buffers were transferred away");
    return -1;
  }
  uint32_t length = 0;
  bool isArray = false;
  if (napi_is_array(env, payloads, &isArray) != napi_ok || !isArray ||
      napi_get_array_length(env, payloads, &length) != napi_ok) {
    ThrowType(env, "payloads must be an array of Uint8Array");
    return -1;
  }
  if (counter < next_) {
    ThrowCoded(env, "ECOUNTER", "seal",
               "counter " + std::to_string(counter) + " was already used under this key (next unused: " +
                   std::to_string(next_) + ")");
    return -1;
  }
  const uint32_t available = from < length ? std::min(length - from, max) : 0;
  const uint32_t maxRows = plan != nullptr ? std::min(out->capacity, plan->maxRows) : out->capacity;
  // Without segmentation a row is a payload: refuse the batch up front when its counters run out.
  const uint32_t wantRows = std::min(available, maxRows);
  if (plan == nullptr && wantRows > 0 && counter + wantRows > kCounterLimit) {
    ThrowCoded(env, "ECOUNTER", "seal", "the key's counters are exhausted: rekey");
    return -1;
  }
  const uint8_t* arenaEnd = out->arena + out->bytes;
  uint32_t position = 0;
  uint32_t rows = 0;
  uint32_t k = 0;
  const char* failure = nullptr;
  const char* code = "EINVAL";
  // Seals `len` bytes (headers `a`, then `b`) as row `rows`; false when OpenSSL fails.
  auto sealRow = [&](const uint8_t* a, size_t aLength, const uint8_t* b, size_t bLength) {
    const uint64_t c = counter + rows;
    uint8_t* d = out->arena + position;
    d[0] = header.type;
    d[1] = header.epoch;
    d[2] = 0;
    d[3] = 0;
    WriteBe32(d + 4, header.receiver);
    WriteBe64(d + 8, c);
    uint8_t nonce[kNonceBytes];
    NonceOf(d, nonce);
    if (!SealTwo(nonce, d, kHeaderBytes, a, aLength, b, bLength, d + kHeaderBytes)) return false;
    const uint32_t size = static_cast<uint32_t>(aLength + bLength + kSealOverhead);
    out->offsets[rows] = position;
    out->lengths[rows] = size;
    out->types[rows] = header.type;
    out->receivers[rows] = header.receiver;
    out->status[rows] = kPending;
    out->counters[rows] = static_cast<double>(c);
    if (plan != nullptr) plan->rowPayload[rows] = k;
    position += size;
    rows += 1;
    return true;
  };
  for (; k < available && rows < maxRows; k++) {
    napi_value element;
    uint8_t* payload = nullptr;
    size_t payloadLength = 0;
    if (napi_get_element(env, payloads, from + k, &element) != napi_ok ||
        !ByteView(env, element, &payload, &payloadLength)) {
      failure = "every payload must be a Uint8Array";
      break;
    }
    if (payloadLength > 0 && payload < arenaEnd && payload + payloadLength > out->arena) {
      failure = "a payload lies inside the output batch's arena";
      break;
    }
    const uint32_t gso = plan != nullptr && from + k < plan->gsoCount ? plan->gso[from + k] : 0;
    if (gso == 0) {
      if (payloadLength > kMaxPayload) {
        failure = "a payload is larger than a datagram can carry (65475 bytes)";
        code = "EMSGSIZE";
        break;
      }
      if (payloadLength + kSealOverhead > out->bytes - position) break;
      if (counter + rows + 1 > kCounterLimit) {
        failure = "the key's counters are exhausted: rekey";
        code = "ECOUNTER";
        break;
      }
      if (!sealRow(payload, payloadLength, nullptr, 0)) {
        failure = "OpenSSL failed to seal";
        code = "ECRYPTO";
        break;
      }
      continue;
    }
    const SuperLayout l = LayoutOf(payload, payloadLength, gso, plan->maxPacket);
    if (!l.ok) {
      failure = "a super-packet is no TCPv4 packet that segments to maxPacket";
      break;
    }
    const size_t need = static_cast<size_t>(l.segments) * (l.hdr + kSealOverhead) + l.payload;
    if (rows + l.segments > maxRows || need > out->bytes - position) {
      if (rows == 0) {
        failure = "a super-packet's segments do not fit the send batch";
        code = "EMSGSIZE";
      }
      break;
    }
    if (counter + rows + l.segments > kCounterLimit) {
      failure = "the key's counters are exhausted: rekey";
      code = "ECOUNTER";
      break;
    }
    uint8_t headers[kMaxTcpHeaders];
    bool ok = true;
    for (uint32_t s = 0; s < l.segments && ok; s++) {
      const size_t off = static_cast<size_t>(s) * l.mss;
      const size_t len = std::min(l.mss, l.payload - std::min(off, l.payload));
      const uint8_t* chunk = payload + l.hdr + off;
      SegmentHeader(payload, l, s, chunk, len, headers);
      ok = sealRow(headers, l.hdr, chunk, len);
    }
    if (!ok) {
      failure = "OpenSSL failed to seal";
      code = "ECRYPTO";
      break;
    }
  }
  // Every counter handed out is spent, also those of datagrams sealed before a failure.
  next_ = counter + rows;
  *consumed = k;
  if (failure != nullptr) {
    ClearOpenSslErrors();
    ThrowCoded(env, code, "seal", failure);
    return -1;
  }
  return rows;
}

// seal(payloads: Uint8Array[], from, type, epoch, receiverId, counter, out: DatagramBatch) => number
Napi::Value AeadKey::Seal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double from = 0;
  if (info.Length() < 7 || !ToIndex(info[1], 4294967295.0, &from)) {
    return ThrowType(env, "seal(payloads, from, type, epoch, receiverId, counter, out: DatagramBatch)");
  }
  DatagramBatch* out = DatagramBatch::From(env, info[6]);
  if (out == nullptr) return ThrowType(env, "out must be a DatagramBatch");
  SealHeader header;
  uint64_t counter = 0;
  if (!SealArgs(info, 2, &header, &counter)) return env.Undefined();
  uint32_t consumed = 0;
  int64_t n = SealArray(env, info[0], static_cast<uint32_t>(from), header, counter, out, kMaxBatchCapacity, nullptr, &consumed);
  if (n < 0) return env.Undefined();
  return Napi::Number::New(env, static_cast<double>(n));
}

// open(batch: DatagramBatch, from, to, type (-1: any), epoch (-1: any), receiverId) => number
// Opens, in place, every pending datagram of batch[from..to) whose header carries this type, epoch
// and receiver id; returns how many authenticated.
Napi::Value AeadKey::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double from = 0, to = 0, receiver = 0;
  int type = 0, epoch = 0;
  if (info.Length() < 6 || !ToIndex(info[1], 4294967295.0, &from) || !ToIndex(info[2], 4294967295.0, &to) ||
      !SelectorArg(info[3], &type) || !SelectorArg(info[4], &epoch) || !ToIndex(info[5], 4294967295.0, &receiver)) {
    return ThrowType(env, "open(batch, from, to, type: -1..255, epoch: -1..255, receiverId: u32)");
  }
  DatagramBatch* b = DatagramBatch::From(env, info[0]);
  if (b == nullptr) return ThrowType(env, "batch must be a DatagramBatch");
  if (!Live(env, "open", false)) return env.Undefined();
  if (!b->Usable()) return ThrowCoded(env, "EFAULT", "open", "the batch's buffers were transferred away");
  const uint32_t rid = static_cast<uint32_t>(receiver);
  const uint32_t end = static_cast<uint32_t>(std::min<double>(to, b->capacity));
  uint32_t opened = 0;
  for (uint32_t i = static_cast<uint32_t>(from); i < end; i++) {
    if (b->status[i] != kPending) continue;
    const uint32_t offset = b->offsets[i];
    const uint32_t length = b->lengths[i];
    if (!b->InArena(offset, length) || length < kHeaderBytes) {
      b->status[i] = kMalformed;
      continue;
    }
    uint8_t* d = b->arena + offset;
    if ((type >= 0 && d[0] != type) || (epoch >= 0 && d[1] != epoch) || ReadBe32(d + 4) != rid) continue;
    const uint64_t counter = ReadBe64(d + 8);
    if (length < kSealOverhead || d[2] != 0 || d[3] != 0 || counter >= kCounterLimit) {
      b->status[i] = kMalformed;
      continue;
    }
    uint8_t nonce[kNonceBytes];
    NonceOf(d, nonce);
    const uint8_t result = OpenOne(nonce, d, kHeaderBytes, d + kHeaderBytes, length - kSealOverhead);
    b->status[i] = result;
    if (result != kOpened) continue;
    b->counters[i] = static_cast<double>(counter);
    b->offsets[i] = offset + kHeaderBytes;
    b->lengths[i] = length - kSealOverhead;
    opened++;
  }
  return Napi::Number::New(env, opened);
}

// sealRaw(nonce: Uint8Array(12), aad: Uint8Array, plaintext: Uint8Array) => Uint8Array (ciphertext + tag)
// openRaw(nonce, aad, sealed) => Uint8Array (plaintext) | null
// Single messages under caller-chosen nonces, for published test vectors: only a key made with
// rawOnly, which refuses the batch calls, so a data-path key never takes a nonce from outside.
Napi::Value AeadKey::SealRaw(const Napi::CallbackInfo& info) { return Raw(info, true); }
Napi::Value AeadKey::OpenRaw(const Napi::CallbackInfo& info) { return Raw(info, false); }

Napi::Value AeadKey::Raw(const Napi::CallbackInfo& info, bool seal) {
  Napi::Env env = info.Env();
  uint8_t *nonce = nullptr, *aad = nullptr, *in = nullptr;
  size_t nonceLength = 0, aadLength = 0, length = 0;
  if (info.Length() < 3 || !ByteView(env, info[0], &nonce, &nonceLength) || nonceLength != kNonceBytes ||
      !ByteView(env, info[1], &aad, &aadLength) || !ByteView(env, info[2], &in, &length) || aadLength > kMaxUdpPayload ||
      length > kMaxUdpPayload || (!seal && length < kTagBytes)) {
    return ThrowType(env, "(nonce: Uint8Array(12), aad: Uint8Array, data: Uint8Array), at most 65507 bytes each");
  }
  if (!Live(env, seal ? "sealRaw" : "openRaw", true)) return env.Undefined();
  if (seal) {
    Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(env, length + kTagBytes);
    if (env.IsExceptionPending()) return env.Undefined();
    if (!SealOne(nonce, aad, aadLength, in, length, out.Data())) {
      ClearOpenSslErrors();
      return ThrowCoded(env, "ECRYPTO", "sealRaw", "OpenSSL failed to seal");
    }
    return out;
  }
  Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::Copy(env, in, length);
  if (env.IsExceptionPending()) return env.Undefined();
  if (OpenOne(nonce, aad, aadLength, out.Data(), length - kTagBytes) != kOpened) return env.Null();
  return Napi::Buffer<uint8_t>::Copy(env, out.Data(), length - kTagBytes);
}

// destroy(): frees both contexts (wiping the key schedule); later seal/open throw EDESTROYED.
Napi::Value AeadKey::Destroy(const Napi::CallbackInfo& info) {
  Free();
  return info.Env().Undefined();
}

Napi::Value AeadKey::GetNextCounter(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(next_));
}

Napi::Value AeadKey::GetCipher(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), cipherName_); }

Napi::Value AeadKey::GetDestroyed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), seal_ == nullptr);
}

}  // namespace lwt
