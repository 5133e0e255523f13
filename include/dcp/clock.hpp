#pragma once
// dcp clock: logical clocks (Lamport, vector, hybrid logical) and physical
// clock synchronization (a disciplined clock that slews; Cristian / NTP
// samples and clock filter; the Berkeley algorithm; reference broadcasts).
#include "dcp/clock/berkeley.hpp"
#include "dcp/clock/cristian.hpp"
#include "dcp/clock/disciplined_clock.hpp"
#include "dcp/clock/hybrid_logical_clock.hpp"
#include "dcp/clock/lamport_clock.hpp"
#include "dcp/clock/reference_broadcast.hpp"
#include "dcp/clock/time_sample.hpp"
#include "dcp/clock/vector_clock.hpp"
