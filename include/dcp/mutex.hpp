#pragma once
// dcp mutex: distributed mutual exclusion, one API (dcp/mutex/api.hpp) for
// every algorithm. Each header states the faults its algorithm tolerates.
#include "dcp/mutex/api.hpp"
#include "dcp/mutex/centralized.hpp"
#include "dcp/mutex/lamport.hpp"
#include "dcp/mutex/maekawa.hpp"
#include "dcp/mutex/raymond.hpp"
#include "dcp/mutex/ricart_agrawala.hpp"
#include "dcp/mutex/suzuki_kasami.hpp"
#include "dcp/mutex/token_ring.hpp"
#include "dcp/mutex/async_lock.hpp"
