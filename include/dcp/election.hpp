#pragma once
// dcp election: leader election, one API (dcp/election/api.hpp) for every algorithm.
#include "dcp/election/api.hpp"
#include "dcp/election/bully.hpp"
#include "dcp/election/chang_roberts.hpp"
#include "dcp/election/echo.hpp"
