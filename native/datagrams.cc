// DatagramBatch (see datagrams.h): one arena ArrayBuffer and one ArrayBuffer carved into the
// per-datagram tables, both allocated once and exposed to JS as typed arrays.
#include "datagrams.h"

#include "common.h"

namespace lwt {

namespace {

// Tags every DatagramBatch, so that an object of another class is never unwrapped as one.
constexpr napi_type_tag kBatchTag = {0x6c77745f64677261ULL, 0x6d62617463680001ULL};

size_t Align8(size_t n) { return (n + 7) & ~size_t{7}; }

}  // namespace

Napi::Function DatagramBatch::Define(Napi::Env env) {
  return DefineClass(env, "DatagramBatch", {});
}

DatagramBatch* DatagramBatch::From(Napi::Env env, Napi::Value value) {
  if (!value.IsObject()) return nullptr;
  bool tagged = false;
  if (napi_check_object_type_tag(env, value, &kBatchTag, &tagged) != napi_ok || !tagged) return nullptr;
  return Unwrap(value.As<Napi::Object>());
}

DatagramBatch::DatagramBatch(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DatagramBatch>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  double cap = 0;
  double size = 0;
  if (info.Length() < 2 || !ToIndex(info[0], kMaxBatchCapacity, &cap) || !ToIndex(info[1], kMaxBatchBytes, &size) ||
      cap < 1 || size < 1) {
    ThrowRange(env, "new DatagramBatch(capacity: 1..65536, bytes: 1..268435456)");
    return;
  }
  capacity = static_cast<uint32_t>(cap);
  bytes = static_cast<uint32_t>(size);

  // Table layout: the f64 column first (8-byte aligned), then u32, u16 and u8 columns.
  const size_t n = capacity;
  const size_t countersAt = 0;
  const size_t offsetsAt = countersAt + 8 * n;
  const size_t lengthsAt = offsetsAt + 4 * n;
  const size_t addrsAt = lengthsAt + 4 * n;
  const size_t receiversAt = addrsAt + 4 * n;
  const size_t portsAt = receiversAt + 4 * n;
  const size_t segmentsAt = portsAt + 2 * n;
  const size_t typesAt = segmentsAt + 2 * n;
  const size_t statusAt = typesAt + n;
  const size_t tableBytes = Align8(statusAt + n);

  Napi::ArrayBuffer arenaBuffer = Napi::ArrayBuffer::New(env, bytes);
  if (env.IsExceptionPending()) return;
  Napi::ArrayBuffer tables = Napi::ArrayBuffer::New(env, tableBytes);
  if (env.IsExceptionPending()) return;
  Napi::Float64Array countersView = Napi::Float64Array::New(env, n, tables, countersAt);
  Napi::Uint32Array offsetsView = Napi::Uint32Array::New(env, n, tables, offsetsAt);
  Napi::Uint32Array lengthsView = Napi::Uint32Array::New(env, n, tables, lengthsAt);
  Napi::Uint32Array addrsView = Napi::Uint32Array::New(env, n, tables, addrsAt);
  Napi::Uint32Array receiversView = Napi::Uint32Array::New(env, n, tables, receiversAt);
  Napi::Uint16Array portsView = Napi::Uint16Array::New(env, n, tables, portsAt);
  Napi::Uint16Array segmentsView = Napi::Uint16Array::New(env, n, tables, segmentsAt);
  Napi::Uint8Array typesView = Napi::Uint8Array::New(env, n, tables, typesAt);
  Napi::Uint8Array statusView = Napi::Uint8Array::New(env, n, tables, statusAt);
  if (env.IsExceptionPending()) return;

  uint8_t* base = static_cast<uint8_t*>(tables.Data());
  arena = static_cast<uint8_t*>(arenaBuffer.Data());
  counters = reinterpret_cast<double*>(base + countersAt);
  offsets = reinterpret_cast<uint32_t*>(base + offsetsAt);
  lengths = reinterpret_cast<uint32_t*>(base + lengthsAt);
  addrs = reinterpret_cast<uint32_t*>(base + addrsAt);
  receivers = reinterpret_cast<uint32_t*>(base + receiversAt);
  ports = reinterpret_cast<uint16_t*>(base + portsAt);
  segments = reinterpret_cast<uint16_t*>(base + segmentsAt);
  types = base + typesAt;
  status = base + statusAt;
  arenaRef_ = Napi::Persistent(arenaBuffer);
  tablesRef_ = Napi::Persistent(tables);

  Napi::Object self = info.This().As<Napi::Object>();
  if (napi_type_tag_object(env, self, &kBatchTag) != napi_ok) return;
  self.DefineProperties({
      Napi::PropertyDescriptor::Value("buffer", arenaBuffer, napi_enumerable),
      Napi::PropertyDescriptor::Value("capacity", Napi::Number::New(env, capacity), napi_enumerable),
      Napi::PropertyDescriptor::Value("offsets", offsetsView, napi_enumerable),
      Napi::PropertyDescriptor::Value("lengths", lengthsView, napi_enumerable),
      Napi::PropertyDescriptor::Value("addrs", addrsView, napi_enumerable),
      Napi::PropertyDescriptor::Value("ports", portsView, napi_enumerable),
      Napi::PropertyDescriptor::Value("segments", segmentsView, napi_enumerable),
      Napi::PropertyDescriptor::Value("types", typesView, napi_enumerable),
      Napi::PropertyDescriptor::Value("receivers", receiversView, napi_enumerable),
      Napi::PropertyDescriptor::Value("status", statusView, napi_enumerable),
      Napi::PropertyDescriptor::Value("counters", countersView, napi_enumerable),
  });
}

bool DatagramBatch::Usable() const { return !IsDetached(env_, arenaRef_) && !IsDetached(env_, tablesRef_); }

}  // namespace lwt
