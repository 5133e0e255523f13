#pragma once
// any_transport and any_node: a node whose transport is chosen at run time,
// from a configuration file or a command line, as etcd picks TLS or not
// from its flags. One node type for all of them, so a program writes its
// protocols once and names the transport where it reads its configuration:
//
//   auto how = use_tls ? dcp::net::any_transport::options::of<dcp::net::tls_transport>(tls)
//                      : dcp::net::any_transport::options::of<dcp::net::keyring_transport>(ring);
//   dcp::net::any_node n(io, cfg, how);
//
// The options have no default, like an authenticated transport's: plaintext
// too is chosen by name (options::plaintext()), never by leaving it out.
// Every call goes through one indirect call to the transport chosen (the
// node's Env already reaches its transport that way).
#include <functional>
#include <memory>
#include <utility>

#include <asio/any_io_executor.hpp>

#include "dcp/core/error.hpp"
#include "dcp/core/metrics.hpp"
#include "dcp/core/rng.hpp"
#include "dcp/net/config.hpp"
#include "dcp/net/detail/node_core.hpp"
#include "dcp/net/node.hpp"
#include "dcp/net/tcp_transport.hpp"
#include "dcp/net/transport.hpp"

namespace dcp::net {

class any_transport {
  /// The transport chosen, built: its owner, its operations, its listen.
  struct built {
    std::shared_ptr<void> owner;
    const detail::transport_ops* ops = nullptr;
    address (*listen)(void*) = nullptr;
    bool authenticated = false;
  };
  using factory = std::function<built(asio::any_io_executor, const config&, dcp::metrics&, dcp::rng&, frame_handler,
                                      unreachable_handler)>;

 public:
  /// No default: a node of this transport is told what it carries (see above).
  static constexpr bool authenticated = true;

  class options {
   public:
    /// Transport T with its options (a keyring, TLS certificates).
    template <Transport T> static options of(typename T::options opts) {
      options o;
      o.make_ = [opts = std::move(opts)](asio::any_io_executor ex, const config& cfg, dcp::metrics& m, dcp::rng& r,
                                         frame_handler on_frame, unreachable_handler on_unreachable) {
        auto t = std::make_shared<T>(std::move(ex), cfg, m, r, std::move(on_frame), std::move(on_unreachable), opts);
        return built{t, &detail::ops_of<T>, [](void* p) { return static_cast<T*>(p)->listen(); }, T::authenticated};
      };
      return o;
    }
    /// Frames in clear, and whoever connects may claim any address
    /// (docs/security.md): only on a network nothing else reaches.
    static options plaintext() { return of<tcp_transport>({}); }

   private:
    friend class any_transport;
    factory make_;
  };

  any_transport(asio::any_io_executor ex, const config& cfg, dcp::metrics& m, dcp::rng& r, frame_handler on_frame,
                unreachable_handler on_unreachable, options opts) {
    if (!opts.make_)
      throw error(errc::invalid_config,
                  "dcp::net::any_transport: no transport chosen (options::of<T>(...) or options::plaintext())");
    t_ = opts.make_(std::move(ex), cfg, m, r, std::move(on_frame), std::move(on_unreachable));
  }

  address listen() { return t_.listen(t_.owner.get()); }
  void start() { t_.ops->start(t_.owner.get()); }
  void stop() noexcept { t_.ops->stop(t_.owner.get()); }
  bool send_frame(protocol_id p, const address& to, const frame_source& src) {
    return t_.ops->send(t_.owner.get(), p, to, src);
  }
  std::size_t connections() const noexcept { return t_.ops->connections(t_.owner.get()); }
  std::size_t queued_bytes(const address& a) const noexcept { return t_.ops->queued_bytes(t_.owner.get(), a); }

  /// turn(f) when the transport chosen has turns (tcp_transport::turn); else f().
  void turn(const std::function<void()>& f) {
    if (t_.ops->turn)
      t_.ops->turn(t_.owner.get(), f);
    else
      f();
  }

  /// Whether the transport chosen authenticates its peers (false: plaintext).
  bool authenticates() const noexcept { return t_.authenticated; }
  /// The transport chosen, to reach what only it has (a keyring's rotation):
  /// nullptr unless it is a T.
  template <Transport T> T* as() noexcept {
    return t_.ops == &detail::ops_of<T> ? static_cast<T*>(t_.owner.get()) : nullptr;
  }

 private:
  built t_;
};

static_assert(Transport<any_transport>);
// The node fires its timers as turns through both (detail::node_core).
static_assert(detail::turn_based<tcp_transport> && detail::turn_based<any_transport>);

/// A node whose transport was chosen at run time.
using any_node = basic_node<any_transport>;

}  // namespace dcp::net
