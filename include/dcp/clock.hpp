#pragma once
// dcp clock: logical clocks (Lamport, vector, hybrid logical).
#include "dcp/clock/hybrid_logical_clock.hpp"
#include "dcp/clock/lamport_clock.hpp"
#include "dcp/clock/vector_clock.hpp"
