// dcpctl: the command-line client of dcp's coordination service (the
// coord_replica processes), as etcdctl is etcd's. Every command is one
// coord::client on a dcp::net node; docs/consensus.md ("dcpctl") has the
// reference, this is the summary:
//
//   dcpctl [--endpoints H:P,H:P,...] [--timeout 5s] [--ttl 10s] [--json] [--listen H:P] COMMAND
//     put KEY VALUE [--ephemeral]        OK; --ephemeral: bound to a session held until SIGINT/SIGTERM
//     get KEY [--prefix] [--rev N] [--revisions]  KEY\nVALUE per key (--rev N: as at revision N; --revisions: with revisions)
//     del KEY [--prefix]                 the number of keys removed
//     compaction REV                     discard the history below REV (prints compacted revision REV)
//     txn [--if C]... [--then OP]... [--else OP]...   SUCCESS or FAILURE (no flags: read stdin)
//     watch KEY [--prefix] [--from-rev N] [--count N] PUT\nKEY\nVALUE / DELETE\nKEY per event
//     lock NAME [--token] [-- CMD ARGS...]  hold NAME while CMD runs (or until SIGINT/SIGTERM)
//     elect NAME VALUE | elect NAME --observe [--count N]
//     status                             each replica's role, term, leader, indexes, revision
//     member list | member add H:P [--learner] | member promote H:P | member remove H:P
//                                        the configuration, one voter a line, then "H:P learner" per learner;
//                                        changes one server at a time
//     move-leader H:P                    hand leadership to that voter (prints "leader H:P")
//
// Exit status: 0 done; 1 the service failed the request, with the client's
// words on stderr ("no leader reachable: 3 of 3 replicas refused ...",
// "session expired: ..."); 2 bad usage; lock: CMD's own status (128 + N if
// a signal N ended it), 1 if the lock was lost while CMD ran (CMD is sent
// SIGTERM then).
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include "dcp/coord.hpp"
#include "dcp/net.hpp"
#include "dcp/net/transport_spec.hpp"  // --transport (links dcp::tls)

extern char** environ;

namespace {

using client_t = dcp::coord::client<dcp::net::env>;
using dcp::coord::grant;
using std::chrono::milliseconds;

// ---------------------------------------------------------------- output

/// Well-formed UTF-8 (no overlong forms, surrogates or code points above U+10FFFF)?
bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0, min = 0;
    if (c < 0x80)
      n = 0, cp = c;
    else if ((c >> 5) == 0x6)
      n = 1, cp = c & 0x1f, min = 0x80;
    else if ((c >> 4) == 0xe)
      n = 2, cp = c & 0x0f, min = 0x800;
    else if ((c >> 3) == 0x1e)
      n = 3, cp = c & 0x07, min = 0x10000;
    else
      return false;
    if (i + n >= s.size() + (n == 0)) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d >> 6) != 0x2) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

/// A JSON string. Text that is not UTF-8 (a key of raw bytes) has its bytes
/// above 0x7f written as \u00XX, so the output stays valid JSON.
std::string json_string(std::string_view s) {
  const bool utf8 = valid_utf8(s);
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || (c >= 0x80 && !utf8)) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

std::string base64(const dcp::bytes& b) {
  static constexpr char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t i = 0; i < b.size(); i += 3) {
    const std::uint32_t n = (std::uint32_t(b[i]) << 16) | (i + 1 < b.size() ? std::uint32_t(b[i + 1]) << 8 : 0) |
        (i + 2 < b.size() ? std::uint32_t(b[i + 2]) : 0);
    out += t[(n >> 18) & 63];
    out += t[(n >> 12) & 63];
    out += i + 1 < b.size() ? t[(n >> 6) & 63] : '=';
    out += i + 2 < b.size() ? t[n & 63] : '=';
  }
  return out;
}

std::string as_text(const dcp::bytes& b) { return std::string(b.begin(), b.end()); }

/// A value in JSON: "value": "text" when it is UTF-8, else "value_base64": "...".
std::string json_value(const dcp::bytes& b) {
  const auto s = as_text(b);
  if (valid_utf8(s)) return "\"value\":" + json_string(s);
  return "\"value_base64\":\"" + base64(b) + "\"";
}

std::string json_kv(const dcp::coord::key_value& kv) {
  std::ostringstream o;
  o << "{\"key\":" << json_string(kv.key) << ',' << json_value(kv.value)
    << ",\"create_revision\":" << kv.create_revision << ",\"mod_revision\":" << kv.mod_revision
    << ",\"version\":" << kv.version << ",\"ephemeral\":" << (kv.ephemeral ? "true" : "false") << '}';
  return o.str();
}

// ---------------------------------------------------------------- options

struct options {
  std::string endpoints;
  std::string timeout = "5s", ttl = "10s";
  std::string listen = "127.0.0.1:0";
  std::string transport;
  bool json = false;
  // resolved
  std::vector<dcp::address> servers;
  dcp::net::transport_spec spec;
  milliseconds timeout_ms{5000}, ttl_ms{10000};
};

/// "500ms", "5s", "2m", "1.5s"; a bare number is seconds.
std::optional<milliseconds> parse_duration(std::string_view s) {
  double v = 0;
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc{} || v < 0) return std::nullopt;
  const std::string_view unit(p, static_cast<std::size_t>(end - p));
  double scale = 0;
  if (unit.empty() || unit == "s")
    scale = 1000;
  else if (unit == "ms")
    scale = 1;
  else if (unit == "m")
    scale = 60'000;
  else
    return std::nullopt;
  return milliseconds(static_cast<long long>(v * scale));
}

