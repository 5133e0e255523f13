#pragma once
// Errors of the consensus chapter, in their own std::error_category.
#include <string>
#include <system_error>

namespace dcp::consensus {

enum class errc : int {
  unknown_session = 1,  ///< the client's session is unknown (evicted, never registered): outcome unknown
  stale_request,        ///< a command older than the session's latest: superseded, not applied
  outcome_unknown,      ///< leadership changed before the entry committed: retry with the same sequence number
  snapshot_too_large,   ///< the replicated state would exceed raft_config::max_snapshot_bytes (the quota)
  storage_failed,       ///< durable storage failed: the replica stopped to stay safe
  config_change_pending,  ///< one membership change at a time: the previous one is not committed yet
};

class error_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "dcp.consensus"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::unknown_session:
        return "client session unknown (evicted or never registered): this copy was not applied, but an earlier one "
               "may have been: outcome unknown; register a new session";
      case errc::stale_request: return "request older than the session's latest: not applied";
      case errc::outcome_unknown:
        return "leadership changed before the entry committed: outcome unknown, retry with the same sequence number";
      case errc::snapshot_too_large:
        return "refused: the replicated state would exceed raft_config::max_snapshot_bytes, the largest snapshot a "
               "replica sends or accepts; delete data, or raise max_snapshot_bytes on every replica";
      case errc::storage_failed: return "durable storage failed; the replica stopped";
      case errc::config_change_pending: return "a membership change is still in progress; retry when it commits";
    }
    return "unknown consensus error " + std::to_string(ev);
  }
};

inline const std::error_category& error_category() noexcept {
  static const error_category_impl instance;
  return instance;
}
inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

}  // namespace dcp::consensus

template <>
struct std::is_error_code_enum<dcp::consensus::errc> : std::true_type {};
