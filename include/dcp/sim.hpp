#pragma once
// dcp sim: the deterministic simulator.
#include "dcp/sim/env.hpp"
#include "dcp/sim/latency.hpp"
#include "dcp/sim/simulator.hpp"
#include "dcp/sim/topology.hpp"
