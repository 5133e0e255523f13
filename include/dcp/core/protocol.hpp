#pragma once
// The Protocol concept: the shape every dcp protocol has.
//
//   template <dcp::Env Env>
//   class my_protocol {
//    public:
//     using messages = dcp::wire::message_set<ping, pong>;  // what it accepts
//     static constexpr std::string_view name = "my_protocol";   // optional
//     my_protocol(Env env, config c);            // first argument: its Env
//     void start();                              // optional: once the node is up
//     void on_message(const dcp::address& from, const ping&);
//     void on_message(const dcp::address& from, const pong&);
//     void on_unreachable(const dcp::address& peer);   // optional: transport gave up on peer
//   };
//
// The node constructs it with its Env, decodes frames for it and calls the
// matching on_message overload. A protocol never blocks, never throws out of
// a handler on bad input (it drops the message and counts), and keeps no
// pointer to the node.
#include <concepts>
#include <string>
#include <string_view>
#include <type_traits>

#include "dcp/core/address.hpp"
#include "dcp/wire/message.hpp"

namespace dcp {

/// P accepts message M: it has on_message(from, M).
template <class P, class M>
concept Handles = requires(P& p, const address& from, M&& m) {
  p.on_message(from, std::move(m));
};

namespace detail {
template <class P, class Set> struct handles_all : std::false_type {};
template <class P, class... Ms> struct handles_all<P, wire::message_set<Ms...>>
    : std::bool_constant<(Handles<P, Ms> && ...)> {};

// One instantiation per message, so that the compiler's "in instantiation of
// on_message_missing_for<P, M>" note names the protocol and the message whose
// handler is missing (a static_assert's text cannot name a type).
template <class P, class M> struct on_message_missing_for {
  static constexpr bool value = Handles<P, M>;
  static_assert(value,
                "dcp: the protocol needs `void on_message(const dcp::address& from, const M& m)` for every "
                "message M in its message_set; P and M are named in this instantiation, on_message_missing_for<P, M>");
};
template <class P, class Set> struct check_handlers;
template <class P, class... Ms> struct check_handlers<P, wire::message_set<Ms...>> {
  static constexpr bool value = (on_message_missing_for<P, Ms>::value && ...);
};
}  // namespace detail

template <class P>
concept Protocol = requires {
  typename P::messages;
}
&&wire::is_message_set<typename P::messages>::value&& detail::handles_all<P, typename P::messages>::value;

/// The protocol's name for logs and metrics: P::name if given.
template <class P> std::string protocol_name() {
  if constexpr (requires { std::string_view{P::name}; })
    return std::string(P::name);
  else
    return "protocol";
}

/// Checks P and explains in one sentence what is missing.
template <class P> constexpr void check_protocol() {
  static_assert(
      requires { typename P::messages; },
      "dcp: a protocol must declare `using messages = dcp::wire::message_set<M1, M2, ...>;`");
  if constexpr (requires { typename P::messages; }) {
    static_assert(wire::is_message_set<typename P::messages>::value,
                  "dcp: P::messages must be a dcp::wire::message_set<...>");
    if constexpr (wire::is_message_set<typename P::messages>::value)
      static_cast<void>(detail::check_handlers<P, typename P::messages>::value);  // one error per missing handler
  }
}

}  // namespace dcp
