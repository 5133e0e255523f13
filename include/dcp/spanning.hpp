#pragma once
// dcp spanning: spanning trees built by the network itself (GHS minimum spanning tree).
#include "dcp/spanning/ghs.hpp"
