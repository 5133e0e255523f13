// libFuzzer target: arbitrary bytes as a TCP stream into a node's frame path.
//
// The bytes are cut into frames by wire::frame_reader (in chunks whose sizes
// the input also chooses) and each frame is delivered to a host running real
// protocols. Any crash, sanitizer report, exception or hang is a bug: the
// decoders are total.
#include <cstddef>
#include <cstdint>

#include "dcp/core/host.hpp"
#include "dcp/core/node_id.hpp"
#include "dcp/failure/heartbeat.hpp"
#include "dcp/sim.hpp"
#include "dcp/wire.hpp"

namespace {
struct rich {
  static constexpr dcp::message_type wire_id = 3;
  std::vector<std::string> words;
  std::map<std::uint32_t, dcp::address> where;
  std::optional<dcp::node_id> id;
  bool flag = false;
  template <class A> void serialize(A& ar) { ar(words, where, id, flag); }
};
template <dcp::Env E> struct sink {
  using messages = dcp::wire::message_set<rich>;
  explicit sink(E) {}
  void on_message(const dcp::address&, const rich& r) { seen += r.words.size(); }
  std::size_t seen = 0;
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static dcp::sim::simulator world(1);
  static bool ready = false;
  if (!ready) {
    world.add_node([](dcp::sim::node_context& n) {
      n.add<dcp::failure::heartbeat<dcp::sim::env>>(1);
      n.add<sink<dcp::sim::env>>(2);
    });
    ready = true;
  }
  dcp::host h(&world.metrics());
  h.emplace<dcp::failure::heartbeat<dcp::sim::env>>(1, dcp::sim::env(world, 0, 1));
  h.emplace<sink<dcp::sim::env>>(2, dcp::sim::env(world, 0, 2));

  dcp::wire::limits lim;
  lim.max_frame_size = 1 << 16;
  dcp::wire::frame_reader reader(lim);
  std::size_t at = 0;
  while (at < size) {
    const std::size_t chunk = std::min<std::size_t>(size - at, 1 + data[at] % 64);
    reader.feed({data + at, chunk});
    at += chunk;
    dcp::wire::frame_view f;
    std::error_code ec;
    while (reader.next(f, ec)) (void)h.deliver(dcp::address::sim(0), f.header.protocol, f.header.type, f.payload);
    if (ec) break;  // the stream is corrupt: a transport closes the connection here
  }
  return 0;
}
