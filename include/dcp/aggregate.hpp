#pragma once
// dcp aggregate: gossip aggregation (Push-Sum, pairwise averaging).
#include "dcp/aggregate/pairwise_average.hpp"
#include "dcp/aggregate/push_sum.hpp"