/// One coord::client on a dcp::net node, an io_context, and the process's end.
class ctl {
 public:
  explicit ctl(const options& o) : o_(o), signals_(io_, SIGINT, SIGTERM) {
    dcp::net::config nc;
    auto listen = dcp::address::parse(o.listen);
    if (!listen || !listen->is_ip()) throw std::runtime_error("--listen: not an IP address and port: " + o.listen);
    nc.listen = *listen;
    nc.level = dcp::log_level::error;
    nc.log = [](const dcp::log_record& r) { std::cerr << "dcpctl: " << r.text << '\n'; };
    // The first failed connection to a replica is reported (on_unreachable) and
    // the client moves to another at once; with every replica down the error
    // then says "k of n replicas refused".
    nc.reconnect.give_up_after_attempts = 1;
    nc.connect_timeout = std::min<dcp::duration>(o.timeout_ms, std::chrono::seconds(3));
    node_ = std::make_unique<dcp::net::any_node>(io_, nc, dcp::net::transport_options(o.spec));
    dcp::coord::client_config cc;
    cc.servers = o.servers;
    cc.ttl = o.ttl_ms;
    cc.keepalive_every = o.ttl_ms / 6;
    cc.request_timeout = std::min<milliseconds>(milliseconds(300), o.timeout_ms);
    cc.give_up_after = o.timeout_ms;
    c_ = &node_->add<client_t>(dcp::coord::default_protocol_id, cc);
    node_->start();
    signals_.async_wait([this](const std::error_code& ec, int sig) {
      if (ec) return;
      if (on_signal_) return on_signal_(sig);
      finish(128 + sig);
    });
  }

  client_t& c() { return *c_; }
  asio::io_context& io() { return io_; }
  bool json() const { return o_.json; }
  const options& opts() const { return o_; }

  /// Runs `start` inside the loop and returns the exit status it ends with.
  int run(std::function<void()> start) {
    asio::post(io_, std::move(start));
    io_.run();
    return code_;
  }
  /// Bounds a one-shot command: the client's own give_up_after answers
  /// first, in its words; this is the backstop.
  void deadline() {
    if (!backstop_) backstop_ = std::make_unique<asio::steady_timer>(io_);
    backstop_->expires_after(o_.timeout_ms + milliseconds(2000));
    backstop_->async_wait([this](std::error_code ec) {
      if (!ec) fail("timed out after " + std::to_string(o_.timeout_ms.count()) + " ms");
    });
  }
  void no_deadline() {
    if (backstop_) backstop_->cancel();
  }
  void finish(int code) {
    code_ = code;
    std::cout.flush();
    signals_.cancel();
    if (backstop_) backstop_->cancel();
    node_->stop();
    io_.stop();
  }
  void fail(const std::string& words, int code = 1) {
    std::cerr << "dcpctl: " << words << '\n';
    finish(code);
  }
  void fail(const std::string& what, const dcp::explained_error& e) {
    fail(what + ": " + (e.what.empty() ? e.code.message() : e.what));
  }
  /// What SIGINT/SIGTERM do (default: exit 128 + signal). Re-armed after each.
  void on_signal(std::function<void(int)> fn) {
    on_signal_ = [this, fn = std::move(fn)](int sig) {
      fn(sig);
      signals_.async_wait([this](const std::error_code& ec, int s) {
        if (!ec && on_signal_) on_signal_(s);
      });
    };
  }
  /// Opens a session, then calls `then`; fails the command if it cannot.
  void with_session(std::function<void()> then) {
    c_->open_session([this, then = std::move(then)](dcp::result<dcp::coord::session_id> s) {
      if (!s) return fail("no session", s.explained());
      then();
    });
  }
  /// Closes the session (if any) and ends with `code`.
  void close_and_finish(int code) {
    if (c_->session() == 0) return finish(code);
    c_->close_session([this, code](dcp::result<void>) { finish(code); });
  }

 private:
  const options& o_;
  asio::io_context io_;
  std::unique_ptr<dcp::net::any_node> node_;
  client_t* c_ = nullptr;
  asio::signal_set signals_;
  std::unique_ptr<asio::steady_timer> backstop_;
  std::function<void(int)> on_signal_;
  int code_ = 0;
};

std::string session_words(client_t& c) { return c.last_loss().empty() ? std::string("session lost") : c.last_loss(); }

// ---------------------------------------------------------------- key-value

int cmd_put(ctl& x, const std::string& key, const std::string& value, bool ephemeral) {
  return x.run([&] {
    if (!ephemeral) {
      x.deadline();
      return x.c().put(key, dcp::to_bytes(value), [&](dcp::result<void> r) {
        if (!r) return x.fail("put " + key, r.explained());
        std::cout << (x.json() ? "{\"ok\":true}" : "OK") << std::endl;
        x.finish(0);
      });
    }
    // Bound to a session: the key lives while dcpctl does (service registration
    // from a shell), and goes at SIGINT/SIGTERM or when the session expires.
    x.with_session([&] {
      x.c().put_ephemeral(key, dcp::to_bytes(value), [&](dcp::result<std::uint64_t> r) {
        if (!r) return x.fail("put " + key, r.explained());
        if (x.json())
          std::cout << "{\"ok\":true,\"revision\":" << *r << ",\"session\":" << x.c().session() << '}' << std::endl;
        else
          std::cout << "OK revision=" << *r << std::endl;
        x.on_signal([&](int) { x.close_and_finish(0); });
        x.c().on_session_lost([&] { x.fail("the ephemeral key is gone: " + session_words(x.c())); });
      });
    });
  });
}

