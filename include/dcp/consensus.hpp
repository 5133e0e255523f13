#pragma once
// dcp consensus: Raft (a replicated log with sessions, snapshots, membership
// change and ReadIndex reads) and single-decree Paxos.
#include "dcp/consensus/errors.hpp"
#include "dcp/consensus/paxos.hpp"
#include "dcp/consensus/quorum_rule.hpp"
#include "dcp/consensus/raft.hpp"
#include "dcp/consensus/state_machine.hpp"
