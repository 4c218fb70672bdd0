/* A C program using sluice's C ABI: a per-API-key limit of 3 requests per second.
 * Build: link sluice::sluice_c (see examples/CMakeLists.txt). */
#include <stdio.h>

#include "sluice/c.h"

int main(void) {
  sluice_options* options = sluice_options_create();
  sluice_rate_limiter* limiter = NULL;
  sluice_decision decision;
  int i;
  if (options == NULL) return 1;
  sluice_options_add_window(options, 3, 1000000000LL, 0);
  if (sluice_rate_limiter_create(options, NULL, &limiter) != SLUICE_OK) {
    fprintf(stderr, "sluice: %s\n", sluice_last_error_message());
    sluice_options_destroy(options);
    return 1;
  }
  sluice_options_destroy(options);
  for (i = 0; i < 5; ++i) {
    if (sluice_rate_limiter_try_acquire(limiter, "api-key-1", 9, 1, &decision) != SLUICE_OK) {
      fprintf(stderr, "sluice: %s\n", sluice_last_error_message());
      break;
    }
    printf("request %d: %s (remaining %lld, retry after %.3f s)\n", i,
           decision.allowed ? "allowed" : "refused", (long long)decision.remaining,
           decision.retry_after_nanos / 1e9);
  }
  sluice_rate_limiter_destroy(limiter);
  return 0;
}
