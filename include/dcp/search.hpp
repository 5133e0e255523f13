#pragma once
// dcp search: finding keys in an unstructured overlay (random walks, flooding).
#include "dcp/search/unstructured.hpp"
