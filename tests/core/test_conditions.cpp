#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <system_error>
#include <vector>

#include "dcp/consensus/errors.hpp"
#include "dcp/coord/errors.hpp"
#include "dcp/core/condition.hpp"
#include "dcp/core/error.hpp"
#include "dcp/core/error_category.hpp"
#include "dcp/core/result.hpp"
#include "dcp/delegation/error.hpp"
#include "dcp/dht/error.hpp"
#include "dcp/dht/scribe_error.hpp"
#include "dcp/lease/error.hpp"

namespace test_conditions {

using namespace dcp;

/// A dcp category and the value of its last code (its codes are 1..last).
struct category_codes {
  const std::error_category* category;
  int last;
};

std::vector<category_codes> dcp_categories() {
  return {
      {&dcp::error_category(), static_cast<int>(dcp::errc::authentication_failed)},
      {&lease::error_category(), static_cast<int>(lease::errc::crypto_failure)},
      {&coord::error_category(), static_cast<int>(coord::errc::future_revision)},
      {&consensus::error_category(), static_cast<int>(consensus::errc::already_leader)},
      {&delegation::error_category(), static_cast<int>(delegation::errc::slot_held)},
      {&dht::error_category(), static_cast<int>(dht::errc::key_is_signed)},
      {&dht::scribe_category(), static_cast<int>(dht::scribe_errc::bad_argument)},
  };
}

const condition all_conditions[] = {condition::retryable, condition::outcome_unknown, condition::permanent};

int conditions_matched(const std::error_code& ec) {
  int n = 0;
  for (auto c : all_conditions) n += ec == c;
  return n;
}

TEST_CASE("conditions: every code of every dcp category is in exactly one condition") {
  for (const auto& codes : dcp_categories()) {
    const std::error_category* cat = codes.category;
    const int last = codes.last;
    CAPTURE(cat->name());
    // `last` is the category's last code: one past it has no message of its own.
    const std::string past = cat->message(last + 1);
    CHECK(past.starts_with("unknown"));
    CHECK(past.ends_with(" " + std::to_string(last + 1)));
    for (int ev = 1; ev <= last; ++ev) {
      const std::error_code ec(ev, *cat);
      CAPTURE(ec.message());
      CHECK(conditions_matched(ec) == 1);
      CHECK(ec.default_error_condition().category() == condition_category());
    }
    // Not a code: no condition (so an unknown value is never taken for "retry").
    CHECK(conditions_matched(std::error_code(last + 1, *cat)) == 0);
    CHECK(conditions_matched(std::error_code(0, *cat)) == 0);
  }
}

/// An enum of dcp's shape, as a chapter would declare one (dcp/core/error_category.hpp).
enum class sample_errc : int { slow = 1, lost, refused };
constexpr const char* error_category_name(sample_errc) noexcept { return "dcp.sample"; }
constexpr error_meaning describe(sample_errc e) noexcept {
  switch (e) {
    case sample_errc::slow:
      return {condition::retryable, "slow: try again"};
    case sample_errc::lost:
      return {condition::outcome_unknown, "lost: look first"};
    case sample_errc::refused:
      return {condition::permanent, "refused: change the request"};
  }
  return {};
}

TEST_CASE("error_category_of: a category from the enum's name and describe, one instance per enum") {
  const std::error_category& cat = error_category_of<sample_errc>();
  CHECK(&cat == &error_category_of<sample_errc>());
  CHECK(std::string(cat.name()) == "dcp.sample");
  for (auto e : {sample_errc::slow, sample_errc::lost, sample_errc::refused}) {
    const std::error_code ec = make_error_code(e);
    CHECK(&ec.category() == &cat);
    CHECK(ec.message() == describe(e).message);
    CHECK(ec.default_error_condition() == std::error_condition(describe(e).cond));
    CHECK(conditions_matched(ec) == 1);
  }
  // not a code: a message that says so with the number, and no condition
  for (int ev : {0, 4, -1}) {
    CHECK(cat.message(ev) == "unknown dcp.sample error " + std::to_string(ev));
    CHECK(conditions_matched(std::error_code(ev, cat)) == 0);
    CHECK(cat.default_error_condition(ev) == std::error_condition(ev, cat));
  }
  // every chapter's category is the shared one, whichever way it is reached
  CHECK(&dcp::error_category() == &error_category_of<dcp::errc>());
  CHECK(&lease::error_category() == &error_category_of<lease::errc>());
  CHECK(&dht::scribe_category() == &error_category_of<dht::scribe_errc>());
  CHECK(std::error_code(consensus::errc::stale_request).category() == consensus::error_category());
  CHECK(std::error_code(delegation::errc::slot_held) == make_error_code(delegation::errc::slot_held));
  CHECK(std::error_code(coord::errc::compacted) != std::error_code(dht::errc::not_joined));  // both value 1
}

TEST_CASE("conditions: success and codes from outside dcp match none") {
  CHECK(conditions_matched(std::error_code{}) == 0);
  CHECK(conditions_matched(std::make_error_code(std::errc::connection_refused)) == 0);
  CHECK(conditions_matched(std::make_error_code(std::errc::timed_out)) == 0);
  // and a dcp condition is no std::errc condition
  CHECK(make_error_code(dcp::errc::timed_out) != std::errc::timed_out);
}

TEST_CASE("conditions: the mappings callers rely on") {
  // coord's server tells the client to ask again (same sequence number) ...
  for (std::error_code ec : {make_error_code(dcp::errc::not_leader), make_error_code(consensus::errc::outcome_unknown),
                             make_error_code(consensus::errc::leadership_transfer_in_progress),
                             make_error_code(consensus::errc::unknown_session)})
    CHECK(ec != condition::permanent);
  CHECK(make_error_code(dcp::errc::not_leader) == condition::retryable);
  CHECK(make_error_code(consensus::errc::leadership_transfer_in_progress) == condition::retryable);
  CHECK(make_error_code(consensus::errc::outcome_unknown) == condition::outcome_unknown);
  CHECK(make_error_code(dcp::errc::outcome_unknown) == condition::outcome_unknown);
  CHECK(make_error_code(consensus::errc::unknown_session) == condition::outcome_unknown);
  // ... and gives up on what would fail again
  for (std::error_code ec :
       {make_error_code(consensus::errc::storage_failed), make_error_code(consensus::errc::snapshot_too_large),
        make_error_code(consensus::errc::stale_request), make_error_code(dcp::errc::invalid_argument),
        make_error_code(dcp::errc::malformed_payload)})
    CHECK(ec == condition::permanent);
  // a delegation group tells a holder to retry after the hint, or refuses
  for (auto e : {delegation::errc::share_exhausted, delegation::errc::not_coordinator,
                 delegation::errc::certificate_expired, delegation::errc::slot_held})
    CHECK(make_error_code(e) == condition::retryable);
  for (auto e :
       {delegation::errc::delegation_ended, delegation::errc::unknown_shard, delegation::errc::stock_exhausted})
    CHECK(make_error_code(e) == condition::permanent);
  // a time-out may hide a success; an unreachable peer never got the request
  CHECK(make_error_code(dcp::errc::timed_out) == condition::outcome_unknown);
  CHECK(make_error_code(dht::errc::no_replica) == condition::outcome_unknown);
  CHECK(make_error_code(dht::scribe_errc::timeout) == condition::outcome_unknown);
  CHECK(make_error_code(dcp::errc::peer_unreachable) == condition::retryable);
  CHECK(make_error_code(dcp::errc::busy) == condition::retryable);
  CHECK(make_error_code(lease::errc::over_capacity) == condition::retryable);
  CHECK(make_error_code(lease::errc::bad_signature) == condition::permanent);
  CHECK(make_error_code(dcp::errc::authentication_failed) == condition::permanent);
}

TEST_CASE("conditions: a condition names itself") {
  for (auto c : all_conditions) {
    const std::error_condition cond = c;
    CHECK(cond.category().name() == std::string("dcp.condition"));
    CHECK_FALSE(cond.message().starts_with("unknown"));
  }
}

TEST_CASE("result<void>: success or an error, interchangeable with error_code") {
  result<void> ok;
  CHECK(ok);
  CHECK(ok.has_value());
  CHECK_FALSE(ok.error());
  CHECK(ok.message().empty());
  CHECK_NOTHROW(ok.value());
  CHECK(result<void>(std::error_code{}).has_value());  // an empty code is success

  result<void> bad = errc::busy;
  CHECK_FALSE(bad);
  CHECK(bad.error() == errc::busy);
  CHECK(bad.error() == condition::retryable);
  CHECK(bad.message() == make_error_code(errc::busy).message());
  CHECK_THROWS_AS(bad.value(), std::system_error);

  result<void> told = explained_error{make_error_code(errc::cancelled), "cancelled: the session ended"};
  CHECK(told.error() == errc::cancelled);
  CHECK(told.message() == "cancelled: the session ended");
  CHECK(told.explained().what == "cancelled: the session ended");
  result<void> passed_on = told.explained();
  CHECK(passed_on.message() == told.message());

  // A completion of result<void> takes a callback written for error_code, and
  // the reverse: the error (or none) passes through unchanged.
  std::error_code seen = make_error_code(errc::io_error);
  std::function<void(result<void>)> takes_result = [&](std::error_code ec) { seen = ec; };
  takes_result({});
  CHECK_FALSE(seen);
  takes_result(make_error_code(errc::not_found));
  CHECK(seen == errc::not_found);
  result<void> got;
  std::function<void(std::error_code)> takes_code = [&](result<void> r) { got = r; };
  takes_code(make_error_code(errc::timed_out));
  CHECK(got.error() == errc::timed_out);
  takes_code({});
  CHECK(got);
}

}  // namespace test_conditions
