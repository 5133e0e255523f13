#include <doctest/doctest.h>

#include <sstream>

#include <cereal/archives/portable_binary.hpp>
#include <cereal/types/deque.hpp>

#include "dcp/core/host.hpp"
#include "dcp/core/node_id.hpp"
#include "dcp/core/rng.hpp"
#include "dcp/membership/hyparview.hpp"
#include "dcp/wire.hpp"

using namespace dcp;

namespace {
struct sample {
  static constexpr message_type wire_id = 7;
  static constexpr std::string_view wire_name = "sample";
  std::uint64_t a = 0;
  std::int32_t b = 0;
  double c = 0;
  bool flag = false;
  std::string text;
  std::vector<std::uint32_t> numbers;
  std::vector<std::string> words;
  std::optional<address> where;
  node_id id;
  std::map<std::string, std::int16_t> table;
  std::set<std::uint32_t> ids;
  std::vector<bool> bits;
  std::deque<std::string> lines;
  std::map<std::uint32_t, std::vector<address>> routes;
  template <class A> void serialize(A& ar) {
    ar(a, b, c, flag, text, numbers, words, where, id, table, ids, bits, lines, routes);
  }
  bool operator==(const sample&) const = default;
};
struct empty_msg {
  static constexpr message_type wire_id = 8;
  template <class A> void serialize(A&) {}
};

sample make_sample(rng& r) {
  sample s;
  s.a = r();
  s.b = static_cast<std::int32_t>(r());
  s.c = r.uniform();
  s.flag = r.chance(0.5);
  s.text = std::string(r.below(40), 'x');
  for (auto i = r.below(20); i-- > 0;) s.numbers.push_back(static_cast<std::uint32_t>(r()));
  for (auto i = r.below(5); i-- > 0;) s.words.push_back(std::string(r.below(10), 'w'));
  if (r.chance(0.5)) s.where = address::loopback(static_cast<std::uint16_t>(r.below(65536)));
  s.id = node_id::random(r);
  s.table["k" + std::to_string(r.below(10))] = 3;
  for (auto i = r.below(6); i-- > 0;) s.ids.insert(static_cast<std::uint32_t>(r.below(100)));
  for (auto i = r.below(12); i-- > 0;) s.bits.push_back(r.chance(0.5));
  for (auto i = r.below(4); i-- > 0;) s.lines.push_back(std::string(r.below(8), 'l'));
  for (auto i = r.below(3); i-- > 0;)
    s.routes[static_cast<std::uint32_t>(r.below(50))] = {address::sim(7), address::loopback(9)};
  return s;
}

struct vec_msg {
  static constexpr message_type wire_id = 1;
  std::vector<std::uint32_t> v;
  template <class A> void serialize(A& ar) { ar(v); }
};
struct maybe_msg {  // one byte on the wire per disengaged element, 72 in memory
  static constexpr message_type wire_id = 1;
  std::vector<std::optional<std::array<std::uint64_t, 8>>> v;
  template <class A> void serialize(A& ar) { ar(v); }
};
struct bool_msg {
  static constexpr message_type wire_id = 1;
  bool b = false;
  template <class A> void serialize(A& ar) { ar(b); }
};
struct addr_msg {
  static constexpr message_type wire_id = 1;
  address a;
  template <class A> void serialize(A& ar) { ar(a); }
};

// A protocol that records what it receives: host.deliver must leave it untouched on bad input.
struct recorder {
  using messages = wire::message_set<sample, empty_msg>;
  explicit recorder(int) {}
  void on_message(const address&, const sample& s) { got.push_back(s); }
  void on_message(const address&, const empty_msg&) { ++empties; }
  std::vector<sample> got;
  int empties = 0;
};
}  // namespace