/// Reads [key, end) whole, reading on from the last key while the service
/// says `more` (max_range_keys or max_range_bytes cut the answer). Each
/// answer is linearizable; a range read in several answers is not one
/// snapshot unless read at a revision (`rev`: every answer is then at that
/// revision); else the revision printed is the first answer's.
struct range_reader {
  ctl& x;
  std::string end;
  std::function<void(dcp::coord::range_result)> done;
  std::uint64_t rev = 0;
  dcp::coord::range_result acc{};

  void step(const std::string& from) {
    x.c().range_at(from, end, 0, rev, [this](dcp::result<dcp::coord::range_result> r) {
      if (!r) return x.fail("get", r.explained());
      if (acc.revision == 0) acc.revision = r->revision;
      for (auto& kv : r->kvs) acc.kvs.push_back(std::move(kv));
      if (r->more && !end.empty() && !acc.kvs.empty()) return step(acc.kvs.back().key + '\0');
      done(std::move(acc));
    });
  }
};

int cmd_get(ctl& x, const std::string& key, bool prefix, bool revisions, std::uint64_t rev) {
  range_reader reader{x, prefix ? dcp::coord::prefix_end(key) : std::string{},
                      [&](dcp::coord::range_result r) {
                        if (x.json()) {
                          std::cout << "{\"revision\":" << r.revision << ",\"kvs\":[";
                          for (std::size_t i = 0; i < r.kvs.size(); ++i)
                            std::cout << (i ? "," : "") << json_kv(r.kvs[i]);
                          std::cout << "]}" << std::endl;
                        } else {
                          if (revisions) std::cout << "revision=" << r.revision << '\n';
                          for (auto& kv : r.kvs) {
                            std::cout << kv.key << '\n' << as_text(kv.value) << '\n';
                            if (revisions)
                              std::cout << "create_revision=" << kv.create_revision
                                        << " mod_revision=" << kv.mod_revision << " version=" << kv.version
                                        << (kv.ephemeral ? " ephemeral" : "") << '\n';
                          }
                        }
                        x.finish(0);
                      },
                      rev};
  return x.run([&] {
    x.deadline();
    reader.step(key);
  });
}

/// etcdctl compaction REV: prints "compacted revision REV".
int cmd_compaction(ctl& x, std::uint64_t rev) {
  return x.run([&] {
    x.deadline();
    x.c().compact(rev, [&](dcp::result<std::uint64_t> r) {
      if (!r) return x.fail("compaction " + std::to_string(rev), r.explained());
      if (x.json())
        std::cout << "{\"compact_revision\":" << *r << '}' << std::endl;
      else
        std::cout << "compacted revision " << *r << std::endl;
      x.finish(0);
    });
  });
}

int cmd_del(ctl& x, const std::string& key, bool prefix) {
  return x.run([&] {
    x.deadline();
    auto done = [&](dcp::result<std::uint64_t> r) {
      if (!r) return x.fail("del " + key, r.explained());
      if (x.json())
        std::cout << "{\"deleted\":" << *r << '}' << std::endl;
      else
        std::cout << *r << std::endl;
      x.finish(0);
    };
    if (prefix)
      x.c().remove_prefix(key, done);
    else
      x.c().remove(key, done);
  });
}

// ---------------------------------------------------------------- txn

/// Splits a line into words: whitespace between, "double quotes" with \" \\ \n
/// escapes, 'single quotes' taken as they are (as a shell does).
std::vector<std::string> words_of(std::string_view line) {
  std::vector<std::string> out;
  std::string cur;
  bool in_word = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char ch = line[i];
    if (ch == ' ' || ch == '\t') {
      if (in_word) out.push_back(std::move(cur)), cur.clear(), in_word = false;
      continue;
    }
    in_word = true;
    if (ch == '\'') {
      const auto close = line.find('\'', i + 1);
      if (close == std::string_view::npos) throw std::invalid_argument("unterminated ' in: " + std::string(line));
      cur.append(line.substr(i + 1, close - i - 1));
      i = close;
    } else if (ch == '"') {
      for (++i;; ++i) {
        if (i >= line.size()) throw std::invalid_argument("unterminated \" in: " + std::string(line));
        if (line[i] == '"') break;
        if (line[i] == '\\' && i + 1 < line.size()) {
          ++i;
          cur += line[i] == 'n' ? '\n' : line[i] == 't' ? '\t' : line[i];
        } else {
          cur += line[i];
        }
      }
    } else {
      cur += ch;
    }
  }
  if (in_word) out.push_back(std::move(cur));
  return out;
}

std::uint64_t number_of(const std::string& s, const std::string& in) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size()) throw std::invalid_argument("not a number: " + s + " in: " + in);
  return v;
}

