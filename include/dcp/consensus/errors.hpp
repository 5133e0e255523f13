#pragma once
// Errors of the consensus chapter, in their own std::error_category
// ("dcp.consensus", dcp/core/error_category.hpp).
#include <system_error>

#include "dcp/core/error_category.hpp"

namespace dcp::consensus {

enum class errc : int {
  unknown_session = 1,    ///< the client's session is unknown (evicted, never registered): outcome unknown
  stale_request,          ///< a command older than the session's latest: superseded, not applied
  outcome_unknown,        ///< leadership changed before the entry committed: retry with the same sequence number
  snapshot_too_large,     ///< the replicated state would exceed raft_config::max_snapshot_bytes (the quota)
  storage_failed,         ///< durable storage failed: the replica stopped to stay safe
  config_change_pending,  ///< one membership change at a time: the previous one is not committed yet
  leadership_transfer_in_progress,  ///< the leader is handing over: proposals and changes wait for the new leader
  leadership_transfer_failed,       ///< the target did not take over within an election timeout
  not_a_voter,            ///< the target of a transfer or promotion is not a voter (a learner, or not a member)
  not_a_learner,          ///< promotion of a server that is not a learner
  learner_not_caught_up,  ///< promotion of a learner whose log lags the leader's commit index
  already_leader,         ///< a transfer to the leader itself
};

constexpr const char* error_category_name(errc) noexcept { return "dcp.consensus"; }

/// Each code's condition and message. Retryable: not now, but once the
/// change commits, the transfer ends or the learner catches up;
/// outcome_unknown: an earlier copy may have been applied.
constexpr error_meaning describe(errc e) noexcept {
  // every code, and no default: -Wswitch names a code added without a meaning
  switch (e) {
    case errc::unknown_session:
      return {condition::outcome_unknown,
              "client session unknown (evicted or never registered): this copy was not applied, but an earlier one "
              "may have been: outcome unknown; register a new session"};
    case errc::stale_request:
      return {condition::permanent, "request older than the session's latest: not applied"};
    case errc::outcome_unknown:
      return {condition::outcome_unknown,
              "leadership changed before the entry committed: outcome unknown, retry with the same sequence number"};
    case errc::snapshot_too_large:
      return {condition::permanent,
              "refused: the replicated state would exceed raft_config::max_snapshot_bytes, the largest snapshot a "
              "replica sends or accepts; delete data, or raise max_snapshot_bytes on every replica"};
    case errc::storage_failed:
      return {condition::permanent, "durable storage failed; the replica stopped"};
    case errc::config_change_pending:
      return {condition::retryable, "a membership change is still in progress; retry when it commits"};
    case errc::leadership_transfer_in_progress:
      return {condition::retryable,
              "the leader is transferring leadership: retry at the new leader (ask leader()) in an election timeout"};
    case errc::leadership_transfer_failed:
      return {condition::retryable,
              "leadership transfer aborted: the target did not take over within an election timeout (unreachable "
              "or too far behind); this server still leads, retry"};
    case errc::not_a_voter:
      return {condition::permanent,
              "not a voting member: a learner must be promoted first, and a stranger added as a member"};
    case errc::not_a_learner:
      return {condition::permanent, "not a learner: only a learner can be promoted (add it as a learner first)"};
    case errc::learner_not_caught_up:
      return {condition::retryable,
              "the learner's log lags the leader's commit index: wait until it has caught up and promote again"};
    case errc::already_leader:
      return {condition::permanent, "the target already leads: nothing to transfer"};
  }
  return {};  // not a code
}

inline const std::error_category& error_category() noexcept { return error_category_of<errc>(); }
using dcp::make_error_code;

}  // namespace dcp::consensus

template <> struct std::is_error_code_enum<dcp::consensus::errc> : std::true_type {};
