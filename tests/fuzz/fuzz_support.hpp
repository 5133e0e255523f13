#pragma once
// What the protocol fuzz targets share: a live-byte allocation counter, a
// structure-aware message generator, and the driver that cuts an input into
// deliveries and time advances against a simulated cluster.
//
// Include this header from exactly one translation unit of a program (the
// target's NAME.cpp): it replaces the global operator new and delete.
//
// The generator is a Cereal input archive (gen_archive) that reads no
// payload: it *chooses* every field of a message from the fuzz input. Any
// message of any message_set is built this way without code per message,
// then encoded with the real wire::output_archive and decoded by the
// protocol's own message_set, so what arrives always decodes and its fields
// are what the fuzzer picked: 0, 1, small, the type's maximum and its
// neighbours, powers of two, raw bytes, and numbers near the receiver's
// state (terms, indexes, counts: `hints`). Addresses are mostly those of the
// members and of strangers; node ids mostly the members' and near them.
//
// An input (after the byte(s) a target uses to pick its protocol) is a
// sequence of steps, each starting with an op byte:
//   op % 8 == 0       advance virtual time by 1..1024 ms (honest traffic runs)
//   op % 8 == 1       a raw payload (up to 128 input bytes) of a known or random type
//   op % 8 == 2       a target's own action (propose, lock, publish ...)
//   otherwise         a generated message (op & 0x80: then one byte mutated)
// A delivery names its receiver (an honest node) and its sender: a member
// (forging a peer's address: protocols that are not Byzantine-tolerant may
// then be misled, so cross-node safety is checked only when every forged
// message came from a stranger) or a stranger (addresses no member has).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <malloc.h>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include <cereal/cereal.hpp>

#include "dcp/core/address.hpp"
#include "dcp/core/node_id.hpp"
#include "dcp/sim.hpp"
#include "dcp/wire.hpp"