/// A compare: `TARGET KEY OP ARG` or etcdctl's `TARGET("KEY") OP ARG`;
/// TARGET value, version, create (create_revision) or mod (mod_revision); OP = != < >.
dcp::coord::txn_compare parse_compare(const std::string& line) {
  using dcp::coord::txn_compare;
  auto w = words_of(line);
  if (w.size() == 3) {  // value(KEY) = ARG
    const auto open = w[0].find('('), close = w[0].rfind(')');
    if (open == std::string::npos || close != w[0].size() - 1) throw std::invalid_argument("not a compare: " + line);
    w.insert(w.begin() + 1, w[0].substr(open + 1, close - open - 1));
    w[0].resize(open);
  }
  if (w.size() != 4) throw std::invalid_argument("a compare is TARGET KEY OP ARG: " + line);
  txn_compare c;
  c.key = w[1];
  if (w[0] == "value")
    c.what = txn_compare::target::value;
  else if (w[0] == "version" || w[0] == "ver")
    c.what = txn_compare::target::version;
  else if (w[0] == "create" || w[0] == "create_revision")
    c.what = txn_compare::target::create_revision;
  else if (w[0] == "mod" || w[0] == "mod_revision")
    c.what = txn_compare::target::mod_revision;
  else
    throw std::invalid_argument("unknown compare target " + w[0] + " (value, version, create, mod): " + line);
  if (w[2] == "=" || w[2] == "==")
    c.cmp = txn_compare::result::equal;
  else if (w[2] == "!=")
    c.cmp = txn_compare::result::not_equal;
  else if (w[2] == "<")
    c.cmp = txn_compare::result::less;
  else if (w[2] == ">")
    c.cmp = txn_compare::result::greater;
  else
    throw std::invalid_argument("unknown compare operator " + w[2] + " (=, !=, <, >): " + line);
  if (c.what == txn_compare::target::value)
    c.value = dcp::to_bytes(w[3]);
  else
    c.number = number_of(w[3], line);
  return c;
}

/// An operation: `put KEY VALUE`, `del KEY`, `del --prefix KEY` (or `del KEY --prefix`).
dcp::coord::txn_op parse_op(const std::string& line) {
  using dcp::coord::txn_op;
  auto w = words_of(line);
  txn_op o;
  if (w.size() == 3 && w[0] == "put") {
    o.kind = txn_op::kind_t::put;
    o.key = w[1];
    o.value = dcp::to_bytes(w[2]);
    return o;
  }
  if (!w.empty() && (w[0] == "del" || w[0] == "delete")) {
    const bool prefix = std::erase(w, std::string("--prefix")) > 0;
    if (w.size() == 2) {
      o.kind = txn_op::kind_t::remove;
      o.key = w[1];
      if (prefix) o.range_end = dcp::coord::prefix_end(o.key);
      return o;
    }
  }
  throw std::invalid_argument("an operation is `put KEY VALUE`, `del KEY` or `del --prefix KEY`: " + line);
}

/// etcdctl's stdin form: compares, a blank line, the success operations, a
/// blank line, the failure operations (lines starting with # are skipped).
dcp::coord::txn_request read_txn(std::istream& in) {
  dcp::coord::txn_request t;
  int section = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) {
      if (++section > 2) throw std::invalid_argument("more than three sections (compares, success, failure)");
      continue;
    }
    if (line[line.find_first_not_of(" \t")] == '#') continue;
    if (section == 0)
      t.compares.push_back(parse_compare(line));
    else
      (section == 1 ? t.success : t.failure).push_back(parse_op(line));
  }
  return t;
}

int cmd_txn(ctl& x, const dcp::coord::txn_request& t) {
  return x.run([&] {
    x.deadline();
    x.c().txn(t, [&](dcp::result<client_t::txn_result> r) {
      if (!r) return x.fail("txn", r.explained());
      if (x.json())
        std::cout << "{\"succeeded\":" << (r->succeeded ? "true" : "false") << ",\"revision\":" << r->revision << '}'
                  << std::endl;
      else
        std::cout << (r->succeeded ? "SUCCESS" : "FAILURE") << std::endl;
      x.finish(0);
    });
  });
}

// ---------------------------------------------------------------- watch

int cmd_watch(ctl& x, const std::string& key, bool prefix, std::uint64_t from, std::uint64_t count) {
  std::uint64_t seen = 0;
  return x.run([&] {
    x.on_signal([&](int) { x.finish(0); });  // interrupted: done
    auto print = [&](dcp::result<std::vector<dcp::coord::watch_event>> ev) {
      if (!ev) return x.fail("watch " + key, ev.explained());
      for (auto& e : *ev) {
        const bool put = e.kind == dcp::coord::watch_event::kind_t::put;
        if (x.json()) {
          std::cout << "{\"type\":\"" << (put ? "PUT" : "DELETE") << "\",\"kv\":" << json_kv(e.kv) << '}' << '\n';
        } else {
          std::cout << (put ? "PUT" : "DELETE") << '\n' << e.kv.key << '\n';
          if (put) std::cout << as_text(e.kv.value) << '\n';
        }
        if (count && ++seen == count) return x.finish(0);  // (the rest of the batch is not printed)
      }
      std::cout.flush();
    };
    if (prefix)
      x.c().watch_prefix(key, from, print);
    else
      x.c().watch(key, {}, from, print);
  });
}

// ---------------------------------------------------------------- lock

std::string hex(const dcp::bytes& b) { return dcp::to_hex(b); }

