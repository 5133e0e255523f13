#pragma once
// dcp storage: what a consensus replica keeps across crashes.
#include "dcp/storage/durable_storage.hpp"
#include "dcp/storage/memory_storage.hpp"
#include "dcp/storage/storage.hpp"
