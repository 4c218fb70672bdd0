/* The C ABI, exercised from C: proves sluice/c.h is plain C and that every entry point
 * checks its arguments instead of crashing. Prints "N passed, N failed" and exits non-zero on
 * any failure. The deprecated names are called only in test_deprecated_names, where their
 * warnings are silenced (the build makes any other use an error). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sluice/c.h"

static int passed = 0;
static int failed = 0;

#define CHECK(cond)                                                     \
  do {                                                                  \
    if (cond) {                                                         \
      ++passed;                                                         \
    } else {                                                            \
      ++failed;                                                         \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                   \
  } while (0)

#define SECOND 1000000000LL
#define MILLI 1000000LL

static void test_version_and_status_names(void) {
  CHECK(sluice_version_number() == SLUICE_VERSION_NUMBER);
  CHECK(strcmp(sluice_version_string(), SLUICE_VERSION_STRING) == 0);
  CHECK(strcmp(sluice_status_name(SLUICE_OK), "SLUICE_OK") == 0);
  CHECK(strcmp(sluice_status_name(SLUICE_INVALID_ARGUMENT), "SLUICE_INVALID_ARGUMENT") == 0);
  CHECK(strcmp(sluice_status_name(SLUICE_RESOURCE_EXHAUSTED), "SLUICE_RESOURCE_EXHAUSTED") == 0);
  CHECK(strcmp(sluice_status_name(12345), "SLUICE_UNKNOWN") == 0);
  /* The pinned values never change. */
  CHECK(SLUICE_OK == 0 && SLUICE_INVALID_ARGUMENT == 1 && SLUICE_RESOURCE_EXHAUSTED == 2 &&
        SLUICE_FAILED_PRECONDITION == 3 && SLUICE_UNAVAILABLE == 4 &&
        SLUICE_DEADLINE_EXCEEDED == 5 && SLUICE_OUT_OF_MEMORY == 6 && SLUICE_INTERNAL == 7 &&
        SLUICE_NOT_FOUND == 8 && SLUICE_ALREADY_EXISTS == 9);
  CHECK(strcmp(sluice_status_name(SLUICE_ALREADY_EXISTS), "SLUICE_ALREADY_EXISTS") == 0);
}

static void test_destroy_accepts_null(void) {
  sluice_clock_destroy(NULL);
  sluice_options_destroy(NULL);
  sluice_rate_limiter_destroy(NULL);
  sluice_leaky_bucket_destroy(NULL);
  sluice_concurrency_limiter_destroy(NULL);
  sluice_permit_destroy(NULL);
  sluice_token_budget_destroy(NULL);
  sluice_reservation_destroy(NULL);
  sluice_balancer_destroy(NULL);
  sluice_pick_destroy(NULL);
  /* No CHECK: the test is that none of these crashed (the ASan run would report it). */
}

static void test_rate_limiter(void) {
  sluice_clock* clock = NULL;
  CHECK(sluice_manual_clock_create(0, &clock) == SLUICE_OK);
  sluice_options* o = sluice_options_create();
  CHECK(sluice_options_add_window(o, 10, SECOND, 3) == SLUICE_OK);
  sluice_rate_limiter* rl = NULL;
  CHECK(sluice_rate_limiter_create(o, clock, &rl) == SLUICE_OK);
  sluice_options_destroy(o);

  sluice_decision d;
  int i;
  for (i = 0; i < 3; ++i) {
    CHECK(sluice_rate_limiter_try_acquire(rl, "tenant", 6, 1, &d) == SLUICE_OK);
    CHECK(d.allowed == 1);
  }
  CHECK(sluice_rate_limiter_try_acquire(rl, "tenant", 6, 1, &d) == SLUICE_OK);
  CHECK(d.allowed == 0);
  CHECK(d.retry_after_nanos == 100 * MILLI);
  CHECK(d.limit == 10);
  CHECK(d.window_nanos == SECOND);
  CHECK(sluice_manual_clock_advance(clock, 100 * MILLI) == SLUICE_OK);
  CHECK(sluice_clock_now_nanos(clock) == 100 * MILLI);
  CHECK(sluice_rate_limiter_try_acquire(rl, "tenant", 6, 1, NULL) == SLUICE_OK); /* out may be NULL */
  /* Keys are (ptr, len): not NUL-terminated, embedded NULs allowed. */
  CHECK(sluice_rate_limiter_try_acquire(rl, "a\0b", 3, 1, &d) == SLUICE_OK && d.allowed);
  CHECK(sluice_rate_limiter_try_acquire(rl, NULL, 0, 1, &d) == SLUICE_OK && d.allowed);
  CHECK(sluice_rate_limiter_try_acquire_at(rl, "x", 1, 1, 5 * SECOND, &d) == SLUICE_OK && d.allowed);

  /* Bad arguments are errors with a message, never crashes. */
  CHECK(sluice_rate_limiter_try_acquire(NULL, "k", 1, 1, &d) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "limiter is NULL") != NULL);
  CHECK(sluice_rate_limiter_try_acquire(rl, NULL, 5, 1, &d) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "key is NULL") != NULL);
  CHECK(sluice_rate_limiter_try_acquire(rl, "k", (size_t)-1, 1, &d) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_rate_limiter_try_acquire(rl, "k", 1, 0, &d) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "cost must be >= 1") != NULL);
  CHECK(sluice_rate_limiter_try_acquire(rl, "k", 1, -7, &d) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_rate_limiter_try_acquire(rl, "k", 1, 4, &d) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "exceeds windows[0].burst 3") != NULL);
  sluice_rate_limiter_destroy(rl);
  sluice_clock_destroy(clock);
}

static void test_bad_options(void) {
  sluice_rate_limiter* rl = (sluice_rate_limiter*)&passed; /* must be reset to NULL on failure */
  sluice_options* o = sluice_options_create();
  CHECK(sluice_rate_limiter_create(o, NULL, &rl) == SLUICE_INVALID_ARGUMENT);
  CHECK(rl == NULL);
  CHECK(strstr(sluice_last_error_message(), "windows must hold 1 to 8") != NULL);
  CHECK(sluice_options_add_window(o, 0, SECOND, 0) == SLUICE_OK);
  CHECK(sluice_rate_limiter_create(o, NULL, &rl) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "windows[0].limit must be > 0, got 0") != NULL);
  sluice_options_destroy(o);

  o = sluice_options_create();
  CHECK(sluice_options_add_window(o, 5, -SECOND, 0) == SLUICE_OK);
  CHECK(sluice_rate_limiter_create(o, NULL, &rl) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "windows[0].period must be > 0") != NULL);
  sluice_options_destroy(o);

  o = sluice_options_create();
  CHECK(sluice_options_set(o, 999, 1) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "unknown parameter number 999") != NULL);
  CHECK(sluice_options_set(NULL, SLUICE_PARAM_RATE, 1) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_options_add_window(NULL, 1, 1, 0) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_options_add_window(o, 5, SECOND, 0) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_RATE, 10) == SLUICE_OK);
  CHECK(sluice_rate_limiter_create(o, NULL, &rl) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "SLUICE_PARAM_RATE (200) does not apply") != NULL);
  CHECK(sluice_rate_limiter_create(NULL, NULL, &rl) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_rate_limiter_create(o, NULL, NULL) == SLUICE_INVALID_ARGUMENT);
  sluice_options_destroy(o);

  /* NaN-like garbage does not exist in int64 nanoseconds; negative and zero rates do. */
  o = sluice_options_create();
  sluice_leaky_bucket* lb = NULL;
  CHECK(sluice_options_set(o, SLUICE_PARAM_RATE, -5) == SLUICE_OK);
  CHECK(sluice_leaky_bucket_create(o, NULL, &lb) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "rate must be > 0, got -5") != NULL);
  CHECK(lb == NULL);
  CHECK(sluice_options_add_window(o, 5, SECOND, 0) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_RATE, 5) == SLUICE_OK);
  CHECK(sluice_leaky_bucket_create(o, NULL, &lb) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "windows do not apply") != NULL);
  sluice_options_destroy(o);
  CHECK(sluice_manual_clock_create(0, NULL) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_manual_clock_advance(NULL, 1) == SLUICE_INVALID_ARGUMENT);
  /* Clocks read in [0, 2^62]: a start outside is refused, an advance stops at the ends. */
  sluice_clock* clock = (sluice_clock*)&clock; /* must be reset to NULL on failure */
  CHECK(sluice_manual_clock_create(-1, &clock) == SLUICE_INVALID_ARGUMENT);
  CHECK(clock == NULL);
  CHECK(strstr(sluice_last_error_message(), "start_nanos") != NULL);
  CHECK(sluice_manual_clock_create(INT64_MAX, &clock) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_manual_clock_create(5, &clock) == SLUICE_OK);
  CHECK(sluice_manual_clock_advance(clock, INT64_MAX) == SLUICE_OK);
  CHECK(sluice_manual_clock_advance(clock, INT64_MAX) == SLUICE_OK);
  CHECK(sluice_clock_now_nanos(clock) == ((int64_t)1 << 62));
  CHECK(sluice_manual_clock_advance(clock, INT64_MIN) == SLUICE_OK);
  CHECK(sluice_manual_clock_advance(clock, -7) == SLUICE_OK);
  CHECK(sluice_clock_now_nanos(clock) == 0);
  sluice_clock_destroy(clock);
}

static void test_leaky_bucket(void) {
  sluice_clock* clock = NULL;
  sluice_manual_clock_create(0, &clock);
  sluice_options* o = sluice_options_create();
  sluice_options_set(o, SLUICE_PARAM_RATE, 4);
  sluice_options_set(o, SLUICE_PARAM_MAX_WAIT_NANOS, SECOND);
  sluice_leaky_bucket* lb = NULL;
  CHECK(sluice_leaky_bucket_create(o, clock, &lb) == SLUICE_OK);
  sluice_options_destroy(o);
  sluice_decision d;
  int i;
  for (i = 0; i < 5; ++i) {
    CHECK(sluice_leaky_bucket_try_acquire(lb, "p", 1, 1, &d) == SLUICE_OK);
    CHECK(d.allowed == 1);
    CHECK(d.delay_nanos == i * 250 * MILLI);
  }
  CHECK(sluice_leaky_bucket_try_acquire(lb, "p", 1, 1, &d) == SLUICE_OK);
  CHECK(d.allowed == 0 && d.retry_after_nanos == 250 * MILLI);
  CHECK(sluice_leaky_bucket_try_acquire(NULL, "p", 1, 1, &d) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_leaky_bucket_try_acquire(lb, "p", 1, 0, &d) == SLUICE_INVALID_ARGUMENT);
  sluice_leaky_bucket_destroy(lb);
  sluice_clock_destroy(clock);
}

static void test_concurrency_limiter(void) {
  sluice_clock* clock = NULL;
  sluice_manual_clock_create(0, &clock);
  sluice_options* o = sluice_options_create();
  sluice_options_set(o, SLUICE_PARAM_MAX_IN_FLIGHT, 1);
  sluice_options_set(o, SLUICE_PARAM_LEASE_NANOS, 10 * SECOND);
  sluice_concurrency_limiter* cl = NULL;
  CHECK(sluice_concurrency_limiter_create(o, clock, &cl) == SLUICE_OK);
  sluice_options_destroy(o);

  sluice_decision d;
  sluice_permit* p1 = NULL;
  sluice_permit* p2 = (sluice_permit*)&passed;
  CHECK(sluice_concurrency_limiter_try_acquire(cl, "app", 3, &d, &p1) == SLUICE_OK);
  CHECK(d.allowed == 1 && p1 != NULL);
  CHECK(sluice_concurrency_limiter_try_acquire(cl, "app", 3, &d, &p2) == SLUICE_OK);
  CHECK(d.allowed == 0 && p2 == NULL);
  CHECK(sluice_concurrency_limiter_in_flight(cl, "app", 3) == 1);
  CHECK(sluice_permit_renew(p1, 0) == SLUICE_OK);
  CHECK(sluice_permit_renew(p1, -1) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_permit_release(p1) == SLUICE_OK);
  CHECK(sluice_permit_release(p1) == SLUICE_OK); /* idempotent */
  sluice_permit_destroy(p1);

  /* A permit that outlives its lease loses the slot; its late release says so. */
  CHECK(sluice_concurrency_limiter_try_acquire(cl, "app", 3, &d, &p1) == SLUICE_OK && p1 != NULL);
  sluice_manual_clock_advance(clock, 11 * SECOND);
  CHECK(sluice_concurrency_limiter_try_acquire(cl, "app", 3, &d, &p2) == SLUICE_OK && p2 != NULL);
  CHECK(sluice_permit_release(p1) == SLUICE_FAILED_PRECONDITION);
  CHECK(strstr(sluice_last_error_message(), "reclaimed") != NULL);
  sluice_permit_destroy(p1);
  sluice_permit_destroy(p2); /* destroy releases */
  CHECK(sluice_concurrency_limiter_in_flight(cl, "app", 3) == 0);
  CHECK(sluice_concurrency_limiter_try_acquire(cl, "app", 3, &d, NULL) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_concurrency_limiter_in_flight(NULL, "app", 3) == -1);
  CHECK(sluice_permit_release(NULL) == SLUICE_INVALID_ARGUMENT);
  sluice_concurrency_limiter_destroy(cl);

  o = sluice_options_create();
  CHECK(sluice_concurrency_limiter_create(o, NULL, &cl) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "max_in_flight must be >= 1") != NULL);
  sluice_options_destroy(o);
  sluice_clock_destroy(clock);
}

