#pragma once
// dcp group: fixed sets of members.
#include "dcp/group/static_group.hpp"
