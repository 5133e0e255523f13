// lease_check: a resource server's offline check of lease tokens, in a
// process of its own. It holds only the group's public key; every token is
// judged against this host's wall clock (system_clock since the Unix epoch),
// the only clock that means the same thing on the issuer's host.
//
//   coord_client ... --tokens | lease_check --public-key HEX --resource L [--max-drift-ms 100]
//
// Reads lines from standard input; for each `TOKEN ... sealed=<hex> ...`
// line (what coord_client --tokens prints) it prints
//
//   CHECK token=<fencing or -> result=<ok|error words> expires_in_ms=<ms or ->
//
// using dcp::lease::verifier (signature, resource, expiry less max_drift,
// fencing never older than the newest accepted). Exit status: 0 when every
// token was accepted, 1 when any was refused, 2 bad usage.
#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "dcp/lease.hpp"

namespace {

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "lease_check: " << why << "\n"
            << "usage: lease_check --public-key HEX --resource NAME [--resource NAME]... [--max-drift-ms MS]\n";
  std::exit(2);
}

/// The value of `key=` in a line of `key=value` words, or empty.
std::string_view field(std::string_view line, std::string_view key) {
  for (std::size_t at = 0; at < line.size();) {
    const auto end = std::min(line.find(' ', at), line.size());
    const auto word = line.substr(at, end - at);
    if (word.size() > key.size() && word.substr(0, key.size()) == key && word[key.size()] == '=')
      return word.substr(key.size() + 1);
    at = end + 1;
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<dcp::bytes> public_key;
  std::vector<std::string> resources;
  long long max_drift_ms = 100;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) usage("missing value after " + std::string(arg));
    const std::string_view value = argv[++i];
    if (arg == "--public-key")
      public_key = dcp::from_hex(value);
    else if (arg == "--resource")
      resources.emplace_back(value);
    else if (arg == "--max-drift-ms")
      max_drift_ms = std::atoll(std::string(value).c_str());
    else
      usage("unknown option " + std::string(arg));
  }
  if (!public_key) usage("--public-key must be given, as hex digits");
  if (resources.empty()) usage("name at least one --resource to guard");
  if (max_drift_ms < 0) usage("--max-drift-ms must be >= 0");
  auto key = dcp::lease::ed25519_public_key::from_bytes(*public_key);
  if (!key) usage("--public-key: " + key.error().message());
  dcp::lease::verifier check({*key, 1}, resources, {.max_drift = std::chrono::milliseconds(max_drift_ms)});

  bool all_ok = true;
  for (std::string line; std::getline(std::cin, line);) {
    if (line.rfind("TOKEN ", 0) != 0) continue;
    const auto sealed = dcp::from_hex(field(line, "sealed"));
    const auto now = dcp::system_wall_now();
    auto t = sealed ? check.accept(*sealed, now)
                    : dcp::result<dcp::lease::token>(dcp::lease::make_error_code(dcp::lease::errc::malformed_token));
    std::cout << "CHECK token=" << (t ? std::to_string(t->fencing) : std::string(field(line, "token")))
              << " result=" << (t ? std::string("ok") : t.error().message()) << " expires_in_ms=";
    if (t)
      std::cout << std::chrono::duration_cast<std::chrono::milliseconds>(t->expiry - now).count();
    else
      std::cout << '-';
    std::cout << std::endl;
    all_ok = all_ok && t.has_value();
  }
  return all_ok ? 0 : 1;
}