static void test_token_budget(void) {
  sluice_clock* clock = NULL;
  sluice_manual_clock_create(0, &clock);
  sluice_options* o = sluice_options_create();
  sluice_options_add_window(o, 600, 60 * SECOND, 0);
  sluice_token_budget* tb = NULL;
  CHECK(sluice_token_budget_create(o, clock, &tb) == SLUICE_OK);
  sluice_options_destroy(o);

  sluice_decision d;
  sluice_reservation* r = NULL;
  CHECK(sluice_token_budget_try_reserve(tb, "t", 1, 500, &d, &r) == SLUICE_OK && r != NULL);
  CHECK(d.remaining == 100);
  CHECK(sluice_reservation_settle(r, 700, &d) == SLUICE_OK);
  CHECK(d.allowed == 0 && d.remaining == -100 && d.retry_after_nanos == 10 * SECOND);
  CHECK(sluice_reservation_settle(r, 1, &d) == SLUICE_FAILED_PRECONDITION);
  sluice_reservation_destroy(r);
  r = NULL;
  CHECK(sluice_token_budget_try_reserve(tb, "t", 1, 1, &d, &r) == SLUICE_OK && r == NULL);
  CHECK(d.allowed == 0);
  sluice_manual_clock_advance(clock, 30 * SECOND);
  CHECK(sluice_token_budget_try_reserve(tb, "t", 1, 100, &d, &r) == SLUICE_OK && r != NULL);
  CHECK(sluice_reservation_cancel(r) == SLUICE_OK);
  sluice_reservation_destroy(r);
  CHECK(sluice_token_budget_charge(tb, "t", 1, 50, &d) == SLUICE_OK && d.remaining == 150);
  CHECK(sluice_token_budget_try_reserve(tb, "t", 1, 601, &d, &r) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_token_budget_try_reserve(tb, "t", 1, -1, &d, &r) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_token_budget_charge(tb, "t", 1, -1, &d) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_reservation_settle(NULL, 1, &d) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_reservation_cancel(NULL) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_token_budget_try_reserve(tb, "t", 1, 1, &d, NULL) == SLUICE_INVALID_ARGUMENT);
  sluice_token_budget_destroy(tb);
  sluice_clock_destroy(clock);
}

static void test_shared_region(void) {
  char name[64];
  sluice_options* o = sluice_options_create();
  sluice_rate_limiter* a = NULL;
  sluice_rate_limiter* b = NULL;
  sluice_decision d;
  int admitted = 0, i;
  snprintf(name, sizeof(name), "capi-test-%ld", (long)sluice_clock_now_nanos(NULL));
  sluice_options_add_window(o, 5, 3600 * SECOND, 0);
  CHECK(sluice_options_set_string(o, SLUICE_PARAM_SHARED_REGION, name, strlen(name)) == SLUICE_OK);
  CHECK(sluice_rate_limiter_create(o, NULL, &a) == SLUICE_OK);
  CHECK(sluice_rate_limiter_create(o, NULL, &b) == SLUICE_OK); /* a second opener */
  for (i = 0; i < 10; ++i) {
    sluice_rate_limiter_try_acquire(i % 2 ? a : b, "k", 1, 1, &d);
    admitted += d.allowed;
  }
  CHECK(admitted == 5); /* one limit, whichever handle decides */
  sluice_rate_limiter_destroy(a);
  CHECK(sluice_options_set_string(o, SLUICE_PARAM_SHARED_REGION, "bad/name", 8) == SLUICE_OK);
  CHECK(sluice_rate_limiter_create(o, NULL, &a) == SLUICE_INVALID_ARGUMENT);
  CHECK(a == NULL);
  CHECK(strstr(sluice_last_error_message(), "shared_region must be") != NULL);
  CHECK(sluice_options_set_string(NULL, SLUICE_PARAM_SHARED_REGION, "x", 1) ==
        SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_options_set_string(o, SLUICE_PARAM_SHARED_REGION, NULL, 3) ==
        SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_options_set_string(o, SLUICE_PARAM_RATE, "x", 1) == SLUICE_INVALID_ARGUMENT);
  sluice_rate_limiter_destroy(b);
  sluice_options_destroy(o);
  CHECK(sluice_shared_region_remove(name, strlen(name)) == SLUICE_OK);
  CHECK(sluice_shared_region_remove(name, strlen(name)) == SLUICE_NOT_FOUND);
  CHECK(strcmp(sluice_status_name(SLUICE_NOT_FOUND), "SLUICE_NOT_FOUND") == 0);
}

/* Cluster scope needs a Redis; without one reachable (nothing listens on port 1) the failure
 * mode decides, quickly, and the ABI reports it as a normal decision. */
static void test_cluster_scope_failure_modes(void) {
  sluice_options* ro = sluice_options_create();
  sluice_redis_store* store = NULL;
  sluice_options* o = sluice_options_create();
  sluice_rate_limiter* rl = NULL;
  sluice_decision d;
  CHECK(sluice_options_set_string(ro, SLUICE_PARAM_REDIS_HOST, "127.0.0.1", 9) == SLUICE_OK);
  CHECK(sluice_options_set(ro, SLUICE_PARAM_REDIS_PORT, 1) == SLUICE_OK);
  CHECK(sluice_options_set(ro, SLUICE_PARAM_REDIS_CONNECT_TIMEOUT_NANOS, 50 * MILLI) == SLUICE_OK);
  CHECK(sluice_redis_store_create(ro, &store) == SLUICE_OK);
  CHECK(sluice_options_set(ro, SLUICE_PARAM_REDIS_PORT, 70000) == SLUICE_OK);
  {
    sluice_redis_store* bad = NULL;
    CHECK(sluice_redis_store_create(ro, &bad) == SLUICE_INVALID_ARGUMENT && bad == NULL);
    CHECK(strstr(sluice_last_error_message(), "port must be 1..65535") != NULL);
  }
  sluice_options_destroy(ro);

  sluice_options_add_window(o, 10, 60 * SECOND, 0);
  CHECK(sluice_options_set_redis_store(o, store) == SLUICE_OK);
  CHECK(sluice_rate_limiter_create(o, NULL, &rl) == SLUICE_INVALID_ARGUMENT); /* no rule */
  CHECK(strstr(sluice_last_error_message(), "cluster.redis_name") != NULL);
  CHECK(sluice_options_set_string(o, SLUICE_PARAM_REDIS_NAME, "c-test", 6) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_CLUSTER_ON_FAILURE, 9) == SLUICE_OK);
  CHECK(sluice_rate_limiter_create(o, NULL, &rl) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_options_set(o, SLUICE_PARAM_CLUSTER_ON_FAILURE, SLUICE_FAILURE_DENY) == SLUICE_OK);
  CHECK(sluice_rate_limiter_create(o, NULL, &rl) == SLUICE_OK);
  sluice_options_destroy(o);
  sluice_redis_store_destroy(store); /* the limiter keeps the store alive */
  CHECK(sluice_rate_limiter_try_acquire(rl, "k", 1, 1, &d) == SLUICE_OK);
  CHECK(d.allowed == 0); /* Redis unreachable: fail closed */
  sluice_rate_limiter_destroy(rl);
  sluice_redis_store_destroy(NULL);
}

/* A store from parameters: SLUICE_OK, or the error message's part `expect` (NULL: any). */
static int redis_store_rc(sluice_options* ro, const char* expect) {
  sluice_redis_store* store = NULL;
  int rc = sluice_redis_store_create(ro, &store);
  if (rc != SLUICE_OK && expect != NULL && strstr(sluice_last_error_message(), expect) == NULL) {
    fprintf(stderr, "  message: %s\n  lacks: %s\n", sluice_last_error_message(), expect);
    rc = -1000;
  }
  CHECK((rc == SLUICE_OK) == (store != NULL));
  sluice_redis_store_destroy(store);
  return rc;
}

static int set_str(sluice_options* o, int param, const char* value) {
  return sluice_options_set_string(o, param, value, strlen(value));
}

/* SLUICE_PARAM_REDIS_URL, TLS, Sentinel and Cluster parameters: each reaches its field (seen
 * through the checks of sluice_redis_store_create, which does not connect), a parameter set with
 * the URL wins over it, and no password reaches a message. */
static void test_redis_url_and_topologies(void) {
  sluice_options* ro = sluice_options_create();
  CHECK(set_str(ro, SLUICE_PARAM_REDIS_URL, "redis+cluster://:pw@n1:7000,[fd00::2]") == SLUICE_OK);
  CHECK(redis_store_rc(ro, NULL) == SLUICE_OK);
  CHECK(sluice_options_set(ro, SLUICE_PARAM_REDIS_DB, 3) == SLUICE_OK);
  CHECK(redis_store_rc(ro, "db must be 0 with cluster_nodes") == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_options_set(ro, SLUICE_PARAM_REDIS_DB, 0) == SLUICE_OK);
  CHECK(set_str(ro, SLUICE_PARAM_REDIS_URL, "redis://:Hunter2Secret@h:abc/0") == SLUICE_OK);
  CHECK(redis_store_rc(ro, "SLUICE_PARAM_REDIS_URL: sluice.RedisOptionsFromUrl: port 'abc' in "
                           "'redis://:***@h:abc/0'") == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "Hunter2") == NULL);
  /* The URL turns TLS on with a CA file; REDIS_TLS 0 wins, and the CA file is then an error. */
  CHECK(set_str(ro, SLUICE_PARAM_REDIS_URL, "rediss://h?ssl_ca_certs=/ca.pem") == SLUICE_OK);
  CHECK(redis_store_rc(ro, NULL) == SLUICE_OK);
  CHECK(sluice_options_set(ro, SLUICE_PARAM_REDIS_TLS, 0) == SLUICE_OK);
  CHECK(redis_store_rc(ro, "tls.ca_file is set but tls.enabled is false") == SLUICE_INVALID_ARGUMENT);
  sluice_options_destroy(ro);

  ro = sluice_options_create();
  CHECK(set_str(ro, SLUICE_PARAM_REDIS_TLS_CA_FILE, "/ca.pem") == SLUICE_OK);
  CHECK(redis_store_rc(ro, "tls.ca_file is set but tls.enabled is false") == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_options_set(ro, SLUICE_PARAM_REDIS_TLS, 1) == SLUICE_OK);
  CHECK(redis_store_rc(ro, NULL) == SLUICE_OK);
  CHECK(set_str(ro, SLUICE_PARAM_REDIS_TLS_CERT_FILE, "/c.pem") == SLUICE_OK);
  CHECK(redis_store_rc(ro, "tls.cert_file and tls.key_file") == SLUICE_INVALID_ARGUMENT);
  CHECK(set_str(ro, SLUICE_PARAM_REDIS_TLS_KEY_FILE, "/k.pem") == SLUICE_OK);
  CHECK(set_str(ro, SLUICE_PARAM_REDIS_TLS_SERVER_NAME, "redis.example") == SLUICE_OK);
  CHECK(sluice_options_set(ro, SLUICE_PARAM_REDIS_TLS_VERIFY_PEER, 0) == SLUICE_OK);
  CHECK(redis_store_rc(ro, NULL) == SLUICE_OK);
  CHECK(set_str(ro, SLUICE_PARAM_REDIS_UNIX_SOCKET, "/tmp/r.sock") == SLUICE_OK);
  CHECK(redis_store_rc(ro, "tls cannot be enabled with unix_socket") == SLUICE_INVALID_ARGUMENT);
  sluice_options_destroy(ro);

  ro = sluice_options_create();
  CHECK(sluice_options_set(ro, SLUICE_PARAM_REDIS_TLS_VERIFY_PEER, 0) == SLUICE_OK);
  CHECK(redis_store_rc(ro, "tls.verify_peer is false") == SLUICE_INVALID_ARGUMENT);
  sluice_options_destroy(ro);

  ro = sluice_options_create();
  CHECK(set_str(ro, SLUICE_PARAM_REDIS_SENTINELS, "s1, [::1]:26380") == SLUICE_OK);
  CHECK(redis_store_rc(ro, "sentinels need sentinel_master") == SLUICE_INVALID_ARGUMENT);
  CHECK(set_str(ro, SLUICE_PARAM_REDIS_SENTINEL_MASTER, "mymaster") == SLUICE_OK);
  CHECK(redis_store_rc(ro, NULL) == SLUICE_OK);
  CHECK(set_str(ro, SLUICE_PARAM_REDIS_SENTINEL_USERNAME, "watcher") == SLUICE_OK);
  CHECK(redis_store_rc(ro, "sentinel_username needs a sentinel_password") ==
        SLUICE_INVALID_ARGUMENT);
  CHECK(set_str(ro, SLUICE_PARAM_REDIS_SENTINEL_PASSWORD, "pw") == SLUICE_OK);
  CHECK(redis_store_rc(ro, NULL) == SLUICE_OK);
  CHECK(set_str(ro, SLUICE_PARAM_REDIS_CLUSTER_NODES, "n1:7000") == SLUICE_OK);
  CHECK(redis_store_rc(ro, "cluster_nodes cannot be set with sentinel_master") ==
        SLUICE_INVALID_ARGUMENT);
  CHECK(set_str(ro, SLUICE_PARAM_REDIS_SENTINELS, "s1:0") == SLUICE_OK);
  CHECK(redis_store_rc(ro, "SLUICE_PARAM_REDIS_SENTINELS: sluice.RedisNodesFromString: port '0'") ==
        SLUICE_INVALID_ARGUMENT);
  sluice_options_destroy(ro);

  ro = sluice_options_create();
  CHECK(set_str(ro, SLUICE_PARAM_REDIS_CLUSTER_NODES, "n1:7000,n2") == SLUICE_OK);
  CHECK(redis_store_rc(ro, NULL) == SLUICE_OK);
  CHECK(set_str(ro, SLUICE_PARAM_REDIS_CLUSTER_NODES, "n1,,n2") == SLUICE_OK);
  CHECK(redis_store_rc(ro, "SLUICE_PARAM_REDIS_CLUSTER_NODES") == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_options_set_string(ro, SLUICE_PARAM_REDIS_CLUSTER_NODES, NULL, 0) == SLUICE_OK);
  CHECK(redis_store_rc(ro, NULL) == SLUICE_OK); /* cleared: standalone again */
  sluice_options_destroy(ro);
}