// ---- the allocation counter ----
//
// Every operator new counts its block's usable size into live bytes, every
// delete takes it out; peak_bytes is the highest live count since the last
// reset. malloc_usable_size works under glibc and under AddressSanitizer.
// Every variant is replaced (aligned and sized too): a sanitizer runtime's
// remaining variants would otherwise free our blocks without counting.
namespace dcp::fuzz {
inline std::size_t live_bytes = 0;
inline std::size_t peak_bytes = 0;
inline void* counted(void* p) {
  if (p) {
    live_bytes += malloc_usable_size(p);
    if (live_bytes > peak_bytes) peak_bytes = live_bytes;
  }
  return p;
}
inline void uncounted(void* p) {
  if (p) {
    live_bytes -= malloc_usable_size(p);
    std::free(p);
  }
}
inline void* allocate(std::size_t n) {
  void* p = counted(std::malloc(n ? n : 1));
  if (!p) throw std::bad_alloc();
  return p;
}
inline void* allocate_aligned(std::size_t n, std::align_val_t a) {
  const auto al = static_cast<std::size_t>(a);
  void* p = counted(std::aligned_alloc(al, (n + al - 1) / al * al + (n ? 0 : al)));
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace dcp::fuzz

void* operator new(std::size_t n) { return dcp::fuzz::allocate(n); }
void* operator new[](std::size_t n) { return dcp::fuzz::allocate(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return dcp::fuzz::counted(std::malloc(n ? n : 1)); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return dcp::fuzz::counted(std::malloc(n ? n : 1));
}
void* operator new(std::size_t n, std::align_val_t a) { return dcp::fuzz::allocate_aligned(n, a); }
void* operator new[](std::size_t n, std::align_val_t a) { return dcp::fuzz::allocate_aligned(n, a); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return dcp::fuzz::allocate_aligned(n, a);
  } catch (...) { return nullptr; }
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return dcp::fuzz::allocate_aligned(n, a);
  } catch (...) { return nullptr; }
}
void operator delete(void* p) noexcept { dcp::fuzz::uncounted(p); }
void operator delete[](void* p) noexcept { dcp::fuzz::uncounted(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { dcp::fuzz::uncounted(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { dcp::fuzz::uncounted(p); }
void operator delete(void* p, std::size_t) noexcept { dcp::fuzz::uncounted(p); }
void operator delete[](void* p, std::size_t) noexcept { dcp::fuzz::uncounted(p); }
void operator delete(void* p, std::align_val_t) noexcept { dcp::fuzz::uncounted(p); }
void operator delete[](void* p, std::align_val_t) noexcept { dcp::fuzz::uncounted(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { dcp::fuzz::uncounted(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { dcp::fuzz::uncounted(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { dcp::fuzz::uncounted(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { dcp::fuzz::uncounted(p); }

namespace dcp::fuzz {

/// Aborts with `what` on stderr: a violated property is a crash to libFuzzer.
[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "fuzz: %s\n", what);
  std::abort();
}

/// The memory bound: from the start of one input to its end, live heap may
/// rise by at most `base + per_input_byte * size`. An input that makes a
/// node allocate more than a fixed multiple of itself is an amplification.
class memory_bound {
 public:
  memory_bound(std::size_t base, std::size_t per_input_byte, std::size_t input_size)
      : start_(live_bytes), limit_(base + per_input_byte * input_size) {
    peak_bytes = live_bytes;
  }
  ~memory_bound() {
    if (std::getenv("DCP_FUZZ_VERBOSE"))
      std::fprintf(stderr, "fuzz: heap rose by at most %zu bytes\n", peak_bytes - start_);
    if (peak_bytes - start_ > limit_) {
      std::fprintf(stderr, "fuzz: live heap rose by %zu bytes, the bound is %zu\n", peak_bytes - start_, limit_);
      std::abort();
    }
  }
  memory_bound(const memory_bound&) = delete;
  memory_bound& operator=(const memory_bound&) = delete;

 private:
  std::size_t start_, limit_;
};

/// The fuzz input, read front to back; past its end every read is zero.
class input {
 public:
  input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool empty() const noexcept { return at_ >= size_; }
  std::size_t left() const noexcept { return empty() ? 0 : size_ - at_; }
  std::uint8_t byte() noexcept { return empty() ? 0 : data_[at_++]; }
  std::uint64_t raw(std::size_t n) noexcept {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v = v << 8 | byte();
    return v;
  }
  void fill(void* out, std::size_t n) noexcept {
    auto* o = static_cast<std::uint8_t*>(out);
    for (std::size_t i = 0; i < n; ++i) o[i] = byte();
  }
  bytes take(std::size_t n) {
    n = std::min(n, left());
    bytes b(data_ + at_, data_ + at_ + n);
    at_ += n;
    return b;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t at_ = 0;
};

/// What the generator draws from besides the input: the receiver's state.
struct hints {
  std::vector<std::uint64_t> numbers;
  std::vector<address> addresses;
  std::vector<node_id> ids;
};

class gen_archive : public cereal::InputArchive<gen_archive, cereal::AllowEmptyClassElision> {
 public:
  /// `budget`: the most container elements one message may get (a message
  /// the generator blows up is not the protocol's amplification).
  gen_archive(input& in, const hints& h, std::size_t budget) : InputArchive(this), in_(in), h_(h), budget_(budget) {}

  bool want_address = false, want_index = false, want_id = false;

  template <class T> T number() {
    if constexpr (std::is_same_v<T, std::uint8_t>) {
      if (want_address) {  // an address's family: mostly sim, sometimes none or another
        want_address = false;
        const auto c = in_.byte();
        if (c % 8 != 0) {
          want_index = true;
          return 1;
        }
        return static_cast<std::uint8_t>(c / 8 % 7);
      }
    }
    if constexpr (std::is_same_v<T, std::uint32_t>) {
      if (want_index) {
        want_index = false;
        const auto c = in_.byte();
        if (c % 16 == 0 || h_.addresses.empty()) return static_cast<T>(in_.raw(4));
        return h_.addresses[c % h_.addresses.size()].sim_index();
      }
    }
    if constexpr (std::is_floating_point_v<T>) {
      switch (in_.byte() % 8) {
        case 0:
          return 0;
        case 1:
          return 1;
        case 2:
          return -1;
        case 3:
          return std::numeric_limits<T>::max();
        case 4:
          return std::numeric_limits<T>::infinity();
        case 5:
          return std::numeric_limits<T>::quiet_NaN();
        case 6:
          return static_cast<T>(in_.byte()) / 16;
        default:
          return static_cast<T>(1e-300);
      }
    } else {
      const auto c = in_.byte();
      constexpr T mx = std::numeric_limits<T>::max(), mn = std::numeric_limits<T>::min();
      switch (c % 8) {
        case 0:
          return 0;
        case 1:
          return static_cast<T>(c >> 3);  // 0..31
        case 2:
          return mx;
        case 3:
          return static_cast<T>(mx - static_cast<T>(c >> 6));
        case 4:
          [[fallthrough]];
        case 5:
          if (!h_.numbers.empty()) {
            const auto base = h_.numbers[(c >> 3) % h_.numbers.size()];
            return static_cast<T>(base + static_cast<std::uint64_t>(static_cast<std::int64_t>(in_.byte() % 5) - 2));
          }
          return static_cast<T>(c >> 3);
        case 6:
          return std::is_signed_v<T> && (c & 8) ? mn : static_cast<T>(in_.raw(sizeof(T)));
        default:
          return static_cast<T>(std::uint64_t{1} << ((c >> 3) % (sizeof(T) * 8)));
      }
    }
  }

  std::uint64_t count() {
    const auto c = in_.byte();
    std::uint64_t n;
    switch (c % 4) {
      case 0:
        n = 0;
        break;
      case 1:
        [[fallthrough]];
      case 2:
        n = 1 + (c >> 2) % 4;
        break;
      default:
        n = (c >> 2) * 16 + in_.byte() % 16;
        break;  // up to ~1000
    }
    n = std::min<std::uint64_t>(n, budget_);
    budget_ -= n;
    return n;
  }

  void fill(void* data, std::size_t size) {
    if (want_id && size == node_id::size) {
      want_id = false;
      const auto c = in_.byte();
      if (c % 4 != 3 && !h_.ids.empty()) {  // a member's id, or one bit from it
        bytes enc;
        wire::output_archive ar(enc);
        ar(h_.ids[c % h_.ids.size()]);
        auto* o = static_cast<std::uint8_t*>(data);
        std::memcpy(o, enc.data() + 1, size);
        if (c % 4 == 2) o[size - 1 - in_.byte() % size] ^= static_cast<std::uint8_t>(1u << in_.byte() % 8);
        return;
      }
    }
    want_id = false;
    if (size == 0) return;  // an empty string's data() may be null
    const auto c = in_.byte();
    auto* o = static_cast<std::uint8_t*>(data);
    if (c % 4 == 0)
      std::memset(o, c % 8 == 0 ? 0 : 0xff, size);
    else
      for (std::size_t i = 0; i < size; ++i) o[i] = in_.byte();
  }

 private:
  input& in_;
  const hints& h_;
  std::size_t budget_;
};

template <class T>
requires std::is_arithmetic_v<T> &&
    (!std::is_same_v<T, bool>)inline void CEREAL_LOAD_FUNCTION_NAME(gen_archive& ar, T& t) {
  t = ar.number<T>();
}
inline void CEREAL_LOAD_FUNCTION_NAME(gen_archive& ar, bool& t) { t = ar.number<std::uint8_t>() & 1; }
template <class T> inline void CEREAL_SERIALIZE_FUNCTION_NAME(gen_archive& ar, cereal::NameValuePair<T>& t) {
  ar(t.value);
}
template <class T> inline void CEREAL_LOAD_FUNCTION_NAME(gen_archive& ar, cereal::SizeTag<T>& t) {
  t.size = static_cast<std::remove_reference_t<T>>(ar.count());
}
template <class T> inline void CEREAL_LOAD_FUNCTION_NAME(gen_archive& ar, cereal::BinaryData<T>& bd) {
  ar.fill(bd.data, static_cast<std::size_t>(bd.size));
}
// Cereal calls prologue() before loading each value: an address or a node id
// is drawn from the hints rather than from arbitrary bits.
inline void prologue(gen_archive& ar, const address&) { ar.want_address = true; }
inline void prologue(gen_archive& ar, const node_id&) { ar.want_id = true; }

}  // namespace dcp::fuzz

CEREAL_REGISTER_ARCHIVE(dcp::fuzz::gen_archive)
namespace cereal::traits::detail {
template <> struct get_output_from_input<dcp::fuzz::gen_archive> { using type = dcp::wire::output_archive; };
}  // namespace cereal::traits::detail

namespace dcp::fuzz {

/// Generates message number `pick` (mod the set's size) of `Set` from the
/// input and encodes its payload into `out`. False when its own load threw
/// (a type that validates while loading refused what was drawn).
template <class M> bool generate_one(input& in, const hints& h, bytes& out) {
  M m{};
  try {
    gen_archive ar(in, h, 2 * in.left() + 16);
    ar(m);
  } catch (const std::exception&) { return false; }
  wire::encode(m, out);
  return true;
}
template <class... Ms>
bool generate(wire::message_set<Ms...>*, std::size_t pick, input& in, const hints& h, bytes& out, message_type& type) {
  std::size_t i = 0;
  bool ok = false;
  pick %= sizeof...(Ms);
  (void)((i++ == pick ? (type = static_cast<message_type>(Ms::wire_id), ok = generate_one<Ms>(in, h, out), true)
                      : false) ||
         ...);
  return ok;
}

/// Delivers (type, payload) from `from` to protocol P at node `to` as the
/// node's host would: decoded by P's message_set, then P::on_message.
template <class P> std::error_code deliver(sim::simulator& w, sim::node_index to, protocol_id id, const address& from,
                                           message_type type, byte_view payload) {
  P* p = w.find<P>(to, id);
  if (!p) return make_error_code(errc::unknown_protocol);
  return P::messages::dispatch(type, payload, [&](auto&& m) { p->on_message(from, std::move(m)); });
}

/// The cluster a target drives: `members` honest nodes 0..members-1, and
/// `strangers` addresses after them that no node has.
struct cluster_shape {
  std::uint32_t members = 3;
  std::uint32_t receivers = 1;  ///< honest nodes that receive forged messages (0..receivers-1)
  std::uint32_t strangers = 3;
  std::size_t max_steps = 96;
  std::uint64_t max_events_per_advance = 20000;
};

struct drive_result {
  bool forged_member = false;  ///< some forged message claimed a member's address
};

/// Runs the steps of the input against `w`. `P`: the protocol under test
/// (id `pid` on every node). `make_hints(h)`: fill the hints from the
/// state; `act(byte)`: the target's own action; `check(forged_member)`:
/// the invariants, after every step.
template <class P, class MakeHints, class Act, class Check>
drive_result drive(input& in, sim::simulator& w, protocol_id pid, const cluster_shape& shape, MakeHints&& make_hints,
                   Act&& act, Check&& check) {
  drive_result r;
  hints h;
  for (std::uint32_t i = 0; i < shape.members + shape.strangers; ++i) h.addresses.push_back(address::sim(i));
  bytes payload;
  for (std::size_t step = 0; step < shape.max_steps && !in.empty(); ++step) {
    const auto op = in.byte();
    if (op % 8 == 0) {
      w.run_for(std::chrono::milliseconds(1 + 4 * in.byte() + op / 8 % 4), shape.max_events_per_advance);
    } else if (op % 8 == 2) {
      act(in.byte());
    } else {
      const sim::node_index to = in.byte() % shape.receivers;
      const auto s = in.byte();
      const bool stranger = s % 2 == 1;
      const std::uint32_t who = stranger ? shape.members + s / 2 % shape.strangers : s / 2 % shape.members;
      if (!stranger && who == to) continue;  // a node does not forge messages to itself
      const address from = address::sim(who);
      payload.clear();
      message_type type = 0;
      const auto pick = in.byte();
      if (op % 8 == 1) {
        type = pick % 16 == 15 ? static_cast<message_type>(in.raw(2)) : P::messages::ids[pick % P::messages::size];
        payload = in.take(in.byte() % 128);
      } else {
        h.numbers.clear();
        h.ids.clear();
        make_hints(h);
        if (!generate(static_cast<typename P::messages*>(nullptr), pick, in, h, payload, type)) continue;
        if (op & 0x80 && !payload.empty())
          payload[in.byte() % payload.size()] ^= static_cast<std::uint8_t>(1 + in.byte() % 255);
      }
      if (!stranger) r.forged_member = true;
      const auto ec = deliver<P>(w, to, pid, from, type, payload);
      if (std::getenv("DCP_FUZZ_VERBOSE"))
        std::fprintf(stderr, "fuzz: t=%lld %u->%u type %u, %zu bytes: %s\n",
                     static_cast<long long>(w.now().time_since_epoch().count() / 1000000), who, to, type,
                     payload.size(), ec ? ec.message().c_str() : "delivered");
    }
    check(r.forged_member);
  }
  w.run_for(std::chrono::milliseconds(500), shape.max_events_per_advance);
  check(r.forged_member);
  if (std::getenv("DCP_FUZZ_VERBOSE"))
    std::fprintf(stderr, "fuzz: %llu events\n", static_cast<unsigned long long>(w.events()));
  return r;
}

}  // namespace dcp::fuzz
