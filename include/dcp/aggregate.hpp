#pragma once
// dcp aggregate: gossip aggregation (Push-Sum, pairwise averaging) and what is
// built on it: random-walk traffic and the detection of high-risk edges.
#include "dcp/aggregate/high_risk_edges.hpp"
#include "dcp/aggregate/pairwise_average.hpp"
#include "dcp/aggregate/push_sum.hpp"
#include "dcp/aggregate/random_walk_traffic.hpp"