/* The other three objects take the same store and cluster parameters. */
static void test_cluster_scope_other_objects(void) {
  sluice_options* ro = sluice_options_create();
  sluice_redis_store* store = NULL;
  sluice_options* o;
  sluice_leaky_bucket* lb = NULL;
  sluice_concurrency_limiter* cl = NULL;
  sluice_token_budget* tb = NULL;
  sluice_permit* permit = NULL;
  sluice_reservation* reservation = NULL;
  sluice_decision d;
  CHECK(sluice_options_set(ro, SLUICE_PARAM_REDIS_PORT, 1) == SLUICE_OK); /* nothing listens */
  CHECK(sluice_options_set(ro, SLUICE_PARAM_REDIS_CONNECT_TIMEOUT_NANOS, 50 * MILLI) == SLUICE_OK);
  CHECK(sluice_redis_store_create(ro, &store) == SLUICE_OK);
  sluice_options_destroy(ro);

  o = sluice_options_create();
  CHECK(sluice_options_set(o, SLUICE_PARAM_RATE, 10) == SLUICE_OK);
  CHECK(sluice_options_set_redis_store(o, store) == SLUICE_OK);
  CHECK(sluice_options_set_string(o, SLUICE_PARAM_REDIS_NAME, "c-lb", 4) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_CLUSTER_ON_FAILURE, SLUICE_FAILURE_ALLOW) == SLUICE_OK);
  CHECK(sluice_leaky_bucket_create(o, NULL, &lb) == SLUICE_OK);
  CHECK(sluice_leaky_bucket_try_acquire(lb, "k", 1, 1, &d) == SLUICE_OK);
  CHECK(d.allowed == 1 && d.delay_nanos == 0); /* fail open: go now */
  sluice_leaky_bucket_destroy(lb);
  sluice_options_destroy(o);

  o = sluice_options_create();
  CHECK(sluice_options_set(o, SLUICE_PARAM_MAX_IN_FLIGHT, 4) == SLUICE_OK);
  CHECK(sluice_options_set_redis_store(o, store) == SLUICE_OK);
  CHECK(sluice_concurrency_limiter_create(o, NULL, &cl) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "cluster.redis_name") != NULL);
  CHECK(sluice_options_set_string(o, SLUICE_PARAM_REDIS_NAME, "c-cl", 4) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_CLUSTER_LOCAL_SHARE, 2) == SLUICE_OK);
  CHECK(sluice_concurrency_limiter_create(o, NULL, &cl) == SLUICE_OK);
  CHECK(sluice_concurrency_limiter_try_acquire(cl, "k", 1, &d, &permit) == SLUICE_OK);
  CHECK(d.allowed == 1 && permit != NULL); /* the local stand-in: 4 / 2 slots */
  {
    sluice_permit* second = NULL;
    sluice_permit* third = NULL;
    CHECK(sluice_concurrency_limiter_try_acquire(cl, "k", 1, &d, &second) == SLUICE_OK);
    CHECK(d.allowed == 1 && second != NULL);
    CHECK(sluice_concurrency_limiter_try_acquire(cl, "k", 1, &d, &third) == SLUICE_OK);
    CHECK(d.allowed == 0 && third == NULL);
    sluice_permit_destroy(second);
  }
  CHECK(sluice_concurrency_limiter_in_flight(cl, "k", 1) == -1); /* Redis did not answer */
  sluice_permit_destroy(permit);
  sluice_concurrency_limiter_destroy(cl);
  sluice_options_destroy(o);

  o = sluice_options_create();
  sluice_options_add_window(o, 1000, 60 * SECOND, 0);
  CHECK(sluice_options_set_redis_store(o, store) == SLUICE_OK);
  CHECK(sluice_options_set_string(o, SLUICE_PARAM_REDIS_NAME, "c-tb", 4) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_CLUSTER_ON_FAILURE, SLUICE_FAILURE_DENY) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_CLUSTER_MODE, SLUICE_CLUSTER_LEASED) == SLUICE_OK);
  CHECK(sluice_token_budget_create(o, NULL, &tb) == SLUICE_INVALID_ARGUMENT); /* strict only */
  CHECK(strstr(sluice_last_error_message(), "cluster.mode") != NULL);
  CHECK(sluice_options_set(o, SLUICE_PARAM_CLUSTER_MODE, 7) == SLUICE_OK);
  CHECK(sluice_token_budget_create(o, NULL, &tb) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "SLUICE_PARAM_CLUSTER_MODE") != NULL);
  CHECK(sluice_options_set(o, SLUICE_PARAM_CLUSTER_MODE, SLUICE_CLUSTER_STRICT) == SLUICE_OK);
  CHECK(sluice_token_budget_create(o, NULL, &tb) == SLUICE_OK);
  CHECK(sluice_token_budget_try_reserve(tb, "k", 1, 10, &d, &reservation) == SLUICE_OK);
  CHECK(d.allowed == 0 && reservation == NULL); /* fail closed */
  sluice_token_budget_destroy(tb);
  sluice_options_destroy(o);

  o = sluice_options_create();
  sluice_options_add_window(o, 1000, 60 * SECOND, 0);
  CHECK(sluice_options_set_redis_store(o, store) == SLUICE_OK);
  CHECK(sluice_options_set_string(o, SLUICE_PARAM_REDIS_NAME, "c-leased", 8) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_CLUSTER_MODE, SLUICE_CLUSTER_LEASED) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_CLUSTER_LEASE_UNITS, 1 << 23) == SLUICE_OK);
  {
    sluice_rate_limiter* leased = NULL;
    CHECK(sluice_rate_limiter_create(o, NULL, &leased) == SLUICE_INVALID_ARGUMENT);
    CHECK(strstr(sluice_last_error_message(), "cluster.lease_units") != NULL);
    CHECK(sluice_options_set(o, SLUICE_PARAM_CLUSTER_LEASE_UNITS, 10) == SLUICE_OK);
    CHECK(sluice_options_set(o, SLUICE_PARAM_CLUSTER_LEASE_TTL_NANOS, 5 * MILLI) == SLUICE_OK);
    CHECK(sluice_options_set(o, SLUICE_PARAM_CLUSTER_ON_FAILURE, SLUICE_FAILURE_ALLOW) == SLUICE_OK);
    CHECK(sluice_rate_limiter_create(o, NULL, &leased) == SLUICE_OK);
    CHECK(sluice_rate_limiter_try_acquire(leased, "k", 1, 1, &d) == SLUICE_OK);
    CHECK(d.allowed == 1); /* no lease from a Redis that is not there: fail open */
    sluice_rate_limiter_destroy(leased);
  }
  sluice_options_destroy(o);
  sluice_redis_store_destroy(store);
}

static int id_is(const sluice_pick* pick, const char* id) {
  size_t len = 0;
  const char* got = sluice_pick_endpoint_id(pick, &len);
  return len == strlen(id) && memcmp(got, id, len) == 0;
}

static void test_balancer(void) {
  sluice_clock* clock = NULL;
  CHECK(sluice_manual_clock_create(0, &clock) == SLUICE_OK);
  sluice_options* o = sluice_options_create();
  CHECK(sluice_options_set(o, SLUICE_PARAM_BALANCER_STRATEGY, SLUICE_BALANCER_PREFIX_AFFINITY) ==
        SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_BALANCER_SEED, 7) == SLUICE_OK);
  sluice_balancer* b = NULL;
  CHECK(sluice_balancer_create(o, clock, &b) == SLUICE_OK);
  CHECK(sluice_balancer_add_endpoint(b, "a", 1, 1, 0, 0, "qwen", 4) == SLUICE_OK);
  CHECK(sluice_balancer_add_endpoint(b, "b", 1, 1, 1, 0, "qwen", 4) == SLUICE_OK);
  CHECK(sluice_balancer_add_endpoint(b, "a", 1, 1, 0, 0, NULL, 0) == SLUICE_ALREADY_EXISTS);
  CHECK(sluice_balancer_add_endpoint(b, "z", 1, 0, 0, 0, NULL, 0) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "weight") != NULL);

  const char* body =
      "{\"model\":\"qwen\",\"messages\":[{\"role\":\"system\",\"content\":"
      "\"a long shared system prompt, long enough to fill more than one block of the prefix "
      "index, which is one hundred and twenty-eight bytes long by default\"},"
      "{\"role\":\"user\",\"content\":\"hello\"}]}";
  sluice_pick* first = NULL;
  CHECK(sluice_balancer_pick(b, body, strlen(body), NULL, 0, &first) == SLUICE_OK);
  CHECK(sluice_pick_complete_failure(first, 200, SLUICE_FAIL_NONE, 50 * MILLI, SECOND) == SLUICE_OK);
  sluice_pick* again = NULL;
  CHECK(sluice_balancer_pick(b, body, strlen(body), NULL, 0, &again) == SLUICE_OK);
  size_t first_len = 0, again_len = 0;
  const char* first_id = sluice_pick_endpoint_id(first, &first_len);
  const char* again_id = sluice_pick_endpoint_id(again, &again_len);
  CHECK(first_len == again_len && memcmp(first_id, again_id, first_len) == 0);
  CHECK(sluice_pick_matched_blocks(again) >= 1);
  CHECK(sluice_balancer_in_flight(b, again_id, again_len) == 1);
  sluice_pick_destroy(again); /* abandoned: back to 0 in flight */
  CHECK(sluice_balancer_in_flight(b, first_id, first_len) == 0);
  sluice_pick_destroy(first);
  CHECK(sluice_balancer_in_flight(b, "nope", 4) == -1);

  /* Malformed bodies and unknown models fail with codes and a message naming the field. */
  sluice_pick* p = NULL;
  CHECK(sluice_balancer_pick(b, "{\"model\":1}", 11, NULL, 0, &p) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "model") != NULL);
  CHECK(sluice_balancer_pick(b, NULL, 5, NULL, 0, &p) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_balancer_pick_model(b, "llama", 5, NULL, 0, &p) == SLUICE_NOT_FOUND);
  CHECK(sluice_balancer_pick_model(NULL, "qwen", 4, NULL, 0, &p) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_balancer_pick_model(b, "qwen", 4, NULL, 0, NULL) == SLUICE_INVALID_ARGUMENT);

  /* A rate-limited endpoint cools down for 60 s; b has max_concurrency 1. */
  CHECK(sluice_balancer_pick_model(b, "qwen", 4, NULL, 0, &p) == SLUICE_OK);
  const int on_a = id_is(p, "a");
  CHECK(sluice_pick_complete_failure(p, 429, SLUICE_FAIL_NONE, 0, 0) == SLUICE_OK);
  CHECK(sluice_pick_complete_failure(p, 200, 99, 0, 0) == SLUICE_INVALID_ARGUMENT);
  sluice_pick_destroy(p);
  sluice_pick* held = NULL;
  CHECK(sluice_balancer_pick_model(b, "qwen", 4, NULL, 0, &held) == SLUICE_OK);
  CHECK(id_is(held, on_a ? "b" : "a"));
  if (!on_a) { /* a is the one left and has no cap: a second pick still works */
    sluice_pick* more = NULL;
    CHECK(sluice_balancer_pick_model(b, "qwen", 4, NULL, 0, &more) == SLUICE_OK);
    sluice_pick_destroy(more);
  } else {
    CHECK(sluice_balancer_pick_model(b, "qwen", 4, NULL, 0, &p) == SLUICE_RESOURCE_EXHAUSTED);
  }
  sluice_pick_destroy(held);
  CHECK(sluice_manual_clock_advance(clock, 60 * SECOND) == SLUICE_OK);

  /* Metrics text errors name the line; removal of an unknown id is NOT_FOUND. */
  CHECK(sluice_balancer_update_metrics(b, "a", 1, "vllm:num_requests_waiting 3\n", 28) ==
        SLUICE_OK);
  CHECK(sluice_balancer_update_metrics(b, "a", 1, "x{", 2) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "line 1") != NULL);
  CHECK(sluice_balancer_remove_endpoint(b, "nope", 4) == SLUICE_NOT_FOUND);

  /* A pick outlives its balancer. */
  CHECK(sluice_balancer_pick_model(b, "qwen", 4, NULL, 0, &p) == SLUICE_OK);
  CHECK(sluice_balancer_remove_endpoint(b, "a", 1) == SLUICE_OK);
  sluice_balancer_destroy(b);
  CHECK(sluice_pick_complete_failure(p, 200, SLUICE_FAIL_NONE, 0, 0) == SLUICE_OK);
  sluice_pick_destroy(p);

  /* Options that do not apply are named; a bad strategy is rejected. */
  CHECK(sluice_options_set(o, SLUICE_PARAM_RATE, 3) == SLUICE_OK);
  CHECK(sluice_balancer_create(o, clock, &b) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "SLUICE_PARAM_RATE") != NULL);
  sluice_options_destroy(o);
  o = sluice_options_create();
  CHECK(sluice_options_set(o, SLUICE_PARAM_BALANCER_STRATEGY, 42) == SLUICE_OK);
  CHECK(sluice_balancer_create(o, clock, &b) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_options_set(o, SLUICE_PARAM_BALANCER_STRATEGY, SLUICE_BALANCER_SCORED) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_BALANCER_WEIGHT_PREFIX_MILLI, -1000) == SLUICE_OK);
  CHECK(sluice_balancer_create(o, clock, &b) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "weights.prefix") != NULL);
  sluice_options_destroy(o);
  o = sluice_options_create(); /* cluster parameters do not apply to a balancer */
  CHECK(sluice_options_set(o, SLUICE_PARAM_CLUSTER_LOCAL_SHARE, 2) == SLUICE_OK);
  CHECK(sluice_balancer_create(o, clock, &b) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "SLUICE_PARAM_CLUSTER_LOCAL_SHARE") != NULL);
  sluice_options_destroy(o);
  CHECK(sluice_balancer_create(NULL, clock, &b) == SLUICE_INVALID_ARGUMENT);
  sluice_clock_destroy(clock);
}

