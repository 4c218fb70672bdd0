/* sluice/sluice.h: the C ABI's header before sluice 0.2, kept for one release. The header is
 * now sluice/c.h (named like leveldb's c.h); include that. */
#include "sluice/c.h"
