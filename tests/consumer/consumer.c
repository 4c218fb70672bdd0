/* Builds against the installed C ABI (libsluice_c) from plain C: a permit, and the usage a
 * streamed answer reports (the usage metering calls are exported). */
#include <stdio.h>
#include <string.h>

#include "sluice/c.h"

int main(void) {
  sluice_options* o = sluice_options_create();
  sluice_concurrency_limiter* cl = NULL;
  sluice_permit* p = NULL;
  sluice_decision d;
  int ok;
  static const char answer[] =
      "data: {\"object\":\"chat.completion.chunk\",\"choices\":[],"
      "\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3,\"total_tokens\":5}}\n\n";
  sluice_usage_reader* reader = NULL;
  sluice_usage usage;
  uint8_t found = 0;
  sluice_options_set(o, SLUICE_PARAM_MAX_IN_FLIGHT, 1);
  if (sluice_concurrency_limiter_create(o, NULL, &cl) != SLUICE_OK) return 1;
  sluice_options_destroy(o);
  ok = sluice_concurrency_limiter_try_acquire(cl, "app", 3, &d, &p) == SLUICE_OK && p != NULL;
  printf("sluice %s (runtime %s): permit %s\n", SLUICE_VERSION_STRING, sluice_version_string(),
         ok ? "granted" : "refused");
  sluice_permit_destroy(p);
  sluice_concurrency_limiter_destroy(cl);
  ok = ok && sluice_usage_reader_create(SLUICE_PROVIDER_AUTO, NULL, &reader) == SLUICE_OK &&
       sluice_usage_reader_feed(reader, answer, 20) == SLUICE_OK &&
       sluice_usage_reader_feed(reader, answer + 20, strlen(answer) - 20) == SLUICE_OK &&
       sluice_usage_reader_finish(reader, &usage, &found) == SLUICE_OK && found &&
       usage.total_tokens == 5;
  printf("usage: %s\n", ok ? "read" : "NOT read");
  sluice_usage_reader_destroy(reader);
  return ok && sluice_version_number() == SLUICE_VERSION_NUMBER ? 0 : 1;
}