/* Balancer administration: cooldown, eject, restore and the endpoint state, host-wide through a
 * shared region (two handles stand for two worker processes). */
/* Cluster scope for the balancer's cooldowns (experimental): a store and SLUICE_PARAM_REDIS_NAME.
 * Redis is down here (nothing listens): picks never fail for it and local holds still apply. */
static void test_balancer_cluster_holds(void) {
  sluice_options* ro = sluice_options_create();
  sluice_redis_store* store = NULL;
  sluice_balancer* b = NULL;
  sluice_pick* p = NULL;
  sluice_endpoint_state st;
  sluice_options* o;
  int i;
  CHECK(sluice_options_set(ro, SLUICE_PARAM_REDIS_PORT, 1) == SLUICE_OK);
  CHECK(sluice_options_set(ro, SLUICE_PARAM_REDIS_CONNECT_TIMEOUT_NANOS, 50 * MILLI) == SLUICE_OK);
  CHECK(sluice_redis_store_create(ro, &store) == SLUICE_OK);
  sluice_options_destroy(ro);
  o = sluice_options_create();
  CHECK(sluice_options_set(o, SLUICE_PARAM_BALANCER_STRATEGY, SLUICE_BALANCER_ROUND_ROBIN) ==
        SLUICE_OK);
  CHECK(sluice_options_set_redis_store(o, store) == SLUICE_OK);
  /* a store without a name: refused, naming the field */
  CHECK(sluice_balancer_create(o, NULL, &b) == SLUICE_INVALID_ARGUMENT && b == NULL);
  CHECK(strstr(sluice_last_error_message(), "redis_name") != NULL);
  CHECK(sluice_options_set_string(o, SLUICE_PARAM_REDIS_NAME, "c-keys", 6) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_BALANCER_REDIS_REFRESH_NANOS, 0) == SLUICE_OK);
  CHECK(sluice_balancer_create(o, NULL, &b) == SLUICE_INVALID_ARGUMENT && b == NULL);
  CHECK(strstr(sluice_last_error_message(), "redis_refresh") != NULL);
  CHECK(sluice_options_set(o, SLUICE_PARAM_BALANCER_REDIS_REFRESH_NANOS, 10 * MILLI) == SLUICE_OK);
  CHECK(sluice_balancer_create(o, NULL, &b) == SLUICE_OK);
  sluice_options_destroy(o);
  sluice_redis_store_destroy(store); /* the balancer keeps it */
  CHECK(sluice_balancer_add_endpoint(b, "k1", 2, 1, 0, 0, NULL, 0) == SLUICE_OK);
  CHECK(sluice_balancer_add_endpoint(b, "k2", 2, 1, 0, 0, NULL, 0) == SLUICE_OK);
  CHECK(sluice_balancer_cooldown(b, "k1", 2, 30 * SECOND, SLUICE_FAIL_RATE_LIMITED) == SLUICE_OK);
  for (i = 0; i < 4; ++i) {
    CHECK(sluice_balancer_pick_model(b, NULL, 0, NULL, 0, &p) == SLUICE_OK);
    CHECK(id_is(p, "k2"));
    sluice_pick_destroy(p);
  }
  CHECK(sluice_balancer_endpoint_state(b, "k1", 2, &st) == SLUICE_OK);
  CHECK(st.cooldown_reason == SLUICE_FAIL_RATE_LIMITED);
  CHECK(sluice_balancer_restore(b, "k1", 2) == SLUICE_OK);
  sluice_balancer_destroy(b);
}

static void test_balancer_administration(void) {
  char name[64];
  char endpoints[80];
  sluice_clock* clock = NULL;
  sluice_balancer* one = NULL;
  sluice_balancer* two = NULL;
  sluice_pick* p = NULL;
  sluice_endpoint_state st;
  int i;
  snprintf(name, sizeof(name), "capi-admin-%ld", (long)sluice_clock_now_nanos(NULL));
  snprintf(endpoints, sizeof(endpoints), "%s.endpoints", name);
  CHECK(sluice_manual_clock_create(SECOND, &clock) == SLUICE_OK);
  sluice_options* o = sluice_options_create();
  CHECK(sluice_options_set(o, SLUICE_PARAM_BALANCER_STRATEGY, SLUICE_BALANCER_ROUND_ROBIN) ==
        SLUICE_OK);
  CHECK(sluice_options_set_string(o, SLUICE_PARAM_SHARED_REGION, name, strlen(name)) == SLUICE_OK);
  CHECK(sluice_balancer_create(o, clock, &one) == SLUICE_OK);
  CHECK(sluice_balancer_create(o, clock, &two) == SLUICE_OK);
  CHECK(sluice_balancer_add_endpoint(one, "k1", 2, 1, 0, 0, NULL, 0) == SLUICE_OK);
  CHECK(sluice_balancer_add_endpoint(one, "k2", 2, 1, 0, 0, NULL, 0) == SLUICE_OK);
  CHECK(sluice_balancer_add_endpoint(two, "k1", 2, 1, 0, 0, NULL, 0) == SLUICE_OK);
  CHECK(sluice_balancer_add_endpoint(two, "k2", 2, 1, 0, 0, NULL, 0) == SLUICE_OK);

  /* Cooled down through one handle: the other skips it and reports it, with its reason. */
  CHECK(sluice_balancer_cooldown(one, "k1", 2, 30 * SECOND, SLUICE_FAIL_RATE_LIMITED) == SLUICE_OK);
  for (i = 0; i < 4; ++i) {
    CHECK(sluice_balancer_pick_model(two, NULL, 0, NULL, 0, &p) == SLUICE_OK);
    CHECK(id_is(p, "k2"));
    sluice_pick_destroy(p);
  }
  CHECK(sluice_balancer_endpoint_state(two, "k1", 2, &st) == SLUICE_OK);
  CHECK(st.cooldown_until_nanos == 31 * SECOND);
  CHECK(st.cooldown_reason == SLUICE_FAIL_RATE_LIMITED);
  CHECK(st.ejected_until_nanos == 0);
  /* Restored through the other: back for both. */
  CHECK(sluice_balancer_restore(two, "k1", 2) == SLUICE_OK);
  CHECK(sluice_balancer_endpoint_state(one, "k1", 2, &st) == SLUICE_OK);
  CHECK(st.cooldown_until_nanos == 0);
  CHECK(st.cooldown_reason == SLUICE_FAIL_NONE);
  /* Ejected; a held pick shows in the other handle's host count, a failure in this one's state. */
  CHECK(sluice_balancer_eject(one, "k2", 2, 5 * SECOND) == SLUICE_OK);
  CHECK(sluice_balancer_endpoint_state(two, "k2", 2, &st) == SLUICE_OK);
  CHECK(st.ejected_until_nanos == 6 * SECOND);
  CHECK(sluice_balancer_pick_model(one, NULL, 0, NULL, 0, &p) == SLUICE_OK);
  CHECK(id_is(p, "k1"));
  CHECK(sluice_balancer_endpoint_state(two, "k1", 2, &st) == SLUICE_OK);
  CHECK(st.host_in_flight == 1 && st.in_flight == 0);
  CHECK(sluice_pick_complete_failure(p, 503, SLUICE_FAIL_NONE, 0, 0) == SLUICE_OK);
  sluice_pick_destroy(p);
  CHECK(sluice_balancer_endpoint_state(one, "k1", 2, &st) == SLUICE_OK);
  CHECK(st.last_failure == SLUICE_FAIL_SERVER && st.last_failure_at_nanos == SECOND);
  CHECK(st.errors == 1 && st.picks == 1);

  /* Refusals name the argument or the id. */
  CHECK(sluice_balancer_cooldown(one, "k1", 2, 0, SLUICE_FAIL_NONE) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "duration must be > 0") != NULL);
  CHECK(sluice_balancer_eject(one, "k1", 2, 86400 * SECOND + 1) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_balancer_cooldown(one, "k1", 2, SECOND, 99) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "failure must be a sluice_failure, got 99") != NULL);
  CHECK(sluice_balancer_restore(one, "nope", 4) == SLUICE_NOT_FOUND);
  CHECK(strstr(sluice_last_error_message(), "'nope'") != NULL);
  CHECK(sluice_balancer_endpoint_state(one, "nope", 4, &st) == SLUICE_NOT_FOUND);
  CHECK(sluice_balancer_endpoint_state(one, "k1", 2, NULL) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_balancer_restore(NULL, "k1", 2) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_balancer_eject(one, NULL, 2, SECOND) == SLUICE_INVALID_ARGUMENT);

  sluice_balancer_destroy(one);
  sluice_balancer_destroy(two);
  sluice_options_destroy(o);
  sluice_clock_destroy(clock);
  CHECK(sluice_shared_region_remove(name, strlen(name)) == SLUICE_OK);
  CHECK(sluice_shared_region_remove(endpoints, strlen(endpoints)) == SLUICE_OK);
}

static int target_is(const sluice_fallback_call* call, const char* name) {
  size_t len = 0;
  const char* t = sluice_fallback_call_target(call, &len);
  return len == strlen(name) && memcmp(t, name, len) == 0;
}

