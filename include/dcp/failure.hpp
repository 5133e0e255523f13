#pragma once
// dcp failure: failure detectors.
#include "dcp/failure/heartbeat.hpp"
