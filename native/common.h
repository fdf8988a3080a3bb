// Helpers shared by the project's addons (lwt_tun, lwt_udp): errors shaped like Node's system
// errors, argument checks, and calls into JavaScript from libuv callbacks. Header-only; every
// function is inline and stateless.
#ifndef LWT_NATIVE_COMMON_H_
#define LWT_NATIVE_COMMON_H_

#include <napi.h>
#include <uv.h>

#include <cstdint>
#include <initializer_list>
#include <string>

namespace lwt {

// Builds an Error shaped like Node's system errors: message, code, errno (negative), syscall.
inline Napi::Error SystemError(Napi::Env env, int err, const char* syscall, const std::string& subject) {
  char name[64];
  char text[256];
  uv_err_name_r(-err, name, sizeof name);
  uv_strerror_r(-err, text, sizeof text);
  std::string message = std::string(syscall) + " failed";
  if (!subject.empty()) message += " for " + subject;
  message += ": ";
  message += text;
  message += " (";
  message += name;
  message += ")";
  Napi::Error error = Napi::Error::New(env, message);
  Napi::Object obj = error.Value();
  obj.Set("code", Napi::String::New(env, name));
  obj.Set("errno", Napi::Number::New(env, -err));
  obj.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

inline Napi::Value ThrowSystemError(Napi::Env env, int err, const char* syscall, const std::string& subject) {
  SystemError(env, err, syscall, subject).ThrowAsJavaScriptException();
  return env.Undefined();
}

// Throws an Error with a project-specific `code` (not an errno name) and the operation as `syscall`.
inline Napi::Value ThrowCoded(Napi::Env env, const char* code, const char* operation, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Value().Set("code", Napi::String::New(env, code));
  error.Value().Set("syscall", Napi::String::New(env, operation));
  error.ThrowAsJavaScriptException();
  return env.Undefined();
}

inline Napi::Value ThrowType(Napi::Env env, const char* message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
  return env.Undefined();
}

inline Napi::Value ThrowRange(Napi::Env env, const std::string& message) {
  Napi::RangeError::New(env, message).ThrowAsJavaScriptException();
  return env.Undefined();
}

// An integral Number in [0, max] (max at most 2^53); false when `v` is anything else.
inline bool ToIndex(Napi::Value v, double max, double* out) {
  if (!v.IsNumber()) return false;
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= max) || d != static_cast<double>(static_cast<uint64_t>(d))) return false;
  *out = d;
  return true;
}

// The bytes of a Uint8Array (or Int8Array, Uint8ClampedArray) value; false for anything else,
// with no exception left pending.
inline bool ByteView(napi_env env, napi_value value, uint8_t** data, size_t* length) {
  napi_typedarray_type type;
  void* raw = nullptr;
  if (napi_get_typedarray_info(env, value, &type, length, &raw, nullptr, nullptr) != napi_ok) {
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
    }
    return false;
  }
  if (type != napi_uint8_array && type != napi_int8_array && type != napi_uint8_clamped_array) return false;
  *data = static_cast<uint8_t*>(raw);
  return true;
}

// Whether an ArrayBuffer held by `ref` was detached (transferred away); an error counts as detached.
inline bool IsDetached(napi_env env, const Napi::Reference<Napi::ArrayBuffer>& ref) {
  bool detached = false;
  return napi_is_detached_arraybuffer(env, ref.Value(), &detached) != napi_ok || detached;
}

// Calls into JS like a socket event would (async hooks, then the nextTick and microtask queues),
// with `receiver` as `this`. A throw becomes an uncaught exception, as it would from an
// EventEmitter listener.
inline void CallAsEvent(napi_env rawEnv, Napi::Function cb, Napi::Object receiver, Napi::AsyncContext& context,
                        const std::initializer_list<napi_value>& args) {
  if (cb.IsEmpty()) return;
  Napi::Env env(rawEnv);
  cb.MakeCallback(receiver, args, context);
  if (env.IsExceptionPending()) {
    Napi::Error error = env.GetAndClearPendingException();
    napi_fatal_exception(rawEnv, error.Value());
  }
}


// The uv_poll_t readiness watcher of one fd, owned by an ObjectWrap `Owner` that has a public
// `void HandlePoll(int status, int events)`. While the handle is active the owner's JS object is
// pinned (Ref), so, like a socket, it keeps the event loop alive; otherwise it can be collected.
// Runs on the loop thread only; never uses the libuv thread pool.
template <typename Owner>
class PollHandle {
 public:
  // Brings the handle in line with `events` (UV_READABLE | UV_WRITABLE, 0 to stop). Returns 0 or a
  // libuv error (the handle is then stopped).
  int Update(napi_env env, Owner* owner, int fd, int events) {
    int err = 0;
    if (events == 0) {
      if (poll_ != nullptr) uv_poll_stop(poll_);
    } else {
      if (poll_ == nullptr) {
        uv_loop_t* loop = nullptr;
        if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) return UV_EINVAL;
        uv_poll_t* handle = new uv_poll_t;
        err = uv_poll_init(loop, handle, fd);
        if (err != 0) {
          delete handle;  // never registered with the loop
          return err;
        }
        handle->data = owner;
        poll_ = handle;
      }
      err = uv_poll_start(poll_, events, &PollHandle::OnPoll);
      if (err != 0) uv_poll_stop(poll_);
    }
    Pin(owner, err == 0 && events != 0);
    return err;
  }

  // Stops and releases the handle (freed in its close callback). fromJs is false in the owner's
  // finalizer, where its JS reference must not be touched.
  void Close(Owner* owner, bool fromJs) {
    if (poll_ != nullptr) {
      uv_poll_stop(poll_);  // deregisters the fd from epoll right away
      poll_->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* handle) { delete reinterpret_cast<uv_poll_t*>(handle); });
      poll_ = nullptr;
    }
    if (fromJs) Pin(owner, false);
  }

 private:
  void Pin(Owner* owner, bool active) {
    if (active && !pinned_) {
      owner->Ref();
      pinned_ = true;
    } else if (!active && pinned_) {
      owner->Unref();
      pinned_ = false;
    }
  }

  static void OnPoll(uv_poll_t* handle, int status, int events) {
    Owner* owner = static_cast<Owner*>(handle->data);
    if (owner != nullptr) owner->HandlePoll(status, events);
  }

  uv_poll_t* poll_ = nullptr;
  bool pinned_ = false;
};

}  // namespace lwt

#endif  // LWT_NATIVE_COMMON_H_
