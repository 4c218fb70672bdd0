// Probe for the layering tests (tests/CMakeLists.txt): lib/stores reaching up into lib/admission.
// Compiled with lib/stores's include root, it must not build.
#include "admission/gcra.h"
