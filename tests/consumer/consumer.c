/* Builds against the installed C ABI (libsluice_c) from plain C. */
#include <stdio.h>

#include "sluice/c.h"

int main(void) {
  sluice_options* o = sluice_options_create();
  sluice_concurrency_limiter* cl = NULL;
  sluice_permit* p = NULL;
  sluice_decision d;
  int ok;
  sluice_options_set(o, SLUICE_PARAM_MAX_IN_FLIGHT, 1);
  if (sluice_concurrency_limiter_create(o, NULL, &cl) != SLUICE_OK) return 1;
  sluice_options_destroy(o);
  ok = sluice_concurrency_limiter_try_acquire(cl, "app", 3, &d, &p) == SLUICE_OK && p != NULL;
  printf("sluice %s (runtime %s): permit %s\n", SLUICE_VERSION_STRING, sluice_version_string(),
         ok ? "granted" : "refused");
  sluice_permit_destroy(p);
  sluice_concurrency_limiter_destroy(cl);
  return ok && sluice_version_number() == SLUICE_VERSION_NUMBER ? 0 : 1;
}