static void test_fallback_policy(void) {
  sluice_clock* clock = NULL;
  CHECK(sluice_manual_clock_create(0, &clock) == SLUICE_OK);

  /* Failure classification and Retry-After from C. */
  CHECK(sluice_classify(429, SLUICE_TRANSPORT_NONE, NULL, 0) == SLUICE_FAIL_RATE_LIMITED);
  CHECK(sluice_classify(200, SLUICE_TRANSPORT_RESET, NULL, 0) == SLUICE_FAIL_RESET);
  {
    const char* body = "{\"error\":{\"code\":\"context_length_exceeded\"}}";
    CHECK(sluice_classify(400, SLUICE_TRANSPORT_NONE, body, strlen(body)) ==
          SLUICE_FAIL_CONTEXT_LENGTH);
  }
  CHECK(sluice_classify(200, 99, NULL, 0) == -1);
  int64_t ra = 0;
  CHECK(sluice_parse_retry_after("2.5", 3, 0, &ra) == SLUICE_OK && ra == 2500000000LL);
  CHECK(sluice_parse_retry_after("later", 5, 0, &ra) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_parse_retry_after("1", 1, 0, NULL) == SLUICE_INVALID_ARGUMENT);

  /* A balanced backup behind a plain primary. */
  sluice_options* bo = sluice_options_create();
  CHECK(sluice_options_set(bo, SLUICE_PARAM_BALANCER_OUTLIER_CONSECUTIVE_FAILURES, 3) == SLUICE_OK);
  sluice_balancer* pool = NULL;
  CHECK(sluice_balancer_create(bo, clock, &pool) == SLUICE_OK);
  sluice_options_destroy(bo);
  CHECK(sluice_balancer_add_endpoint(pool, "key-1", 5, 1, 0, 0, NULL, 0) == SLUICE_OK);

  sluice_fallback_target targets[2] = {
      {"primary", 7, "gpt-4o", 6, NULL},
      {"backup", 6, NULL, 0, pool},
  };
  sluice_options* o = sluice_options_create();
  CHECK(sluice_options_set(o, SLUICE_PARAM_BREAKER_CONSECUTIVE_FAILURES, 2) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_BREAKER_OPEN_NANOS, 5 * SECOND) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_FALLBACK_ACTION + SLUICE_FAIL_SERVER,
                           SLUICE_ACTION_NEXT_TARGET) == SLUICE_OK);
  sluice_fallback_policy* policy = NULL;
  CHECK(sluice_fallback_policy_create(o, targets, 2, clock, &policy) == SLUICE_OK);
  sluice_balancer_destroy(pool); /* the policy keeps it alive */

  int round;
  for (round = 0; round < 2; ++round) {
    sluice_fallback_call* call = NULL;
    sluice_fallback_step step;
    CHECK(sluice_fallback_policy_begin(policy, 0, &call, &step) == SLUICE_OK);
    CHECK(step.kind == SLUICE_STEP_ATTEMPT && step.attempt == 1 && step.timeout_nanos > 0);
    CHECK(target_is(call, "primary"));
    size_t len = 0;
    CHECK(memcmp(sluice_fallback_call_model(call, &len), "gpt-4o", 6) == 0 && len == 6);
    CHECK(sluice_fallback_call_next(call, 500, SLUICE_TRANSPORT_NONE, NULL, 0, 0, 0, &step) ==
          SLUICE_OK);
    CHECK(step.kind == SLUICE_STEP_ATTEMPT && step.failure == SLUICE_FAIL_SERVER);
    CHECK(target_is(call, "backup"));
    CHECK(memcmp(sluice_fallback_call_endpoint(call, &len), "key-1", 5) == 0 && len == 5);
    CHECK(sluice_fallback_call_next(call, 200, SLUICE_TRANSPORT_NONE, NULL, 0, 0, 0, &step) ==
          SLUICE_OK);
    CHECK(step.kind == SLUICE_STEP_SUCCEEDED && step.status == SLUICE_OK);
    CHECK(sluice_fallback_call_next(call, 200, 0, NULL, 0, 0, 0, &step) ==
          SLUICE_FAILED_PRECONDITION);
    sluice_fallback_call_destroy(call);
  }
  CHECK(sluice_fallback_policy_breaker_state(policy, 0) == SLUICE_BREAKER_OPEN);
  CHECK(sluice_fallback_policy_breaker_state(policy, 1) == SLUICE_BREAKER_CLOSED);
  CHECK(sluice_fallback_policy_breaker_state(policy, 2) == -1);

  /* After the first streamed byte, a broken stream ends the call: SLUICE_ABORTED. */
  {
    sluice_fallback_call* call = NULL;
    sluice_fallback_step step;
    CHECK(sluice_fallback_policy_begin(policy, 0, &call, &step) == SLUICE_OK);
    CHECK(target_is(call, "backup")); /* the primary's breaker is open */
    CHECK(sluice_fallback_call_mark_first_byte(call) == SLUICE_OK);
    CHECK(sluice_fallback_call_next(call, 200, SLUICE_TRANSPORT_RESET, NULL, 0, 0, 0, &step) ==
          SLUICE_OK);
    CHECK(step.kind == SLUICE_STEP_FAILED && step.status == SLUICE_ABORTED);
    CHECK(strstr(sluice_last_error_message(), "after its first byte") != NULL);
    CHECK(strcmp(sluice_status_name(SLUICE_ABORTED), "SLUICE_ABORTED") == 0);
    sluice_fallback_call_destroy(call);
  }
  sluice_fallback_policy_destroy(policy);

  /* Bad options are named. */
  CHECK(sluice_options_set(o, SLUICE_PARAM_BREAKER_MINIMUM_CALLS, 0) == SLUICE_OK);
  CHECK(sluice_fallback_policy_create(o, targets, 1, clock, &policy) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "breaker.minimum_calls") != NULL);
  sluice_options_destroy(o);
  o = sluice_options_create();
  CHECK(sluice_fallback_policy_create(o, targets, 0, clock, &policy) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_options_set(o, SLUICE_PARAM_FALLBACK_ACTION + SLUICE_FAIL_AUTH, 7) == SLUICE_OK);
  CHECK(sluice_fallback_policy_create(o, targets, 1, clock, &policy) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "sluice_fallback_action") != NULL);
  sluice_options_destroy(o);
  o = sluice_options_create();
  CHECK(sluice_options_set(o, SLUICE_PARAM_RATE, 1) == SLUICE_OK);
  CHECK(sluice_fallback_policy_create(o, targets, 1, clock, &policy) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "SLUICE_PARAM_RATE") != NULL);
  sluice_options_destroy(o);
  CHECK(sluice_fallback_policy_begin(NULL, 0, NULL, NULL) == SLUICE_INVALID_ARGUMENT);
  sluice_fallback_call_destroy(NULL);
  sluice_fallback_policy_destroy(NULL);
  sluice_clock_destroy(clock);
}

static void test_response_cache(void) {
  const char* a = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"user\":\"u1\"}";
  const char* b = "{ \"messages\": [ {\"content\": \"Hi\", \"role\": \"user\"} ], \"model\": \"m\" }";
  sluice_cache_key* ka = NULL;
  sluice_cache_key* kb = NULL;
  CHECK(sluice_cache_key_create(a, strlen(a), "t", 1, &ka) == SLUICE_OK);
  CHECK(sluice_cache_key_create(b, strlen(b), "t", 1, &kb) == SLUICE_OK);
  uint64_t ha = 0, la = 0, hb = 1, lb = 1;
  CHECK(sluice_cache_key_digest(ka, &ha, &la) == SLUICE_OK);
  CHECK(sluice_cache_key_digest(kb, &hb, &lb) == SLUICE_OK);
  CHECK(ha == hb && la == lb); /* key order, whitespace and "user" do not matter */
  size_t len = 0;
  const char* canonical = sluice_cache_key_canonical(ka, &len);
  CHECK(len > 2 && canonical[0] == 't' && canonical[1] == 0x1F);
  sluice_cache_key* bad = NULL;
  CHECK(sluice_cache_key_create("{\"a\":1,\"a\":2}", 13, NULL, 0, &bad) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "duplicate member name") != NULL);

  sluice_clock* clock = NULL;
  CHECK(sluice_manual_clock_create(0, &clock) == SLUICE_OK);
  sluice_options* o = sluice_options_create();
  CHECK(sluice_options_set(o, SLUICE_PARAM_CACHE_MAX_BYTES, 1 << 20) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_CACHE_SHARDS, 2) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_CACHE_DEFAULT_TTL_NANOS, 10 * SECOND) == SLUICE_OK);
  sluice_response_cache* cache = NULL;
  CHECK(sluice_response_cache_create(o, clock, &cache) == SLUICE_OK);

  sluice_cached_answer* answer = NULL;
  CHECK(sluice_response_cache_get(cache, ka, &answer) == SLUICE_OK && answer == NULL);
  const char* chunks[2] = {"data: {}\n\n", "data: [DONE]\n\n"};
  const size_t lens[2] = {10, 14};
  uint8_t stored = 0;
  CHECK(sluice_response_cache_put(cache, ka, NULL, 0, chunks, lens, 2, 0, &stored) == SLUICE_OK);
  CHECK(stored == 1);
  CHECK(sluice_response_cache_get(cache, kb, &answer) == SLUICE_OK && answer != NULL);
  CHECK(sluice_cached_answer_streamed(answer) == 1);
  CHECK(sluice_cached_answer_chunk_count(answer) == 2);
  CHECK(memcmp(sluice_cached_answer_chunk(answer, 1, &len), "data: [DONE]\n\n", 14) == 0 && len == 14);
  CHECK(sluice_cached_answer_chunk(answer, 2, &len) == NULL && len == 0);
  sluice_cached_answer_destroy(answer);
  CHECK(sluice_manual_clock_advance(clock, 10 * SECOND) == SLUICE_OK);
  CHECK(sluice_response_cache_get(cache, ka, &answer) == SLUICE_OK && answer == NULL); /* expired */

  /* Single flight: a leader, two followers; the leader completes, both get its answer. */
  sluice_fetch* lead = NULL;
  sluice_fetch* f1 = NULL;
  sluice_fetch* f2 = NULL;
  CHECK(sluice_response_cache_fetch(cache, ka, &lead) == SLUICE_OK);
  CHECK(sluice_fetch_kind_of(lead) == SLUICE_FETCH_LEAD);
  CHECK(sluice_response_cache_fetch(cache, kb, &f1) == SLUICE_OK);
  CHECK(sluice_response_cache_fetch(cache, ka, &f2) == SLUICE_OK);
  CHECK(sluice_fetch_kind_of(f1) == SLUICE_FETCH_WAIT && sluice_fetch_fd(f1) >= 0);
  CHECK(sluice_fetch_resume(f1) == SLUICE_FAILED_PRECONDITION); /* the leader is still out */
  sluice_fetch_destroy(lead); /* gave up: f1 leads now */
  CHECK(sluice_fetch_resume(f1) == SLUICE_OK);
  CHECK(sluice_fetch_kind_of(f1) == SLUICE_FETCH_LEAD);
  CHECK(sluice_fetch_complete(f1, "answer", 6, NULL, NULL, 0, 0, 1, &stored) == SLUICE_OK &&
        stored == 1);
  CHECK(sluice_fetch_resume(f2) == SLUICE_OK);
  CHECK(sluice_fetch_kind_of(f2) == SLUICE_FETCH_HIT);
  CHECK(sluice_fetch_answer(f2, &answer) == SLUICE_OK);
  CHECK(memcmp(sluice_cached_answer_body(answer, &len), "answer", 6) == 0 && len == 6);
  sluice_cached_answer_destroy(answer);
  sluice_fetch_destroy(f1);
  sluice_fetch_destroy(f2);
  CHECK(sluice_response_cache_erase(cache, ka) == SLUICE_OK);
  CHECK(sluice_response_cache_erase(cache, ka) == SLUICE_NOT_FOUND);

  /* A streamed answer, tailed live: the follower takes each chunk as the leader appends it. */
  CHECK(sluice_response_cache_fetch(cache, ka, &lead) == SLUICE_OK);
  CHECK(sluice_response_cache_fetch(cache, ka, &f1) == SLUICE_OK);
  CHECK(sluice_fetch_append(lead, chunks[0], lens[0]) == SLUICE_OK);
  CHECK(sluice_fetch_append(f1, chunks[0], lens[0]) == SLUICE_FAILED_PRECONDITION);
  CHECK(sluice_fetch_take_chunks(f1, &answer) == SLUICE_OK);
  CHECK(sluice_cached_answer_chunk_count(answer) == 1);
  CHECK(memcmp(sluice_cached_answer_chunk(answer, 0, &len), chunks[0], lens[0]) == 0);
  sluice_cached_answer_destroy(answer);
  CHECK(sluice_fetch_ready(f1) == 0);
  CHECK(sluice_fetch_append(lead, chunks[1], lens[1]) == SLUICE_OK);
  CHECK(sluice_fetch_complete_stream(lead, 0, 1, &stored) == SLUICE_OK && stored == 1);
  CHECK(sluice_fetch_ready(f1) == 1);
  CHECK(sluice_fetch_chunks_taken(f1) == 1);
  CHECK(sluice_fetch_resume(f1) == SLUICE_OK && sluice_fetch_kind_of(f1) == SLUICE_FETCH_HIT);
  CHECK(sluice_fetch_chunks_taken(f1) == 1); /* still to send: chunks 1.. of the answer */
  CHECK(sluice_fetch_answer(f1, &answer) == SLUICE_OK);
  CHECK(sluice_cached_answer_chunk_count(answer) == 2);
  sluice_cached_answer_destroy(answer);
  sluice_fetch_destroy(lead);
  sluice_fetch_destroy(f1);

  /* The leader of a tailed stream gives up: the tailing follower is broken. */
  CHECK(sluice_response_cache_fetch(cache, kb, &lead) == SLUICE_OK);
  CHECK(sluice_fetch_kind_of(lead) == SLUICE_FETCH_HIT); /* stored above */
  sluice_fetch_destroy(lead);
  CHECK(sluice_response_cache_erase(cache, kb) == SLUICE_OK);
  CHECK(sluice_response_cache_fetch(cache, kb, &lead) == SLUICE_OK);
  CHECK(sluice_response_cache_fetch(cache, kb, &f1) == SLUICE_OK);
  CHECK(sluice_fetch_append(lead, chunks[0], lens[0]) == SLUICE_OK);
  CHECK(sluice_fetch_take_chunks(f1, &answer) == SLUICE_OK);
  sluice_cached_answer_destroy(answer);
  sluice_fetch_destroy(lead);
  CHECK(sluice_fetch_resume(f1) == SLUICE_OK && sluice_fetch_kind_of(f1) == SLUICE_FETCH_BROKEN);
  sluice_fetch_destroy(f1);

  {
    sluice_cache_stats stats;
    CHECK(sluice_response_cache_stats(cache, &stats) == SLUICE_OK);
    CHECK(stats.merged_waits == 4 && stats.leader_failovers == 1);
    CHECK(stats.inserts == 3 && stats.entries == 0 && stats.bytes == 0); /* all erased */
    CHECK(sluice_response_cache_stats(NULL, &stats) == SLUICE_INVALID_ARGUMENT);
  }

  /* A Redis tier that cannot be reached: a miss waits for Redis's failure, then leads. */
  {
    sluice_options* ro = sluice_options_create();
    sluice_redis_store* store = NULL;
    sluice_response_cache* tiered = NULL;
    sluice_fetch* f = NULL;
    sluice_cache_stats stats;
    CHECK(sluice_options_set(ro, SLUICE_PARAM_REDIS_PORT, 1) == SLUICE_OK);
    CHECK(sluice_redis_store_create(ro, &store) == SLUICE_OK);
    CHECK(sluice_options_set_redis_store(o, store) == SLUICE_OK);
    CHECK(sluice_options_set_string(o, SLUICE_PARAM_REDIS_NAME, "bad name", 8) == SLUICE_OK);
    CHECK(sluice_response_cache_create(o, clock, &tiered) == SLUICE_INVALID_ARGUMENT);
    CHECK(strstr(sluice_last_error_message(), "redis_name") != NULL);
    CHECK(sluice_options_set_string(o, SLUICE_PARAM_REDIS_NAME, "c-test", 6) == SLUICE_OK);
    CHECK(sluice_response_cache_create(o, clock, &tiered) == SLUICE_OK);
    CHECK(sluice_response_cache_fetch(tiered, ka, &f) == SLUICE_OK);
    CHECK(sluice_fetch_kind_of(f) == SLUICE_FETCH_WAIT);
    while (!sluice_fetch_ready(f)) {
    }
    CHECK(sluice_fetch_resume(f) == SLUICE_OK && sluice_fetch_kind_of(f) == SLUICE_FETCH_LEAD);
    CHECK(sluice_fetch_complete(f, "local", 5, NULL, NULL, 0, 0, 1, &stored) == SLUICE_OK);
    CHECK(stored == 1); /* kept in process */
    CHECK(sluice_response_cache_stats(tiered, &stats) == SLUICE_OK && stats.redis_errors >= 1);
    sluice_fetch_destroy(f);
    sluice_response_cache_destroy(tiered);
    sluice_redis_store_destroy(store);
    sluice_options_set_redis_store(o, NULL);
    sluice_options_set_string(o, SLUICE_PARAM_REDIS_NAME, NULL, 0);
    sluice_options_destroy(ro);
  }

  /* Bad options are named. */
  CHECK(sluice_options_set(o, SLUICE_PARAM_CACHE_SHARDS, 3) == SLUICE_OK);
  sluice_response_cache* bad_cache = NULL;
  CHECK(sluice_response_cache_create(o, clock, &bad_cache) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "shards") != NULL);
  sluice_options_destroy(o);
  sluice_response_cache_destroy(cache);
  sluice_response_cache_destroy(NULL);
  sluice_cache_key_destroy(ka);
  sluice_cache_key_destroy(kb);
  sluice_cache_key_destroy(NULL);
  sluice_fetch_destroy(NULL);
  sluice_cached_answer_destroy(NULL);
  sluice_clock_destroy(clock);
}

