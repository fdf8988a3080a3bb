// Helpers shared by the project's addons (lwt_tun, lwt_udp): errors shaped like Node's system
// errors, argument checks, and calls into JavaScript from libuv callbacks. Header-only; every
// function is inline and stateless.
#ifndef LWT_NATIVE_COMMON_H_
#define LWT_NATIVE_COMMON_H_

#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <unistd.h>

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


// The readiness watcher of one non-blocking fd owned by an ObjectWrap `Owner`, with the JS side
// every such object has: start(onRead, onError) / stop() for reading, a one-shot onWritable(cb),
// close(). The owner provides `void OnReadable()` (drain the fd, then CallRead once per batch) and
// `void OnPollError(int status)` (libuv stops the handle on EPOLLERR). While the poll handle is
// active the owner's JS object is pinned (Ref), so, like a socket, it keeps the event loop alive;
// otherwise it can be collected, and its finalizer closes the fd. Loop thread only; never uses the
// libuv thread pool.
template <typename Owner>
class FdWatch {
 public:
  FdWatch(napi_env env, Owner* owner) : env_(env), owner_(owner) {}
  ~FdWatch() { delete async_; }
  FdWatch(const FdWatch&) = delete;
  FdWatch& operator=(const FdWatch&) = delete;

  // Creates the async context named `resource`; false with a pending exception.
  bool Init(Napi::Env env, const char* resource) {
    async_ = new Napi::AsyncContext(env, resource);
    return !env.IsExceptionPending();
  }
  // Takes ownership of fd: call it last in the owner's constructor, once nothing can fail.
  void Adopt(int fd) { fd_ = fd; }
  int fd() const { return fd_; }
  bool reading() const { return reading_; }

