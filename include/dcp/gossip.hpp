#pragma once
// dcp gossip: broadcast over a membership (eager push, Plumtree, anti-entropy).
#include "dcp/gossip/anti_entropy.hpp"
#include "dcp/gossip/broadcast.hpp"
#include "dcp/gossip/eager_push.hpp"
#include "dcp/gossip/plumtree.hpp"
