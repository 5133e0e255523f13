#pragma once
// dcp net: the Asio runtime. A dcp::net::node runs dcp protocols over TCP.
// The authenticated transports need OpenSSL and are not included here:
// #include "dcp/net/keyring.hpp" or "dcp/net/udp_keyring.hpp" (link dcp::lease) or "dcp/net/tls.hpp"
// (link dcp::tls).
#include "dcp/net/async.hpp"
#include "dcp/net/config.hpp"
#include "dcp/net/env.hpp"
#include "dcp/net/metrics_exposition.hpp"
#include "dcp/net/metrics_server.hpp"
#include "dcp/net/node.hpp"
#include "dcp/net/tcp_transport.hpp"
#include "dcp/net/transport.hpp"
#include "dcp/net/udp_transport.hpp"
