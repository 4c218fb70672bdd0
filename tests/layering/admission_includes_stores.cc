// Probe for the layering tests (tests/CMakeLists.txt): lib/admission using lib/stores, a layer
// below it. Compiled with lib/admission's include root, it must build (the control for
// stores_includes_admission.cc).
#include "stores/keyed_table.h"
