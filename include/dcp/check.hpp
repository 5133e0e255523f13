#pragma once
// dcp check: correctness checkers for recorded histories (linearizability
// against a sequential model, with register and key-value models).
#include "dcp/check/linearizability.hpp"
#include "dcp/check/model.hpp"
#include "dcp/check/models.hpp"
#include "dcp/check/random_history.hpp"