int cmd_lock(ctl& x, const std::string& name, const std::vector<std::string>& command, bool token) {
  pid_t child = 0;
  bool lost = false, unlocking = false;
  std::optional<grant> held;
  asio::signal_set sigchld(x.io(), SIGCHLD);
  // The lock is released, the session closed, and dcpctl ends with `code`.
  auto release = [&](int code) {
    if (unlocking) return;
    unlocking = true;
    if (!held) return x.close_and_finish(code);
    x.c().unlock(*held, [&, code](dcp::result<void> r) {
      if (!r)
        std::cerr << "dcpctl: could not release " << name << " (it goes when the session expires): " << r.message()
                  << '\n';
      x.close_and_finish(code);
    });
  };
  std::function<void()> reap = [&] {
    sigchld.async_wait([&](const std::error_code& ec, int) {
      if (ec) return;
      int st = 0;
      if (::waitpid(child, &st, WNOHANG) != child) return reap();
      child = 0;
      if (lost) return x.finish(1);  // said when it was lost
      release(WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 1);
    });
  };
  auto start_command = [&](const std::optional<std::string>& sealed) {
    ::setenv("DCP_LOCK_NAME", name.c_str(), 1);
    ::setenv("DCP_FENCING_TOKEN", std::to_string(held->fencing).c_str(), 1);
    if (sealed) ::setenv("DCP_LEASE_TOKEN", sealed->c_str(), 1);
    std::vector<char*> argv;
    for (auto& a : command) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    reap();
    // dcpctl ignores SIGPIPE; the command starts with every signal at its default.
    posix_spawnattr_t attr;
    ::posix_spawnattr_init(&attr);
    sigset_t all;
    ::sigfillset(&all);
    ::posix_spawnattr_setsigdefault(&attr, &all);
    ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
    const int err = ::posix_spawnp(&child, argv[0], nullptr, &attr, argv.data(), environ);
    ::posix_spawnattr_destroy(&attr);
    if (err != 0) {
      child = 0;
      std::cerr << "dcpctl: cannot run " << command[0] << ": " << std::strerror(err) << '\n';
      return release(127);
    }
  };
  return x.run([&] {
    // Interrupted while waiting: closing the session withdraws the waiter.
    // Holding without a command: release and exit 0. With a command: pass the
    // signal on; dcpctl releases when it has ended.
    x.on_signal([&](int sig) {
      if (!held) return x.close_and_finish(128 + sig);
      if (child) return void(::kill(child, sig));
      release(0);
    });
    x.c().on_lost([&](const grant& g) {
      if (!held || g.fencing != held->fencing) return;
      lost = true;
      held.reset();
      std::cerr << "dcpctl: lost the lock " << name << ": "
                << (x.c().session_valid() ? std::string("the service no longer lists the grant") : session_words(x.c()))
                << '\n';
      if (child) return void(::kill(child, SIGTERM));  // ends with 1 when it has exited
      x.finish(1);
    });
    x.with_session([&] {
      x.c().lock(name, [&](dcp::result<grant> g) {
        if (!g) return x.fail("lock " + name, g.explained());
        held = *g;
        if (x.json())
          std::cout << "{\"name\":" << json_string(name) << ",\"fencing\":" << g->fencing;
        else
          std::cout << "locked name=" << name << " fencing=" << g->fencing;
        auto go = [&](std::optional<std::string> sealed) {
          if (sealed) std::cout << (x.json() ? ",\"lease_token\":\"" + *sealed + "\"" : " lease_token=" + *sealed);
          std::cout << (x.json() ? "}" : "") << std::endl;
          if (!command.empty()) start_command(sealed);
        };
        if (!token) return go(std::nullopt);
        x.c().lease(*g, [&, go](dcp::result<dcp::bytes> t) {
          if (!t) {
            std::cout << std::endl;
            std::cerr << "dcpctl: no lease token for " << name << ": " << t.message()
                      << (t.error() == dcp::errc::io_error
                              ? " (the replicas issue no lease tokens: coord_replica --lease-seed)"
                              : "")
                      << '\n';
            return release(1);
          }
          go(hex(*t));
        });
      });
    });
  });
}

// ---------------------------------------------------------------- elect

int cmd_elect(ctl& x, const std::string& name, const std::string& value, bool observe, std::uint64_t count) {
  std::optional<grant> led;
  std::uint64_t seen = 0;
  return x.run([&] {
    if (observe) {
      x.on_signal([&](int) { x.finish(0); });
      x.deadline();  // until the first answer
      return x.c().observe(name, [&](std::optional<dcp::coord::holder> h) {
        x.no_deadline();  // answered: from here on it waits for changes
        if (x.json())
          std::cout << "{\"leader\":" << (h ? "{" + json_value(h->value) + "}" : std::string("null")) << '}'
                    << std::endl;
        else if (h)
          std::cout << as_text(h->value) << std::endl;
        else
          std::cout << "(no leader)" << std::endl;
        if (count && ++seen == count) return x.finish(0);
      });
    }
    x.on_signal([&](int sig) {
      if (!led) return x.close_and_finish(128 + sig);  // withdraws the candidacy
      x.c().resign(*led, [&](dcp::result<void>) { x.close_and_finish(0); });
    });
    x.c().on_lost([&](const grant& g) {
      if (led && g.fencing == led->fencing) x.fail("no longer leader of " + name + ": " + session_words(x.c()));
    });
    x.with_session([&] {
      x.c().campaign(name, dcp::to_bytes(value), [&](dcp::result<grant> g) {
        if (!g) return x.fail("elect " + name, g.explained());
        led = *g;
        if (x.json())
          std::cout << "{\"name\":" << json_string(name) << ",\"value\":" << json_string(value)
                    << ",\"fencing\":" << g->fencing << '}' << std::endl;
        else
          std::cout << "leader name=" << name << " value=" << value << " fencing=" << g->fencing << std::endl;
      });
    });
  });
}

// ---------------------------------------------------------------- status