/* The message of the last failure starts with the C function's name (never "operator()"). */
static int names(const char* function) {
  const char* m = sluice_last_error_message();
  const size_t n = strlen(function);
  return strncmp(m, function, n) == 0 && m[n] == ':' && strstr(m, "operator()") == NULL;
}

static void test_allow(void) {
  sluice_clock* clock = NULL;
  sluice_options* o = sluice_options_create();
  sluice_rate_limiter* rl = NULL;
  sluice_decision d;
  CHECK(sluice_manual_clock_create(0, &clock) == SLUICE_OK);
  CHECK(sluice_options_add_window(o, 10, SECOND, 2) == SLUICE_OK);
  CHECK(sluice_rate_limiter_create(o, clock, &rl) == SLUICE_OK);
  sluice_options_destroy(o);
  CHECK(sluice_rate_limiter_allow(rl, "k", 1, 1) == 1);
  CHECK(sluice_rate_limiter_allow(rl, "k", 1, 1) == 1);
  CHECK(sluice_rate_limiter_allow(rl, "k", 1, 1) == 0); /* the burst of 2 is spent */
  CHECK(sluice_rate_limiter_try_acquire(rl, "k", 1, 1, &d) == SLUICE_OK && !d.allowed);
  CHECK(d.retry_after_nanos == 100 * MILLI); /* allow took from the same windows */
  CHECK(sluice_manual_clock_advance(clock, 100 * MILLI) == SLUICE_OK);
  CHECK(sluice_rate_limiter_allow(rl, "k", 1, 1) == 1);
  /* Errors are refusals (0), never negative; the ones found here are named. */
  CHECK(sluice_rate_limiter_allow(NULL, "k", 1, 1) == 0);
  CHECK(names("sluice_rate_limiter_allow") && strstr(sluice_last_error_message(), "limiter is NULL"));
  CHECK(sluice_rate_limiter_allow(rl, NULL, 3, 1) == 0);
  CHECK(names("sluice_rate_limiter_allow"));
  CHECK(sluice_rate_limiter_allow(rl, "k", 1, 0) == 0);  /* cost < 1 */
  CHECK(sluice_rate_limiter_allow(rl, "j", 1, 3) == 0);  /* beyond the burst: never */
  CHECK(sluice_rate_limiter_allow(rl, "j", 1, 2) == 1);
  sluice_rate_limiter_destroy(rl);
  sluice_clock_destroy(clock);
}

/* One Redis namespace parameter for every object (old names: test_deprecated_names). */
static void test_redis_name(void) {
  sluice_options* ro = sluice_options_create();
  sluice_redis_store* store = NULL;
  sluice_options* o;
  sluice_rate_limiter* rl = NULL;
  sluice_response_cache* cache = NULL;
  sluice_balancer* b = NULL;
  sluice_decision d;
  CHECK(sluice_options_set(ro, SLUICE_PARAM_REDIS_PORT, 1) == SLUICE_OK); /* nothing listens */
  CHECK(sluice_options_set(ro, SLUICE_PARAM_REDIS_CONNECT_TIMEOUT_NANOS, 50 * MILLI) == SLUICE_OK);
  CHECK(sluice_redis_store_create(ro, &store) == SLUICE_OK);
  sluice_options_destroy(ro);

  o = sluice_options_create();
  sluice_options_add_window(o, 10, 60 * SECOND, 0);
  CHECK(sluice_options_set_redis_store(o, store) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_CLUSTER_ON_FAILURE, SLUICE_FAILURE_ALLOW) == SLUICE_OK);
  CHECK(sluice_options_set_string(o, SLUICE_PARAM_REDIS_NAME, "bad name", 8) == SLUICE_OK);
  CHECK(sluice_rate_limiter_create(o, NULL, &rl) == SLUICE_INVALID_ARGUMENT); /* read, checked */
  CHECK(strstr(sluice_last_error_message(), "redis_name") != NULL);
  CHECK(sluice_options_set_string(o, SLUICE_PARAM_REDIS_NAME, "rl-name", 7) == SLUICE_OK);
  CHECK(sluice_rate_limiter_create(o, NULL, &rl) == SLUICE_OK);
  CHECK(sluice_rate_limiter_try_acquire(rl, "k", 1, 1, &d) == SLUICE_OK && d.allowed); /* open */
  sluice_rate_limiter_destroy(rl);
  sluice_options_destroy(o);

  o = sluice_options_create(); /* the cache's Redis tier: the same parameter */
  CHECK(sluice_options_set_redis_store(o, store) == SLUICE_OK);
  CHECK(sluice_options_set_string(o, SLUICE_PARAM_REDIS_NAME, "bad name", 8) == SLUICE_OK);
  CHECK(sluice_response_cache_create(o, NULL, &cache) == SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "redis_name") != NULL);
  CHECK(sluice_options_set_string(o, SLUICE_PARAM_REDIS_NAME, "cache-name", 10) == SLUICE_OK);
  CHECK(sluice_response_cache_create(o, NULL, &cache) == SLUICE_OK);
  sluice_response_cache_destroy(cache);
  sluice_options_destroy(o);

  o = sluice_options_create(); /* an object without a Redis namespace refuses it, by name */
  CHECK(sluice_options_set_string(o, SLUICE_PARAM_REDIS_NAME, "x", 1) == SLUICE_OK);
  {
    sluice_fallback_target targets[1] = {{"a", 1, NULL, 0, NULL}};
    sluice_fallback_policy* f = NULL;
    CHECK(sluice_fallback_policy_create(o, targets, 1, NULL, &f) == SLUICE_INVALID_ARGUMENT &&
          f == NULL);
    CHECK(strstr(sluice_last_error_message(), "SLUICE_PARAM_REDIS_NAME (600) does not apply") !=
          NULL);
  }
  /* the balancer takes one, with a store (its shared cooldowns) */
  CHECK(sluice_balancer_create(o, NULL, &b) == SLUICE_INVALID_ARGUMENT && b == NULL);
  CHECK(strstr(sluice_last_error_message(), "redis_name") != NULL);
  sluice_options_destroy(o);
  sluice_redis_store_destroy(store);
}

/* Every create function: *out is NULL after a failure, whatever it held before; the message
 * names the function. */