  // start(onRead: (count) => void, onError: (err) => void): begins (or re-targets) reading.
  Napi::Value Start(const Napi::CallbackInfo& info, const char* subject) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsFunction() || !info[1].IsFunction()) {
      return ThrowType(env, "start(onRead: function, onError: function)");
    }
    if (fd_ < 0) return ThrowSystemError(env, EBADF, "start", std::string("closed ") + subject);
    onRead_ = Napi::Persistent(info[0].As<Napi::Function>());
    onError_ = Napi::Persistent(info[1].As<Napi::Function>());
    reading_ = true;
    int err = Update();
    if (err != 0) {
      reading_ = false;
      onRead_.Reset();
      onError_.Reset();
      Update();
      return ThrowSystemError(env, -err, "uv_poll_start", subject);
    }
    return env.Undefined();
  }

  // stop(): stops reading; idempotent.
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (reading_) {
      reading_ = false;
      Update();
    }
    onRead_.Reset();
    onError_.Reset();
    return info.Env().Undefined();
  }

  // onWritable(cb): calls cb once, the next time the fd is writable. A second call before that
  // replaces the callback.
  Napi::Value OnWritable(const Napi::CallbackInfo& info, const char* subject) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) return ThrowType(env, "onWritable(cb: function)");
    if (fd_ < 0) return ThrowSystemError(env, EBADF, "onWritable", std::string("closed ") + subject);
    onWritable_ = Napi::Persistent(info[0].As<Napi::Function>());
    writeArmed_ = true;
    int err = Update();
    if (err != 0) {
      writeArmed_ = false;
      onWritable_.Reset();
      Update();
      return ThrowSystemError(env, -err, "uv_poll_start", subject);
    }
    return env.Undefined();
  }

  // close(): idempotent; the fd is closed at once.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown(true);
    onRead_.Reset();
    onError_.Reset();
    onWritable_.Reset();
    return info.Env().Undefined();
  }

  // Releases the handle (freed in its close callback) and the fd. fromJs is false in the owner's
  // finalizer, where its JS reference must not be touched.
  void Shutdown(bool fromJs) {
    reading_ = false;
    writeArmed_ = false;
    if (poll_ != nullptr) {
      uv_poll_stop(poll_);  // deregisters the fd from epoll right away
      poll_->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* handle) { delete reinterpret_cast<uv_poll_t*>(handle); });
      poll_ = nullptr;
    }
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
    if (fromJs) Pin(false);
  }

  // Restarts polling after libuv stopped the handle (see OnPollError); 0 or a libuv error.
  int Resume() { return Update(); }

  // Stops reading and reports err to onError, once.
  void Fail(int err, const char* syscall, const std::string& subject) {
    Napi::Env env(env_);
    Napi::Function cb = onError_.IsEmpty() ? Napi::Function() : onError_.Value();
    reading_ = false;
    writeArmed_ = false;
    onRead_.Reset();
    onError_.Reset();
    onWritable_.Reset();
    Update();
    if (!cb.IsEmpty()) Call(cb, {SystemError(env, err, syscall, subject).Value()});
  }

  // onRead(count), as an event.
  void CallRead(uint32_t count) {
    if (onRead_.IsEmpty()) return;
    Call(onRead_.Value(), {Napi::Number::New(Napi::Env(env_), count)});
  }

 private:
  void Call(Napi::Function cb, const std::initializer_list<napi_value>& args) {
    CallAsEvent(env_, cb, owner_->Value(), *async_, args);
  }

  // Brings the handle in line with reading_/writeArmed_. Returns 0 or a libuv error (the handle is
  // then stopped).
  int Update() {
    const int events = (reading_ ? UV_READABLE : 0) | (writeArmed_ ? UV_WRITABLE : 0);
    int err = 0;
    if (events == 0) {
      if (poll_ != nullptr) uv_poll_stop(poll_);
    } else {
      if (poll_ == nullptr) {
        uv_loop_t* loop = nullptr;
        if (napi_get_uv_event_loop(env_, &loop) != napi_ok || loop == nullptr) return UV_EINVAL;
        uv_poll_t* handle = new uv_poll_t;
        err = uv_poll_init(loop, handle, fd_);
        if (err != 0) {
          delete handle;  // never registered with the loop
          return err;
        }
        handle->data = this;
        poll_ = handle;
      }
      err = uv_poll_start(poll_, events, &FdWatch::OnPoll);
      if (err != 0) uv_poll_stop(poll_);
    }
    Pin(err == 0 && events != 0);
    return err;
  }

  void Pin(bool active) {
    if (active && !pinned_) {
      owner_->Ref();
      pinned_ = true;
    } else if (!active && pinned_) {
      owner_->Unref();
      pinned_ = false;
    }
  }

  static void OnPoll(uv_poll_t* handle, int status, int events) {
    FdWatch* self = static_cast<FdWatch*>(handle->data);
    if (self != nullptr) self->Dispatch(status, events);
  }

  void Dispatch(int status, int events) {
    Napi::Env env(env_);
    Napi::HandleScope scope(env);
    if (status < 0) {
      owner_->OnPollError(status);
      return;
    }
    if ((events & UV_WRITABLE) != 0 && writeArmed_) {
      writeArmed_ = false;
      Update();
      Napi::Function cb = onWritable_.Value();
      onWritable_.Reset();
      Call(cb, {});
    }
    // A full batch leaves the fd readable; the level-triggered poll wakes the owner again on the
    // next loop turn, after other handles had their share.
    if ((events & UV_READABLE) != 0 && reading_ && fd_ >= 0) owner_->OnReadable();
  }

  napi_env env_;
  Owner* owner_;
  int fd_ = -1;
  uv_poll_t* poll_ = nullptr;
  bool pinned_ = false;
  bool reading_ = false;
  bool writeArmed_ = false;
  Napi::FunctionReference onRead_;
  Napi::FunctionReference onError_;
  Napi::FunctionReference onWritable_;
  Napi::AsyncContext* async_ = nullptr;
};

}  // namespace lwt

#endif  // LWT_NATIVE_COMMON_H_
