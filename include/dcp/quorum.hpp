#pragma once
// dcp quorum: quorum systems (majority, weighted majority, grid) and the check
// that any two quorums intersect.
#include "dcp/quorum/grid.hpp"
#include "dcp/quorum/intersection.hpp"
#include "dcp/quorum/majority.hpp"
#include "dcp/quorum/quorum_system.hpp"
#include "dcp/quorum/weighted_majority.hpp"
