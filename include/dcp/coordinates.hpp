#pragma once
// dcp coordinates: synthetic network coordinates that predict round-trip times.
#include "dcp/coordinates/vivaldi.hpp"