static void test_create_prologue(void) {
  sluice_options* bad = sluice_options_create(); /* a parameter no create function takes alone */
  sluice_options* empty = sluice_options_create();
  void* garbage = &passed;
  sluice_fallback_target target = {"a", 1, NULL, 0, NULL};
  CHECK(sluice_options_set(bad, SLUICE_PARAM_RATE, 1) == SLUICE_OK);
  CHECK(sluice_options_set(bad, SLUICE_PARAM_BALANCER_SEED, 1) == SLUICE_OK);
  {
    sluice_clock* x = garbage;
    CHECK(sluice_manual_clock_create(-1, &x) == SLUICE_INVALID_ARGUMENT && x == NULL);
    CHECK(names("sluice_manual_clock_create"));
  }
  {
    sluice_redis_store* x = garbage;
    CHECK(sluice_redis_store_create(bad, &x) == SLUICE_INVALID_ARGUMENT && x == NULL);
    CHECK(names("sluice_redis_store_create"));
    x = garbage;
    CHECK(sluice_redis_store_create(NULL, &x) == SLUICE_INVALID_ARGUMENT && x == NULL);
    CHECK(names("sluice_redis_store_create"));
  }
  {
    sluice_rate_limiter* x = garbage;
    CHECK(sluice_rate_limiter_create(bad, NULL, &x) == SLUICE_INVALID_ARGUMENT && x == NULL);
    CHECK(names("sluice_rate_limiter_create"));
    x = garbage;
    CHECK(sluice_rate_limiter_create(empty, NULL, &x) == SLUICE_INVALID_ARGUMENT && x == NULL);
    CHECK(names("sluice_rate_limiter_create")); /* the C++ status, named too */
  }
  {
    sluice_leaky_bucket* x = garbage;
    CHECK(sluice_leaky_bucket_create(empty, NULL, &x) == SLUICE_INVALID_ARGUMENT && x == NULL);
    CHECK(names("sluice_leaky_bucket_create"));
    x = garbage;
    CHECK(sluice_leaky_bucket_create(NULL, NULL, &x) == SLUICE_INVALID_ARGUMENT && x == NULL);
  }
  {
    sluice_concurrency_limiter* x = garbage;
    CHECK(sluice_concurrency_limiter_create(bad, NULL, &x) == SLUICE_INVALID_ARGUMENT && x == NULL);
    CHECK(names("sluice_concurrency_limiter_create"));
  }
  {
    sluice_token_budget* x = garbage;
    CHECK(sluice_token_budget_create(bad, NULL, &x) == SLUICE_INVALID_ARGUMENT && x == NULL);
    CHECK(names("sluice_token_budget_create"));
  }
  {
    sluice_balancer* x = garbage;
    CHECK(sluice_balancer_create(bad, NULL, &x) == SLUICE_INVALID_ARGUMENT && x == NULL);
    CHECK(names("sluice_balancer_create"));
    x = garbage;
    CHECK(sluice_balancer_create(NULL, NULL, &x) == SLUICE_INVALID_ARGUMENT && x == NULL);
    CHECK(names("sluice_balancer_create") && strstr(sluice_last_error_message(), "options is NULL"));
  }
  {
    sluice_fallback_policy* x = garbage;
    CHECK(sluice_fallback_policy_create(bad, &target, 1, NULL, &x) == SLUICE_INVALID_ARGUMENT);
    CHECK(x == NULL && names("sluice_fallback_policy_create"));
    x = garbage;
    CHECK(sluice_fallback_policy_create(empty, NULL, 1, NULL, &x) == SLUICE_INVALID_ARGUMENT);
    CHECK(x == NULL && names("sluice_fallback_policy_create"));
    CHECK(strstr(sluice_last_error_message(), "targets is NULL") != NULL);
  }
  {
    sluice_response_cache* x = garbage;
    CHECK(sluice_response_cache_create(bad, NULL, &x) == SLUICE_INVALID_ARGUMENT && x == NULL);
    CHECK(names("sluice_response_cache_create"));
    x = garbage;
    CHECK(sluice_response_cache_create(NULL, NULL, &x) == SLUICE_INVALID_ARGUMENT && x == NULL);
  }
  {
    sluice_cache_key* x = garbage;
    CHECK(sluice_cache_key_create("{", 1, NULL, 0, &x) == SLUICE_INVALID_ARGUMENT && x == NULL);
    CHECK(names("sluice_cache_key_create"));
  }
  /* The calls that hand out a handle through *out do the same. */
  {
    sluice_pick* pick = garbage;
    sluice_fallback_call* call = garbage;
    sluice_permit* permit = garbage;
    sluice_reservation* reservation = garbage;
    sluice_cached_answer* answer = garbage;
    sluice_fetch* fetch = garbage;
    sluice_decision d;
    CHECK(sluice_balancer_pick(NULL, "{}", 2, NULL, 0, &pick) == SLUICE_INVALID_ARGUMENT);
    CHECK(pick == NULL && names("sluice_balancer_pick"));
    pick = garbage;
    CHECK(sluice_balancer_pick_model(NULL, NULL, 0, NULL, 0, &pick) == SLUICE_INVALID_ARGUMENT);
    CHECK(pick == NULL && names("sluice_balancer_pick_model"));
    CHECK(sluice_fallback_policy_begin(NULL, 0, &call, NULL) == SLUICE_INVALID_ARGUMENT);
    CHECK(call == NULL && names("sluice_fallback_policy_begin"));
    CHECK(sluice_concurrency_limiter_try_acquire(NULL, "k", 1, &d, &permit) ==
          SLUICE_INVALID_ARGUMENT);
    CHECK(permit == NULL && names("sluice_concurrency_limiter_try_acquire"));
    CHECK(sluice_token_budget_try_reserve(NULL, "k", 1, 1, &d, &reservation) ==
          SLUICE_INVALID_ARGUMENT);
    CHECK(reservation == NULL && names("sluice_token_budget_try_reserve"));
    CHECK(sluice_response_cache_get(NULL, NULL, &answer) == SLUICE_INVALID_ARGUMENT);
    CHECK(answer == NULL && names("sluice_response_cache_get"));
    CHECK(sluice_response_cache_fetch(NULL, NULL, &fetch) == SLUICE_INVALID_ARGUMENT);
    CHECK(fetch == NULL && names("sluice_response_cache_fetch"));
    answer = garbage;
    CHECK(sluice_fetch_answer(NULL, &answer) == SLUICE_INVALID_ARGUMENT && answer == NULL);
    answer = garbage;
    CHECK(sluice_fetch_take_chunks(NULL, &answer) == SLUICE_INVALID_ARGUMENT && answer == NULL);
    CHECK(names("sluice_fetch_take_chunks"));
  }
  sluice_options_destroy(bad);
  sluice_options_destroy(empty);
}

