// libFuzzer target: keyring_udp_transport's receive path (dcp/net/udp_keyring.hpp)
// over a real loopback socket. A key holder seals notes to a node; each input
// decides what reaches the node from the holder's own address: its bytes as
// a datagram, or a genuine sealed datagram altered by the input (bytes
// flipped, cut), or one sent before, again. Any crash, sanitizer report or
// exception is a bug; so is
//   - a note delivered that is not a genuine datagram sent unaltered for the
//     first time (a forgery, an alteration or a replay believed), or
//     delivered twice, or attributed to another address than the holder's;
//   - a genuine datagram sent unaltered for the first time and not delivered;
//   - a datagram neither delivered nor dropped and counted, exactly once;
//   - more senders tracked than authenticated ones (state from a forgery).
//
// Input: the first byte picks the mode (low 2 bits) and the rest is its
// material. Run under libFuzzer:
//   ./build-fuzz/tests/fuzz/fuzz_udp_keyring -max_len=2048 -rss_limit_mb=1024 -malloc_limit_mb=256
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/udp.hpp>

#include "dcp/net/udp_keyring.hpp"
#include "dcp/wire.hpp"

namespace {

struct note {
  static constexpr dcp::message_type wire_id = 1;
  std::string body;
  template <class A> void serialize(A& ar) { ar(body); }
};

/// Records every note and checks it against what the holder sent unaltered.
struct recorder {
  using messages = dcp::wire::message_set<note>;
  static constexpr std::string_view name = "recorder";
  explicit recorder(dcp::net::env) {}
  void on_message(const dcp::address& from, const note& n) {
    if (from != holder) std::abort();                    // attributed to another sender
    if (!genuine.count(n.body)) std::abort();            // never sent unaltered: a forgery believed
    if (!delivered.insert(n.body).second) std::abort();  // a replay believed
  }
  dcp::address holder;
  std::set<std::string> genuine, delivered;
};

struct bench {
  asio::io_context io;
  std::unique_ptr<dcp::net::keyring_udp_node> node;
  recorder* rec = nullptr;
  asio::ip::udp::socket socket{io};
  std::unique_ptr<dcp::net::udp_keyring_security> holder;  // seals as a node at the socket's address
  std::vector<dcp::bytes> sent;                            // genuine datagrams sent (for replays), bounded
  std::uint64_t seq = 0, inputs = 0;
  bench() {
    const auto key = dcp::net::keyring::generate();
    dcp::net::config c;
    c.listen = dcp::address::loopback(0);
    c.seed = 3;
    node = std::make_unique<dcp::net::keyring_udp_node>(io, c, dcp::net::keyring(key));
    rec = &node->add<recorder>(1);
    node->start();
    socket.open(asio::ip::udp::v4());
    socket.bind({asio::ip::make_address("127.0.0.1"), 0});
    rec->holder = dcp::address::ip(socket.local_endpoint().address(), socket.local_endpoint().port());
    holder = std::make_unique<dcp::net::udp_keyring_security>(dcp::net::udp_keyring_options(dcp::net::keyring(key)));
    holder->bind(rec->holder);
  }
  /// A genuine datagram of a note never sent before (its body unique).
  dcp::bytes seal() {
    const std::string body = "n" + std::to_string(++seq);
    dcp::bytes d(dcp::net::udp_keyring_security::prefix_size);
    if (dcp::net::encode_frame(1, dcp::net::frame_source::of(note{body}), d, dcp::wire::limits{})) std::abort();
    holder->seal(d, node->self());
    return d;
  }
  std::uint64_t accounted() const { return node->metrics().total().received + node->metrics().drops(); }
  void send(const dcp::bytes& d) {
    const auto before = accounted();
    std::error_code ec;
    socket.send_to(asio::buffer(d), asio::ip::udp::endpoint(node->self().ip_address(), node->self().port()), 0, ec);
    if (ec) std::abort();
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (accounted() == before) {  // every datagram is delivered or dropped, and counted
      if (std::chrono::steady_clock::now() > end) std::abort();
      io.restart();
      io.run_for(std::chrono::milliseconds(1));
    }
    if (accounted() != before + 1) std::abort();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static bench b;
  if (size < 1) return 0;
  const std::uint8_t mode = data[0] & 3;
  const std::uint8_t* in = data + 1;
  const std::size_t n = size - 1;
  dcp::bytes d;
  bool expect = false;  // a genuine datagram, unaltered, sent for the first time: it must be delivered
  switch (mode) {
    case 0:  // the input itself, as a datagram from the holder's address
      d.assign(in, in + n);
      if (d.size() > 1400) d.resize(1400);
      break;
    case 1: {  // a genuine datagram, altered at the positions the input names
      d = b.seal();
      bool altered = false;
      for (std::size_t i = 0; i + 1 < n; i += 2) {
        const std::uint8_t x = in[i + 1];
        d[in[i] % d.size()] ^= x;
        altered |= x != 0;
      }
      if (!altered) b.rec->genuine.insert("n" + std::to_string(b.seq));  // unaltered after all
      expect = !altered;
      break;
    }
    case 2: {  // a genuine datagram, maybe cut
      d = b.seal();
      const std::size_t keep = n > 0 ? in[0] % (d.size() + 1) : d.size();
      if (keep == d.size()) b.rec->genuine.insert("n" + std::to_string(b.seq));
      expect = keep == d.size();
      d.resize(keep);
      if (b.sent.size() < 256) b.sent.push_back(d);
      break;
    }
    default:  // one sent before, again (or a fresh one first)
      if (b.sent.empty() || (n > 0 && in[0] == 0)) {
        d = b.seal();
        b.rec->genuine.insert("n" + std::to_string(b.seq));
        if (b.sent.size() < 256) b.sent.push_back(d);
        expect = true;
      } else {
        d = b.sent[(n > 0 ? in[0] : 0) % b.sent.size()];
      }
  }
  b.send(d);
  if (expect && !b.rec->delivered.count("n" + std::to_string(b.seq))) std::abort();
  if (b.node->transport().security().peers_tracked() > 1) std::abort();  // only the holder authenticates
  if (std::getenv("DCP_FUZZ_VERBOSE") && ++b.inputs % 1000 == 0)
    std::fprintf(stderr, "%llu inputs, %zu notes delivered\n", static_cast<unsigned long long>(b.inputs),
                 b.rec->delivered.size());
  return 0;
}
