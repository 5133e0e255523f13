// The floor for a lock+unlock: 4 loopback round trips over raw blocking TCP
// sockets (64-byte messages, TCP_NODELAY), between two processes. Prints
// "floor_4rtt_p50_us <v>" and "floor_4rtt_p99_us <v>" and "rtt_p50_us <v>".
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

static void full(int fd, char* b, std::size_t n, bool wr) {
  for (std::size_t d = 0; d < n;) {
    const ssize_t k = wr ? ::write(fd, b + d, n - d) : ::read(fd, b + d, n - d);
    if (k <= 0) std::exit(1);
    d += static_cast<std::size_t>(k);
  }
}

int main(int argc, char** argv) {
  const int samples = argc > 1 ? std::atoi(argv[1]) : 20000;
  int ls = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a) || ::listen(ls, 1) ||
      ::getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len))
    return 1;
  const int one = 1;
  if (::fork() == 0) {  // echo server
    int c = ::accept(ls, nullptr, nullptr);
    ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char b[64];
    while (true) {
      full(c, b, 64, false);
      full(c, b, 64, true);
    }
  }
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a)) return 1;
  ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  char b[64] = {};
  std::vector<double> rtt, four;
  for (int i = 0; i < samples; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int k = 0; k < 4; ++k) {
      const auto r0 = std::chrono::steady_clock::now();
      full(s, b, 64, true);
      full(s, b, 64, false);
      rtt.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - r0).count());
    }
    four.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  auto pct = [](std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
  };
  std::printf("rtt_p50_us %.1f\nfloor_4rtt_p50_us %.1f\nfloor_4rtt_p99_us %.1f\n", pct(rtt, 0.5), pct(four, 0.5),
              pct(four, 0.99));
  ::close(s);
  ::wait(nullptr);
  return 0;
}
