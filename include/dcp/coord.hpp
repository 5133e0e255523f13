#pragma once
// dcp coord: a coordination service on a Raft log: sessions with keepalive
// and TTL, mutex, counting semaphore, leader election, barrier and double
// barrier, every grant with a fencing token.
#include "dcp/coord/client.hpp"
#include "dcp/coord/errors.hpp"
#include "dcp/coord/machine.hpp"
#include "dcp/coord/messages.hpp"
#include "dcp/coord/server.hpp"
