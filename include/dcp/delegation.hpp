#pragma once
// dcp delegation: a server with limited capacity hands the coordination of
// access to it to its own clients (docs/delegation.md). Needs OpenSSL's
// libcrypto: link the CMake target dcp::lease.
#include "dcp/delegation/capacity.hpp"
#include "dcp/delegation/certificate.hpp"
#include "dcp/delegation/cosign_guard.hpp"
#include "dcp/delegation/coordinator.hpp"
#include "dcp/delegation/error.hpp"
#include "dcp/delegation/group.hpp"
#include "dcp/delegation/group_host.hpp"
#include "dcp/delegation/ledger.hpp"
#include "dcp/delegation/locate.hpp"
#include "dcp/delegation/messages.hpp"
#include "dcp/delegation/origin.hpp"
#include "dcp/delegation/peer.hpp"
#include "dcp/delegation/request_signature.hpp"
#include "dcp/delegation/token.hpp"
