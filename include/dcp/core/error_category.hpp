#pragma once
// The one std::error_category every dcp error enum uses.
//
// dcp has an error enum per chapter (dcp::errc, dcp::lease::errc,
// dcp::dht::scribe_errc ...), and each needs the same machinery: a category
// whose name() names it, whose message() says what to do, and whose
// default_error_condition() puts the code in its dcp::condition; a single
// instance of it, so that `ec.category() == x::error_category()` holds
// across translation units; and a make_error_code that std::error_code finds.
// That machinery is written once, here. What differs, an enum's name and what
// each of its codes means, the enum says next to its enumerators, in two
// functions found by argument-dependent lookup:
//
//   namespace dcp::lease {
//   enum class errc : int { token_too_large = 1, ... };
//   constexpr const char* error_category_name(errc) noexcept { return "dcp.lease"; }
//   constexpr error_meaning describe(errc e) noexcept {
//     switch (e) {  // every enumerator, and no default: -Wswitch names one added without a meaning
//       case errc::token_too_large:
//         return {condition::permanent, "lease token larger than the verifier's max_token_size: ..."};
//       ...
//     }
//     return {};  // not a code of the enum
//   }
//   inline const std::error_category& error_category() noexcept { return error_category_of<errc>(); }
//   using dcp::make_error_code;
//   }  // namespace dcp::lease
//   template <> struct std::is_error_code_enum<dcp::lease::errc> : std::true_type {};
//
// One switch gives a code its condition and its message together, so a code
// cannot have one without the other.
#include <concepts>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

#include "dcp/core/condition.hpp"

namespace dcp {

/// What one code means: the condition it is in, and the words a person reading
/// a log acts on. Both empty ({}) for a value that is not a code of its enum.
struct error_meaning {
  condition cond{};
  std::string_view message;
};

/// An error enum of dcp's shape: it names its category and describes its
/// codes (above).
template <class E>
concept described_error_enum = std::is_enum_v<E> && requires(E e) {
  { error_category_name(e) } -> std::convertible_to<const char*>;
  { describe(e) } -> std::same_as<error_meaning>;
};

/// The category of E's codes, whatever E: everything comes from E's
/// error_category_name and describe.
template <described_error_enum E> class enum_error_category final : public std::error_category {
 public:
  const char* name() const noexcept override { return error_category_name(E{}); }
  std::string message(int ev) const override {
    const error_meaning m = describe(static_cast<E>(ev));
    if (!m.message.empty()) return std::string(m.message);
    // A value no enumerator has (a peer's newer build, a cast): say so with the
    // number, never pass it off as some other code.
    return "unknown " + std::string(name()) + " error " + std::to_string(ev);
  }
  std::error_condition default_error_condition(int ev) const noexcept override {
    const error_meaning m = describe(static_cast<E>(ev));
    // Not a code: in no dcp condition (so an unknown value is never taken for "retry").
    if (m.cond == condition{}) return std::error_category::default_error_condition(ev);
    return m.cond;
  }
};

/// E's category: one instance per program (an inline function's static), so
/// codes compare equal whichever translation unit made them.
template <described_error_enum E> const std::error_category& error_category_of() noexcept {
  static const enum_error_category<E> instance;
  return instance;
}

/// What std::error_code's constructor calls for a dcp enum. It finds this by
/// argument-dependent lookup in the enum's namespace: a chapter brings it in
/// with `using dcp::make_error_code;`.
template <described_error_enum E> std::error_code make_error_code(E e) noexcept {
  return {static_cast<int>(e), error_category_of<E>()};
}

}  // namespace dcp
