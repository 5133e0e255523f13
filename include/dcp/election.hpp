#pragma once
// dcp election: leader election, one API (dcp/election/api.hpp) for every algorithm;
// and superpeer selection in large-scale systems (by DHT prefix, by repulsion tokens).
#include "dcp/election/api.hpp"
#include "dcp/election/bully.hpp"
#include "dcp/election/chang_roberts.hpp"
#include "dcp/election/echo.hpp"
#include "dcp/election/superpeer_prefix.hpp"
#include "dcp/election/superpeer_repulsion.hpp"
