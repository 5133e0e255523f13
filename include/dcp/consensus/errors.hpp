#pragma once
// Errors of the consensus chapter, in their own std::error_category.
#include <string>
#include <system_error>

#include "dcp/core/condition.hpp"

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

class error_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "dcp.consensus"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::unknown_session:
        return "client session unknown (evicted or never registered): this copy was not applied, but an earlier one "
               "may have been: outcome unknown; register a new session";
      case errc::stale_request:
        return "request older than the session's latest: not applied";
      case errc::outcome_unknown:
        return "leadership changed before the entry committed: outcome unknown, retry with the same sequence number";
      case errc::snapshot_too_large:
        return "refused: the replicated state would exceed raft_config::max_snapshot_bytes, the largest snapshot a "
               "replica sends or accepts; delete data, or raise max_snapshot_bytes on every replica";
      case errc::storage_failed:
        return "durable storage failed; the replica stopped";
      case errc::config_change_pending:
        return "a membership change is still in progress; retry when it commits";
      case errc::leadership_transfer_in_progress:
        return "the leader is transferring leadership: retry at the new leader (ask leader()) in an election timeout";
      case errc::leadership_transfer_failed:
        return "leadership transfer aborted: the target did not take over within an election timeout (unreachable "
               "or too far behind); this server still leads, retry";
      case errc::not_a_voter:
        return "not a voting member: a learner must be promoted first, and a stranger added as a member";
      case errc::not_a_learner:
        return "not a learner: only a learner can be promoted (add it as a learner first)";
      case errc::learner_not_caught_up:
        return "the learner's log lags the leader's commit index: wait until it has caught up and promote again";
      case errc::already_leader:
        return "the target already leads: nothing to transfer";
    }
    return "unknown consensus error " + std::to_string(ev);
  }
  std::error_condition default_error_condition(int ev) const noexcept override {
    switch (static_cast<errc>(ev)) {
      // not now: once the change commits, the transfer ends or the learner catches up
      case errc::config_change_pending:
      case errc::leadership_transfer_in_progress:
      case errc::leadership_transfer_failed:
      case errc::learner_not_caught_up:
        return condition::retryable;
      // an earlier copy may have been applied
      case errc::unknown_session:
      case errc::outcome_unknown:
        return condition::outcome_unknown;
      case errc::stale_request:
      case errc::snapshot_too_large:
      case errc::storage_failed:
      case errc::not_a_voter:
      case errc::not_a_learner:
      case errc::already_leader:
        return condition::permanent;
    }
    return std::error_category::default_error_condition(ev);
  }
};

inline const std::error_category& error_category() noexcept {
  static const error_category_impl instance;
  return instance;
}
inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

}  // namespace dcp::consensus

template <> struct std::is_error_code_enum<dcp::consensus::errc> : std::true_type {};
