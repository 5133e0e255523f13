#pragma once
// dcp mutex: distributed mutual exclusion, one API (dcp/mutex/api.hpp) for
// every algorithm.
#include "dcp/mutex/api.hpp"
#include "dcp/mutex/centralized.hpp"
