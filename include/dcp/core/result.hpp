#pragma once
// result<T>: a value or the error_code that says why there is none.
//
// std::expected is C++23; this is the part of it dcp needs, so that decoders
// and fallible calls return errors as values instead of throwing into an
// event loop.
//
// An error may also carry words: what happened, in terms the caller can act
// on ("session expired: keepalives unanswered for 1200 ms"), beside the code
// that programs test. error() still returns the bare code, so callers that
// compare codes are unaffected; message() gives the words (or the code's own
// message), and explained() passes both on to another result.
//
// result<void> is what a completion that returns nothing takes: success, or
// the error. It converts from std::error_code (an empty code is success) and
// back, so a callback written as `[](std::error_code ec) {...}` still fits a
// completion of result<void> -- but `if (r)` is true on success, where
// `if (ec)` is true on an error: a generic lambda (`auto r`) gets the result.
#include <memory>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

#include "dcp/core/assert.hpp"
#include "dcp/core/error.hpp"

namespace dcp {

/// An error code with the words that say what happened.
struct explained_error {
  std::error_code code;
  std::string what;  ///< empty: the code's own message says it all
};

template <class T> class [[nodiscard]] result {
  static_assert(!std::is_same_v<std::remove_cv_t<T>, std::error_code>, "result<error_code> is ambiguous");

 public:
  result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  result(std::error_code ec) : v_(ec) { DCP_ASSERT(ec, "a result built from an error code needs an error"); }  // NOLINT
  result(errc e) : v_(make_error_code(e)) {}                                                                   // NOLINT
  result(explained_error e) {                                                                                  // NOLINT
    DCP_ASSERT(e.code, "a result built from an error needs an error code");
    if (e.what.empty())
      v_ = e.code;
    else
      v_ = std::make_shared<const explained_error>(std::move(e));
  }

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & {
    check();
    return std::get<0>(v_);
  }
  const T& value() const& {
    check();
    return std::get<0>(v_);
  }
  T&& value() && {
    check();
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  std::error_code error() const noexcept {
    if (v_.index() == 1) return std::get<1>(v_);
    if (v_.index() == 2) return std::get<2>(v_)->code;
    return {};
  }
  /// What went wrong, in words: the words given with the error, or the
  /// code's message; empty when there is a value.
  std::string message() const {
    if (v_.index() == 2) return std::get<2>(v_)->what;
    return has_value() ? std::string{} : error().message();
  }
  /// The error and its words, to pass on (an empty `what` if none were given).
  explained_error explained() const {
    if (v_.index() == 2) return *std::get<2>(v_);
    return {error(), {}};
  }

 private:
  void check() const {
    if (!has_value())
      throw std::system_error(error(), v_.index() == 2 ? std::get<2>(v_)->what : "dcp::result has no value");
  }
  std::variant<T, std::error_code, std::shared_ptr<const explained_error>> v_;
};

template <> class [[nodiscard]] result<void> {
 public:
  result() noexcept = default;                          ///< success
  result(std::error_code ec) noexcept : ec_(ec) {}      // NOLINT: implicit by design; empty: success
  result(errc e) noexcept : ec_(make_error_code(e)) {}  // NOLINT
  result(explained_error e) : ec_(e.code) {             // NOLINT
    DCP_ASSERT(e.code, "a result built from an error needs an error code");
    if (!e.what.empty()) why_ = std::make_shared<const std::string>(std::move(e.what));
  }

  bool has_value() const noexcept { return !ec_; }
  explicit operator bool() const noexcept { return has_value(); }
  /// Throws the error, if there is one (as result<T>::value() does).
  void value() const {
    if (ec_) throw std::system_error(ec_, why_ ? *why_ : "dcp::result has no value");
  }

  std::error_code error() const noexcept { return ec_; }
  /// The error as a bare code (empty on success): what a `void(std::error_code)`
  /// callback is handed.
  operator std::error_code() const noexcept { return ec_; }  // NOLINT: implicit by design
  std::string message() const {
    if (why_) return *why_;
    return ec_ ? ec_.message() : std::string{};
  }
  explained_error explained() const { return {ec_, why_ ? *why_ : std::string{}}; }

 private:
  std::error_code ec_;
  std::shared_ptr<const std::string> why_;  // shared: results are copied into several callbacks
};

}  // namespace dcp
