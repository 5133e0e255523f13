#pragma once
// dcp wire: frames, the payload archives and message registration.
#include "dcp/wire/archive.hpp"
#include "dcp/wire/frame.hpp"
#include "dcp/wire/limits.hpp"
#include "dcp/wire/message.hpp"
