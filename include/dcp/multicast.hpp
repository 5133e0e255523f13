#pragma once
// dcp multicast: ordered multicast in a static group over reliable FIFO links
// built from an unreliable Env (sequence numbers, acknowledgements,
// retransmission): totally ordered (Lamport clocks and acknowledgements) and
// causally ordered (vector clocks).
#include "dcp/multicast/causal_order.hpp"
#include "dcp/multicast/total_order.hpp"
