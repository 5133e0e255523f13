#pragma once
// dcp membership: partial-view overlays, static groups and SWIM's full
// membership, all modelling dcp::membership::Membership.
#include "dcp/membership/cyclon.hpp"
#include "dcp/membership/hyparview.hpp"
#include "dcp/membership/membership.hpp"
#include "dcp/membership/static_group.hpp"
#include "dcp/membership/swim.hpp"
