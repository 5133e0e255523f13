#pragma once
// dcp lease: sealed lease tokens (HMAC-SHA256 or Ed25519), the resource
// server's offline verifier and its permit-counting gate. Needs OpenSSL's
// libcrypto: link the CMake target dcp::lease.
#include "dcp/lease/error.hpp"
#include "dcp/lease/keys.hpp"
#include "dcp/lease/permit_gate.hpp"
#include "dcp/lease/token.hpp"
#include "dcp/lease/verifier.hpp"
