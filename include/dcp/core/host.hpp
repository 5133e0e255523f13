#pragma once
// host: the protocols of one node, dispatched by protocol id.
//
// Both runtimes own one host per node. A frame arrives as (from, protocol id,
// message type, payload); the host finds the protocol, decodes the payload
// with that protocol's message_set and calls its on_message. Every outcome
// is counted in the runtime's metrics; a frame that fails is dropped and
// leaves every protocol as it was.
#include <memory>
#include <string>
#include <system_error>
#include <typeinfo>
#include <utility>
#include <vector>

#include "dcp/core/detail/platform.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/metrics.hpp"
#include "dcp/core/protocol.hpp"

namespace dcp {

class host {
 public:
  explicit host(metrics* m = nullptr) noexcept : metrics_(m) {}
  host(host&&) noexcept = default;
  host& operator=(host&&) noexcept = default;
  ~host() { clear(); }

  /// Constructs P(env, args...) as protocol `id`, and declares its counters
  /// (P::counters, see dcp/core/counter_set.hpp) in the runtime's metrics.
  /// Throws dcp::error(invalid_argument) if the id is taken.
  template <class P, class E, class... Args> P& emplace(protocol_id id, E env, Args&&... args) {
    check_protocol<P>();
    if (find_slot(id))
      throw error(errc::invalid_argument, "dcp::host: protocol id " + std::to_string(id) + " is taken");
    if (metrics_) metrics_->declare(id, counters_of<P>());  // before P's constructor, which may count
    auto h = std::make_unique<hosted<P>>(std::move(env), std::forward<Args>(args)...);
    P& p = h->p;
    slots_.push_back({id, std::move(h)});
    return p;
  }

  /// Calls start() on every protocol that has one, in the order they were added.
  void start() {
    for (std::size_t i = 0; i < slots_.size(); ++i) slots_[i].p->start();
  }

  /// Decodes and delivers one frame. Returns the reason when it was dropped.
  std::error_code deliver(const address& from, protocol_id id, message_type type, byte_view payload) {
    hosted_base* p = find_slot(id);
    std::error_code ec = p ? p->deliver(from, type, payload) : make_error_code(errc::unknown_protocol);
    if (metrics_) {
      if (ec)
        metrics_->dropped(id, ec);
      else
        metrics_->received(id, type, wire::header_size + payload.size());  // frame bytes, as sent
    }
    return ec;
  }

  /// Tells every protocol with on_unreachable that the transport gave up on `peer`.
  void unreachable(const address& peer) {
    for (auto& s : slots_) s.p->unreachable(peer);
  }

  template <class P> P* find(protocol_id id) noexcept {
    hosted_base* h = find_slot(id);
    return h && h->type() == typeid(P) ? static_cast<P*>(h->get()) : nullptr;
  }
  /// The first protocol of type P, whatever its id.
  template <class P> P* find() noexcept {
    for (auto& s : slots_)
      if (s.p->type() == typeid(P)) return static_cast<P*>(s.p->get());
    return nullptr;
  }
  bool contains(protocol_id id) const noexcept { return find_slot(id) != nullptr; }
  std::size_t size() const noexcept { return slots_.size(); }
  std::string name_of(protocol_id id) const {
    auto* h = find_slot(id);
    return h ? h->name() : "unknown";
  }
  std::string message_name(protocol_id id, message_type t) const {
    auto* h = find_slot(id);
    return h ? h->message_name(t) : "#" + std::to_string(t);
  }

  /// F(protocol_id, std::string name) for every protocol, in the order added.
  template <class F> void for_each_protocol(F&& f) const {
    for (auto& s : slots_) f(s.id, s.p->name());
  }
  /// Asks protocol `id` for its gauges, if it reports any (see dcp::gauge_sink).
  void gauges(protocol_id id, const gauge_sink& emit) const {
    if (auto* h = find_slot(id)) h->gauges(emit);
  }

  /// A hint for runtimes that know which node's frame comes next. Inlined by
  /// force: GCC drops calls to functions without visible effects.
  [[gnu::always_inline]] void prefetch() const noexcept {
    if (!slots_.empty()) detail::prefetch(slots_.data());
  }
  /// The next hint, once the table is loaded: the first protocols themselves.
  [[gnu::always_inline]] void prefetch_protocols() const noexcept {
    const std::size_t n = slots_.size() < 2 ? slots_.size() : 2;
    for (std::size_t i = 0; i < n; ++i) detail::prefetch(slots_[i].p.get());
  }

  /// Destroys the protocols, last added first (a crash, or a stop).
  void clear() noexcept {
    while (!slots_.empty()) slots_.pop_back();
  }

 private:
  struct hosted_base {
    virtual ~hosted_base() = default;
    virtual std::error_code deliver(const address& from, message_type t, byte_view payload) = 0;
    virtual void unreachable(const address& peer) = 0;
    virtual void start() = 0;
    virtual void* get() noexcept = 0;
    virtual const std::type_info& type() const noexcept = 0;
    virtual std::string name() const = 0;
    virtual std::string message_name(message_type t) const = 0;
    virtual void gauges(const gauge_sink& emit) const = 0;
  };

  template <class P> struct hosted final : hosted_base {
    template <class E, class... Args> explicit hosted(E env, Args&&... args)
        : p(std::move(env), std::forward<Args>(args)...) {}
    std::error_code deliver(const address& from, message_type t, byte_view payload) override {
      return P::messages::dispatch(t, payload, [&](auto&& m) { p.on_message(from, std::move(m)); });
    }
    void unreachable(const address& peer) override {
      if constexpr (requires { p.on_unreachable(peer); }) p.on_unreachable(peer);
    }
    void start() override {
      if constexpr (requires { p.start(); }) p.start();
    }
    void* get() noexcept override { return &p; }
    const std::type_info& type() const noexcept override { return typeid(P); }
    std::string name() const override { return protocol_name<P>(); }
    std::string message_name(message_type t) const override { return P::messages::name_of(t); }
    void gauges(const gauge_sink& emit) const override {
      if constexpr (requires(const P& cp) { cp.gauges(emit); }) p.gauges(emit);
    }
    P p;
  };

  struct slot {
    protocol_id id;
    std::unique_ptr<hosted_base> p;
  };

  hosted_base* find_slot(protocol_id id) const noexcept {
    for (auto& s : slots_)
      if (s.id == id) return s.p.get();
    return nullptr;
  }

  metrics* metrics_ = nullptr;
  std::vector<slot> slots_;
};

}  // namespace dcp
