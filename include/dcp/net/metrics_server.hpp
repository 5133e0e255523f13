#pragma once
// metrics_http_server: a minimal HTTP/1.0 endpoint for Prometheus to scrape.
//
//   dcp::net::metrics_http_server http(io.get_executor(), *dcp::address::parse("127.0.0.1:9464"),
//                                      [&] { return dcp::net::prometheus_text(node); });
//
// GET /metrics answers 200 with what `body()` returns (text/plain;
// version=0.0.4), anything else 404 or 405, a request that is not HTTP 400;
// every answer closes the connection. Plain Asio, no HTTP library: requests
// are bounded (8 KiB of header), sessions time out after 5 s and at most 16
// are open at once, so a slow or hostile client cannot hold the node's
// executor or its memory. body() runs on the executor given, which must be
// the node's for prometheus_text(node).
//
// Bind it to a private interface: it has no authentication.
#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include <asio/any_io_executor.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include "dcp/core/address.hpp"
#include "dcp/core/error.hpp"

namespace dcp::net {

class metrics_http_server {
 public:
  using body_fn = std::function<std::string()>;
  static constexpr std::size_t max_request = 8 * 1024;
  static constexpr std::size_t max_sessions = 16;
  static constexpr std::chrono::seconds session_timeout{5};

  /// Binds `listen` (an IP address; port 0 picks one) and starts accepting.
  /// Throws dcp::error when the address cannot be bound.
  metrics_http_server(asio::any_io_executor ex, const address& listen, body_fn body)
      : impl_(std::make_shared<impl>(std::move(ex), std::move(body))) {
    if (!listen.is_ip()) throw error(errc::invalid_config, "metrics_http_server: listen must be an IP address");
    const asio::ip::tcp::endpoint ep(listen.ip_address(), listen.port());
    std::error_code ec;
    impl_->acceptor.open(ep.protocol(), ec);
    if (!ec) impl_->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) impl_->acceptor.bind(ep, ec);
    if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw error(ec, "metrics_http_server: cannot listen on " + listen.to_string() + ": " + ec.message());
    const auto local = impl_->acceptor.local_endpoint();
    self_ = address::ip(local.address(), local.port());
    impl_->accept();
  }
  metrics_http_server(const metrics_http_server&) = delete;
  metrics_http_server& operator=(const metrics_http_server&) = delete;
  ~metrics_http_server() { stop(); }

  /// Where it listens (with the port chosen when it was 0).
  address self() const noexcept { return self_; }
  /// Stops accepting; sessions in progress finish or time out. Call on the executor.
  void stop() noexcept {
    impl_->stopped = true;
    std::error_code ignored;
    impl_->acceptor.close(ignored);
  }

 private:
  struct session {
    explicit session(asio::ip::tcp::socket s) : socket(std::move(s)), timer(socket.get_executor()) {}
    asio::ip::tcp::socket socket;
    asio::steady_timer timer;
    std::string request, response;
    std::array<char, 1024> chunk{};
  };

  struct impl : std::enable_shared_from_this<impl> {
    impl(asio::any_io_executor ex, body_fn b) : acceptor(ex), body(std::move(b)) {}
    asio::ip::tcp::acceptor acceptor;
    body_fn body;
    bool stopped = false;
    std::size_t sessions = 0;

    void accept() {
      acceptor.async_accept([self = shared_from_this()](const std::error_code& ec, asio::ip::tcp::socket s) {
        if (self->stopped || ec == asio::error::operation_aborted) return;
        if (!ec) {
          if (self->sessions >= max_sessions) {
            std::error_code ignored;
            s.close(ignored);
          } else {
            self->start(std::make_shared<session>(std::move(s)));
          }
        }
        self->accept();
      });
    }

    void start(const std::shared_ptr<session>& s) {
      ++sessions;
      s->timer.expires_after(session_timeout);
      s->timer.async_wait([s](const std::error_code& ec) {
        if (ec) return;
        std::error_code ignored;
        s->socket.close(ignored);  // the pending read or write completes with an error
      });
      read(s);
    }

    void read(const std::shared_ptr<session>& s) {
      s->socket.async_read_some(
          asio::buffer(s->chunk), [self = shared_from_this(), s](const std::error_code& ec, std::size_t n) {
            if (ec) return self->finish(s);
            s->request.append(s->chunk.data(), n);
            const bool complete =
                s->request.find("\r\n\r\n") != std::string::npos || s->request.find("\n\n") != std::string::npos;
            if (!complete && s->request.size() < max_request) return self->read(s);
            self->answer(s, complete);
          });
    }

    void answer(const std::shared_ptr<session>& s, bool complete) {
      std::string_view req(s->request);
      const auto eol = req.find_first_of("\r\n");
      const std::string_view line = req.substr(0, eol);
      // "METHOD target HTTP/x.y"
      const auto sp1 = line.find(' ');
      const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
      int status = 400;
      std::string content = "bad request\n";
      std::string type = "text/plain; charset=utf-8";
      if (complete && sp2 != std::string_view::npos && line.substr(sp2 + 1).starts_with("HTTP/1.")) {
        const auto method = line.substr(0, sp1);
        auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
        target = target.substr(0, target.find('?'));
        if (target != "/metrics") {
          status = 404;
          content = "not found: try /metrics\n";
        } else if (method != "GET" && method != "HEAD") {
          status = 405;
          content = "method not allowed\n";
        } else {
          status = 200;
          type = "text/plain; version=0.0.4; charset=utf-8";
          try {
            content = method == "HEAD" ? std::string() : body();
          } catch (const std::exception& e) {
            status = 500;
            content = std::string("error: ") + e.what() + "\n";
          }
        }
      }
      const char* reason = status == 200 ? "OK"
          : status == 404                ? "Not Found"
          : status == 405                ? "Method Not Allowed"
          : status == 500                ? "Internal Server Error"
                                         : "Bad Request";
      s->response = "HTTP/1.0 " + std::to_string(status) + " " + reason + "\r\nContent-Type: " + type +
          "\r\nContent-Length: " + std::to_string(content.size()) + "\r\nConnection: close\r\n\r\n" + content;
      asio::async_write(s->socket, asio::buffer(s->response),
                        [self = shared_from_this(), s](const std::error_code&, std::size_t) { self->finish(s); });
    }

    void finish(const std::shared_ptr<session>& s) {
      std::error_code ignored;
      s->socket.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
      s->socket.close(ignored);
      s->timer.cancel();
      --sessions;
    }
  };

  std::shared_ptr<impl> impl_;
  address self_;
};

}  // namespace dcp::net
