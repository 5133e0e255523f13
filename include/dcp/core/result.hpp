#pragma once
// result<T>: a value or the error_code that says why there is none.
//
// std::expected is C++23; this is the part of it dcp needs, so that decoders
// and fallible calls return errors as values instead of throwing into an
// event loop.
#include <cassert>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

#include "dcp/core/error.hpp"

namespace dcp {

template <class T>
class [[nodiscard]] result {
  static_assert(!std::is_same_v<std::remove_cv_t<T>, std::error_code>, "result<error_code> is ambiguous");

 public:
  result(T value) : v_(std::move(value)) {}                         // NOLINT: implicit by design
  result(std::error_code ec) : v_(ec) { assert(ec); }               // NOLINT
  result(errc e) : v_(make_error_code(e)) {}                        // NOLINT

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { check(); return std::get<0>(v_); }
  const T& value() const& { check(); return std::get<0>(v_); }
  T&& value() && { check(); return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  std::error_code error() const noexcept { return has_value() ? std::error_code{} : std::get<1>(v_); }

 private:
  void check() const {
    if (!has_value()) throw std::system_error(std::get<1>(v_), "dcp::result has no value");
  }
  std::variant<T, std::error_code> v_;
};

}  // namespace dcp
