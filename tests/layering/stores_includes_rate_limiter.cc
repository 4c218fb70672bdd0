// Probe for the layering tests (tests/CMakeLists.txt): lib/stores including the public header of
// a layer above it. cmake/check_layers.cmake must refuse it.
#include "sluice/rate_limiter.h"