int cmd_status(ctl& x) {
  std::vector<std::optional<dcp::result<client_t::replica_status>>> got(x.opts().servers.size());
  std::size_t answered = 0;
  return x.run([&] {
    x.deadline();
    for (std::size_t i = 0; i < got.size(); ++i)
      x.c().status(x.opts().servers[i], [&, i](dcp::result<client_t::replica_status> r) {
        got[i] = std::move(r);
        if (++answered < got.size()) return;
        // Every replica answered or failed: print, then judge.
        std::size_t failed = 0;
        std::uint64_t top_term = 0;
        for (auto& g : got)
          if (g && *g) top_term = std::max(top_term, (*g)->term);
        bool led = false;
        if (x.json())
          std::cout << '[';
        else
          std::printf("%-22s %-13s %6s %-22s %8s %8s %8s\n", "ENDPOINT", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED",
                      "REVISION");
        for (std::size_t k = 0; k < got.size(); ++k) {
          const auto ep = x.opts().servers[k].to_string();
          auto& r = *got[k];
          if (!r) {
            ++failed;
            if (x.json())
              std::cout << (k ? "," : "") << "{\"endpoint\":" << json_string(ep)
                        << ",\"error\":" << json_string(r.message()) << '}';
            else
              std::printf("%-22s %s\n", ep.c_str(), r.message().c_str());
            continue;
          }
          led |= r->role == "leader" && r->term == top_term;
          const auto leader = r->leader ? r->leader->to_string() : std::string("-");
          if (x.json())
            std::cout << (k ? "," : "") << "{\"endpoint\":" << json_string(ep) << ",\"role\":\"" << r->role
                      << "\",\"term\":" << r->term << ",\"leader\":" << (r->leader ? json_string(leader) : "null")
                      << ",\"commit\":" << r->commit << ",\"applied\":" << r->applied << ",\"revision\":" << r->revision
                      << '}';
          else
            std::printf("%-22s %-13s %6llu %-22s %8llu %8llu %8llu\n", ep.c_str(), r->role.c_str(),
                        static_cast<unsigned long long>(r->term), leader.c_str(),
                        static_cast<unsigned long long>(r->commit), static_cast<unsigned long long>(r->applied),
                        static_cast<unsigned long long>(r->revision));
        }
        if (x.json()) std::cout << ']' << '\n';
        std::fflush(stdout);
        if (failed == got.size())
          return x.fail("no leader reachable: " + std::to_string(failed) + " of " + std::to_string(got.size()) +
                        " replicas did not answer");
        if (failed)
          return x.fail(std::to_string(failed) + " of " + std::to_string(got.size()) + " replicas did not answer");
        if (!led)
          return x.fail("no replica leads in term " + std::to_string(top_term) + " (an election may be under way)");
        x.finish(0);
      });
  });
}

/// A configuration: the voters, one address a line, then each learner as
/// "HOST:PORT learner"; in JSON, "members" (the voters) and "learners".
void print_membership(ctl& x, const std::string& json_head, const std::string& text_head,
                      const std::vector<dcp::address>& voters, const std::vector<dcp::address>& learners) {
  if (x.json()) {
    auto list = [](const std::vector<dcp::address>& v) {
      std::string out;
      for (std::size_t k = 0; k < v.size(); ++k) out += (k ? "," : "") + json_string(v[k].to_string());
      return out;
    };
    std::cout << json_head << "\"members\":[" << list(voters) << "],\"learners\":[" << list(learners) << "]}"
              << std::endl;
    return;
  }
  std::cout << text_head;
  for (auto& m : voters) std::cout << m.to_string() << '\n';
  for (auto& m : learners) std::cout << m.to_string() << " learner\n";
  std::cout.flush();
}

/// member list: the configuration of the leader in the highest term any
/// endpoint reports (status from every endpoint; those that do not answer
/// are passed over), one address a line.
int cmd_member_list(ctl& x) {
  std::vector<std::optional<dcp::result<client_t::replica_status>>> got(x.opts().servers.size());
  std::size_t answered = 0;
  return x.run([&] {
    x.deadline();
    for (std::size_t i = 0; i < got.size(); ++i)
      x.c().status(x.opts().servers[i], [&, i](dcp::result<client_t::replica_status> r) {
        got[i] = std::move(r);
        if (++answered < got.size()) return;
        const client_t::replica_status* best = nullptr;
        for (auto& g : got)
          if (*g && (*g)->role == "leader" && (!best || (*g)->term > best->term)) best = &**g;
        if (!best) return x.fail("member list: no replica leads (of " + std::to_string(got.size()) + " asked)");
        print_membership(
            x,
            "{\"leader\":" + json_string(best->replica.to_string()) + ",\"term\":" + std::to_string(best->term) + ",",
            "", best->members, best->learners);
        x.finish(0);
      });
  });
}

/// member add/add --learner/promote/remove HOST:PORT: prints "added|promoted|removed HOST:PORT", then the
/// configuration (see print_membership).
int cmd_member_change(ctl& x, dcp::coord::msg::member_op op, const dcp::address& member) {
  using o = dcp::coord::msg::member_op;
  return x.run([&] {
    x.deadline();
    x.c().change_membership(op, member, [&, op](dcp::result<client_t::membership> r) {
      const std::string verb = op == o::remove ? "removed" : op == o::promote ? "promoted" : "added";
      const std::string what = std::string(op == o::remove        ? "member remove "
                                               : op == o::promote ? "member promote "
                                                                  : "member add ") +
          member.to_string();
      if (!r) return x.fail(what, r.explained());
      print_membership(x, "{\"" + verb + "\":" + json_string(member.to_string()) + ",",
                       verb + " " + member.to_string() + "\n", r->voters, r->learners);
      x.finish(0);
    });
  });
}