/* Errors found inside the guard name the C function, not the lambda that ran it. */
static void test_messages_name_the_function(void) {
  sluice_options* o = sluice_options_create();
  sluice_decision d;
  int64_t nanos = 0;
  CHECK(sluice_options_set(NULL, SLUICE_PARAM_RATE, 1) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_options_set"));
  CHECK(sluice_options_set(o, 999, 1) == SLUICE_INVALID_ARGUMENT && names("sluice_options_set"));
  CHECK(sluice_options_set_string(o, SLUICE_PARAM_RATE, "x", 1) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_options_set_string"));
  CHECK(sluice_options_add_window(NULL, 1, 1, 0) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_options_add_window"));
  CHECK(sluice_rate_limiter_try_acquire(NULL, "k", 1, 1, &d) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_rate_limiter_try_acquire"));
  CHECK(sluice_rate_limiter_try_acquire_at(NULL, "k", 1, 1, 0, &d) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_rate_limiter_try_acquire_at"));
  CHECK(sluice_leaky_bucket_try_acquire(NULL, "k", 1, 1, &d) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_leaky_bucket_try_acquire"));
  CHECK(sluice_token_budget_charge(NULL, "k", 1, 1, &d) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_token_budget_charge"));
  CHECK(sluice_permit_renew(NULL, 0) == SLUICE_INVALID_ARGUMENT && names("sluice_permit_renew"));
  CHECK(sluice_permit_release(NULL) == SLUICE_INVALID_ARGUMENT && names("sluice_permit_release"));
  CHECK(sluice_reservation_settle(NULL, 1, &d) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_reservation_settle"));
  CHECK(sluice_reservation_cancel(NULL) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_reservation_cancel"));
  CHECK(sluice_balancer_add_endpoint(NULL, "a", 1, 1, 0, 0, NULL, 0) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_balancer_add_endpoint"));
  CHECK(sluice_pick_complete_failure(NULL, 200, SLUICE_FAIL_NONE, 0, 0) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_pick_complete_failure"));
  CHECK(sluice_parse_retry_after("x", 1, 0, &nanos) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_parse_retry_after"));
  CHECK(sluice_fallback_call_next(NULL, 200, 0, NULL, 0, 0, 0, NULL) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_fallback_call_next"));
  CHECK(sluice_response_cache_erase(NULL, NULL) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_response_cache_erase"));
  CHECK(sluice_fetch_append(NULL, "x", 1) == SLUICE_INVALID_ARGUMENT && names("sluice_fetch_append"));
  CHECK(sluice_shared_region_remove(NULL, 1) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_shared_region_remove"));
  sluice_options_destroy(o);
}

/* A pick reports its attempt in the one failure vocabulary. */
static void test_pick_complete_failure(void) {
  sluice_clock* clock = NULL;
  sluice_options* o = sluice_options_create();
  sluice_balancer* b = NULL;
  sluice_pick* p = NULL;
  CHECK(sluice_manual_clock_create(0, &clock) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_BALANCER_STRATEGY, SLUICE_BALANCER_ROUND_ROBIN) == SLUICE_OK);
  CHECK(sluice_balancer_create(o, clock, &b) == SLUICE_OK);
  sluice_options_destroy(o);
  CHECK(sluice_balancer_add_endpoint(b, "a", 1, 1, 0, 0, NULL, 0) == SLUICE_OK);
  /* A stated rate-limit failure cools the endpoint down (60 s), whatever the status says. */
  CHECK(sluice_balancer_pick_model(b, NULL, 0, NULL, 0, &p) == SLUICE_OK);
  CHECK(sluice_pick_complete_failure(p, 0, SLUICE_FAIL_RATE_LIMITED, 0, 0) == SLUICE_OK);
  sluice_pick_destroy(p);
  CHECK(sluice_balancer_pick_model(b, NULL, 0, NULL, 0, &p) == SLUICE_UNAVAILABLE && p == NULL);
  CHECK(sluice_manual_clock_advance(clock, 60 * SECOND) == SLUICE_OK);
  CHECK(sluice_balancer_pick_model(b, NULL, 0, NULL, 0, &p) == SLUICE_OK);
  CHECK(sluice_pick_complete_failure(p, 0, SLUICE_FAIL_ABANDONED, 0, 0) == SLUICE_OK);
  sluice_pick_destroy(p);
  CHECK(sluice_balancer_pick_model(b, NULL, 0, NULL, 0, &p) == SLUICE_OK); /* not its fault */
  CHECK(sluice_pick_complete_failure(p, 200, SLUICE_FAIL_ABANDONED + 1, 0, 0) ==
        SLUICE_INVALID_ARGUMENT);
  CHECK(strstr(sluice_last_error_message(), "sluice_failure") != NULL);
  CHECK(sluice_pick_complete_failure(p, 200, -1, 0, 0) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_pick_complete_failure(p, 200, SLUICE_FAIL_NONE, -1, 0) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_pick_complete_failure(p, 200, SLUICE_FAIL_NONE, 0, 0) == SLUICE_OK);
  sluice_pick_destroy(p);
  sluice_balancer_destroy(b);
  sluice_clock_destroy(clock);
}

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations" /* the old names, on purpose */
#endif
/* The names before sluice 0.2 still work, for one release: the same calls as the new names, and
 * their messages name the function that was called. */
static void test_deprecated_names(void) {
  sluice_clock* clock = NULL;
  sluice_options* o = sluice_options_create();
  sluice_rate_limiter* rl = NULL;
  sluice_leaky_bucket* lb = NULL;
  sluice_concurrency_limiter* cl = NULL;
  sluice_token_budget* tb = NULL;
  sluice_balancer* b = NULL;
  sluice_permit* permit = NULL;
  sluice_reservation* r = NULL;
  sluice_pick* p = NULL;
  sluice_decision d;
  CHECK(sluice_manual_clock_create(0, &clock) == SLUICE_OK);
  sluice_options_add_window(o, 10, SECOND, 2);
  CHECK(sluice_rate_limiter_create(o, clock, &rl) == SLUICE_OK);
  CHECK(sluice_token_budget_create(o, clock, &tb) == SLUICE_OK);
  sluice_options_destroy(o);
  CHECK(sluice_rate_limiter_acquire(rl, "k", 1, 1, &d) == SLUICE_OK && d.allowed && d.remaining == 1);
  CHECK(sluice_rate_limiter_try_acquire(rl, "k", 1, 1, &d) == SLUICE_OK && d.allowed);
  CHECK(sluice_rate_limiter_acquire(rl, "k", 1, 1, &d) == SLUICE_OK && !d.allowed);
  CHECK(d.retry_after_nanos == 100 * MILLI); /* one set of windows under both names */
  CHECK(sluice_rate_limiter_acquire_at(rl, "k", 1, 1, 100 * MILLI, &d) == SLUICE_OK && d.allowed);
  CHECK(sluice_rate_limiter_acquire(rl, "k", 1, 0, &d) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_rate_limiter_acquire") && strstr(sluice_last_error_message(), "cost"));
  CHECK(sluice_rate_limiter_acquire_at(NULL, "k", 1, 1, 0, &d) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_rate_limiter_acquire_at"));
  CHECK(sluice_token_budget_reserve(tb, "t", 1, 2, &d, &r) == SLUICE_OK && r != NULL);
  CHECK(sluice_reservation_settle(r, 2, &d) == SLUICE_OK && d.remaining == 0);
  sluice_reservation_destroy(r);
  r = (sluice_reservation*)&passed;
  CHECK(sluice_token_budget_reserve(tb, "t", 1, 1, &d, &r) == SLUICE_OK && r == NULL && !d.allowed);
  CHECK(sluice_token_budget_reserve(NULL, "t", 1, 1, &d, &r) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_token_budget_reserve"));

  o = sluice_options_create();
  sluice_options_set(o, SLUICE_PARAM_RATE, 4);
  CHECK(sluice_leaky_bucket_create(o, clock, &lb) == SLUICE_OK);
  sluice_options_destroy(o);
  CHECK(sluice_leaky_bucket_acquire(lb, "p", 1, 1, &d) == SLUICE_OK && d.allowed && d.delay_nanos == 0);
  CHECK(sluice_leaky_bucket_try_acquire(lb, "p", 1, 1, &d) == SLUICE_OK && d.delay_nanos == 250 * MILLI);
  CHECK(sluice_leaky_bucket_acquire(NULL, "p", 1, 1, &d) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_leaky_bucket_acquire"));

  o = sluice_options_create();
  sluice_options_set(o, SLUICE_PARAM_MAX_IN_FLIGHT, 1);
  CHECK(sluice_concurrency_limiter_create(o, clock, &cl) == SLUICE_OK);
  sluice_options_destroy(o);
  CHECK(sluice_concurrency_limiter_acquire(cl, "a", 1, &d, &permit) == SLUICE_OK && permit != NULL);
  {
    sluice_permit* second = (sluice_permit*)&passed;
    CHECK(sluice_concurrency_limiter_try_acquire(cl, "a", 1, &d, &second) == SLUICE_OK);
    CHECK(second == NULL && !d.allowed); /* the old name took the one slot */
  }
  sluice_permit_destroy(permit);
  CHECK(sluice_concurrency_limiter_acquire(cl, "a", 1, &d, NULL) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_concurrency_limiter_acquire"));

  /* sluice_pick_complete reads the old classes: SLUICE_OUTCOME_RATE_LIMITED cools down. */
  o = sluice_options_create();
  CHECK(sluice_balancer_create(o, clock, &b) == SLUICE_OK);
  sluice_options_destroy(o);
  CHECK(sluice_balancer_add_endpoint(b, "a", 1, 1, 0, 0, NULL, 0) == SLUICE_OK);
  CHECK(sluice_balancer_pick_model(b, NULL, 0, NULL, 0, &p) == SLUICE_OK);
  CHECK(sluice_pick_complete(p, 0, SLUICE_OUTCOME_RATE_LIMITED, 0, 0) == SLUICE_OK);
  sluice_pick_destroy(p);
  CHECK(sluice_balancer_pick_model(b, NULL, 0, NULL, 0, &p) == SLUICE_UNAVAILABLE);
  CHECK(sluice_manual_clock_advance(clock, 60 * SECOND) == SLUICE_OK);
  CHECK(sluice_balancer_pick_model(b, NULL, 0, NULL, 0, &p) == SLUICE_OK);
  CHECK(sluice_pick_complete(p, 200, SLUICE_OUTCOME_ABANDONED + 1, 0, 0) == SLUICE_INVALID_ARGUMENT);
  CHECK(names("sluice_pick_complete") && strstr(sluice_last_error_message(), "sluice_outcome_error"));
  CHECK(sluice_pick_complete(p, 200, SLUICE_OUTCOME_NONE, 0, 0) == SLUICE_OK);
  sluice_pick_destroy(p);

  /* The Redis namespace's old names: CLUSTER_RULE is REDIS_NAME's number; the cache still reads
   * CACHE_REDIS_NAME, but not together with REDIS_NAME, and a limiter still refuses it. */
  CHECK(SLUICE_PARAM_CLUSTER_RULE == SLUICE_PARAM_REDIS_NAME && SLUICE_PARAM_REDIS_NAME == 600);
  CHECK(SLUICE_PARAM_CACHE_REDIS_NAME == 906);
  {
    sluice_options* ro = sluice_options_create();
    sluice_redis_store* store = NULL;
    sluice_rate_limiter* cluster = NULL;
    sluice_response_cache* cache = (sluice_response_cache*)&passed;
    sluice_options_set(ro, SLUICE_PARAM_REDIS_PORT, 1);
    CHECK(sluice_redis_store_create(ro, &store) == SLUICE_OK);
    sluice_options_destroy(ro);
    o = sluice_options_create();
    sluice_options_add_window(o, 10, SECOND, 0);
    sluice_options_set_redis_store(o, store);
    sluice_options_set(o, SLUICE_PARAM_CLUSTER_ON_FAILURE, SLUICE_FAILURE_DENY);
    CHECK(sluice_options_set_string(o, SLUICE_PARAM_CLUSTER_RULE, "old-rule", 8) == SLUICE_OK);
    CHECK(sluice_rate_limiter_create(o, NULL, &cluster) == SLUICE_OK);
    CHECK(sluice_rate_limiter_try_acquire(cluster, "k", 1, 1, &d) == SLUICE_OK && !d.allowed);
    sluice_rate_limiter_destroy(cluster);
    cluster = NULL;
    CHECK(sluice_options_set_string(o, SLUICE_PARAM_CACHE_REDIS_NAME, "c", 1) == SLUICE_OK);
    CHECK(sluice_rate_limiter_create(o, NULL, &cluster) == SLUICE_INVALID_ARGUMENT);
    CHECK(strstr(sluice_last_error_message(), "SLUICE_PARAM_CACHE_REDIS_NAME (906) does not apply"));
    sluice_options_destroy(o);
    o = sluice_options_create();
    sluice_options_set_redis_store(o, store);
    CHECK(sluice_options_set_string(o, SLUICE_PARAM_CACHE_REDIS_NAME, "bad name", 8) == SLUICE_OK);
    CHECK(sluice_response_cache_create(o, clock, &cache) == SLUICE_INVALID_ARGUMENT && cache == NULL);
    CHECK(strstr(sluice_last_error_message(), "redis_name") != NULL); /* it is read */
    CHECK(sluice_options_set_string(o, SLUICE_PARAM_CACHE_REDIS_NAME, "old-cache", 9) == SLUICE_OK);
    CHECK(sluice_response_cache_create(o, clock, &cache) == SLUICE_OK);
    sluice_response_cache_destroy(cache);
    cache = NULL;
    CHECK(sluice_options_set_string(o, SLUICE_PARAM_REDIS_NAME, "new-cache", 9) == SLUICE_OK);
    CHECK(sluice_response_cache_create(o, clock, &cache) == SLUICE_INVALID_ARGUMENT);
    CHECK(strstr(sluice_last_error_message(), "deprecated alias of SLUICE_PARAM_REDIS_NAME"));
    CHECK(sluice_options_set_string(o, SLUICE_PARAM_CACHE_REDIS_NAME, NULL, 0) == SLUICE_OK);
    CHECK(sluice_response_cache_create(o, clock, &cache) == SLUICE_OK); /* the new name alone */
    sluice_response_cache_destroy(cache);
    sluice_options_destroy(o);
    sluice_redis_store_destroy(store);
  }
  sluice_rate_limiter_destroy(rl);
  sluice_token_budget_destroy(tb);
  sluice_leaky_bucket_destroy(lb);
  sluice_concurrency_limiter_destroy(cl);
  sluice_balancer_destroy(b);
  sluice_clock_destroy(clock);
}
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

/* Exact sliding windows: SLUICE_PARAM_WINDOW_KIND makes every window added a sliding one. */
static void test_sliding_window(void) {
  sluice_clock* clock = NULL;
  sluice_options* o = sluice_options_create();
  sluice_rate_limiter* rl = NULL;
  sluice_token_budget* tb = NULL;
  sluice_decision d;
  char name[64];
  int i;
  CHECK(sluice_manual_clock_create(0, &clock) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_WINDOW_KIND, SLUICE_WINDOW_SLIDING) == SLUICE_OK);
  CHECK(sluice_options_add_window(o, 3, 10 * SECOND, 0) == SLUICE_OK);
  CHECK(sluice_rate_limiter_create(o, clock, &rl) == SLUICE_OK);
  for (i = 0; i < 3; ++i) {
    CHECK(sluice_rate_limiter_try_acquire(rl, "login", 5, 1, &d) == SLUICE_OK && d.allowed);
    CHECK(sluice_manual_clock_advance(clock, SECOND) == SLUICE_OK);
  }
  /* t = 3 s: full until the admission at 0 leaves, at 10 s (GCRA would refill one at 3.3 s). */
  CHECK(sluice_rate_limiter_try_acquire(rl, "login", 5, 1, &d) == SLUICE_OK);
  CHECK(d.allowed == 0);
  CHECK(d.retry_after_nanos == 7 * SECOND);
  CHECK(d.remaining == 0 && d.limit == 3 && d.window_nanos == 10 * SECOND);
  CHECK(sluice_rate_limiter_try_acquire_at(rl, "login", 5, 1, 10 * SECOND - 1, &d) == SLUICE_OK);
  CHECK(d.allowed == 0);
  CHECK(sluice_rate_limiter_try_acquire_at(rl, "login", 5, 1, 10 * SECOND, &d) == SLUICE_OK);
  CHECK(d.allowed == 1);
  CHECK(sluice_rate_limiter_try_acquire(rl, "login", 5, 4, &d) == SLUICE_INVALID_ARGUMENT);
  sluice_rate_limiter_destroy(rl);

  /* Host scope: one limit for every handle that opens the region. */
  snprintf(name, sizeof(name), "capi-sliding-%ld", (long)sluice_clock_now_nanos(NULL));
  CHECK(sluice_options_set_string(o, SLUICE_PARAM_SHARED_REGION, name, strlen(name)) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_MAX_KEYS, 64) == SLUICE_OK);
  CHECK(sluice_rate_limiter_create(o, clock, &rl) == SLUICE_OK);
  for (i = 0; i < 5; ++i) sluice_rate_limiter_try_acquire(rl, "k", 1, 1, &d);
  CHECK(d.allowed == 0 && d.remaining == 0);
  sluice_rate_limiter_destroy(rl);
  CHECK(sluice_shared_region_remove(name, strlen(name)) == SLUICE_OK);
  CHECK(sluice_options_set_string(o, SLUICE_PARAM_SHARED_REGION, NULL, 0) == SLUICE_OK);

  /* Hostile values: each is refused at create, naming the field. */
  {
    const int64_t limits[] = {0, -1, INT64_MIN, INT64_MAX, SLUICE_MAX_SLIDING_LIMIT + 1};
    const int64_t periods[] = {0, -SECOND, INT64_MIN, INT64_MAX};
    sluice_options* bad;
    for (i = 0; i < 5; ++i) {
      bad = sluice_options_create();
      sluice_options_set(bad, SLUICE_PARAM_WINDOW_KIND, SLUICE_WINDOW_SLIDING);
      sluice_options_add_window(bad, limits[i], SECOND, 0);
      CHECK(sluice_rate_limiter_create(bad, clock, &rl) == SLUICE_INVALID_ARGUMENT && rl == NULL);
      CHECK(strstr(sluice_last_error_message(), "windows[0].limit") != NULL);
      sluice_options_destroy(bad);
    }
    for (i = 0; i < 4; ++i) {
      bad = sluice_options_create();
      sluice_options_set(bad, SLUICE_PARAM_WINDOW_KIND, SLUICE_WINDOW_SLIDING);
      sluice_options_add_window(bad, 5, periods[i], 0);
      CHECK(sluice_rate_limiter_create(bad, clock, &rl) == SLUICE_INVALID_ARGUMENT && rl == NULL);
      CHECK(strstr(sluice_last_error_message(), "windows[0].period") != NULL);
      sluice_options_destroy(bad);
    }
    bad = sluice_options_create();
    sluice_options_set(bad, SLUICE_PARAM_WINDOW_KIND, SLUICE_WINDOW_SLIDING);
    sluice_options_add_window(bad, 5, SECOND, 2);
    CHECK(sluice_rate_limiter_create(bad, clock, &rl) == SLUICE_INVALID_ARGUMENT);
    CHECK(strstr(sluice_last_error_message(), "windows[0].burst") != NULL);
    sluice_options_set(bad, SLUICE_PARAM_WINDOW_KIND, 2);
    CHECK(sluice_rate_limiter_create(bad, clock, &rl) == SLUICE_INVALID_ARGUMENT);
    CHECK(strstr(sluice_last_error_message(), "SLUICE_PARAM_WINDOW_KIND must be a sluice_window_kind") != NULL);
    sluice_options_set(bad, SLUICE_PARAM_WINDOW_KIND, -1);
    CHECK(sluice_rate_limiter_create(bad, clock, &rl) == SLUICE_INVALID_ARGUMENT);
    sluice_options_destroy(bad);
  }
  /* A token budget's windows count tokens: too many for a log. A leaky bucket has no windows. */
  CHECK(sluice_token_budget_create(o, clock, &tb) == SLUICE_INVALID_ARGUMENT && tb == NULL);
  CHECK(strstr(sluice_last_error_message(), "windows[0].kind") != NULL);
  sluice_options_destroy(o);
  o = sluice_options_create();
  sluice_options_set(o, SLUICE_PARAM_WINDOW_KIND, SLUICE_WINDOW_SLIDING);
  sluice_options_set(o, SLUICE_PARAM_RATE, 10);
  {
    sluice_leaky_bucket* lb = NULL;
    CHECK(sluice_leaky_bucket_create(o, clock, &lb) == SLUICE_INVALID_ARGUMENT && lb == NULL);
    CHECK(strstr(sluice_last_error_message(), "SLUICE_PARAM_WINDOW_KIND") != NULL);
  }
  sluice_options_destroy(o);
  sluice_clock_destroy(clock);
}

int main(void) {
  test_version_and_status_names();
  test_destroy_accepts_null();
  test_rate_limiter();
  test_sliding_window();
  test_bad_options();
  test_leaky_bucket();
  test_concurrency_limiter();
  test_token_budget();
  test_shared_region();
  test_cluster_scope_failure_modes();
  test_redis_url_and_topologies();
  test_cluster_scope_other_objects();
  test_balancer();
  test_balancer_administration();
  test_balancer_cluster_holds();
  test_fallback_policy();
  test_response_cache();
  test_allow();
  test_redis_name();
  test_create_prologue();
  test_messages_name_the_function();
  test_pick_complete_failure();
  test_deprecated_names();
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