TEST_CASE("payloads round-trip and are exactly Cereal's portable binary") {
  rng r(1);
  for (int i = 0; i < 200; ++i) {
    const sample s = make_sample(r);
    bytes out;
    wire::encode(s, out);
    sample back;
    REQUIRE_FALSE(wire::decode(out, back));
    CHECK(back == s);

    // Cereal's own archive reads our bytes ...
    std::stringstream ss(std::string(out.begin(), out.end()));
    sample via_cereal;
    {
      cereal::PortableBinaryInputArchive in(ss);
      in(via_cereal);
    }
    CHECK(via_cereal == s);
    // ... and writes the same bytes we do.
    std::stringstream os;
    {
      cereal::PortableBinaryOutputArchive o(os, cereal::PortableBinaryOutputArchive::Options::LittleEndian());
      o(s);
    }
    const std::string theirs = os.str();
    CHECK(bytes(theirs.begin(), theirs.end()) == out);
  }
}

TEST_CASE("every truncation of a valid payload is an error, never a crash") {
  rng r(2);
  for (int i = 0; i < 50; ++i) {
    bytes out;
    wire::encode(make_sample(r), out);
    for (std::size_t n = 0; n < out.size(); ++n) {
      sample back;
      CHECK(wire::decode(byte_view(out).first(n), back));
    }
  }
}

TEST_CASE("hostile payloads: forged sizes, bad bools, trailing bytes") {
  // a vector<uint32_t> claiming 2^62 elements must not allocate
  bytes forged{1};
  const std::uint64_t huge = 1ull << 62;
  for (int i = 0; i < 8; ++i) forged.push_back(static_cast<std::uint8_t>(huge >> (8 * i)));
  vec_msg v;
  CHECK(wire::decode(forged, v) == errc::malformed_payload);

  bool_msg b;
  CHECK(wire::decode(bytes{1, 2}, b) == errc::malformed_payload);
  CHECK_FALSE(wire::decode(bytes{1, 1}, b));
  CHECK(b.b);
  CHECK(wire::decode(bytes{1, 1, 0}, b) == errc::trailing_bytes);
  CHECK(wire::decode(bytes{7, 1}, b) == errc::malformed_payload);  // endianness flag must be 0 or 1

  addr_msg a;
  CHECK(wire::decode(bytes{1, 9}, a) == errc::malformed_payload);  // unknown address family
}

TEST_CASE("frame headers: encode, validate every field") {
  bytes f;
  REQUIRE_FALSE(wire::encode_frame(3, empty_msg{}, f));
  REQUIRE(f.size() == wire::header_size + 1);
  wire::frame_header h;
  REQUIRE_FALSE(wire::read_header(f, h));
  CHECK(h == wire::frame_header{3, 8, 1});
  CHECK(wire::read_header(byte_view(f).first(11), h) == errc::truncated_frame);
  auto bad = f;
  bad[0] = 0;
  CHECK(wire::read_header(bad, h) == errc::bad_magic);
  bad = f;
  bad[2] = 99;
  CHECK(wire::read_header(bad, h) == errc::unsupported_version);
  bad = f;
  bad[3] = 1;
  CHECK(wire::read_header(bad, h) == errc::bad_flags);
  bad = f;
  bad[11] = 0x7F;  // length ~2 GiB
  CHECK(wire::read_header(bad, h) == errc::frame_too_large);

  wire::limits small;
  small.max_frame_size = 16;
  sample big;
  big.text = std::string(100, 'y');
  bytes out{9, 9};
  CHECK(wire::encode_frame(1, big, out, small) == errc::frame_too_large);
  CHECK(out == bytes{9, 9});  // nothing half-written
}

TEST_CASE("frame_reader cuts a stream at any chunking, and stops on corruption") {
  rng r(3);
  std::vector<sample> sent;
  bytes stream;
  for (int i = 0; i < 100; ++i) {
    sent.push_back(make_sample(r));
    REQUIRE_FALSE(wire::encode_frame(5, sent.back(), stream));
  }
  for (int trial = 0; trial < 20; ++trial) {
    wire::frame_reader reader;
    std::vector<sample> got;
    std::size_t at = 0;
    while (at < stream.size()) {
      const std::size_t n = std::min<std::size_t>(1 + r.below(300), stream.size() - at);
      reader.feed(byte_view(stream).subspan(at, n));
      at += n;
      wire::frame_view f;
      std::error_code ec;
      while (reader.next(f, ec)) {
        CHECK(f.header.protocol == 5);
        sample s;
        REQUIRE_FALSE(wire::decode(f.payload, s));
        got.push_back(s);
      }
      REQUIRE_FALSE(ec);
    }
    CHECK(got == sent);
  }
  wire::frame_reader reader;
  reader.feed(as_bytes("GET / HTTP/1.1\r\n\r\n"));
  wire::frame_view f;
  std::error_code ec;
  CHECK_FALSE(reader.next(f, ec));
  CHECK(ec == errc::bad_magic);
}

