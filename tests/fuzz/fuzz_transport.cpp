// libFuzzer target: the TCP transport's connection state machine, from the
// accepting side, over real loopback sockets. Each input is what one caller
// writes on a fresh connection, cut into writes of a size the input chooses,
// after a valid hello or not; the caller then closes. Any crash, sanitizer
// report or exception is a bug; so is
//   - a frame delivered from a caller that has not said hello, or
//     attributed to another address than its hello's (a second hello must
//     not move a connection to another name);
//   - a connection the node still holds after its caller closed (a leak,
//     or a state the machine cannot leave), or one it takes more than two
//     seconds to notice.
//
// Input: the stream, then one control byte: its low 3 bits pick the write
// size (2 to 128 bytes, or everything at once), bit 3 whether a hello from
// 127.0.0.1:4242 goes first. Run under libFuzzer with RSS and malloc limits:
//   ./build-fuzz/tests/fuzz/fuzz_transport -max_len=4096 -rss_limit_mb=1024 -malloc_limit_mb=256
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <memory>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/write.hpp>

#include "dcp/net/node.hpp"
#include "dcp/wire.hpp"

namespace {

/// Type 1 of protocol 1: what the replay driver writes, among others.
struct any {
  static constexpr dcp::message_type wire_id = 1;
  std::uint64_t seq = 0;
  template <class A> void serialize(A& ar) { ar(seq); }
};

/// Records who every `any` frame came from; sends nothing.
struct recorder {
  using messages = dcp::wire::message_set<any>;
  static constexpr std::string_view name = "recorder";
  explicit recorder(dcp::net::env) {}
  void on_message(const dcp::address& from, const any&) {
    ++frames;
    if (!expected || from != *expected) std::abort();  // before any hello, or attributed to another than the hello said
  }
  std::size_t frames = 0;
  std::optional<dcp::address> expected;
};

struct bench {
  asio::io_context io;
  std::unique_ptr<dcp::net::node> node;
  recorder* rec = nullptr;
  std::size_t inputs = 0;
  bench() {
    dcp::net::config c;
    c.listen = dcp::address::loopback(0);
    c.seed = 3;
    node = std::make_unique<dcp::net::node>(io, c);
    rec = &node->add<recorder>(1);
    node->start();
  }
};

bool poll_until(asio::io_context& io, auto&& done, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    io.restart();
    io.run_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static bench b;
  if (size < 1) return 0;
  const std::uint8_t control = data[size - 1];  // at the end: a stream of frames keeps its alignment
  const std::size_t chunk = (control & 7) == 0 ? size : std::size_t{1} << (control & 7);
  const bool hello_first = control & 8;
  dcp::bytes stream;
  const auto me = dcp::address::loopback(4242);
  if (hello_first) (void)dcp::wire::encode_frame(0, dcp::net::detail::hello{me}, stream);
  stream.insert(stream.end(), data, data + size - 1);
  // Frames count only after a hello, and from its address: ours, or one the
  // input's own first frame names (plaintext lets a caller claim any
  // address: docs/security.md). No valid hello first: no frame at all.
  b.rec->expected.reset();
  if (hello_first) {
    b.rec->expected = me;
  } else if (dcp::wire::frame_header h; !dcp::wire::read_header(stream, h) && h.protocol == 0 && h.type == 1 &&
             stream.size() >= dcp::wire::header_size + h.length) {
    dcp::net::detail::hello named;
    if (!dcp::wire::decode(dcp::byte_view(stream).subspan(dcp::wire::header_size, h.length), named))
      b.rec->expected = named.listen;
  }

  asio::ip::tcp::socket s(b.io);
  std::error_code ec;
  s.connect(dcp::net::detail::to_endpoint(b.node->self()), ec);
  if (ec) std::abort();
  for (std::size_t at = 0; at < stream.size(); at += chunk) {
    asio::write(s, asio::buffer(stream.data() + at, std::min(chunk, stream.size() - at)), ec);
    if (ec) break;  // the node closed on us: hostile bytes refused
    b.io.restart();
    b.io.poll();
  }
  s.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  s.close(ec);
  if (!poll_until(
          b.io, [&] { return b.node->connections() == 0; }, std::chrono::seconds(2)))
    std::abort();
  if (std::getenv("DCP_FUZZ_VERBOSE") && ++b.inputs % 1000 == 0)
    std::fprintf(stderr, "%zu inputs, %zu frames delivered\n", b.inputs, b.rec->frames);
  return 0;
}