/// move-leader HOST:PORT: hands leadership to that voter; prints "leader HOST:PORT" once it has taken over.
int cmd_move_leader(ctl& x, const dcp::address& target) {
  return x.run([&] {
    x.deadline();
    x.c().move_leader(target, [&](dcp::result<dcp::address> r) {
      if (!r) return x.fail("move-leader " + target.to_string(), r.explained());
      if (x.json())
        std::cout << "{\"leader\":" << json_string(r->to_string()) << '}' << std::endl;
      else
        std::cout << "leader " << r->to_string() << std::endl;
      x.finish(0);
    });
  });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dcpctl: the command-line client of dcp's coordination service (coord_replica), as etcdctl is etcd's"};
  app.require_subcommand(1);
  app.fallthrough();  // the global options may follow the command, as etcdctl allows
  options o;
  if (const char* e = std::getenv("DCPCTL_ENDPOINTS")) o.endpoints = e;
  app.add_option("--endpoints", o.endpoints, "the replicas, HOST:PORT,HOST:PORT,... (default: $DCPCTL_ENDPOINTS)");
  app.add_option("--timeout", o.timeout, "how long a request may take before it fails (500ms, 5s, 1m)")
      ->capture_default_str();
  app.add_option("--ttl", o.ttl,
                 "the session's TTL, for lock, elect and put --ephemeral (the lock outlives a crashed dcpctl by this)")
      ->capture_default_str();
  app.add_option("--listen", o.listen, "the address replicas answer to (give this host's address for remote replicas)")
      ->capture_default_str();
  app.add_option("--transport", o.transport,
                 "how to reach the replicas: keyring:KEYFILE, tls:CA,CERT,KEY or plaintext, as the replicas run "
                 "(default: $DCP_TRANSPORT)");
  app.add_flag("--json", o.json, "print JSON (one object per line for watch and elect --observe)");

  std::string key, value;
  bool prefix = false, ephemeral = false, revisions = false, token = false, observe = false;
  std::uint64_t from_rev = 0, count = 0, at_rev = 0;
  std::vector<std::string> ifs, thens, elses, command;

  auto* put = app.add_subcommand("put", "put KEY VALUE: set a key (prints OK)");
  put->add_option("key", key, "the key")->required();
  put->add_option("value", value, "the value")->required();
  put->add_flag("--ephemeral", ephemeral, "bind the key to a session held until SIGINT/SIGTERM (or until it expires)");

  auto* get = app.add_subcommand(
      "get", "get KEY: print KEY and VALUE, one line each, for each key found (nothing: no such key)");
  get->add_option("key", key, "the key (or the prefix)")->required();
  get->add_flag("--prefix", prefix, "every key that starts with KEY");
  get->add_option("--rev", at_rev,
                  "read the keys as they were at this revision (etcd's --rev; 0: now); below the compact "
                  "revision: exit 1, \"compacted\"");
  get->add_flag("--revisions", revisions,
                "also print the store's revision and each key's create_revision, mod_revision, version");

  auto* del = app.add_subcommand("del", "del KEY: remove a key (prints the number removed)");
  del->add_option("key", key, "the key (or the prefix)")->required();
  del->add_flag("--prefix", prefix, "every key that starts with KEY");

  std::uint64_t compact_rev = 0;
  auto* compaction = app.add_subcommand("compaction",
                                        "compaction REV: discard the store's history below revision REV on every "
                                        "replica (reads and watches from below then fail with \"compacted\")");
  compaction->add_option("revision", compact_rev, "the new compact revision")->required();

  auto* txn = app.add_subcommand(
      "txn",
      "txn: if every compare holds, the --then operations, else the --else ones, at one revision "
      "(prints SUCCESS or FAILURE). Without flags, reads etcdctl's form from stdin: compares, a blank "
      "line, success operations, a blank line, failure operations.");
  txn->add_option(
      "--if", ifs,
      "a compare: 'value KEY = V', 'version KEY > N', 'create KEY = N', 'mod KEY < N' (or value(KEY) = V); = != < >");
  txn->add_option("--then", thens, "an operation if the compares hold: 'put KEY VALUE', 'del KEY', 'del --prefix KEY'");
  txn->add_option("--else", elses, "an operation if they do not");

  auto* watch =
      app.add_subcommand("watch", "watch KEY: print every change (PUT/DELETE, KEY, VALUE lines) until interrupted");
  watch->add_option("key", key, "the key (or the prefix)")->required();
  watch->add_flag("--prefix", prefix, "every key that starts with KEY");
  watch->add_option("--from-rev", from_rev, "from this revision on (default: the next change)");
  watch->add_option("--count", count, "exit after this many events");

  auto* lock = app.add_subcommand(
      "lock",
      "lock NAME [-- CMD ARGS...]: take the lock, print its fencing token, run CMD while holding it "
      "(exit status: CMD's), or hold it until SIGINT/SIGTERM. CMD sees DCP_LOCK_NAME, DCP_FENCING_TOKEN "
      "and, with --token, DCP_LEASE_TOKEN");
  lock->add_option("name", key, "the lock")->required();
  lock->add_flag("--token", token,
                 "also ask the leader for a sealed lease token for the grant (coord_replica --lease-seed), as hex");

  auto* elect = app.add_subcommand("elect",
                                   "elect NAME VALUE: campaign; print when leader, lead until SIGINT/SIGTERM. "
                                   "elect NAME --observe: print the leader's value at every change");
  elect->add_option("name", key, "the election")->required();
  elect->add_option("value", value, "this candidate's value (shown to observers)");
  elect->add_flag("--observe", observe, "print the leader's value now and at every change, without campaigning");
  elect->add_option("--count", count, "--observe: exit after this many values");

  auto* status = app.add_subcommand("status",
                                    "each replica's role, term, the leader it knows, commit and applied indexes, "
                                    "and the store's revision (exit 1 if one does not answer or none leads)");

  std::string member_address;
  bool learner = false;
  auto* member = app.add_subcommand("member",
                                    "member list | add HOST:PORT [--learner] | promote HOST:PORT | remove HOST:PORT: "
                                    "the replicas of the group (Raft's one-server changes; start a new replica "
                                    "listing the group as --peer before adding it)");
  member->require_subcommand(1);
  auto* member_list =
      member->add_subcommand("list", "print the leader's configuration: one voter a line, then HOST:PORT learner");
  auto* member_add = member->add_subcommand("add",
                                            "add a replica (it joins as a voter once the change commits, or with "
                                            "--learner as a non-voting member to promote once caught up)");
  member_add->add_option("address", member_address, "the replica's HOST:PORT")->required();
  member_add->add_flag("--learner", learner,
                       "add it as a learner: it receives the log but neither votes nor counts for commit");
  auto* member_promote =
      member->add_subcommand("promote", "make a learner a voter (refused while its log lags the leader's)");
  member_promote->add_option("address", member_address, "the learner's HOST:PORT")->required();
  auto* member_remove = member->add_subcommand("remove", "remove a replica (a voter or a learner)");
  member_remove->add_option("address", member_address, "the replica's HOST:PORT")->required();
  auto* move_leader = app.add_subcommand("move-leader",
                                         "hand leadership to a voter (Raft's leadership transfer): the leader "
                                         "brings its log up to date, then it campaigns at once");
  move_leader->add_option("address", member_address, "the new leader's HOST:PORT")->required();

  // Everything after the first "--" is lock's command, verbatim (CLI11 would
  // read "[ ... ]" as a list).
  int cli_argc = argc;
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "--") {
      cli_argc = i;
      command.assign(argv + i + 1, argv + argc);
      break;
    }
  try {
    app.parse(cli_argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  auto usage = [](const std::string& why) {
    std::cerr << "dcpctl: " << why << " (dcpctl --help)\n";
    return 2;
  };
  if (o.endpoints.empty()) return usage("no endpoints: give --endpoints HOST:PORT,... or set DCPCTL_ENDPOINTS");
  if (!o.transport.empty()) {
    if (auto e = o.spec.parse(o.transport)) return usage("--transport: " + *e);
  } else if (auto e = o.spec.parse_environment()) {
    return usage(*e);
  }
  if (!o.spec.chosen())
    return usage("no transport: give --transport keyring:KEYFILE|tls:CA,CERT,KEY|plaintext or set DCP_TRANSPORT");
  std::stringstream eps(o.endpoints);
  for (std::string ep; std::getline(eps, ep, ',');) {
    if (ep.empty()) continue;
    auto a = dcp::address::parse(ep);
    if (!a || !a->is_network()) return usage("not an endpoint: " + ep + " (HOST:PORT)");
    o.servers.push_back(*a);
  }
  if (o.servers.empty()) return usage("no endpoints in --endpoints");
  auto t = parse_duration(o.timeout), l = parse_duration(o.ttl);
  if (!t || t->count() <= 0) return usage("--timeout: not a duration: " + o.timeout + " (500ms, 5s, 1m)");
  if (!l || l->count() < 300) return usage("--ttl must be a duration of at least 300ms (keepalives go every ttl/6)");
  o.timeout_ms = *t;
  o.ttl_ms = *l;
  if (cli_argc != argc && !lock->parsed()) return usage("only lock takes a command after --");
  if (cli_argc != argc && command.empty()) return usage("lock NAME -- CMD: no command after --");
  if (elect->parsed() && !observe && value.empty()) return usage("elect NAME VALUE: a value is needed (or --observe)");
  std::optional<dcp::address> member_target;
  if (member_add->parsed() || member_promote->parsed() || member_remove->parsed() || move_leader->parsed()) {
    member_target = dcp::address::parse(member_address);
    if (!member_target || !member_target->is_network())
      return usage(std::string(move_leader->parsed() ? "move-leader" : "member") +
                   ": not an address: " + member_address + " (HOST:PORT)");
  }
  dcp::coord::txn_request request;
  if (txn->parsed()) {
    try {
      if (ifs.empty() && thens.empty() && elses.empty()) {
        request = read_txn(std::cin);
      } else {
        for (auto& c : ifs) request.compares.push_back(parse_compare(c));
        for (auto& op : thens) request.success.push_back(parse_op(op));
        for (auto& op : elses) request.failure.push_back(parse_op(op));
      }
    } catch (const std::invalid_argument& e) { return usage(std::string("txn: ") + e.what()); }
  }
  // A child may outlive a broken pipe on our stdout; dcpctl itself should not die of SIGPIPE mid-release.
  std::signal(SIGPIPE, SIG_IGN);
  try {
    ctl x(o);
    if (put->parsed()) return cmd_put(x, key, value, ephemeral);
    if (get->parsed()) return cmd_get(x, key, prefix, revisions, at_rev);
    if (compaction->parsed()) return cmd_compaction(x, compact_rev);
    if (del->parsed()) return cmd_del(x, key, prefix);
    if (txn->parsed()) return cmd_txn(x, request);
    if (watch->parsed()) return cmd_watch(x, key, prefix, from_rev, count);
    if (lock->parsed()) return cmd_lock(x, key, command, token);
    if (elect->parsed()) return cmd_elect(x, key, value, observe, count);
    if (status->parsed()) return cmd_status(x);
    if (member_list->parsed()) return cmd_member_list(x);
    using mop = dcp::coord::msg::member_op;
    if (member_add->parsed()) return cmd_member_change(x, learner ? mop::add_learner : mop::add, *member_target);
    if (member_promote->parsed()) return cmd_member_change(x, mop::promote, *member_target);
    if (member_remove->parsed()) return cmd_member_change(x, mop::remove, *member_target);
    if (move_leader->parsed()) return cmd_move_leader(x, *member_target);
  } catch (const std::exception& e) {
    std::cerr << "dcpctl: " << e.what() << '\n';
    return 1;
  }
  return 2;
}
