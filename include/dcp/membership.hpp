#pragma once
// dcp membership: partial-view overlays and static groups, all modelling
// dcp::membership::Membership.
#include "dcp/membership/cyclon.hpp"
#include "dcp/membership/hyparview.hpp"
#include "dcp/membership/membership.hpp"
#include "dcp/membership/static_group.hpp"