TEST_CASE("host: random, truncated and oversized frames are dropped, counted, and touch nothing") {
  metrics m;
  host h(&m);
  auto& rec = h.emplace<recorder>(1, 0);
  rng r(4);
  std::size_t good = 0;
  for (int i = 0; i < 20000; ++i) {
    bytes payload;
    const int mode = static_cast<int>(r.below(4));
    if (mode == 0) {  // pure garbage
      payload.resize(r.below(64));
      for (auto& b : payload) b = static_cast<std::uint8_t>(r());
    } else {  // a valid payload, maybe damaged
      wire::encode(make_sample(r), payload);
      if (mode == 1) payload.resize(r.below(payload.size()));
      if (mode == 2) payload[r.below(payload.size())] ^= static_cast<std::uint8_t>(1 + r.below(255));
    }
    const auto proto = static_cast<protocol_id>(r.chance(0.9) ? 1 : r.below(5));
    const auto type = static_cast<message_type>(r.chance(0.8) ? 7 : r.below(10));
    const auto before = rec.got.size();
    const auto ec = h.deliver(address::sim(1), proto, type, payload);
    if (!ec && type == 7) ++good;
    CHECK(rec.got.size() == before + (!ec && type == 7 ? 1 : 0));
  }
  CHECK(rec.got.size() == good);
  CHECK(m.drops(1, errc::unknown_message_type) > 0);
  CHECK(m.drops(1, errc::malformed_payload) > 0);
  CHECK(m.drops() + m.of(1).received == 20000);
}

TEST_CASE("decoding has an allocation budget: payloads built to amplify are refused, legitimate ones decode") {
  // The attack issue 11 found: a 4 MiB HyParView shuffle reply of empty
  // addresses (one byte each on the wire, 24 in memory) decoded into 80 MiB.
  membership::hyparview_msg::shuffle_reply amplify;
  amplify.nodes.resize(4'000'000);
  bytes out;
  wire::encode(amplify, out);
  REQUIRE(out.size() < 4'100'000);
  membership::hyparview_msg::shuffle_reply back;
  CHECK(wire::decode(out, back) == errc::malformed_payload);
  CHECK(back.nodes.capacity() < 1'000'000);  // refused before the vector grew to the count
  // Disengaged optionals: 72 times their bytes.
  maybe_msg maybe;
  maybe.v.resize(100'000);
  out.clear();
  wire::encode(maybe, out);
  maybe_msg maybe_back;
  CHECK(wire::decode(out, maybe_back) == errc::malformed_payload);
  // Legitimate payloads of the same sizes decode: addresses that say
  // something (IPv4: 7 bytes each, 24 in memory), and raw bytes (1 for 1).
  membership::hyparview_msg::shuffle_reply real;
  for (std::uint32_t i = 0; i < 500'000; ++i) real.nodes.push_back(address::loopback(static_cast<std::uint16_t>(i)));
  out.clear();
  wire::encode(real, out);
  CHECK_FALSE(wire::decode(out, back));
  CHECK(back.nodes == real.nodes);
  vec_msg big;
  big.v.assign(1'000'000, 7);
  out.clear();
  wire::encode(big, out);
  vec_msg big_back;
  CHECK_FALSE(wire::decode(out, big_back));
  CHECK(big_back.v == big.v);
  // A small message of empty addresses is within the fixed 64 KiB: budgets
  // scale with the frame, they do not forbid the shape.
  membership::hyparview_msg::shuffle_reply few;
  few.nodes.resize(1000);
  out.clear();
  wire::encode(few, out);
  CHECK_FALSE(wire::decode(out, back));
  CHECK(back.nodes.size() == 1000);
}
