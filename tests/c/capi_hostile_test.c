/* The hostile-input suite of the C ABI (issue 13): every function of sluice/c.h, called
 * with every argument the header allows -- NULL handles and out-pointers, (NULL, 0) strings,
 * lengths past SLUICE_MAX_KEY_LEN, INT64_MIN/INT64_MAX for every int64 parameter and option,
 * unknown enum values, a manual clock at extreme times -- and then *used*, so that an accepted
 * value that overflows later shows up too.
 *
 * The contract each case checks: every call returns SLUICE_OK or one of the pinned codes (never
 * SLUICE_INTERNAL, "a bug in sluice", nor an unknown code), decisions never carry a negative
 * duration, and nothing crashes, hangs or is undefined behaviour (the asan preset builds this
 * with -fno-sanitize-recover=all, so UB kills the case).
 *
 * Each case runs in its own fork()ed child, under alarm(): a crash, a sanitizer report or a hang
 * fails exactly that case, by name. `capi_hostile_test NAME` runs only the cases whose name
 * contains NAME (to reproduce one). The suite reads c.h (SLUICE_HEADER_PATH) and fails if a
 * public function has no hostile case, or if the library refuses one of its SLUICE_PARAM_
 * enumerators (the parameter table, capi/params.def, must hold each). Cluster cases run against
 * a redis-server it starts on a free loopback port.
 *
 * Deprecated functions and parameters keep their cases (section "deprecated names"), where
 * their warnings are silenced; the build turns any other use into an error
 * (-Werror=deprecated-declarations).
 *
 * Cases never break a REQUIRES of the header (destroying a limiter before its permits, or a
 * clock before its objects): that is the caller's bug, not hostile input. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The old header name on purpose: it forwards to sluice/c.h and must declare all of it. */
#include "sluice/sluice.h"

#ifndef SLUICE_HEADER_PATH
#error "SLUICE_HEADER_PATH must name include/sluice/c.h"
#endif

#define SECOND 1000000000LL
#define MILLI 1000000LL
#define CASE_SECONDS 60 /* a case makes a few hundred calls; more than a minute is a hang */
#define MAX_REGION_BYTES (256LL << 20)

/* ---- checks (inside a case's child) ---------------------------------------------------------- */

static int case_failed = 0;

#define EXPECT(cond, ...)                                                  \
  do {                                                                     \
    if (!(cond)) {                                                         \
      case_failed = 1;                                                     \
      fprintf(stderr, "    %s:%d: expected %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                        \
      fputc('\n', stderr);                                                 \
    }                                                                      \
  } while (0)

/* SLUICE_OK or a pinned code that means a refusal; SLUICE_INTERNAL means a bug in sluice. */
static int documented(int rc) {
  return rc >= SLUICE_OK && rc <= SLUICE_PERMISSION_DENIED && rc != SLUICE_INTERNAL;
}

#define DOC(call)                                                                             \
  do {                                                                                        \
    int rc_ = (call);                                                                         \
    EXPECT(documented(rc_), "%s returned %d (%s): %s", #call, rc_, sluice_status_name(rc_), \
           sluice_last_error_message());                                                      \
  } while (0)

#define RC(call, want)                                                                        \
  do {                                                                                        \
    int rc_ = (call);                                                                         \
    EXPECT(rc_ == (want), "%s returned %s, want %s: %s", #call, sluice_status_name(rc_),     \
           sluice_status_name(want), sluice_last_error_message());                            \
  } while (0)

static void sane(const sluice_decision* d, const char* what) {
  EXPECT(d->allowed == 0 || d->allowed == 1, "%s: allowed is %d", what, d->allowed);
  EXPECT(d->retry_after_nanos >= 0, "%s: retry_after_nanos %lld < 0", what,
         (long long)d->retry_after_nanos);
  EXPECT(d->reset_after_nanos >= 0, "%s: reset_after_nanos %lld < 0", what,
         (long long)d->reset_after_nanos);
  EXPECT(d->delay_nanos >= 0, "%s: delay_nanos %lld < 0", what, (long long)d->delay_nanos);
  EXPECT(d->window_nanos >= 0, "%s: window_nanos %lld < 0", what, (long long)d->window_nanos);
}

/* ---- hostile values ---------------------------------------------------------------------------- */

typedef struct {
  const char* label;
  int64_t value;
} hv;

static const hv I64[] = {
    {"INT64_MIN", INT64_MIN}, {"INT64_MIN+1", INT64_MIN + 1}, {"-1s", -SECOND},
    {"-1", -1},               {"0", 0},                       {"1", 1},
    {"1s", SECOND},           {"2^31", 1LL << 31},            {"2^32+1", (1LL << 32) + 1},
    {"2^62", 1LL << 62},      {"INT64_MAX-1", INT64_MAX - 1}, {"INT64_MAX", INT64_MAX},
};
#define N_I64 (sizeof(I64) / sizeof(I64[0]))

static const hv INTS[] = {
    {"INT_MIN", INT_MIN}, {"-1", -1}, {"0", 0}, {"1", 1}, {"200", 200}, {"429", 429},
    {"599", 599}, {"1000", 1000}, {"INT_MAX", INT_MAX},
};
#define N_INTS (sizeof(INTS) / sizeof(INTS[0]))

static const hv SIZES[] = {
    {"0", 0}, {"1", 1}, {"2", 2}, {"1000", 1000}, {"SIZE_MAX/2", (int64_t)(SIZE_MAX / 2)},
    {"SIZE_MAX", -1 /* cast to size_t */},
};
#define N_SIZES (sizeof(SIZES) / sizeof(SIZES[0]))

/* A (ptr, len) string the header allows. */
typedef struct {
  const char* label;
  const char* ptr;
  size_t len;
} hs;

static char* big_buffer; /* 1 MiB + 1 of 'k': SLUICE_MAX_KEY_LEN + 1 fits in it */
#define BIG_LEN ((size_t)1 << 20)

static hs strings[16];
static size_t n_strings;

static void init_strings(void) {
  big_buffer = malloc(BIG_LEN + 1);
  memset(big_buffer, 'k', BIG_LEN);
  big_buffer[BIG_LEN] = 0;
  strings[n_strings++] = (hs){"NULL,0", NULL, 0};
  strings[n_strings++] = (hs){"empty", "", 0};
  strings[n_strings++] = (hs){"nul", "a\0b", 3};
  strings[n_strings++] = (hs){"non_utf8", "\xff\xfe", 2};
  strings[n_strings++] = (hs){"slash", "../x/y", 6};
  strings[n_strings++] = (hs){"max_key_len", big_buffer, SLUICE_MAX_KEY_LEN};
  strings[n_strings++] = (hs){"max_key_len+1", big_buffer, SLUICE_MAX_KEY_LEN + 1};
  strings[n_strings++] = (hs){"1MiB", big_buffer, BIG_LEN};
}

/* JSON bodies for the parsers (cache keys, balancer picks). */
static const char* const BODIES[] = {
    "",
    "\xff\xfe",
    "null",
    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}",
    "{\"model\":\"\\ud800\",\"messages\":[{\"role\":\"user\",\"content\":\"\\udfff\"}]}",
    "{\"model\":\"a\\u0000b\",\"messages\":[]}",
    "{\"model\":5,\"messages\":{\"role\":1},\"stream\":\"x\"}",
    "{\"model\":\"m\",\"messages\":[],\"n\":1e999999,\"k\":-0,\"big\":123456789012345678901234567890}",
    "{\"a\":1,\"a\":2}",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
};
#define N_BODIES (sizeof(BODIES) / sizeof(BODIES[0]))

/* ---- the runner --------------------------------------------------------------------------------- */

typedef void (*case_fn)(int64_t value, const void* data);

typedef struct {
  char name[200];
  case_fn fn;
  int64_t value;
  const void* data;
  int needs_redis;
} hcase;

static hcase* cases;
static size_t n_cases, cap_cases;

static void add_case(const char* name, case_fn fn, int64_t value, const void* data, int needs_redis) {
  if (n_cases == cap_cases) {
    cap_cases = cap_cases ? cap_cases * 2 : 1024;
    cases = realloc(cases, cap_cases * sizeof(hcase));
  }
  hcase* c = &cases[n_cases++];
  snprintf(c->name, sizeof(c->name), "%s", name);
  c->fn = fn;
  c->value = value;
  c->data = data;
  c->needs_redis = needs_redis;
}

static void add_sweep(const char* name, case_fn fn, const hv* values, size_t n, const void* data,
                      int needs_redis) {
  size_t i;
  char full[200];
  for (i = 0; i < n; ++i) {
    snprintf(full, sizeof(full), "%s[%s]", name, values[i].label);
    add_case(full, fn, values[i].value, data, needs_redis);
  }
}

/* The functions the cases call, for the completeness check against the header. */
static const char* covered[512];
static size_t n_covered;

static void covers(const char* names) {
  const char* p = names;
  while (*p) {
    while (*p == ' ') ++p;
    if (!*p) break;
    const char* end = strchr(p, ' ');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    char* name = malloc(len + 1);
    memcpy(name, p, len);
    name[len] = 0;
    if (n_covered < sizeof(covered) / sizeof(covered[0])) covered[n_covered++] = name;
    p += len;
  }
}

static int is_covered(const char* name) {
  size_t i;
  for (i = 0; i < n_covered; ++i) {
    if (strcmp(covered[i], name) == 0) return 1;
  }
  return 0;
}

/* ---- resources: regions, Redis ------------------------------------------------------------------ */

static int redis_port = 0;
static pid_t redis_pid = -1;
static int region_counter = 0;

static void region_name(char* out, size_t size) {
  snprintf(out, size, "capi-hostile-%ld-%d", (long)getpid(), ++region_counter);
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr*)&a, sizeof(a)) != 0 ||
      getsockname(fd, (struct sockaddr*)&a, &len) != 0) {
    if (fd >= 0) close(fd);
    return 0;
  }
  close(fd);
  return ntohs(a.sin_port);
}

static int redis_answers(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  char reply[16] = {0};
  int ok = 0;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && connect(fd, (struct sockaddr*)&a, sizeof(a)) == 0 &&
      write(fd, "PING\r\n", 6) == 6 && read(fd, reply, 5) == 5) {
    ok = memcmp(reply, "+PONG", 5) == 0;
  }
  if (fd >= 0) close(fd);
  return ok;
}

/* Starts redis-server on a free loopback port; the kernel stops it if this process dies. */
static int start_redis(void) {
  int attempt;
  for (attempt = 0; attempt < 50 && redis_port == 0; ++attempt) {
    int port = free_port();
    char port_text[16];
    pid_t pid;
    int i;
    snprintf(port_text, sizeof(port_text), "%d", port);
    pid = fork();
    if (pid == 0) {
      int null_fd = open("/dev/null", O_WRONLY);
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      dup2(null_fd, 1);
      dup2(null_fd, 2);
      execlp("redis-server", "redis-server", "--port", port_text, "--bind", "127.0.0.1", "--save",
             "", "--appendonly", "no", "--loglevel", "warning", (char*)NULL);
      _exit(127);
    }
    for (i = 0; i < 400; ++i) {
      struct timespec pause = {0, 25 * MILLI};
      if (redis_answers(port)) {
        redis_port = port;
        redis_pid = pid;
        return 1;
      }
      if (waitpid(pid, NULL, WNOHANG) == pid) break; /* it died: the port was taken, or no binary */
      nanosleep(&pause, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  return 0;
}

static sluice_redis_store* live_store(void) {
  sluice_options* o = sluice_options_create();
  sluice_redis_store* store = NULL;
  sluice_options_set(o, SLUICE_PARAM_REDIS_PORT, redis_port);
  sluice_options_set(o, SLUICE_PARAM_REDIS_COMMAND_TIMEOUT_NANOS, 500 * MILLI);
  RC(sluice_redis_store_create(o, &store), SLUICE_OK);
  sluice_options_destroy(o);
  return store;
}

static sluice_redis_store* dead_store(void) {
  sluice_options* o = sluice_options_create();
  sluice_redis_store* store = NULL;
  sluice_options_set(o, SLUICE_PARAM_REDIS_PORT, 1); /* nothing listens */
  sluice_options_set(o, SLUICE_PARAM_REDIS_CONNECT_TIMEOUT_NANOS, 20 * MILLI);
  RC(sluice_redis_store_create(o, &store), SLUICE_OK);
  sluice_options_destroy(o);
  return store;
}

static void rule_name(char* out, size_t size) {
  snprintf(out, size, "capi-hostile-%ld-%d", (long)getpid(), ++region_counter);
}

/* ---- objects, made and used ---------------------------------------------------------------------- */

typedef enum {
  OBJ_RATE_LIMITER,
  OBJ_LEAKY_BUCKET,
  OBJ_CONCURRENCY,
  OBJ_TOKEN_BUDGET,
  OBJ_BALANCER,
  OBJ_FALLBACK,
  OBJ_CACHE,
  OBJ_REDIS_STORE,
  OBJ_COUNT
} obj_kind;

static const char* const OBJ_NAMES[] = {"rate_limiter", "leaky_bucket", "concurrency_limiter",
                                        "token_budget", "balancer",     "fallback_policy",
                                        "response_cache", "redis_store"};

enum { SCOPE_PROCESS = 1, SCOPE_HOST = 2, SCOPE_CLUSTER = 4, SCOPE_DEAD = 8 };

static const char* const BODY =
    "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"You are a terse assistant, "
    "long enough to fill more than one prefix block of the balancer.\"},"
    "{\"role\":\"user\",\"content\":\"hello\"}]}";

/* The options an object needs to exist, before the hostile one is set over them. */
static void base_options(obj_kind kind, sluice_options* o) {
  /* Cluster scope's default failure mode (LOCAL) needs the processes' share; a case of the
   * parameter itself overrides it. */
  if (kind == OBJ_RATE_LIMITER || kind == OBJ_LEAKY_BUCKET || kind == OBJ_CONCURRENCY ||
      kind == OBJ_TOKEN_BUDGET) {
    sluice_options_set(o, SLUICE_PARAM_CLUSTER_LOCAL_SHARE, 1);
  }
  switch (kind) {
    case OBJ_RATE_LIMITER: sluice_options_add_window(o, 10, SECOND, 0); break;
    case OBJ_LEAKY_BUCKET: sluice_options_set(o, SLUICE_PARAM_RATE, 100); break;
    case OBJ_CONCURRENCY: sluice_options_set(o, SLUICE_PARAM_MAX_IN_FLIGHT, 2); break;
    case OBJ_TOKEN_BUDGET: sluice_options_add_window(o, 1000, 60 * SECOND, 0); break;
    case OBJ_REDIS_STORE:
      sluice_options_set(o, SLUICE_PARAM_REDIS_PORT, redis_port ? redis_port : 1);
      sluice_options_set(o, SLUICE_PARAM_REDIS_CONNECT_TIMEOUT_NANOS, 200 * MILLI);
      sluice_options_set(o, SLUICE_PARAM_REDIS_COMMAND_TIMEOUT_NANOS, 500 * MILLI);
      break;
    default: break;
  }
}

/* The use_* functions exercise an object with ordinary arguments, so that a failure names the
 * hostile option or argument of its case (the extreme arguments have sweeps of their own). */
static const sluice_decision* checked(int rc, const sluice_decision* d, const char* what) {
  EXPECT(documented(rc), "%s returned %s: %s", what, sluice_status_name(rc), sluice_last_error_message());
  if (rc == SLUICE_OK) sane(d, what);
  return d;
}

static void use_rate_limiter(sluice_rate_limiter* rl, sluice_clock* clock) {
  sluice_decision d;
  int i;
  for (i = 0; i < 4; ++i) checked(sluice_rate_limiter_try_acquire(rl, "k", 1, 1, &d), &d, "acquire");
  checked(sluice_rate_limiter_try_acquire(rl, "k", 1, 3, &d), &d, "acquire cost 3");
  for (i = 0; i < 20; ++i) { /* more keys than a tiny max_keys */
    char key[16];
    snprintf(key, sizeof(key), "key-%d", i);
    checked(sluice_rate_limiter_try_acquire(rl, key, strlen(key), 1, &d), &d, "acquire many keys");
  }
  checked(sluice_rate_limiter_try_acquire_at(rl, "k", 1, 1, 0, &d), &d, "acquire_at 0");
  if (clock != NULL) {
    DOC(sluice_manual_clock_advance(clock, SECOND));
    checked(sluice_rate_limiter_try_acquire(rl, "k", 1, 1, &d), &d, "acquire after advance");
  }
}

static void use_leaky_bucket(sluice_leaky_bucket* b) {
  sluice_decision d;
  int i;
  for (i = 0; i < 4; ++i) checked(sluice_leaky_bucket_try_acquire(b, "k", 1, 1, &d), &d, "acquire");
  checked(sluice_leaky_bucket_try_acquire(b, "k", 1, 2, &d), &d, "acquire cost 2");
  for (i = 0; i < 20; ++i) {
    char key[16];
    snprintf(key, sizeof(key), "key-%d", i);
    checked(sluice_leaky_bucket_try_acquire(b, key, strlen(key), 1, &d), &d, "acquire many keys");
  }
}

static void use_concurrency(sluice_concurrency_limiter* cl, sluice_clock* clock) {
  sluice_decision d;
  sluice_permit* permits[4] = {NULL, NULL, NULL, NULL};
  int i;
  for (i = 0; i < 4; ++i) {
    checked(sluice_concurrency_limiter_try_acquire(cl, "k", 1, &d, &permits[i]), &d, "acquire");
  }
  EXPECT(sluice_concurrency_limiter_in_flight(cl, "k", 1) >= -1, "in_flight below -1");
  for (i = 0; i < 4; ++i) {
    if (permits[i] == NULL) continue;
    DOC(sluice_permit_renew(permits[i], 0));
    DOC(sluice_permit_renew(permits[i], SECOND));
  }
  if (clock != NULL) DOC(sluice_manual_clock_advance(clock, 3600 * SECOND));
  for (i = 0; i < 4; ++i) {
    if (permits[i] == NULL) continue;
    DOC(sluice_permit_release(permits[i]));
    sluice_permit_destroy(permits[i]);
  }
  for (i = 0; i < 20; ++i) {
    char key[16];
    sluice_permit* p = NULL;
    snprintf(key, sizeof(key), "key-%d", i);
    checked(sluice_concurrency_limiter_try_acquire(cl, key, strlen(key), &d, &p), &d, "acquire many");
    sluice_permit_destroy(p);
  }
}

static void use_token_budget(sluice_token_budget* b, sluice_clock* clock) {
  sluice_decision d;
  sluice_reservation* r = NULL;
  checked(sluice_token_budget_try_reserve(b, "k", 1, 10, &d, &r), &d, "reserve");
  if (r != NULL) {
    DOC(sluice_reservation_settle(r, 20, &d));
    sluice_reservation_destroy(r);
  }
  checked(sluice_token_budget_charge(b, "k", 1, 5, &d), &d, "charge");
  checked(sluice_token_budget_charge(b, "k", 1, 5000, &d), &d, "charge into debt");
  r = NULL;
  checked(sluice_token_budget_try_reserve(b, "k", 1, 1, &d, &r), &d, "reserve in debt");
  sluice_reservation_destroy(r);
  if (clock != NULL) {
    DOC(sluice_manual_clock_advance(clock, 60 * SECOND));
    checked(sluice_token_budget_charge(b, "k", 1, 0, &d), &d, "peek after advance");
  }
}

static void use_balancer(sluice_balancer* b, sluice_clock* clock) {
  sluice_pick* p = NULL;
  int i;
  DOC(sluice_balancer_add_endpoint(b, "a", 1, 1, 0, 0, "m", 1));
  DOC(sluice_balancer_add_endpoint(b, "b", 1, 3, 2, 0, NULL, 0));
  DOC(sluice_balancer_update_metrics(b, "b", 1, "vllm:num_requests_waiting 3\n", 28));
  for (i = 0; i < 6; ++i) {
    p = NULL;
    DOC(sluice_balancer_pick(b, BODY, strlen(BODY), "user-1", 6, &p));
    if (p != NULL) {
      DOC(sluice_pick_complete_failure(p, i % 2 ? 429 : 200, SLUICE_FAIL_NONE, MILLI, 2 * MILLI));
      sluice_pick_destroy(p);
    }
    p = NULL;
    DOC(sluice_balancer_pick_model(b, "", 0, NULL, 0, &p));
    if (p != NULL) {
      DOC(sluice_pick_complete_failure(p, 0, SLUICE_FAIL_TIMEOUT, 0, SECOND));
      sluice_pick_destroy(p);
    }
  }
  if (clock != NULL) DOC(sluice_manual_clock_advance(clock, 61 * SECOND));
  p = NULL;
  DOC(sluice_balancer_pick_model(b, "m", 1, NULL, 0, &p));
  sluice_pick_destroy(p);
  EXPECT(sluice_balancer_in_flight(b, "a", 1) >= -1, "in_flight");
}

static void use_fallback(sluice_fallback_policy* policy, sluice_clock* clock) {
  int round;
  for (round = 0; round < 3; ++round) {
    sluice_fallback_call* call = NULL;
    sluice_fallback_step step;
    int rc = sluice_fallback_policy_begin(policy, 0, &call, &step);
    int guard = 0;
    EXPECT(documented(rc), "begin returned %s", sluice_status_name(rc));
    if (call == NULL) continue;
    while (step.kind == SLUICE_STEP_ATTEMPT && guard++ < 50) {
      EXPECT(step.delay_nanos >= 0, "step.delay_nanos %lld < 0", (long long)step.delay_nanos);
      EXPECT(step.timeout_nanos >= -1, "step.timeout_nanos %lld", (long long)step.timeout_nanos);
      EXPECT(step.retry_after_nanos >= 0, "step.retry_after_nanos %lld", (long long)step.retry_after_nanos);
      if (clock != NULL && step.delay_nanos > 0 && step.delay_nanos < 3600 * SECOND) {
        DOC(sluice_manual_clock_advance(clock, step.delay_nanos));
      }
      DOC(sluice_fallback_call_next(call, round == 2 ? 200 : 503, SLUICE_TRANSPORT_NONE, NULL, 0,
                                    round == 1 ? 2 * SECOND : 0, MILLI, &step));
    }
    EXPECT(sluice_fallback_policy_breaker_state(policy, 0) >= -1, "breaker_state");
    sluice_fallback_call_destroy(call);
  }
}

static void use_cache(sluice_response_cache* cache, sluice_clock* clock) {
  const char* req = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
  sluice_cache_key* key = NULL;
  sluice_cached_answer* answer = NULL;
  sluice_fetch* lead = NULL;
  sluice_cache_stats stats;
  uint8_t stored = 0;
  RC(sluice_cache_key_create(req, strlen(req), "ns", 2, &key), SLUICE_OK);
  if (key == NULL) return;
  DOC(sluice_response_cache_put(cache, key, "answer", 6, NULL, NULL, 0, 0, &stored));
  DOC(sluice_response_cache_put(cache, key, "answer", 6, NULL, NULL, 0, 3600 * SECOND, &stored));
  DOC(sluice_response_cache_get(cache, key, &answer));
  sluice_cached_answer_destroy(answer);
  if (clock != NULL) DOC(sluice_manual_clock_advance(clock, 3600 * SECOND));
  answer = NULL;
  DOC(sluice_response_cache_get(cache, key, &answer));
  sluice_cached_answer_destroy(answer);
  DOC(sluice_response_cache_erase(cache, key));
  DOC(sluice_response_cache_fetch(cache, key, &lead));
  if (lead != NULL && sluice_fetch_kind_of(lead) == SLUICE_FETCH_LEAD) {
    DOC(sluice_fetch_append(lead, "data: x\n\n", 9));
    DOC(sluice_fetch_complete_stream(lead, SECOND, 1, &stored));
  }
  sluice_fetch_destroy(lead);
  DOC(sluice_response_cache_stats(cache, &stats));
  EXPECT(stats.bytes >= 0 && stats.entries >= 0, "stats bytes %lld entries %lld", (long long)stats.bytes,
         (long long)stats.entries);
  sluice_cache_key_destroy(key);
}

static void use_store(sluice_redis_store* store) {
  sluice_options* o = sluice_options_create();
  sluice_rate_limiter* rl = NULL;
  char rule[64];
  rule_name(rule, sizeof(rule));
  sluice_options_add_window(o, 10, 60 * SECOND, 0);
  sluice_options_set_redis_store(o, store);
  sluice_options_set_string(o, SLUICE_PARAM_REDIS_NAME, rule, strlen(rule));
  sluice_options_set(o, SLUICE_PARAM_CLUSTER_ON_FAILURE, SLUICE_FAILURE_DENY);
  RC(sluice_rate_limiter_create(o, NULL, &rl), SLUICE_OK);
  if (rl != NULL) {
    sluice_decision d;
    int i;
    for (i = 0; i < 3; ++i) checked(sluice_rate_limiter_try_acquire(rl, "k", 1, 1, &d), &d, "cluster acquire");
    sluice_rate_limiter_destroy(rl);
  }
  sluice_options_destroy(o);
}

/* Creates an object of `kind` from `o` (scope options added), checks the status, and uses it. */
static void make_and_use(obj_kind kind, sluice_options* o, sluice_clock* clock, int scope) {
  char region[64];
  int rc = SLUICE_OK;
  region[0] = 0;
  if (kind == OBJ_REDIS_STORE) {
    if (scope == SCOPE_DEAD) sluice_options_set(o, SLUICE_PARAM_REDIS_PORT, 1); /* nothing listens */
  } else if (scope == SCOPE_HOST) {
    region_name(region, sizeof(region));
    sluice_options_set_string(o, SLUICE_PARAM_SHARED_REGION, region, strlen(region));
  } else if (scope == SCOPE_CLUSTER || scope == SCOPE_DEAD) {
    char rule[64];
    sluice_redis_store* store = scope == SCOPE_CLUSTER ? live_store() : dead_store();
    rule_name(rule, sizeof(rule));
    sluice_options_set_redis_store(o, store);
    sluice_redis_store_destroy(store); /* the options hold it */
    sluice_options_set_string(o, SLUICE_PARAM_REDIS_NAME, rule, strlen(rule)); /* any object */
  }
  /* Each create starts from a non-NULL *out: a failed create must leave NULL (c.h, rule 7). */
  switch (kind) {
    case OBJ_RATE_LIMITER: {
      sluice_rate_limiter* x = (sluice_rate_limiter*)&rc;
      rc = sluice_rate_limiter_create(o, clock, &x);
      if (rc == SLUICE_OK) use_rate_limiter(x, clock);
      else EXPECT(x == NULL, "a failed create left *out set");
      sluice_rate_limiter_destroy(rc == SLUICE_OK ? x : NULL);
      break;
    }
    case OBJ_LEAKY_BUCKET: {
      sluice_leaky_bucket* x = (sluice_leaky_bucket*)&rc;
      rc = sluice_leaky_bucket_create(o, clock, &x);
      if (rc == SLUICE_OK) use_leaky_bucket(x);
      else EXPECT(x == NULL, "a failed create left *out set");
      sluice_leaky_bucket_destroy(rc == SLUICE_OK ? x : NULL);
      break;
    }
    case OBJ_CONCURRENCY: {
      sluice_concurrency_limiter* x = (sluice_concurrency_limiter*)&rc;
      rc = sluice_concurrency_limiter_create(o, clock, &x);
      if (rc == SLUICE_OK) use_concurrency(x, clock);
      else EXPECT(x == NULL, "a failed create left *out set");
      sluice_concurrency_limiter_destroy(rc == SLUICE_OK ? x : NULL);
      break;
    }
    case OBJ_TOKEN_BUDGET: {
      sluice_token_budget* x = (sluice_token_budget*)&rc;
      rc = sluice_token_budget_create(o, clock, &x);
      if (rc == SLUICE_OK) use_token_budget(x, clock);
      else EXPECT(x == NULL, "a failed create left *out set");
      sluice_token_budget_destroy(rc == SLUICE_OK ? x : NULL);
      break;
    }
    case OBJ_BALANCER: {
      sluice_balancer* x = (sluice_balancer*)&rc;
      rc = sluice_balancer_create(o, clock, &x);
      if (rc == SLUICE_OK) use_balancer(x, clock);
      else EXPECT(x == NULL, "a failed create left *out set");
      sluice_balancer_destroy(rc == SLUICE_OK ? x : NULL);
      break;
    }
    case OBJ_FALLBACK: {
      sluice_fallback_policy* x = (sluice_fallback_policy*)&rc;
      sluice_fallback_target targets[2] = {{"a", 1, "m", 1, NULL}, {"b", 1, NULL, 0, NULL}};
      rc = sluice_fallback_policy_create(o, targets, 2, clock, &x);
      if (rc == SLUICE_OK) use_fallback(x, clock);
      else EXPECT(x == NULL, "a failed create left *out set");
      sluice_fallback_policy_destroy(rc == SLUICE_OK ? x : NULL);
      break;
    }
    case OBJ_CACHE: {
      sluice_response_cache* x = (sluice_response_cache*)&rc;
      rc = sluice_response_cache_create(o, clock, &x);
      if (rc == SLUICE_OK) use_cache(x, clock);
      else EXPECT(x == NULL, "a failed create left *out set");
      sluice_response_cache_destroy(rc == SLUICE_OK ? x : NULL);
      break;
    }
    case OBJ_REDIS_STORE: {
      sluice_redis_store* x = (sluice_redis_store*)&rc;
      rc = sluice_redis_store_create(o, &x);
      if (rc == SLUICE_OK) use_store(x);
      else EXPECT(x == NULL, "a failed create left *out set");
      sluice_redis_store_destroy(rc == SLUICE_OK ? x : NULL);
      break;
    }
    default: break;
  }
  EXPECT(documented(rc), "creating a %s returned %s: %s", OBJ_NAMES[kind], sluice_status_name(rc),
         sluice_last_error_message());
  if (region[0]) sluice_shared_region_remove(region, strlen(region));
}

/* ---- option sweeps: every parameter, every extreme, every scope ---------------------------------- */

typedef struct {
  int param;
  const char* name;
  obj_kind kind;
  int scopes;
} param_case;

#define P(param, kind, scopes) {param, #param, kind, scopes}
#define PH (SCOPE_PROCESS | SCOPE_HOST)
#define PHC (SCOPE_PROCESS | SCOPE_HOST | SCOPE_CLUSTER)
static const param_case PARAMS[] = {
    P(SLUICE_PARAM_MAX_KEYS, OBJ_RATE_LIMITER, PH), P(SLUICE_PARAM_MAX_KEYS, OBJ_LEAKY_BUCKET, PH),
    P(SLUICE_PARAM_MAX_KEYS, OBJ_CONCURRENCY, PH), P(SLUICE_PARAM_MAX_KEYS, OBJ_TOKEN_BUDGET, PH),
    /* Not in host scope: a sliding window's region with the default max_keys is 224 MiB here. */
    P(SLUICE_PARAM_WINDOW_KIND, OBJ_RATE_LIMITER, SCOPE_PROCESS | SCOPE_CLUSTER),
    P(SLUICE_PARAM_WINDOW_KIND, OBJ_TOKEN_BUDGET, SCOPE_PROCESS),
    P(SLUICE_PARAM_RATE, OBJ_LEAKY_BUCKET, PHC), P(SLUICE_PARAM_PER_NANOS, OBJ_LEAKY_BUCKET, PHC),
    P(SLUICE_PARAM_BURST, OBJ_LEAKY_BUCKET, PHC), P(SLUICE_PARAM_MAX_WAIT_NANOS, OBJ_LEAKY_BUCKET, PHC),
    P(SLUICE_PARAM_MAX_IN_FLIGHT, OBJ_CONCURRENCY, PHC), P(SLUICE_PARAM_LEASE_NANOS, OBJ_CONCURRENCY, PHC),
    P(SLUICE_PARAM_RETRY_AFTER_NANOS, OBJ_CONCURRENCY, PHC),
    P(SLUICE_PARAM_REDIS_PORT, OBJ_REDIS_STORE, SCOPE_PROCESS),
    P(SLUICE_PARAM_REDIS_DB, OBJ_REDIS_STORE, SCOPE_PROCESS),
    P(SLUICE_PARAM_REDIS_CONNECT_TIMEOUT_NANOS, OBJ_REDIS_STORE, SCOPE_PROCESS | SCOPE_DEAD),
    P(SLUICE_PARAM_REDIS_COMMAND_TIMEOUT_NANOS, OBJ_REDIS_STORE, SCOPE_PROCESS | SCOPE_DEAD),
    P(SLUICE_PARAM_REDIS_RECONNECT_INTERVAL_NANOS, OBJ_REDIS_STORE, SCOPE_PROCESS | SCOPE_DEAD),
    P(SLUICE_PARAM_REDIS_TLS, OBJ_REDIS_STORE, SCOPE_PROCESS),
    P(SLUICE_PARAM_REDIS_TLS_VERIFY_PEER, OBJ_REDIS_STORE, SCOPE_PROCESS),
    P(SLUICE_PARAM_CLUSTER_ON_FAILURE, OBJ_RATE_LIMITER, SCOPE_CLUSTER | SCOPE_DEAD),
    P(SLUICE_PARAM_CLUSTER_LOCAL_SHARE, OBJ_RATE_LIMITER, SCOPE_CLUSTER | SCOPE_DEAD),
    P(SLUICE_PARAM_CLUSTER_LOCAL_SHARE, OBJ_CONCURRENCY, SCOPE_CLUSTER | SCOPE_DEAD),
    P(SLUICE_PARAM_CLUSTER_LOCAL_SHARE, OBJ_TOKEN_BUDGET, SCOPE_DEAD),
    P(SLUICE_PARAM_CLUSTER_LOCAL_SHARE, OBJ_LEAKY_BUCKET, SCOPE_DEAD),
    P(SLUICE_PARAM_CLUSTER_MODE, OBJ_RATE_LIMITER, SCOPE_CLUSTER | SCOPE_DEAD),
    P(SLUICE_PARAM_CLUSTER_LEASE_UNITS, OBJ_RATE_LIMITER, SCOPE_CLUSTER | SCOPE_DEAD),
    P(SLUICE_PARAM_CLUSTER_LEASE_TTL_NANOS, OBJ_RATE_LIMITER, SCOPE_CLUSTER | SCOPE_DEAD),
    P(SLUICE_PARAM_BALANCER_STRATEGY, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_SEED, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_BLOCK_CHARS, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_MAX_BLOCKS, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_KV_CAPACITY_BLOCKS, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_IMBALANCE_ABS, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_WEIGHT_PREFIX_MILLI, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_WEIGHT_QUEUE_MILLI, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_WEIGHT_KV_CACHE_MILLI, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_WEIGHT_IN_FLIGHT_MILLI, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_METRICS_MAX_AGE_NANOS, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_FAILURES_BEFORE_COOLDOWN, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_COOLDOWN_RATE_LIMITED_NANOS, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_COOLDOWN_AUTH_NANOS, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_COOLDOWN_CONNECTION_NANOS, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_COOLDOWN_TIMEOUT_NANOS, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_COOLDOWN_SERVER_NANOS, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_OUTLIER_CONSECUTIVE_FAILURES, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_OUTLIER_BASE_EJECTION_NANOS, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_OUTLIER_MAX_EJECTION_NANOS, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_OUTLIER_MAX_EJECTION_PERCENT, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_SCORE_LOAD_SLACK_MILLI, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_KV_SESSION_HALF_LIFE_NANOS, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_KV_FULL_USAGE_MILLI, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_BALANCER_REDIS_REFRESH_NANOS, OBJ_BALANCER, SCOPE_CLUSTER | SCOPE_DEAD),
    P(SLUICE_PARAM_BALANCER_MIN_SHARED_AFFINITY_BLOCKS, OBJ_BALANCER, SCOPE_PROCESS),
    P(SLUICE_PARAM_MAX_IN_FLIGHT, OBJ_BALANCER, SCOPE_HOST),
    P(SLUICE_PARAM_LEASE_NANOS, OBJ_BALANCER, SCOPE_HOST),
    P(SLUICE_PARAM_FALLBACK_MAX_RETRIES_PER_TARGET, OBJ_FALLBACK, SCOPE_PROCESS),
    P(SLUICE_PARAM_FALLBACK_DEADLINE_NANOS, OBJ_FALLBACK, SCOPE_PROCESS),
    P(SLUICE_PARAM_FALLBACK_ATTEMPT_TIMEOUT_NANOS, OBJ_FALLBACK, SCOPE_PROCESS),
    P(SLUICE_PARAM_FALLBACK_BACKOFF_BASE_NANOS, OBJ_FALLBACK, SCOPE_PROCESS),
    P(SLUICE_PARAM_FALLBACK_BACKOFF_MAX_NANOS, OBJ_FALLBACK, SCOPE_PROCESS),
    P(SLUICE_PARAM_FALLBACK_RETRY_BUDGET_RATIO_MILLI, OBJ_FALLBACK, SCOPE_PROCESS),
    P(SLUICE_PARAM_FALLBACK_RETRY_BUDGET_MIN, OBJ_FALLBACK, SCOPE_PROCESS),
    P(SLUICE_PARAM_BREAKER_CONSECUTIVE_FAILURES, OBJ_FALLBACK, SCOPE_PROCESS),
    P(SLUICE_PARAM_BREAKER_FAILURE_RATIO_MILLI, OBJ_FALLBACK, SCOPE_PROCESS),
    P(SLUICE_PARAM_BREAKER_SLOW_CALL_RATIO_MILLI, OBJ_FALLBACK, SCOPE_PROCESS),
    P(SLUICE_PARAM_BREAKER_SLOW_CALL_NANOS, OBJ_FALLBACK, SCOPE_PROCESS),
    P(SLUICE_PARAM_BREAKER_WINDOW_NANOS, OBJ_FALLBACK, SCOPE_PROCESS),
    P(SLUICE_PARAM_BREAKER_MINIMUM_CALLS, OBJ_FALLBACK, SCOPE_PROCESS),
    P(SLUICE_PARAM_BREAKER_OPEN_NANOS, OBJ_FALLBACK, SCOPE_PROCESS),
    P(SLUICE_PARAM_BREAKER_OPEN_MULTIPLIER_MILLI, OBJ_FALLBACK, SCOPE_PROCESS),
    P(SLUICE_PARAM_BREAKER_MAX_OPEN_NANOS, OBJ_FALLBACK, SCOPE_PROCESS),
    P(SLUICE_PARAM_BREAKER_HALF_OPEN_PROBES, OBJ_FALLBACK, SCOPE_PROCESS),
    P(SLUICE_PARAM_FALLBACK_ACTION + SLUICE_FAIL_SERVER, OBJ_FALLBACK, SCOPE_PROCESS),
    P(SLUICE_PARAM_FALLBACK_ACTION + SLUICE_FAIL_RATE_LIMITED, OBJ_FALLBACK, SCOPE_PROCESS),
    P(SLUICE_PARAM_CACHE_MAX_BYTES, OBJ_CACHE, SCOPE_PROCESS | SCOPE_CLUSTER),
    P(SLUICE_PARAM_CACHE_SHARDS, OBJ_CACHE, SCOPE_PROCESS),
    P(SLUICE_PARAM_CACHE_DEFAULT_TTL_NANOS, OBJ_CACHE, SCOPE_PROCESS | SCOPE_CLUSTER),
    P(SLUICE_PARAM_CACHE_PROTECTED_SHARE_MILLI, OBJ_CACHE, SCOPE_PROCESS),
    P(SLUICE_PARAM_CACHE_ADMISSION, OBJ_CACHE, SCOPE_PROCESS),
    P(SLUICE_PARAM_CACHE_STORE_TOOL_CALLS, OBJ_CACHE, SCOPE_PROCESS),
};
#define N_PARAMS (sizeof(PARAMS) / sizeof(PARAMS[0]))

typedef struct {
  const param_case* p;
  int scope;
} param_run;

static param_run param_runs[N_PARAMS * 4];

static void run_param(int64_t value, const void* data) {
  const param_run* run = data;
  sluice_options* o = sluice_options_create();
  sluice_clock* clock = NULL;
  RC(sluice_manual_clock_create(0, &clock), SLUICE_OK);
  base_options(run->p->kind, o);
  RC(sluice_options_set(o, run->p->param, value), SLUICE_OK);
  make_and_use(run->p->kind, o, clock, run->scope);
  sluice_options_destroy(o);
  /* The same with the steady clock: deadlines computed from the real time. */
  o = sluice_options_create();
  base_options(run->p->kind, o);
  sluice_options_set(o, run->p->param, value);
  make_and_use(run->p->kind, o, NULL, run->scope);
  sluice_options_destroy(o);
  sluice_clock_destroy(clock);
}

static const char* scope_label(int scope) {
  switch (scope) {
    case SCOPE_HOST: return "host";
    case SCOPE_CLUSTER: return "cluster";
    case SCOPE_DEAD: return "cluster_down";
    default: return "process";
  }
}

static void register_params(void) {
  size_t i, n = 0;
  char name[200];
  for (i = 0; i < N_PARAMS; ++i) {
    int scope;
    for (scope = SCOPE_PROCESS; scope <= SCOPE_DEAD; scope <<= 1) {
      if (!(PARAMS[i].scopes & scope)) continue;
      param_runs[n].p = &PARAMS[i];
      param_runs[n].scope = scope;
      snprintf(name, sizeof(name), "option/%s/%s/%s", OBJ_NAMES[PARAMS[i].kind], scope_label(scope),
               PARAMS[i].name + strlen("SLUICE_PARAM_"));
      add_sweep(name, run_param, I64, N_I64, &param_runs[n],
                scope == SCOPE_CLUSTER || PARAMS[i].kind == OBJ_REDIS_STORE);
      ++n;
    }
  }
  covers("sluice_options_create sluice_options_destroy sluice_options_set sluice_manual_clock_create "
         "sluice_clock_destroy sluice_rate_limiter_create sluice_rate_limiter_destroy "
         "sluice_leaky_bucket_create sluice_leaky_bucket_destroy sluice_concurrency_limiter_create "
         "sluice_concurrency_limiter_destroy sluice_token_budget_create sluice_token_budget_destroy "
         "sluice_balancer_create sluice_balancer_destroy sluice_fallback_policy_create "
         "sluice_fallback_policy_destroy sluice_response_cache_create sluice_response_cache_destroy "
         "sluice_redis_store_create sluice_redis_store_destroy sluice_options_set_redis_store "
         "sluice_shared_region_remove");
}

/* A value that does not fit the field it is stored in must be refused, not truncated into a
 * different valid one (a Redis port 2^32 + 6379 would connect to 6379). */
static void truncated_port(int64_t value, const void* data) {
  sluice_options* o = sluice_options_create();
  sluice_redis_store* store = NULL;
  (void)data;
  if (value == 0) {
    sluice_options_set(o, SLUICE_PARAM_REDIS_PORT, (1LL << 32) + redis_port);
  } else {
    sluice_options_set(o, SLUICE_PARAM_REDIS_PORT, redis_port);
    sluice_options_set(o, SLUICE_PARAM_REDIS_DB, 1LL << 32);
  }
  RC(sluice_redis_store_create(o, &store), SLUICE_INVALID_ARGUMENT);
  if (store != NULL) use_store(store);
  sluice_redis_store_destroy(store);
  sluice_options_destroy(o);
}

/* Windows: limit, period and burst at every extreme, for both window-taking objects. */
typedef struct {
  int which; /* 0 limit, 1 period, 2 burst */
  obj_kind kind;
  int scope;
} window_run;

static window_run window_runs[12];

static void run_window(int64_t value, const void* data) {
  const window_run* run = data;
  sluice_options* o = sluice_options_create();
  sluice_clock* clock = NULL;
  int64_t limit = 10, period = SECOND, burst = 0;
  RC(sluice_manual_clock_create(0, &clock), SLUICE_OK);
  if (run->which == 0) limit = value;
  if (run->which == 1) period = value;
  if (run->which == 2) burst = value;
  RC(sluice_options_add_window(o, limit, period, burst), SLUICE_OK);
  RC(sluice_options_add_window(o, 1000, 3600 * SECOND, 0), SLUICE_OK);
  make_and_use(run->kind, o, clock, run->scope);
  sluice_options_destroy(o);
  sluice_clock_destroy(clock);
}

static void register_windows(void) {
  static const char* const which[] = {"limit", "period_nanos", "burst"};
  const obj_kind kinds[2] = {OBJ_RATE_LIMITER, OBJ_TOKEN_BUDGET};
  const int scopes[2] = {SCOPE_PROCESS, SCOPE_HOST};
  int w, k, s, n = 0;
  char name[200];
  for (w = 0; w < 3; ++w) {
    for (k = 0; k < 2; ++k) {
      for (s = 0; s < 2; ++s) {
        window_runs[n] = (window_run){w, kinds[k], scopes[s]};
        snprintf(name, sizeof(name), "window/%s/%s/%s", OBJ_NAMES[kinds[k]], scope_label(scopes[s]),
                 which[w]);
        add_sweep(name, run_window, I64, N_I64, &window_runs[n], 0);
        ++n;
      }
    }
  }
  covers("sluice_options_add_window");
}

/* ---- string options ----------------------------------------------------------------------------- */

typedef struct {
  int param;
  const char* name;
  obj_kind kind;
  int expect_invalid_for_nul; /* a C string for a system call: a NUL would cut it short */
} string_param;

static const string_param STRING_PARAMS[] = {
    {SLUICE_PARAM_SHARED_REGION, "SHARED_REGION", OBJ_RATE_LIMITER, 0},
    {SLUICE_PARAM_REDIS_HOST, "REDIS_HOST", OBJ_REDIS_STORE, 1},
    {SLUICE_PARAM_REDIS_UNIX_SOCKET, "REDIS_UNIX_SOCKET", OBJ_REDIS_STORE, 1},
    {SLUICE_PARAM_REDIS_USERNAME, "REDIS_USERNAME", OBJ_REDIS_STORE, 0},
    {SLUICE_PARAM_REDIS_PASSWORD, "REDIS_PASSWORD", OBJ_REDIS_STORE, 0},
    {SLUICE_PARAM_REDIS_KEY_PREFIX, "REDIS_KEY_PREFIX", OBJ_REDIS_STORE, 0},
    {SLUICE_PARAM_REDIS_URL, "REDIS_URL", OBJ_REDIS_STORE, 0},
    {SLUICE_PARAM_REDIS_TLS_CA_FILE, "REDIS_TLS_CA_FILE", OBJ_REDIS_STORE, 0},
    {SLUICE_PARAM_REDIS_TLS_SERVER_NAME, "REDIS_TLS_SERVER_NAME", OBJ_REDIS_STORE, 0},
    {SLUICE_PARAM_REDIS_TLS_CERT_FILE, "REDIS_TLS_CERT_FILE", OBJ_REDIS_STORE, 0},
    {SLUICE_PARAM_REDIS_TLS_KEY_FILE, "REDIS_TLS_KEY_FILE", OBJ_REDIS_STORE, 0},
    {SLUICE_PARAM_REDIS_SENTINEL_MASTER, "REDIS_SENTINEL_MASTER", OBJ_REDIS_STORE, 1},
    {SLUICE_PARAM_REDIS_SENTINELS, "REDIS_SENTINELS", OBJ_REDIS_STORE, 1},
    {SLUICE_PARAM_REDIS_SENTINEL_USERNAME, "REDIS_SENTINEL_USERNAME", OBJ_REDIS_STORE, 0},
    {SLUICE_PARAM_REDIS_SENTINEL_PASSWORD, "REDIS_SENTINEL_PASSWORD", OBJ_REDIS_STORE, 0},
    {SLUICE_PARAM_REDIS_CLUSTER_NODES, "REDIS_CLUSTER_NODES", OBJ_REDIS_STORE, 1},
    {SLUICE_PARAM_REDIS_NAME, "REDIS_NAME/concurrency_limiter", OBJ_CONCURRENCY, 0},
    {SLUICE_PARAM_FALLBACK_CONTEXT_LENGTH_TARGET, "FALLBACK_CONTEXT_LENGTH_TARGET", OBJ_FALLBACK, 0},
    {SLUICE_PARAM_REDIS_NAME, "REDIS_NAME/response_cache", OBJ_CACHE, 0},
    {SLUICE_PARAM_REDIS_NAME, "REDIS_NAME/balancer", OBJ_BALANCER, 0},
};
#define N_STRING_PARAMS (sizeof(STRING_PARAMS) / sizeof(STRING_PARAMS[0]))

static void run_string_param(int64_t which_string, const void* data) {
  const string_param* sp = data;
  const hs* s = &strings[which_string];
  sluice_options* o = sluice_options_create();
  int rc;
  base_options(sp->kind, o);
  if (sp->param == SLUICE_PARAM_REDIS_NAME) {
    sluice_redis_store* store = live_store();
    sluice_options_set_redis_store(o, store);
    sluice_redis_store_destroy(store);
  }
  if (sp->param == SLUICE_PARAM_REDIS_HOST && s->len > 0 && memchr(s->ptr, 0, s->len) != NULL) {
    /* "127.0.0.1\0evil": accepted, it would connect to the loopback, not to what was asked. */
    static const char host[] = "127.0.0.1\0evil.example";
    rc = sluice_options_set_string(o, sp->param, host, sizeof(host) - 1);
  } else {
    rc = sluice_options_set_string(o, sp->param, s->ptr, s->len);
  }
  EXPECT(rc == SLUICE_OK || rc == SLUICE_INVALID_ARGUMENT, "set_string returned %s", sluice_status_name(rc));
  if (rc == SLUICE_OK && sp->expect_invalid_for_nul && s->len > 0 && memchr(s->ptr, 0, s->len) != NULL) {
    sluice_redis_store* store = NULL;
    RC(sluice_redis_store_create(o, &store), SLUICE_INVALID_ARGUMENT);
    sluice_redis_store_destroy(store);
  } else if (rc == SLUICE_OK) {
    if (sp->param == SLUICE_PARAM_SHARED_REGION) {
      /* make_and_use would replace it: create directly, then remove what was made */
      sluice_rate_limiter* rl = NULL;
      int crc = sluice_rate_limiter_create(o, NULL, &rl);
      EXPECT(documented(crc), "create returned %s", sluice_status_name(crc));
      if (rl != NULL) use_rate_limiter(rl, NULL);
      sluice_rate_limiter_destroy(rl);
      if (crc == SLUICE_OK && s->len > 0) DOC(sluice_shared_region_remove(s->ptr, s->len));
    } else {
      make_and_use(sp->kind, o, NULL, SCOPE_PROCESS);
    }
  }
  sluice_options_destroy(o);
}

static void register_string_params(void) {
  size_t i, j;
  char name[200];
  for (i = 0; i < N_STRING_PARAMS; ++i) {
    for (j = 0; j < n_strings; ++j) {
      /* A valid region name outside this suite's prefix would create a region: not "../x/y". */
      snprintf(name, sizeof(name), "string_option/%s[%s]", STRING_PARAMS[i].name, strings[j].label);
      add_case(name, run_string_param, (int64_t)j, &STRING_PARAMS[i], STRING_PARAMS[i].kind != OBJ_RATE_LIMITER);
    }
  }
  /* Other calls on options. */
  covers("sluice_options_set_string");
}

static void options_misuse(int64_t value, const void* data) {
  sluice_options* o = sluice_options_create();
  (void)value;
  (void)data;
  RC(sluice_options_set(NULL, SLUICE_PARAM_RATE, 1), SLUICE_INVALID_ARGUMENT);
  RC(sluice_options_set(o, INT_MIN, 1), SLUICE_INVALID_ARGUMENT);
  RC(sluice_options_set(o, INT_MAX, 1), SLUICE_INVALID_ARGUMENT);
  RC(sluice_options_set(o, SLUICE_PARAM_FALLBACK_ACTION, 1), SLUICE_INVALID_ARGUMENT);
  RC(sluice_options_set(o, SLUICE_PARAM_FALLBACK_ACTION + 10, 1), SLUICE_INVALID_ARGUMENT);
  DOC(sluice_options_set(o, SLUICE_PARAM_SHARED_REGION, 5)); /* a string parameter, set as a number */
  RC(sluice_options_set_string(NULL, SLUICE_PARAM_SHARED_REGION, "x", 1), SLUICE_INVALID_ARGUMENT);
  RC(sluice_options_set_string(o, SLUICE_PARAM_SHARED_REGION, NULL, 1), SLUICE_INVALID_ARGUMENT);
  RC(sluice_options_set_string(o, SLUICE_PARAM_SHARED_REGION, NULL, (size_t)-1), SLUICE_INVALID_ARGUMENT);
  RC(sluice_options_set_string(o, SLUICE_PARAM_RATE, "x", 1), SLUICE_INVALID_ARGUMENT);
  RC(sluice_options_set_string(o, INT_MIN, "x", 1), SLUICE_INVALID_ARGUMENT);
  RC(sluice_options_set_string(o, SLUICE_PARAM_SHARED_REGION, NULL, 0), SLUICE_OK);
  RC(sluice_options_set_redis_store(NULL, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_options_set_redis_store(o, NULL), SLUICE_OK);
  RC(sluice_options_add_window(NULL, 1, 1, 1), SLUICE_INVALID_ARGUMENT);
  {
    int i; /* more windows than any object takes */
    for (i = 0; i < 100; ++i) DOC(sluice_options_add_window(o, INT64_MAX, INT64_MAX, INT64_MAX));
    make_and_use(OBJ_RATE_LIMITER, o, NULL, SCOPE_PROCESS);
  }
  sluice_options_destroy(o);
  sluice_options_destroy(NULL);
  /* One options handle, several objects, destroyed before them. */
  o = sluice_options_create();
  sluice_options_add_window(o, 5, SECOND, 0);
  {
    sluice_rate_limiter* a = NULL;
    sluice_rate_limiter* b = NULL;
    RC(sluice_rate_limiter_create(o, NULL, &a), SLUICE_OK);
    RC(sluice_rate_limiter_create(o, NULL, &b), SLUICE_OK);
    sluice_options_destroy(o);
    if (a) use_rate_limiter(a, NULL);
    if (b) use_rate_limiter(b, NULL);
    sluice_rate_limiter_destroy(a);
    sluice_rate_limiter_destroy(b);
  }
  RC(sluice_shared_region_remove(NULL, 0), SLUICE_INVALID_ARGUMENT);
  RC(sluice_shared_region_remove(NULL, 3), SLUICE_INVALID_ARGUMENT);
  DOC(sluice_shared_region_remove("a\0b", 3));
  DOC(sluice_shared_region_remove("../x", 4));
  DOC(sluice_shared_region_remove(big_buffer, BIG_LEN));
  RC(sluice_shared_region_remove("capi-hostile-none", 17), SLUICE_NOT_FOUND);
}

/* ---- status, version, clocks ---------------------------------------------------------------------- */

static void status_names(int64_t value, const void* data) {
  const char* name = sluice_status_name((int)value);
  (void)data;
  EXPECT(name != NULL && strncmp(name, "SLUICE_", 7) == 0, "status_name(%d) = %s", (int)value,
         name ? name : "NULL");
  EXPECT(sluice_last_error_message() != NULL, "last_error_message is NULL");
  EXPECT(sluice_version_number() == SLUICE_VERSION_NUMBER, "version number");
  EXPECT(strcmp(sluice_version_string(), SLUICE_VERSION_STRING) == 0, "version string");
}

/* A manual clock at an extreme time, then each object on it (one case per object kind). */
static void clock_start(int64_t value, const void* data) {
  const obj_kind kind = *(const obj_kind*)data;
  sluice_clock* clock = NULL;
  sluice_options* o = sluice_options_create();
  /* Clocks read in [0, 2^62]: a start outside is refused, one inside is kept exactly. */
  const int in_range = value >= 0 && value <= ((int64_t)1 << 62);
  RC(sluice_manual_clock_create(value, &clock), in_range ? SLUICE_OK : SLUICE_INVALID_ARGUMENT);
  EXPECT(in_range || clock == NULL, "a refused clock is NULL");
  if (clock != NULL) {
    EXPECT(sluice_clock_now_nanos(clock) == value, "now_nanos %lld after create(%lld)",
           (long long)sluice_clock_now_nanos(clock), (long long)value);
    base_options(kind, o);
    make_and_use(kind, o, clock, SCOPE_PROCESS);
  }
  sluice_options_destroy(o);
  sluice_clock_destroy(clock);
}

/* A manual clock moved by an extreme amount (twice: past any bound), with an object on it. */
static void clock_advance(int64_t value, const void* data) {
  const obj_kind kind = *(const obj_kind*)data;
  sluice_clock* clock = NULL;
  sluice_options* o = sluice_options_create();
  RC(sluice_manual_clock_create(0, &clock), SLUICE_OK); /* a negative advance stops at 0 */
  if (clock != NULL) {
    base_options(kind, o);
    DOC(sluice_manual_clock_advance(clock, value));
    make_and_use(kind, o, clock, SCOPE_PROCESS); /* advances it again, by ordinary amounts */
    DOC(sluice_manual_clock_advance(clock, value));
    make_and_use(kind, o, clock, SCOPE_PROCESS);
  }
  EXPECT(sluice_clock_now_nanos(NULL) > 0, "the steady clock");
  sluice_options_destroy(o);
  sluice_clock_destroy(clock);
}

static void clock_misuse(int64_t value, const void* data) {
  (void)value;
  (void)data;
  RC(sluice_manual_clock_create(0, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_manual_clock_advance(NULL, 1), SLUICE_INVALID_ARGUMENT);
  sluice_clock_destroy(NULL);
}

/* ---- calls with extreme arguments on objects made with sane options ------------------------------ */

typedef enum {
  CALL_RL_COST, CALL_RL_AT_NOW, CALL_RL_AT_THEN_MIN, CALL_LB_COST, CALL_TB_ESTIMATE, CALL_TB_CHARGE, CALL_TB_SETTLE,
  CALL_PERMIT_RENEW, CALL_ADD_WEIGHT, CALL_ADD_MAX_CONCURRENCY, CALL_ADD_KV, CALL_PICK_TTFT,
  CALL_PICK_LATENCY, CALL_BEGIN_DEADLINE, CALL_NEXT_RETRY_AFTER, CALL_NEXT_LATENCY, CALL_CACHE_TTL,
  CALL_FETCH_TTL, CALL_STREAM_TTL, CALL_RETRY_AFTER_NOW, CALL_BAL_COOLDOWN, CALL_BAL_EJECT,
  CALL_BAL_COOLDOWN_FAILURE, CALL_COUNT
} call_kind;

static const char* const CALL_NAMES[] = {
    "rate_limiter_acquire/cost", "rate_limiter_acquire_at/now_nanos",
    "rate_limiter_acquire_at/now_nanos_then_INT64_MIN", "leaky_bucket_acquire/cost",
    "token_budget_reserve/estimate", "token_budget_charge/tokens", "reservation_settle/actual",
    "permit_renew/lease_nanos", "balancer_add_endpoint/weight", "balancer_add_endpoint/max_concurrency",
    "balancer_add_endpoint/kv_capacity_blocks", "pick_complete/ttft_nanos", "pick_complete/latency_nanos",
    "fallback_policy_begin/deadline_nanos", "fallback_call_next/retry_after_nanos",
    "fallback_call_next/latency_nanos", "response_cache_put/ttl_nanos", "fetch_complete/ttl_nanos",
    "fetch_complete_stream/ttl_nanos", "parse_retry_after/now_unix_nanos",
    "balancer_cooldown/duration_nanos", "balancer_eject/duration_nanos",
    "balancer_cooldown/failure"};

static call_kind call_ids[CALL_COUNT];

static void run_call(int64_t v, const void* data) {
  const call_kind kind = *(const call_kind*)data;
  sluice_clock* clock = NULL;
  sluice_options* o = sluice_options_create();
  sluice_decision d;
  RC(sluice_manual_clock_create(SECOND, &clock), SLUICE_OK);
  switch (kind) {
    case CALL_RL_COST:
    case CALL_RL_AT_NOW:
    case CALL_RL_AT_THEN_MIN: {
      sluice_rate_limiter* rl = NULL;
      int i;
      sluice_options_add_window(o, 10, SECOND, 0);
      RC(sluice_rate_limiter_create(o, clock, &rl), SLUICE_OK);
      if (rl) checked(sluice_rate_limiter_try_acquire(rl, "k", 1, 1, &d), &d, "acquire now first");
      for (i = 0; i < 3 && rl; ++i) {
        int rc = kind == CALL_RL_COST ? sluice_rate_limiter_try_acquire(rl, "k", 1, v, &d)
                                      : sluice_rate_limiter_try_acquire_at(rl, "k", 1, 1, v, &d);
        checked(rc, &d, CALL_NAMES[kind]);
        if (kind == CALL_RL_COST) {
          const int allowed = sluice_rate_limiter_allow(rl, "k", 1, v);
          EXPECT(allowed == 0 || allowed == 1, "allow(cost %lld) = %d", (long long)v, allowed);
          EXPECT(allowed == 0 || (v >= 1 && v <= 10), "allow(cost %lld) took more than a burst",
                 (long long)v);
        }
      }
      if (rl && kind == CALL_RL_AT_THEN_MIN) { /* time moves back as far as it can */
        checked(sluice_rate_limiter_try_acquire_at(rl, "k", 1, 1, INT64_MIN, &d), &d, "then INT64_MIN");
      }
      if (rl) use_rate_limiter(rl, clock);
      sluice_rate_limiter_destroy(rl);
      break;
    }
    case CALL_LB_COST: {
      sluice_leaky_bucket* b = NULL;
      int i;
      sluice_options_set(o, SLUICE_PARAM_RATE, 100);
      RC(sluice_leaky_bucket_create(o, clock, &b), SLUICE_OK);
      for (i = 0; i < 3 && b; ++i) checked(sluice_leaky_bucket_try_acquire(b, "k", 1, v, &d), &d, "acquire");
      if (b) use_leaky_bucket(b);
      sluice_leaky_bucket_destroy(b);
      break;
    }
    case CALL_TB_ESTIMATE:
    case CALL_TB_CHARGE:
    case CALL_TB_SETTLE: {
      sluice_token_budget* b = NULL;
      sluice_reservation* r = NULL;
      int i;
      sluice_options_add_window(o, 1000, 60 * SECOND, 0);
      RC(sluice_token_budget_create(o, clock, &b), SLUICE_OK);
      if (b == NULL) break;
      for (i = 0; i < 3; ++i) {
        if (kind == CALL_TB_ESTIMATE) {
          r = NULL;
          checked(sluice_token_budget_try_reserve(b, "k", 1, v, &d, &r), &d, "reserve");
          if (r) DOC(sluice_reservation_settle(r, 1, &d));
          sluice_reservation_destroy(r);
        } else if (kind == CALL_TB_CHARGE) {
          checked(sluice_token_budget_charge(b, "k", 1, v, &d), &d, "charge");
        } else {
          r = NULL;
          checked(sluice_token_budget_try_reserve(b, "k", 1, 10, &d, &r), &d, "reserve");
          if (r) {
            int rc = sluice_reservation_settle(r, v, &d);
            checked(rc, &d, "settle");
            DOC(sluice_reservation_settle(r, v, &d));
            DOC(sluice_reservation_cancel(r));
          }
          sluice_reservation_destroy(r);
        }
      }
      use_token_budget(b, clock);
      sluice_token_budget_destroy(b);
      break;
    }
    case CALL_PERMIT_RENEW: {
      sluice_concurrency_limiter* cl = NULL;
      sluice_permit* p = NULL;
      sluice_options_set(o, SLUICE_PARAM_MAX_IN_FLIGHT, 1);
      RC(sluice_concurrency_limiter_create(o, clock, &cl), SLUICE_OK);
      if (cl == NULL) break;
      RC(sluice_concurrency_limiter_try_acquire(cl, "k", 1, &d, &p), SLUICE_OK);
      if (p) {
        DOC(sluice_permit_renew(p, v));
        DOC(sluice_manual_clock_advance(clock, 3600 * SECOND));
        DOC(sluice_permit_renew(p, v));
        EXPECT(sluice_concurrency_limiter_in_flight(cl, "k", 1) >= 0, "in_flight");
        DOC(sluice_permit_release(p));
        sluice_permit_destroy(p);
      }
      use_concurrency(cl, clock);
      sluice_concurrency_limiter_destroy(cl);
      break;
    }
    case CALL_ADD_WEIGHT:
    case CALL_ADD_MAX_CONCURRENCY:
    case CALL_ADD_KV:
    case CALL_PICK_TTFT:
    case CALL_PICK_LATENCY: {
      static const int strategies[] = {SLUICE_BALANCER_ROUND_ROBIN, SLUICE_BALANCER_WEIGHTED_ROUND_ROBIN,
                                       SLUICE_BALANCER_LEAST_REQUEST, SLUICE_BALANCER_PREFIX_AFFINITY,
                                       SLUICE_BALANCER_SCORED, SLUICE_BALANCER_CONSISTENT_HASH};
      size_t s;
      for (s = 0; s < sizeof(strategies) / sizeof(strategies[0]); ++s) {
        sluice_balancer* b = NULL;
        sluice_options* bo = sluice_options_create();
        int i;
        sluice_options_set(bo, SLUICE_PARAM_BALANCER_STRATEGY, strategies[s]);
        RC(sluice_balancer_create(bo, clock, &b), SLUICE_OK);
        sluice_options_destroy(bo);
        if (b == NULL) continue;
        DOC(sluice_balancer_add_endpoint(b, "x", 1, kind == CALL_ADD_WEIGHT ? v : 1,
                                         kind == CALL_ADD_MAX_CONCURRENCY ? v : 0,
                                         kind == CALL_ADD_KV ? v : 0, NULL, 0));
        DOC(sluice_balancer_add_endpoint(b, "y", 1, kind == CALL_ADD_WEIGHT ? v : 2, 0, 0, NULL, 0));
        for (i = 0; i < 8; ++i) {
          sluice_pick* p = NULL;
          DOC(sluice_balancer_pick(b, BODY, strlen(BODY), NULL, 0, &p));
          if (p) {
            DOC(sluice_pick_complete_failure(p, 200, SLUICE_FAIL_NONE, kind == CALL_PICK_TTFT ? v : MILLI,
                                     kind == CALL_PICK_LATENCY ? v : 2 * MILLI));
            sluice_pick_destroy(p);
          }
        }
        use_balancer(b, clock);
        sluice_balancer_destroy(b);
      }
      break;
    }
    case CALL_BAL_COOLDOWN:
    case CALL_BAL_EJECT:
    case CALL_BAL_COOLDOWN_FAILURE: {
      /* An administered hold of any length (or class) is refused or takes effect: never a crash,
       * never a hold that wraps into the past; the endpoint's state stays sane, restore ends it. */
      sluice_balancer* b = NULL;
      sluice_endpoint_state st;
      int64_t now;
      RC(sluice_balancer_create(o, clock, &b), SLUICE_OK);
      if (b == NULL) break;
      RC(sluice_balancer_add_endpoint(b, "x", 1, 1, 0, 0, NULL, 0), SLUICE_OK);
      int rc = kind == CALL_BAL_EJECT ? sluice_balancer_eject(b, "x", 1, v)
               : kind == CALL_BAL_COOLDOWN
                   ? sluice_balancer_cooldown(b, "x", 1, v, SLUICE_FAIL_RATE_LIMITED)
                   : sluice_balancer_cooldown(b, "x", 1, SECOND,
                                              (int)(v > INT32_MAX ? INT32_MAX
                                                    : v < INT32_MIN ? INT32_MIN : v));
      DOC(rc);
      now = sluice_clock_now_nanos(clock);
      RC(sluice_balancer_endpoint_state(b, "x", 1, &st), SLUICE_OK);
      if (rc == SLUICE_OK) {
        const int64_t until = kind == CALL_BAL_EJECT ? st.ejected_until_nanos : st.cooldown_until_nanos;
        EXPECT(until > now, "an accepted hold ends in the future, got %lld at %lld", (long long)until,
               (long long)now);
        EXPECT(until - now <= 86400 * SECOND, "a hold of at most a day, got %lld", (long long)(until - now));
        sluice_pick* p = NULL;
        RC(sluice_balancer_pick_model(b, NULL, 0, NULL, 0, &p), SLUICE_UNAVAILABLE);
        sluice_pick_destroy(p);
      } else {
        EXPECT(st.cooldown_until_nanos == 0 && st.ejected_until_nanos == 0, "a refused hold holds");
      }
      RC(sluice_balancer_restore(b, "x", 1), SLUICE_OK);
      RC(sluice_balancer_endpoint_state(b, "x", 1, &st), SLUICE_OK);
      EXPECT(st.cooldown_until_nanos == 0 && st.ejected_until_nanos == 0, "restore ends every hold");
      RC(sluice_balancer_restore(b, "y", 1), SLUICE_NOT_FOUND);
      RC(sluice_balancer_restore(NULL, "x", 1), SLUICE_INVALID_ARGUMENT);
      RC(sluice_balancer_endpoint_state(b, NULL, 3, &st), SLUICE_INVALID_ARGUMENT);
      sluice_balancer_destroy(b);
      break;
    }
    case CALL_BEGIN_DEADLINE:
    case CALL_NEXT_RETRY_AFTER:
    case CALL_NEXT_LATENCY: {
      sluice_fallback_policy* policy = NULL;
      sluice_fallback_target targets[2] = {{"a", 1, "m", 1, NULL}, {"b", 1, NULL, 0, NULL}};
      sluice_fallback_call* call = NULL;
      sluice_fallback_step step;
      int guard = 0;
      RC(sluice_fallback_policy_create(o, targets, 2, clock, &policy), SLUICE_OK);
      if (policy == NULL) break;
      DOC(sluice_fallback_policy_begin(policy, kind == CALL_BEGIN_DEADLINE ? v : 0, &call, &step));
      while (call != NULL && step.kind == SLUICE_STEP_ATTEMPT && guard++ < 20) {
        EXPECT(step.delay_nanos >= 0 && step.retry_after_nanos >= 0, "negative step durations");
        DOC(sluice_fallback_call_next(call, 429, SLUICE_TRANSPORT_NONE, NULL, 0,
                                      kind == CALL_NEXT_RETRY_AFTER ? v : 0,
                                      kind == CALL_NEXT_LATENCY ? v : 0, &step));
        if (step.delay_nanos > 0 && step.delay_nanos < 3600 * SECOND) {
          DOC(sluice_manual_clock_advance(clock, step.delay_nanos));
        }
      }
      sluice_fallback_call_destroy(call);
      use_fallback(policy, clock);
      sluice_fallback_policy_destroy(policy);
      break;
    }
    case CALL_CACHE_TTL:
    case CALL_FETCH_TTL:
    case CALL_STREAM_TTL: {
      sluice_response_cache* cache = NULL;
      sluice_cache_key* key = NULL;
      sluice_fetch* f = NULL;
      sluice_cached_answer* a = NULL;
      uint8_t stored = 0;
      const char* chunks[1] = {"data: x\n\n"};
      const size_t lens[1] = {9};
      RC(sluice_response_cache_create(o, clock, &cache), SLUICE_OK);
      RC(sluice_cache_key_create(BODY, strlen(BODY), NULL, 0, &key), SLUICE_OK);
      if (cache == NULL || key == NULL) break;
      if (kind == CALL_CACHE_TTL) {
        DOC(sluice_response_cache_put(cache, key, "x", 1, NULL, NULL, 0, v, &stored));
        DOC(sluice_response_cache_put(cache, key, NULL, 0, chunks, lens, 1, v, &stored));
      } else {
        DOC(sluice_response_cache_fetch(cache, key, &f));
        if (f && kind == CALL_FETCH_TTL) DOC(sluice_fetch_complete(f, "x", 1, NULL, NULL, 0, v, 1, &stored));
        if (f && kind == CALL_STREAM_TTL) {
          DOC(sluice_fetch_append(f, chunks[0], lens[0]));
          DOC(sluice_fetch_complete_stream(f, v, 1, &stored));
        }
        sluice_fetch_destroy(f);
      }
      DOC(sluice_response_cache_get(cache, key, &a));
      sluice_cached_answer_destroy(a);
      DOC(sluice_manual_clock_advance(clock, 365 * 86400 * SECOND));
      a = NULL;
      DOC(sluice_response_cache_get(cache, key, &a));
      sluice_cached_answer_destroy(a);
      use_cache(cache, clock);
      sluice_cache_key_destroy(key);
      sluice_response_cache_destroy(cache);
      break;
    }
    case CALL_RETRY_AFTER_NOW: {
      static const char* const values[] = {"120", "0", "1.5", "-5", "1e308", "9223372036854775807",
                                           "99999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT",
                                           "Mon, 01 Jan 0001 00:00:00 GMT", "Thu, 01 Jan 1970 00:00:00 GMT",
                                           "nan", "inf", ""};
      size_t i;
      for (i = 0; i < sizeof(values) / sizeof(values[0]); ++i) {
        int64_t out = -12345;
        int rc = sluice_parse_retry_after(values[i], strlen(values[i]), v, &out);
        EXPECT(rc == SLUICE_OK || rc == SLUICE_INVALID_ARGUMENT, "parse_retry_after(%s) returned %s",
               values[i], sluice_status_name(rc));
        EXPECT(rc != SLUICE_OK || out >= 0, "parse_retry_after(%s, now %lld) = %lld < 0", values[i],
               (long long)v, (long long)out);
      }
      break;
    }
    default: break;
  }
  sluice_options_destroy(o);
  sluice_clock_destroy(clock);
}

static void register_calls(void) {
  int k;
  char name[200];
  for (k = 0; k < CALL_COUNT; ++k) {
    call_ids[k] = (call_kind)k;
    snprintf(name, sizeof(name), "call/%s", CALL_NAMES[k]);
    add_sweep(name, run_call, I64, N_I64, &call_ids[k], 0);
  }
  covers("sluice_rate_limiter_try_acquire sluice_rate_limiter_try_acquire_at sluice_rate_limiter_allow "
         "sluice_leaky_bucket_try_acquire "
         "sluice_token_budget_try_reserve sluice_token_budget_charge sluice_reservation_settle "
         "sluice_reservation_cancel sluice_reservation_destroy sluice_permit_renew sluice_permit_release "
         "sluice_permit_destroy sluice_concurrency_limiter_try_acquire sluice_concurrency_limiter_in_flight "
         "sluice_balancer_add_endpoint sluice_balancer_pick sluice_pick_complete_failure sluice_pick_destroy "
         "sluice_balancer_cooldown sluice_balancer_eject sluice_balancer_restore "
         "sluice_balancer_endpoint_state "
         "sluice_fallback_policy_begin sluice_fallback_call_next sluice_fallback_call_destroy "
         "sluice_response_cache_put sluice_response_cache_get sluice_response_cache_fetch "
         "sluice_fetch_complete sluice_fetch_append sluice_fetch_complete_stream sluice_fetch_destroy "
         "sluice_cached_answer_destroy sluice_cache_key_create sluice_cache_key_destroy "
         "sluice_parse_retry_after sluice_manual_clock_advance sluice_clock_now_nanos "
         "sluice_response_cache_erase sluice_response_cache_stats sluice_fetch_kind_of "
         "sluice_balancer_update_metrics sluice_balancer_pick_model sluice_balancer_in_flight "
         "sluice_fallback_policy_breaker_state");
}

/* int parameters: HTTP statuses, transports, outcome classes, breaker indexes. */
static void int_args(int64_t value, const void* data) {
  const int v = (int)value;
  sluice_balancer* b = NULL;
  sluice_options* o = sluice_options_create();
  sluice_pick* p = NULL;
  sluice_fallback_policy* policy = NULL;
  sluice_fallback_call* call = NULL;
  sluice_fallback_step step;
  sluice_fallback_target targets[1] = {{"a", 1, NULL, 0, NULL}};
  int guard = 0, rc;
  (void)data;
  rc = sluice_classify(v, SLUICE_TRANSPORT_NONE, "{\"error\":{\"code\":\"x\"}}", 22);
  EXPECT(rc >= -1 && rc <= SLUICE_FAIL_CLIENT, "classify(%d) = %d", v, rc);
  rc = sluice_classify(500, v, NULL, 0);
  EXPECT(rc >= -1 && rc <= SLUICE_FAIL_CLIENT, "classify(transport %d) = %d", v, rc);
  status_names(value, NULL);
  RC(sluice_balancer_create(o, NULL, &b), SLUICE_OK);
  if (b) {
    DOC(sluice_balancer_add_endpoint(b, "a", 1, 1, 0, 0, NULL, 0));
    DOC(sluice_balancer_pick_model(b, NULL, 0, NULL, 0, &p));
    if (p) {
      rc = sluice_pick_complete_failure(p, v, SLUICE_FAIL_NONE, 0, 0);
      EXPECT(documented(rc), "pick_complete(status %d) returned %s", v, sluice_status_name(rc));
      rc = sluice_pick_complete_failure(p, 200, v, 0, 0);
      EXPECT(documented(rc), "pick_complete(error %d) returned %s", v, sluice_status_name(rc));
      sluice_pick_destroy(p);
    }
    p = NULL;
    DOC(sluice_balancer_pick_model(b, NULL, 0, NULL, 0, &p));
    if (p) {
      DOC(sluice_pick_complete_failure(p, 200, v, 0, 0));
      sluice_pick_destroy(p);
    }
    sluice_balancer_destroy(b);
  }
  RC(sluice_fallback_policy_create(o, targets, 1, NULL, &policy), SLUICE_OK);
  if (policy) {
    EXPECT(sluice_fallback_policy_breaker_state(policy, (size_t)(int64_t)v) >= -1, "breaker_state");
    EXPECT(sluice_fallback_policy_breaker_state(policy, (size_t)value) >= -1, "breaker_state");
    DOC(sluice_fallback_policy_begin(policy, 0, &call, &step));
    while (call && step.kind == SLUICE_STEP_ATTEMPT && guard++ < 10) {
      rc = sluice_fallback_call_next(call, v, SLUICE_TRANSPORT_NONE, NULL, 0, 0, 0, &step);
      EXPECT(documented(rc), "call_next(status %d) returned %s", v, sluice_status_name(rc));
      if (rc != SLUICE_OK) break;
    }
    sluice_fallback_call_destroy(call);
    call = NULL;
    DOC(sluice_fallback_policy_begin(policy, 0, &call, &step));
    if (call) {
      rc = sluice_fallback_call_next(call, 200, v, NULL, 0, 0, 0, &step);
      EXPECT(documented(rc), "call_next(transport %d) returned %s", v, sluice_status_name(rc));
    }
    sluice_fallback_call_destroy(call);
    sluice_fallback_policy_destroy(policy);
  }
  sluice_options_destroy(o);
  {
    sluice_options* oo = sluice_options_create(); /* enum-valued options */
    sluice_options_set(oo, SLUICE_PARAM_BALANCER_STRATEGY, v);
    make_and_use(OBJ_BALANCER, oo, NULL, SCOPE_PROCESS);
    sluice_options_destroy(oo);
    oo = sluice_options_create();
    sluice_options_set(oo, SLUICE_PARAM_FALLBACK_ACTION + SLUICE_FAIL_TIMEOUT, v);
    make_and_use(OBJ_FALLBACK, oo, NULL, SCOPE_PROCESS);
    sluice_options_destroy(oo);
  }
}

/* ---- (ptr, len) arguments ------------------------------------------------------------------------ */

static void key_args(int64_t which_string, const void* data) {
  const hs* s = &strings[which_string];
  const int key_like = s->len <= SLUICE_MAX_KEY_LEN;
  sluice_options* o = sluice_options_create();
  sluice_rate_limiter* rl = NULL;
  sluice_leaky_bucket* lb = NULL;
  sluice_concurrency_limiter* cl = NULL;
  sluice_token_budget* tb = NULL;
  sluice_balancer* b = NULL;
  sluice_decision d;
  sluice_permit* permit = NULL;
  sluice_reservation* r = NULL;
  sluice_pick* p = NULL;
  int rc;
  (void)data;
  sluice_options_add_window(o, 10, SECOND, 0);
  RC(sluice_rate_limiter_create(o, NULL, &rl), SLUICE_OK);
  RC(sluice_token_budget_create(o, NULL, &tb), SLUICE_OK);
  sluice_options_destroy(o);
  o = sluice_options_create();
  sluice_options_set(o, SLUICE_PARAM_RATE, 10);
  RC(sluice_leaky_bucket_create(o, NULL, &lb), SLUICE_OK);
  sluice_options_destroy(o);
  o = sluice_options_create();
  sluice_options_set(o, SLUICE_PARAM_MAX_IN_FLIGHT, 2);
  RC(sluice_concurrency_limiter_create(o, NULL, &cl), SLUICE_OK);
  sluice_options_destroy(o);
  o = sluice_options_create();
  RC(sluice_balancer_create(o, NULL, &b), SLUICE_OK);
  sluice_options_destroy(o);
  if (!rl || !tb || !lb || !cl || !b) return;

  rc = sluice_rate_limiter_try_acquire(rl, s->ptr, s->len, 1, &d);
  EXPECT(key_like ? rc == SLUICE_OK : rc == SLUICE_INVALID_ARGUMENT, "rate_limiter_acquire: %s",
         sluice_status_name(rc));
  rc = sluice_rate_limiter_try_acquire_at(rl, s->ptr, s->len, 1, 0, &d);
  EXPECT(key_like ? documented(rc) : rc == SLUICE_INVALID_ARGUMENT, "acquire_at: %s", sluice_status_name(rc));
  rc = sluice_rate_limiter_allow(rl, s->ptr, s->len, 1);
  EXPECT(rc == 0 || rc == 1, "allow: %d", rc);
  EXPECT(key_like || rc == 0, "allow took a key longer than SLUICE_MAX_KEY_LEN");
  rc = sluice_leaky_bucket_try_acquire(lb, s->ptr, s->len, 1, &d);
  EXPECT(key_like ? rc == SLUICE_OK : rc == SLUICE_INVALID_ARGUMENT, "leaky_bucket_acquire: %s",
         sluice_status_name(rc));
  rc = sluice_concurrency_limiter_try_acquire(cl, s->ptr, s->len, &d, &permit);
  EXPECT(key_like ? rc == SLUICE_OK : rc == SLUICE_INVALID_ARGUMENT, "concurrency acquire: %s",
         sluice_status_name(rc));
  EXPECT(sluice_concurrency_limiter_in_flight(cl, s->ptr, s->len) == (key_like ? 1 : -1), "in_flight");
  sluice_permit_destroy(permit);
  rc = sluice_token_budget_try_reserve(tb, s->ptr, s->len, 1, &d, &r);
  EXPECT(key_like ? rc == SLUICE_OK : rc == SLUICE_INVALID_ARGUMENT, "reserve: %s", sluice_status_name(rc));
  sluice_reservation_destroy(r);
  rc = sluice_token_budget_charge(tb, s->ptr, s->len, 1, &d);
  EXPECT(key_like ? rc == SLUICE_OK : rc == SLUICE_INVALID_ARGUMENT, "charge: %s", sluice_status_name(rc));

  DOC(sluice_balancer_add_endpoint(b, s->ptr, s->len, 1, 0, 0, s->ptr, s->len));
  DOC(sluice_balancer_add_endpoint(b, "a", 1, 1, 0, 0, NULL, 0));
  DOC(sluice_balancer_update_metrics(b, s->ptr, s->len, s->ptr, s->len));
  DOC(sluice_balancer_update_metrics(b, "a", 1, s->ptr, s->len));
  EXPECT(sluice_balancer_in_flight(b, s->ptr, s->len) >= -1, "balancer in_flight");
  DOC(sluice_balancer_pick_model(b, s->ptr, s->len, s->ptr, s->len, &p));
  sluice_pick_destroy(p);
  p = NULL;
  DOC(sluice_balancer_pick_model(b, NULL, 0, s->ptr, s->len, &p));
  sluice_pick_destroy(p);
  p = NULL;
  DOC(sluice_balancer_pick(b, BODY, strlen(BODY), s->ptr, s->len, &p));
  sluice_pick_destroy(p);
  p = NULL;
  if (s->ptr != NULL) DOC(sluice_balancer_pick(b, s->ptr, s->len, NULL, 0, &p)); /* as a body */
  sluice_pick_destroy(p);
  DOC(sluice_balancer_remove_endpoint(b, s->ptr, s->len));
  {
    sluice_cache_key* key = NULL;
    /* (NULL, 0) as a body has a case of its own (null_and_empty_body) */
    if (s->ptr != NULL) DOC(sluice_cache_key_create(s->ptr, s->len, NULL, 0, &key)); /* as a body */
    sluice_cache_key_destroy(key);
    key = NULL;
    DOC(sluice_cache_key_create(BODY, strlen(BODY), s->ptr, s->len, &key)); /* as a namespace */
    if (key) {
      size_t len = 0;
      uint64_t hi, lo;
      EXPECT(sluice_cache_key_canonical(key, &len) != NULL, "canonical is NULL");
      RC(sluice_cache_key_digest(key, &hi, &lo), SLUICE_OK);
    }
    sluice_cache_key_destroy(key);
  }
  rc = sluice_classify(500, SLUICE_TRANSPORT_NONE, s->ptr, s->len);
  EXPECT(rc >= -1 && rc <= SLUICE_FAIL_CLIENT, "classify: %d", rc);
  {
    int64_t out = 0;
    rc = sluice_parse_retry_after(s->ptr, s->len, 0, &out);
    EXPECT(rc == SLUICE_OK || rc == SLUICE_INVALID_ARGUMENT, "parse_retry_after: %s", sluice_status_name(rc));
  }
  sluice_rate_limiter_destroy(rl);
  sluice_leaky_bucket_destroy(lb);
  sluice_concurrency_limiter_destroy(cl);
  sluice_token_budget_destroy(tb);
  sluice_balancer_destroy(b);
}

/* A length the buffer does not have, past SLUICE_MAX_KEY_LEN: refused before it is read. */
static void lying_key_lengths(int64_t value, const void* data) {
  const size_t len = (size_t)value;
  sluice_options* o = sluice_options_create();
  sluice_rate_limiter* rl = NULL;
  sluice_concurrency_limiter* cl = NULL;
  sluice_decision d;
  sluice_permit* p = NULL;
  (void)data;
  sluice_options_add_window(o, 10, SECOND, 0);
  sluice_options_set(o, SLUICE_PARAM_MAX_KEYS, 64);
  RC(sluice_rate_limiter_create(o, NULL, &rl), SLUICE_OK);
  sluice_options_destroy(o);
  o = sluice_options_create();
  sluice_options_set(o, SLUICE_PARAM_MAX_IN_FLIGHT, 1);
  RC(sluice_concurrency_limiter_create(o, NULL, &cl), SLUICE_OK);
  sluice_options_destroy(o);
  if (len > SLUICE_MAX_KEY_LEN) {
    if (rl) RC(sluice_rate_limiter_try_acquire(rl, "k", len, 1, &d), SLUICE_INVALID_ARGUMENT);
    if (cl) RC(sluice_concurrency_limiter_try_acquire(cl, "k", len, &d, &p), SLUICE_INVALID_ARGUMENT);
    if (cl) EXPECT(sluice_concurrency_limiter_in_flight(cl, "k", len) == -1, "in_flight");
  }
  if (rl) RC(sluice_rate_limiter_try_acquire(rl, NULL, len == 0 ? 1 : len, 1, &d), SLUICE_INVALID_ARGUMENT);
  sluice_permit_destroy(p);
  sluice_rate_limiter_destroy(rl);
  sluice_concurrency_limiter_destroy(cl);
  {
    size_t index_len = 7;
    sluice_cached_answer* a = NULL;
    sluice_response_cache* cache = NULL;
    sluice_cache_key* key = NULL;
    sluice_fetch* f = NULL;
    const char* chunks[1] = {"c"};
    const size_t lens[1] = {1};
    o = sluice_options_create();
    RC(sluice_response_cache_create(o, NULL, &cache), SLUICE_OK);
    sluice_options_destroy(o);
    RC(sluice_cache_key_create(BODY, strlen(BODY), NULL, 0, &key), SLUICE_OK);
    if (cache && key) {
      DOC(sluice_response_cache_put(cache, key, NULL, 0, chunks, lens, 1, 0, NULL));
      DOC(sluice_response_cache_get(cache, key, &a));
      EXPECT(sluice_cached_answer_chunk(a, len, &index_len) == NULL || len < 1, "chunk(%zu)", len);
      EXPECT(sluice_cached_answer_chunk(a, len, NULL) == NULL || len < 1, "chunk(%zu, NULL)", len);
      sluice_cached_answer_destroy(a);
      RC(sluice_response_cache_put(cache, key, NULL, 0, NULL, lens, len == 0 ? 1 : len, 0, NULL),
         SLUICE_INVALID_ARGUMENT);
      RC(sluice_response_cache_put(cache, key, NULL, len == 0 ? 1 : len, NULL, NULL, 0, 0, NULL),
         SLUICE_INVALID_ARGUMENT);
      DOC(sluice_response_cache_fetch(cache, key, &f));
      if (f) {
        RC(sluice_fetch_append(f, NULL, len == 0 ? 1 : len), SLUICE_INVALID_ARGUMENT);
        RC(sluice_fetch_complete(f, NULL, len == 0 ? 1 : len, NULL, NULL, 0, 0, 1, NULL),
           SLUICE_INVALID_ARGUMENT);
      }
      sluice_fetch_destroy(f);
    }
    sluice_cache_key_destroy(key);
    sluice_response_cache_destroy(cache);
  }
  EXPECT(sluice_fallback_policy_breaker_state(NULL, len) == -1, "breaker_state(NULL)");
}

/* Bodies for the two parsers the C ABI exposes. */
static void bodies(int64_t which, const void* data) {
  const char* body = BODIES[which];
  sluice_cache_key* key = NULL;
  sluice_balancer* b = NULL;
  sluice_options* o = sluice_options_create();
  sluice_pick* p = NULL;
  (void)data;
  DOC(sluice_cache_key_create(body, strlen(body), "ns", 2, &key));
  sluice_cache_key_destroy(key);
  RC(sluice_balancer_create(o, NULL, &b), SLUICE_OK);
  sluice_options_destroy(o);
  if (!b) return;
  DOC(sluice_balancer_add_endpoint(b, "a", 1, 1, 0, 0, NULL, 0));
  DOC(sluice_balancer_pick(b, body, strlen(body), NULL, 0, &p));
  sluice_pick_destroy(p);
  sluice_balancer_destroy(b);
  EXPECT(sluice_classify(400, SLUICE_TRANSPORT_NONE, body, strlen(body)) >= -1, "classify");
}

/* (NULL, 0) is an empty string: the header allows it everywhere a (ptr, len) is taken. */
static void null_empty_strings(int64_t value, const void* data) {
  sluice_cache_key* key = NULL;
  sluice_balancer* b = NULL;
  sluice_options* o = sluice_options_create();
  sluice_pick* p = NULL;
  int rc;
  (void)data;
  if (value == 0) { /* the cache key of an empty body */
    rc = sluice_cache_key_create(NULL, 0, NULL, 0, &key);
    EXPECT(rc == SLUICE_INVALID_ARGUMENT, "cache_key_create(NULL, 0) returned %s", sluice_status_name(rc));
    sluice_cache_key_destroy(key);
  } else { /* a pick for an empty body */
    RC(sluice_balancer_create(o, NULL, &b), SLUICE_OK);
    if (b) {
      DOC(sluice_balancer_add_endpoint(b, "a", 1, 1, 0, 0, NULL, 0));
      rc = sluice_balancer_pick(b, NULL, 0, NULL, 0, &p);
      EXPECT(rc == SLUICE_INVALID_ARGUMENT, "balancer_pick(NULL, 0) returned %s", sluice_status_name(rc));
      sluice_pick_destroy(p);
      sluice_balancer_destroy(b);
    }
  }
  sluice_options_destroy(o);
}

/* ---- NULL handles and out-pointers ---------------------------------------------------------------- */

static void null_handles(int64_t value, const void* data) {
  sluice_decision d;
  sluice_permit* permit = (sluice_permit*)&d;
  sluice_reservation* reservation = (sluice_reservation*)&d;
  sluice_pick* pick = NULL;
  sluice_fallback_call* call = NULL;
  sluice_fallback_step step;
  sluice_cached_answer* answer = NULL;
  sluice_fetch* fetch = NULL;
  sluice_cache_stats stats;
  size_t len = 99;
  uint64_t hi, lo;
  (void)value;
  (void)data;
  RC(sluice_rate_limiter_try_acquire(NULL, "k", 1, 1, &d), SLUICE_INVALID_ARGUMENT);
  RC(sluice_rate_limiter_try_acquire_at(NULL, "k", 1, 1, 0, &d), SLUICE_INVALID_ARGUMENT);
  EXPECT(sluice_rate_limiter_allow(NULL, "k", 1, 1) == 0, "allow(NULL)");
  RC(sluice_leaky_bucket_try_acquire(NULL, "k", 1, 1, &d), SLUICE_INVALID_ARGUMENT);
  RC(sluice_concurrency_limiter_try_acquire(NULL, "k", 1, &d, &permit), SLUICE_INVALID_ARGUMENT);
  EXPECT(permit == NULL, "a failed acquire left *permit set");
  RC(sluice_concurrency_limiter_try_acquire(NULL, "k", 1, &d, NULL), SLUICE_INVALID_ARGUMENT);
  EXPECT(sluice_concurrency_limiter_in_flight(NULL, "k", 1) == -1, "in_flight(NULL)");
  RC(sluice_permit_release(NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_permit_renew(NULL, 0), SLUICE_INVALID_ARGUMENT);
  RC(sluice_token_budget_try_reserve(NULL, "k", 1, 1, &d, &reservation), SLUICE_INVALID_ARGUMENT);
  EXPECT(reservation == NULL, "a failed reserve left *reservation set");
  RC(sluice_token_budget_try_reserve(NULL, "k", 1, 1, &d, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_token_budget_charge(NULL, "k", 1, 1, &d), SLUICE_INVALID_ARGUMENT);
  RC(sluice_reservation_settle(NULL, 1, &d), SLUICE_INVALID_ARGUMENT);
  RC(sluice_reservation_cancel(NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_balancer_add_endpoint(NULL, "a", 1, 1, 0, 0, NULL, 0), SLUICE_INVALID_ARGUMENT);
  RC(sluice_balancer_remove_endpoint(NULL, "a", 1), SLUICE_INVALID_ARGUMENT);
  RC(sluice_balancer_update_metrics(NULL, "a", 1, "", 0), SLUICE_INVALID_ARGUMENT);
  EXPECT(sluice_balancer_in_flight(NULL, "a", 1) == -1, "balancer_in_flight(NULL)");
  RC(sluice_balancer_pick(NULL, BODY, strlen(BODY), NULL, 0, &pick), SLUICE_INVALID_ARGUMENT);
  RC(sluice_balancer_pick_model(NULL, NULL, 0, NULL, 0, &pick), SLUICE_INVALID_ARGUMENT);
  EXPECT(sluice_pick_endpoint_id(NULL, &len) != NULL && len == 0, "pick_endpoint_id(NULL)");
  EXPECT(sluice_pick_endpoint_id(NULL, NULL) != NULL, "pick_endpoint_id(NULL, NULL)");
  EXPECT(sluice_pick_matched_blocks(NULL) == 0, "pick_matched_blocks(NULL)");
  RC(sluice_pick_complete_failure(NULL, 200, 0, 0, 0), SLUICE_INVALID_ARGUMENT);
  EXPECT(sluice_fallback_policy_breaker_state(NULL, 0) == -1, "breaker_state(NULL)");
  RC(sluice_fallback_policy_begin(NULL, 0, &call, &step), SLUICE_INVALID_ARGUMENT);
  len = 99;
  EXPECT(sluice_fallback_call_target(NULL, &len) != NULL || len == 0, "call_target(NULL)");
  sluice_fallback_call_model(NULL, &len);
  sluice_fallback_call_endpoint(NULL, &len);
  sluice_fallback_call_target(NULL, NULL);
  sluice_fallback_call_model(NULL, NULL);
  sluice_fallback_call_endpoint(NULL, NULL);
  RC(sluice_fallback_call_next(NULL, 200, 0, NULL, 0, 0, 0, &step), SLUICE_INVALID_ARGUMENT);
  RC(sluice_fallback_call_mark_first_byte(NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_cache_key_create(BODY, strlen(BODY), NULL, 0, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_cache_key_digest(NULL, &hi, &lo), SLUICE_INVALID_ARGUMENT);
  sluice_cache_key_canonical(NULL, &len);
  sluice_cache_key_canonical(NULL, NULL);
  EXPECT(sluice_cached_answer_streamed(NULL) == 0, "streamed(NULL)");
  sluice_cached_answer_body(NULL, &len);
  sluice_cached_answer_body(NULL, NULL);
  EXPECT(sluice_cached_answer_chunk_count(NULL) == 0, "chunk_count(NULL)");
  EXPECT(sluice_cached_answer_chunk(NULL, 0, &len) == NULL && len == 0, "chunk(NULL)");
  RC(sluice_response_cache_get(NULL, NULL, &answer), SLUICE_INVALID_ARGUMENT);
  RC(sluice_response_cache_put(NULL, NULL, "x", 1, NULL, NULL, 0, 0, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_response_cache_erase(NULL, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_response_cache_stats(NULL, &stats), SLUICE_INVALID_ARGUMENT);
  RC(sluice_response_cache_fetch(NULL, NULL, &fetch), SLUICE_INVALID_ARGUMENT);
  EXPECT(sluice_fetch_kind_of(NULL) == -1, "fetch_kind_of(NULL)");
  EXPECT(sluice_fetch_fd(NULL) == -1, "fetch_fd(NULL)");
  EXPECT(sluice_fetch_ready(NULL) == 0, "fetch_ready(NULL)");
  RC(sluice_fetch_resume(NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_fetch_answer(NULL, &answer), SLUICE_INVALID_ARGUMENT);
  RC(sluice_fetch_complete(NULL, "x", 1, NULL, NULL, 0, 0, 1, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_fetch_append(NULL, "x", 1), SLUICE_INVALID_ARGUMENT);
  RC(sluice_fetch_complete_stream(NULL, 0, 1, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_fetch_take_chunks(NULL, &answer), SLUICE_INVALID_ARGUMENT);
  EXPECT(sluice_fetch_chunks_taken(NULL) == 0, "chunks_taken(NULL)");
  RC(sluice_redis_store_create(NULL, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_rate_limiter_create(NULL, NULL, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_leaky_bucket_create(NULL, NULL, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_concurrency_limiter_create(NULL, NULL, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_token_budget_create(NULL, NULL, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_balancer_create(NULL, NULL, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_fallback_policy_create(NULL, NULL, 0, NULL, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_response_cache_create(NULL, NULL, NULL), SLUICE_INVALID_ARGUMENT);
  /* Every destroy accepts NULL. */
  sluice_clock_destroy(NULL);
  sluice_redis_store_destroy(NULL);
  sluice_options_destroy(NULL);
  sluice_rate_limiter_destroy(NULL);
  sluice_leaky_bucket_destroy(NULL);
  sluice_concurrency_limiter_destroy(NULL);
  sluice_permit_destroy(NULL);
  sluice_token_budget_destroy(NULL);
  sluice_reservation_destroy(NULL);
  sluice_balancer_destroy(NULL);
  sluice_pick_destroy(NULL);
  sluice_fallback_policy_destroy(NULL);
  sluice_fallback_call_destroy(NULL);
  sluice_cache_key_destroy(NULL);
  sluice_cached_answer_destroy(NULL);
  sluice_response_cache_destroy(NULL);
  sluice_fetch_destroy(NULL);
}

/* NULL out-pointers on live objects: the header says which may be NULL. */
static void null_outs(int64_t value, const void* data) {
  sluice_options* o = sluice_options_create();
  sluice_rate_limiter* rl = NULL;
  sluice_token_budget* tb = NULL;
  sluice_concurrency_limiter* cl = NULL;
  sluice_balancer* b = NULL;
  sluice_fallback_policy* policy = NULL;
  sluice_response_cache* cache = NULL;
  sluice_cache_key* key = NULL;
  sluice_reservation* r = NULL;
  sluice_fallback_call* call = NULL;
  sluice_fetch* f = NULL;
  sluice_fallback_target targets[1] = {{"a", 1, NULL, 0, NULL}};
  (void)value;
  (void)data;
  sluice_options_add_window(o, 10, SECOND, 0);
  RC(sluice_rate_limiter_create(o, NULL, &rl), SLUICE_OK);
  RC(sluice_token_budget_create(o, NULL, &tb), SLUICE_OK);
  sluice_options_destroy(o);
  o = sluice_options_create();
  sluice_options_set(o, SLUICE_PARAM_MAX_IN_FLIGHT, 1);
  RC(sluice_concurrency_limiter_create(o, NULL, &cl), SLUICE_OK);
  sluice_options_destroy(o);
  o = sluice_options_create();
  RC(sluice_balancer_create(o, NULL, &b), SLUICE_OK);
  RC(sluice_fallback_policy_create(o, targets, 1, NULL, &policy), SLUICE_OK);
  RC(sluice_response_cache_create(o, NULL, &cache), SLUICE_OK);
  sluice_options_destroy(o);
  RC(sluice_cache_key_create(BODY, strlen(BODY), NULL, 0, &key), SLUICE_OK);
  if (!rl || !tb || !cl || !b || !policy || !cache || !key) return;
  RC(sluice_rate_limiter_try_acquire(rl, "k", 1, 1, NULL), SLUICE_OK);
  RC(sluice_rate_limiter_try_acquire_at(rl, "k", 1, 1, 0, NULL), SLUICE_OK);
  RC(sluice_token_budget_charge(tb, "k", 1, 1, NULL), SLUICE_OK);
  RC(sluice_token_budget_try_reserve(tb, "k", 1, 1, NULL, &r), SLUICE_OK);
  if (r) {
    RC(sluice_reservation_settle(r, 1, NULL), SLUICE_OK);
    sluice_reservation_destroy(r);
  }
  RC(sluice_token_budget_try_reserve(tb, "k", 1, 1, NULL, NULL), SLUICE_INVALID_ARGUMENT);
  {
    sluice_permit* p = NULL;
    RC(sluice_concurrency_limiter_try_acquire(cl, "k", 1, NULL, &p), SLUICE_OK);
    sluice_permit_destroy(p);
  }
  RC(sluice_balancer_add_endpoint(b, "a", 1, 1, 0, 0, NULL, 0), SLUICE_OK);
  RC(sluice_balancer_pick(b, BODY, strlen(BODY), NULL, 0, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_balancer_pick_model(b, NULL, 0, NULL, 0, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_fallback_policy_begin(policy, 0, NULL, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_fallback_policy_begin(policy, 0, &call, NULL), SLUICE_OK);
  if (call) {
    size_t len = 0;
    sluice_fallback_call_target(call, NULL);
    sluice_fallback_call_model(call, &len);
    sluice_fallback_call_endpoint(call, &len);
    RC(sluice_fallback_call_next(call, 500, 0, NULL, 0, 0, 0, NULL), SLUICE_OK);
    RC(sluice_fallback_call_mark_first_byte(call), SLUICE_OK);
    sluice_fallback_call_destroy(call);
  }
  {
    uint64_t hi = 0;
    RC(sluice_cache_key_digest(key, &hi, NULL), SLUICE_INVALID_ARGUMENT);
    RC(sluice_cache_key_digest(key, NULL, NULL), SLUICE_INVALID_ARGUMENT);
  }
  RC(sluice_response_cache_get(cache, key, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_response_cache_put(cache, key, "x", 1, NULL, NULL, 0, 0, NULL), SLUICE_OK);
  RC(sluice_response_cache_put(cache, NULL, "x", 1, NULL, NULL, 0, 0, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_response_cache_stats(cache, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_response_cache_erase(cache, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_response_cache_fetch(cache, key, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_response_cache_fetch(cache, NULL, &f), SLUICE_INVALID_ARGUMENT);
  RC(sluice_response_cache_fetch(cache, key, &f), SLUICE_OK);
  if (f) {
    RC(sluice_fetch_answer(f, NULL), SLUICE_INVALID_ARGUMENT);
    RC(sluice_fetch_take_chunks(f, NULL), SLUICE_INVALID_ARGUMENT);
    sluice_fetch_destroy(f);
  }
  sluice_cache_key_destroy(key);
  sluice_response_cache_destroy(cache);
  sluice_fallback_policy_destroy(policy);
  sluice_balancer_destroy(b);
  sluice_concurrency_limiter_destroy(cl);
  sluice_token_budget_destroy(tb);
  sluice_rate_limiter_destroy(rl);
}

/* ---- handles used the way the header allows after their owner is gone, or twice ---------------- */

static void lifetimes(int64_t which, const void* data) {
  sluice_options* o = sluice_options_create();
  (void)data;
  if (which == 0) { /* picks stay valid after their balancer is destroyed */
    sluice_balancer* b = NULL;
    sluice_pick* p = NULL;
    size_t len = 0;
    RC(sluice_balancer_create(o, NULL, &b), SLUICE_OK);
    if (b) {
      DOC(sluice_balancer_add_endpoint(b, "a", 1, 1, 0, 0, NULL, 0));
      DOC(sluice_balancer_pick(b, BODY, strlen(BODY), NULL, 0, &p));
      sluice_balancer_destroy(b);
    }
    if (p) {
      EXPECT(sluice_pick_endpoint_id(p, &len) != NULL && len == 1, "endpoint_id after destroy");
      (void)sluice_pick_matched_blocks(p);
      RC(sluice_pick_complete_failure(p, 200, 0, MILLI, MILLI), SLUICE_OK);
      DOC(sluice_pick_complete_failure(p, 500, 0, 0, 0)); /* only the first counts */
      sluice_pick_destroy(p);
    }
  } else if (which == 1) { /* calls stay valid after their policy (and its balancer) */
    sluice_balancer* b = NULL;
    sluice_fallback_policy* policy = NULL;
    sluice_fallback_call* call = NULL;
    sluice_fallback_step step;
    int guard = 0;
    RC(sluice_balancer_create(o, NULL, &b), SLUICE_OK);
    if (b) DOC(sluice_balancer_add_endpoint(b, "e", 1, 1, 0, 0, NULL, 0));
    {
      sluice_fallback_target targets[2] = {{"pool", 4, NULL, 0, b}, {"b", 1, "m", 1, NULL}};
      RC(sluice_fallback_policy_create(o, targets, 2, NULL, &policy), SLUICE_OK);
    }
    sluice_balancer_destroy(b);
    if (policy) {
      DOC(sluice_fallback_policy_begin(policy, 0, &call, &step));
      sluice_fallback_policy_destroy(policy);
    }
    while (call && step.kind == SLUICE_STEP_ATTEMPT && guard++ < 10) {
      size_t len = 0;
      sluice_fallback_call_target(call, &len);
      sluice_fallback_call_model(call, &len);
      sluice_fallback_call_endpoint(call, &len);
      DOC(sluice_fallback_call_next(call, 503, 0, NULL, 0, 0, MILLI, &step));
    }
    if (call) {
      RC(sluice_fallback_call_next(call, 200, 0, NULL, 0, 0, 0, &step), SLUICE_FAILED_PRECONDITION);
      DOC(sluice_fallback_call_mark_first_byte(call));
    }
    sluice_fallback_call_destroy(call);
  } else if (which == 2) { /* fetches and answers stay valid after their cache */
    sluice_response_cache* cache = NULL;
    sluice_cache_key* key = NULL;
    sluice_fetch* lead = NULL;
    sluice_fetch* wait = NULL;
    sluice_cached_answer* a = NULL;
    uint8_t stored = 0;
    RC(sluice_response_cache_create(o, NULL, &cache), SLUICE_OK);
    RC(sluice_cache_key_create(BODY, strlen(BODY), NULL, 0, &key), SLUICE_OK);
    if (cache && key) {
      DOC(sluice_response_cache_put(cache, key, "x", 1, NULL, NULL, 0, 0, NULL));
      DOC(sluice_response_cache_get(cache, key, &a));
      DOC(sluice_response_cache_erase(cache, key));
      DOC(sluice_response_cache_fetch(cache, key, &lead));
      DOC(sluice_response_cache_fetch(cache, key, &wait));
    }
    sluice_response_cache_destroy(cache);
    if (a) {
      size_t len = 0;
      EXPECT(sluice_cached_answer_body(a, &len) != NULL && len == 1, "answer after destroy");
      sluice_cached_answer_destroy(a);
    }
    if (lead) {
      DOC(sluice_fetch_append(lead, "data: a\n\n", 9));
      DOC(sluice_fetch_complete_stream(lead, 0, 1, &stored));
      DOC(sluice_fetch_complete_stream(lead, 0, 1, &stored)); /* twice */
      DOC(sluice_fetch_append(lead, "late", 4));
    }
    if (wait) {
      sluice_cached_answer* taken = NULL;
      DOC(sluice_fetch_take_chunks(wait, &taken));
      sluice_cached_answer_destroy(taken);
      DOC(sluice_fetch_resume(wait));
      DOC(sluice_fetch_resume(wait));
      taken = NULL;
      DOC(sluice_fetch_answer(wait, &taken));
      sluice_cached_answer_destroy(taken);
      (void)sluice_fetch_chunks_taken(wait);
    }
    sluice_fetch_destroy(lead);
    sluice_fetch_destroy(wait);
    sluice_cache_key_destroy(key);
  } else if (which == 3) { /* permits and reservations used twice */
    sluice_concurrency_limiter* cl = NULL;
    sluice_token_budget* tb = NULL;
    sluice_permit* p = NULL;
    sluice_reservation* r = NULL;
    sluice_decision d;
    sluice_options_set(o, SLUICE_PARAM_MAX_IN_FLIGHT, 1);
    RC(sluice_concurrency_limiter_create(o, NULL, &cl), SLUICE_OK);
    sluice_options_destroy(o);
    o = sluice_options_create();
    sluice_options_add_window(o, 100, 60 * SECOND, 0);
    RC(sluice_token_budget_create(o, NULL, &tb), SLUICE_OK);
    if (cl) {
      RC(sluice_concurrency_limiter_try_acquire(cl, "k", 1, &d, &p), SLUICE_OK);
      if (p) {
        RC(sluice_permit_release(p), SLUICE_OK);
        DOC(sluice_permit_release(p));
        DOC(sluice_permit_renew(p, 0));
        DOC(sluice_permit_renew(p, SECOND));
        DOC(sluice_permit_release(p));
        sluice_permit_destroy(p);
      }
      EXPECT(sluice_concurrency_limiter_in_flight(cl, "k", 1) == 0, "in_flight after release");
    }
    if (tb) {
      RC(sluice_token_budget_try_reserve(tb, "k", 1, 50, &d, &r), SLUICE_OK);
      if (r) {
        RC(sluice_reservation_settle(r, 10, &d), SLUICE_OK);
        DOC(sluice_reservation_settle(r, 10, &d));
        DOC(sluice_reservation_cancel(r));
        sluice_reservation_destroy(r);
      }
      r = NULL;
      RC(sluice_token_budget_try_reserve(tb, "k", 1, 50, &d, &r), SLUICE_OK);
      if (r) {
        RC(sluice_reservation_cancel(r), SLUICE_OK);
        DOC(sluice_reservation_cancel(r));
        DOC(sluice_reservation_settle(r, 10, &d));
        sluice_reservation_destroy(r);
      }
      RC(sluice_token_budget_charge(tb, "k", 1, 0, &d), SLUICE_OK);
      EXPECT(d.remaining == 90, "remaining %lld after a settled 10 and a cancel, want 90",
             (long long)d.remaining);
    }
    sluice_concurrency_limiter_destroy(cl);
    sluice_token_budget_destroy(tb);
  } else if (which == 4) { /* fetch misuse: every call in every state */
    sluice_response_cache* cache = NULL;
    sluice_cache_key* key = NULL;
    sluice_fetch* f[3] = {NULL, NULL, NULL};
    sluice_cached_answer* a = NULL;
    int i;
    RC(sluice_response_cache_create(o, NULL, &cache), SLUICE_OK);
    RC(sluice_cache_key_create(BODY, strlen(BODY), NULL, 0, &key), SLUICE_OK);
    for (i = 0; cache && key && i < 3; ++i) DOC(sluice_response_cache_fetch(cache, key, &f[i]));
    for (i = 0; i < 3; ++i) {
      if (!f[i]) continue;
      (void)sluice_fetch_fd(f[i]);
      (void)sluice_fetch_ready(f[i]);
      DOC(sluice_fetch_resume(f[i]));
      DOC(sluice_fetch_answer(f[i], &a));
      sluice_cached_answer_destroy(a);
      a = NULL;
      DOC(sluice_fetch_take_chunks(f[i], &a));
      sluice_cached_answer_destroy(a);
      a = NULL;
      DOC(sluice_fetch_append(f[i], "x", 1));
    }
    sluice_fetch_destroy(f[0]); /* the leader gives up: f[1] leads */
    for (i = 1; i < 3; ++i) {
      if (!f[i]) continue;
      DOC(sluice_fetch_resume(f[i]));
      DOC(sluice_fetch_complete(f[i], "y", 1, NULL, NULL, 0, SECOND, 1, NULL));
      DOC(sluice_fetch_complete(f[i], "y", 1, NULL, NULL, 0, 0, 1, NULL));
      DOC(sluice_fetch_resume(f[i]));
      DOC(sluice_fetch_answer(f[i], &a));
      sluice_cached_answer_destroy(a);
      a = NULL;
    }
    sluice_fetch_destroy(f[1]);
    sluice_fetch_destroy(f[2]);
    sluice_cache_key_destroy(key);
    sluice_response_cache_destroy(cache);
  }
  sluice_options_destroy(o);
}

/* ---- fork: objects made here, used in a child ---------------------------------------------------- */

static void forked(int64_t scope, const void* data) {
  sluice_options* o = sluice_options_create();
  sluice_concurrency_limiter* cl = NULL;
  sluice_token_budget* tb = NULL;
  sluice_rate_limiter* rl = NULL;
  sluice_permit* held = NULL;
  sluice_reservation* r = NULL;
  sluice_decision d;
  char region[3][64];
  sluice_redis_store* store = scope == SCOPE_CLUSTER ? live_store() : NULL;
  pid_t child;
  int status = 0, i;
  (void)data;
  for (i = 0; i < 3; ++i) region[i][0] = 0;
  for (i = 0; i < 3; ++i) {
    sluice_options_destroy(o);
    o = sluice_options_create();
    if (scope == SCOPE_HOST) {
      region_name(region[i], sizeof(region[i]));
      sluice_options_set_string(o, SLUICE_PARAM_SHARED_REGION, region[i], strlen(region[i]));
    } else if (scope == SCOPE_CLUSTER) {
      char rule[64];
      rule_name(rule, sizeof(rule));
      sluice_options_set_redis_store(o, store);
      sluice_options_set_string(o, SLUICE_PARAM_REDIS_NAME, rule, strlen(rule));
      sluice_options_set(o, SLUICE_PARAM_CLUSTER_LOCAL_SHARE, 1); /* required with LOCAL */
    }
    if (i == 0) {
      sluice_options_set(o, SLUICE_PARAM_MAX_IN_FLIGHT, 2);
      RC(sluice_concurrency_limiter_create(o, NULL, &cl), SLUICE_OK);
    } else if (i == 1) {
      sluice_options_add_window(o, 1000, 3600 * SECOND, 0);
      RC(sluice_token_budget_create(o, NULL, &tb), SLUICE_OK);
    } else {
      sluice_options_add_window(o, 100, 3600 * SECOND, 0);
      RC(sluice_rate_limiter_create(o, NULL, &rl), SLUICE_OK);
    }
  }
  sluice_options_destroy(o);
  sluice_redis_store_destroy(store);
  if (!cl || !tb || !rl) return;
  RC(sluice_concurrency_limiter_try_acquire(cl, "k", 1, &d, &held), SLUICE_OK);
  RC(sluice_token_budget_try_reserve(tb, "k", 1, 100, &d, &r), SLUICE_OK);
  checked(sluice_rate_limiter_try_acquire(rl, "k", 1, 1, &d), &d, "parent acquire");
  fflush(stderr);
  child = fork();
  if (child == 0) {
    case_failed = 0;
    if (held) DOC(sluice_permit_renew(held, 0));
    if (held) DOC(sluice_permit_release(held));
    if (r) DOC(sluice_reservation_settle(r, 50, &d));
    use_rate_limiter(rl, NULL);
    use_concurrency(cl, NULL);
    use_token_budget(tb, NULL);
    fflush(stderr);
    _exit(case_failed ? 3 : 0);
  }
  waitpid(child, &status, 0);
  EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the fork()ed child %s %d",
         WIFSIGNALED(status) ? "died of signal" : "exited with",
         WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
  if (held) DOC(sluice_permit_release(held));
  sluice_permit_destroy(held);
  if (r) DOC(sluice_reservation_settle(r, 60, &d));
  sluice_reservation_destroy(r);
  use_rate_limiter(rl, NULL);
  use_concurrency(cl, NULL);
  sluice_concurrency_limiter_destroy(cl);
  sluice_token_budget_destroy(tb);
  sluice_rate_limiter_destroy(rl);
  for (i = 0; i < 3; ++i) {
    if (region[i][0]) sluice_shared_region_remove(region[i], strlen(region[i]));
  }
}

/* A cache with a Redis tier destroyed right after its writes: a reply still on its way may hold
 * the last reference to the tier and drop it on the store's own connection thread. Repeated, so
 * that the race is lost every time rather than now and then. */
static void cache_destroyed_with_writes_in_flight(int64_t value, const void* data) {
  int round;
  (void)value;
  (void)data;
  for (round = 0; round < 1000; ++round) {
    sluice_options* o = sluice_options_create();
    sluice_redis_store* store = live_store();
    sluice_response_cache* cache = NULL;
    char name[64];
    int i;
    rule_name(name, sizeof(name));
    sluice_options_set_redis_store(o, store);
    sluice_redis_store_destroy(store);
    sluice_options_set_string(o, SLUICE_PARAM_REDIS_NAME, name, strlen(name));
    RC(sluice_response_cache_create(o, NULL, &cache), SLUICE_OK);
    sluice_options_destroy(o);
    for (i = 0; cache && i < 3; ++i) use_cache(cache, NULL);
    sluice_response_cache_destroy(cache);
  }
}

/* ---- deprecated names: the old calls and parameters still work, for one release ---------------- */

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations" /* this section calls them on purpose */
#endif

/* The message of the last failure names the function the caller called, not its new name. */
#define NAMES(function)                                                                      \
  EXPECT(strncmp(sluice_last_error_message(), function ": ", strlen(function) + 2) == 0,     \
         "message '%s' does not start with '%s: '", sluice_last_error_message(), function)

static void deprecated_calls(int64_t v, const void* data) {
  sluice_options* o = sluice_options_create();
  sluice_rate_limiter* rl = NULL;
  sluice_leaky_bucket* lb = NULL;
  sluice_concurrency_limiter* cl = NULL;
  sluice_token_budget* tb = NULL;
  sluice_balancer* b = NULL;
  sluice_permit* permit = (sluice_permit*)&v;
  sluice_reservation* r = (sluice_reservation*)&v;
  sluice_pick* p = NULL;
  sluice_decision d;
  (void)data;
  sluice_options_add_window(o, 10, SECOND, 0);
  RC(sluice_rate_limiter_create(o, NULL, &rl), SLUICE_OK);
  sluice_options_destroy(o);
  o = sluice_options_create();
  sluice_options_add_window(o, 1000, 60 * SECOND, 0);
  RC(sluice_token_budget_create(o, NULL, &tb), SLUICE_OK);
  sluice_options_destroy(o);
  o = sluice_options_create();
  sluice_options_set(o, SLUICE_PARAM_RATE, 100);
  RC(sluice_leaky_bucket_create(o, NULL, &lb), SLUICE_OK);
  sluice_options_destroy(o);
  o = sluice_options_create();
  sluice_options_set(o, SLUICE_PARAM_MAX_IN_FLIGHT, 2);
  RC(sluice_concurrency_limiter_create(o, NULL, &cl), SLUICE_OK);
  RC(sluice_balancer_create(NULL, NULL, &b), SLUICE_INVALID_ARGUMENT);
  sluice_options_destroy(o);
  o = sluice_options_create();
  RC(sluice_balancer_create(o, NULL, &b), SLUICE_OK);
  sluice_options_destroy(o);
  if (!rl || !tb || !lb || !cl || !b) return;

  checked(sluice_rate_limiter_acquire(rl, "k", 1, v, &d), &d, "rate_limiter_acquire");
  checked(sluice_rate_limiter_acquire_at(rl, "k", 1, 1, v, &d), &d, "rate_limiter_acquire_at");
  checked(sluice_leaky_bucket_acquire(lb, "k", 1, v, &d), &d, "leaky_bucket_acquire");
  checked(sluice_concurrency_limiter_acquire(cl, "k", 1, &d, &permit), &d, "concurrency_limiter_acquire");
  sluice_permit_destroy(permit);
  checked(sluice_token_budget_reserve(tb, "k", 1, v, &d, &r), &d, "token_budget_reserve");
  sluice_reservation_destroy(r);
  DOC(sluice_balancer_add_endpoint(b, "a", 1, 1, 0, 0, NULL, 0));
  DOC(sluice_balancer_pick_model(b, NULL, 0, NULL, 0, &p));
  if (p) DOC(sluice_pick_complete(p, (int)v, (int)v, v, v));
  sluice_pick_destroy(p);
  p = NULL;
  DOC(sluice_balancer_pick_model(b, NULL, 0, NULL, 0, &p));
  if (p) DOC(sluice_pick_complete(p, 503, (int)(v & 7), 0, 0)); /* every sluice_outcome_error */
  sluice_pick_destroy(p);

  /* NULL handles and lengths past the limit, each refusal named by the old name. */
  RC(sluice_rate_limiter_acquire(NULL, "k", 1, 1, &d), SLUICE_INVALID_ARGUMENT);
  NAMES("sluice_rate_limiter_acquire");
  RC(sluice_rate_limiter_acquire_at(rl, NULL, 1, 1, v, &d), SLUICE_INVALID_ARGUMENT);
  NAMES("sluice_rate_limiter_acquire_at");
  RC(sluice_leaky_bucket_acquire(lb, "k", SLUICE_MAX_KEY_LEN + 1, 1, &d), SLUICE_INVALID_ARGUMENT);
  NAMES("sluice_leaky_bucket_acquire");
  permit = (sluice_permit*)&v;
  RC(sluice_concurrency_limiter_acquire(NULL, "k", 1, &d, &permit), SLUICE_INVALID_ARGUMENT);
  EXPECT(permit == NULL, "a failed acquire left *permit set");
  NAMES("sluice_concurrency_limiter_acquire");
  RC(sluice_concurrency_limiter_acquire(cl, "k", 1, &d, NULL), SLUICE_INVALID_ARGUMENT);
  r = (sluice_reservation*)&v;
  RC(sluice_token_budget_reserve(NULL, "k", 1, 1, &d, &r), SLUICE_INVALID_ARGUMENT);
  EXPECT(r == NULL, "a failed reserve left *reservation set");
  NAMES("sluice_token_budget_reserve");
  RC(sluice_pick_complete(NULL, 200, SLUICE_OUTCOME_NONE, 0, 0), SLUICE_INVALID_ARGUMENT);
  NAMES("sluice_pick_complete");

  sluice_rate_limiter_destroy(rl);
  sluice_leaky_bucket_destroy(lb);
  sluice_concurrency_limiter_destroy(cl);
  sluice_token_budget_destroy(tb);
  sluice_balancer_destroy(b);
}

/* SLUICE_PARAM_CLUSTER_RULE (REDIS_NAME's number) and SLUICE_PARAM_CACHE_REDIS_NAME (906), with
 * every hostile string; the cache refuses the alias together with the new name. */
static void deprecated_params(int64_t which_string, const void* data) {
  const hs* str = &strings[which_string];
  sluice_redis_store* store = dead_store();
  sluice_options* o = sluice_options_create();
  sluice_rate_limiter* rl = (sluice_rate_limiter*)&o;
  sluice_response_cache* cache = (sluice_response_cache*)&o;
  int rc;
  (void)data;
  EXPECT(SLUICE_PARAM_CLUSTER_RULE == SLUICE_PARAM_REDIS_NAME, "CLUSTER_RULE is REDIS_NAME's number");
  sluice_options_add_window(o, 10, SECOND, 0);
  sluice_options_set_redis_store(o, store);
  sluice_options_set(o, SLUICE_PARAM_CLUSTER_ON_FAILURE, SLUICE_FAILURE_DENY);
  DOC(sluice_options_set_string(o, SLUICE_PARAM_CLUSTER_RULE, str->ptr, str->len));
  rc = sluice_rate_limiter_create(o, NULL, &rl);
  EXPECT(documented(rc) && (rc == SLUICE_OK || rl == NULL), "rate_limiter_create: %s", sluice_status_name(rc));
  if (rc == SLUICE_OK) use_rate_limiter(rl, NULL);
  sluice_rate_limiter_destroy(rc == SLUICE_OK ? rl : NULL);
  /* The cache's old name is still refused by a limiter, as it always was. */
  RC(sluice_options_set_string(o, SLUICE_PARAM_CACHE_REDIS_NAME, "x", 1), SLUICE_OK);
  RC(sluice_rate_limiter_create(o, NULL, &rl), SLUICE_INVALID_ARGUMENT);
  sluice_options_destroy(o);

  o = sluice_options_create();
  sluice_options_set_redis_store(o, store);
  DOC(sluice_options_set_string(o, SLUICE_PARAM_CACHE_REDIS_NAME, str->ptr, str->len));
  rc = sluice_response_cache_create(o, NULL, &cache);
  EXPECT(documented(rc) && (rc == SLUICE_OK || cache == NULL), "response_cache_create: %s",
         sluice_status_name(rc));
  if (rc == SLUICE_OK) use_cache(cache, NULL);
  sluice_response_cache_destroy(rc == SLUICE_OK ? cache : NULL);
  if (str->len > 0) { /* the alias and the new name together: set one */
    RC(sluice_options_set_string(o, SLUICE_PARAM_REDIS_NAME, "c", 1), SLUICE_OK);
    RC(sluice_response_cache_create(o, NULL, &cache), SLUICE_INVALID_ARGUMENT);
    EXPECT(cache == NULL, "a failed create left *out set");
    EXPECT(strstr(sluice_last_error_message(), "deprecated alias") != NULL, "message: %s",
           sluice_last_error_message());
  }
  sluice_options_destroy(o);
  sluice_redis_store_destroy(store);
}

#undef NAMES
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

static void register_deprecated(void) {
  static hv string_values[16];
  size_t i;
  for (i = 0; i < n_strings; ++i) string_values[i] = (hv){strings[i].label, (int64_t)i};
  add_sweep("deprecated/calls", deprecated_calls, I64, N_I64, NULL, 0);
  add_sweep("deprecated/params", deprecated_params, string_values, n_strings, NULL, 0);
  covers("sluice_rate_limiter_acquire sluice_rate_limiter_acquire_at sluice_leaky_bucket_acquire "
         "sluice_concurrency_limiter_acquire sluice_token_budget_reserve sluice_pick_complete");
}

static void register_misc(void) {
  static const hv one[] = {{"", 0}};
  static const hv cache_or_pick[] = {{"cache_key_create", 0}, {"balancer_pick", 1}};
  static const hv which_lifetime[] = {{"pick_after_balancer", 0}, {"call_after_policy", 1},
                                      {"fetch_after_cache", 2},   {"permit_and_reservation_twice", 3},
                                      {"fetch_every_call_in_every_state", 4}};
  static const hv scopes[] = {{"process", SCOPE_PROCESS}, {"host", SCOPE_HOST}, {"cluster", SCOPE_CLUSTER}};
  static hv string_values[16];
  static hv body_values[N_BODIES];
  static char body_labels[N_BODIES][16];
  static obj_kind clock_kinds[OBJ_COUNT];
  size_t i;
  for (i = 0; i < n_strings; ++i) string_values[i] = (hv){strings[i].label, (int64_t)i};
  for (i = 0; i < N_BODIES; ++i) {
    snprintf(body_labels[i], sizeof(body_labels[i]), "body%zu", i);
    body_values[i] = (hv){body_labels[i], (int64_t)i};
  }
  add_sweep("status_name", status_names, INTS, N_INTS, NULL, 0);
  for (i = 0; i < OBJ_REDIS_STORE; ++i) {
    char name[200];
    clock_kinds[i] = (obj_kind)i;
    snprintf(name, sizeof(name), "manual_clock_create/start_nanos/%s", OBJ_NAMES[i]);
    add_sweep(name, clock_start, I64, N_I64, &clock_kinds[i], 0);
    snprintf(name, sizeof(name), "manual_clock_advance/nanos/%s", OBJ_NAMES[i]);
    add_sweep(name, clock_advance, I64, N_I64, &clock_kinds[i], 0);
  }
  add_sweep("clock_misuse", clock_misuse, one, 1, NULL, 0);
  add_sweep("options_misuse", options_misuse, one, 1, NULL, 0);
  add_sweep("int_arguments", int_args, INTS, N_INTS, NULL, 0);
  add_sweep("keys_and_strings", key_args, string_values, n_strings, NULL, 0);
  add_sweep("lying_lengths", lying_key_lengths, SIZES, N_SIZES, NULL, 0);
  add_sweep("json_bodies", bodies, body_values, N_BODIES, NULL, 0);
  add_sweep("null_and_empty_body", null_empty_strings, cache_or_pick, 2, NULL, 0);
  add_sweep("null_handles", null_handles, one, 1, NULL, 0);
  add_sweep("null_out_pointers", null_outs, one, 1, NULL, 0);
  add_sweep("lifetime", lifetimes, which_lifetime, 5, NULL, 0);
  add_sweep("fork", forked, scopes, 3, NULL, 0);
  cases[n_cases - 1].needs_redis = 1; /* fork[cluster] */
  add_case("cluster_cache_destroyed_with_writes_in_flight", cache_destroyed_with_writes_in_flight, 0,
           NULL, 1);
  add_case("truncated_option/REDIS_PORT", truncated_port, 0, NULL, 1);
  add_case("truncated_option/REDIS_DB", truncated_port, 1, NULL, 1);
  covers("sluice_status_name sluice_last_error_message sluice_version_number sluice_version_string "
         "sluice_pick_endpoint_id sluice_pick_matched_blocks sluice_classify "
         "sluice_fallback_call_target sluice_fallback_call_model sluice_fallback_call_endpoint "
         "sluice_fallback_call_mark_first_byte sluice_cache_key_digest sluice_cache_key_canonical "
         "sluice_cached_answer_streamed sluice_cached_answer_body sluice_cached_answer_chunk_count "
         "sluice_cached_answer_chunk sluice_fetch_fd sluice_fetch_ready sluice_fetch_resume "
         "sluice_fetch_answer sluice_fetch_take_chunks sluice_fetch_chunks_taken "
         "sluice_balancer_remove_endpoint");
}

/* ---- usage metering: the reader, whole reads, the rewrite, the estimates -------------------------- */

/* An answer with usage, fed in pieces after the hostile bytes of a case. */
static const char* const USAGE_STREAM =
    "data: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
    "\"completion_tokens\":4,\"total_tokens\":7}}\n\n"
    "data: [DONE]\n\n";

static void sane_usage(int rc, const sluice_usage* u, uint8_t found, const char* what) {
  EXPECT(documented(rc), "%s returned %s: %s", what, sluice_status_name(rc), sluice_last_error_message());
  if (rc != SLUICE_OK) return;
  EXPECT(found == 0 || found == 1, "%s: found %d", what, found);
  EXPECT((found == 1) == (u->present != 0), "%s: found %d with present 0x%x", what, found, u->present);
  EXPECT(u->prompt_tokens >= 0 && u->prompt_tokens <= SLUICE_USAGE_MAX_TOKENS &&
         u->completion_tokens >= 0 && u->completion_tokens <= SLUICE_USAGE_MAX_TOKENS &&
         u->total_tokens >= 0 && u->total_tokens <= SLUICE_USAGE_MAX_TOKENS &&
         u->cached_tokens >= 0 && u->cached_tokens <= SLUICE_USAGE_MAX_TOKENS &&
         u->cache_creation_tokens >= 0 && u->cache_creation_tokens <= SLUICE_USAGE_MAX_TOKENS &&
         u->reasoning_tokens >= 0 && u->reasoning_tokens <= SLUICE_USAGE_MAX_TOKENS,
         "%s: a count out of [0, 2^62]", what);
  EXPECT(u->provider >= SLUICE_PROVIDER_AUTO && u->provider <= SLUICE_PROVIDER_DASHSCOPE,
         "%s: provider %d", what, u->provider);
}

static void sane_tokens(int rc, int64_t tokens, const char* what) {
  EXPECT(documented(rc), "%s returned %s: %s", what, sluice_status_name(rc), sluice_last_error_message());
  EXPECT(tokens >= 0 && tokens <= SLUICE_USAGE_MAX_TOKENS, "%s: %lld tokens", what, (long long)tokens);
}

/* Every usage call on (ptr, len), with `o` (may be NULL) for the reader and the estimates. */
static void use_usage_calls(const char* ptr, size_t len, int provider, const sluice_options* o) {
  sluice_usage_reader* reader = (sluice_usage_reader*)&case_failed;
  sluice_usage u;
  sluice_usage_stats stats;
  uint8_t found = 2;
  char* out = (char*)&case_failed;
  size_t out_len = 5;
  int64_t tokens = -1;
  int rc = sluice_usage_reader_create(provider, o, &reader);
  EXPECT(documented(rc), "reader_create returned %s: %s", sluice_status_name(rc), sluice_last_error_message());
  if (rc != SLUICE_OK) {
    EXPECT(reader == NULL, "a failed create left *out set");
  } else {
    size_t at = 0, step = 1;
    DOC(sluice_usage_reader_feed(reader, ptr, len));
    while (at < strlen(USAGE_STREAM)) { /* then an answer in growing pieces */
      size_t n = step < strlen(USAGE_STREAM) - at ? step : strlen(USAGE_STREAM) - at;
      RC(sluice_usage_reader_feed(reader, USAGE_STREAM + at, n), SLUICE_OK);
      at += n;
      step = step * 2 + 1;
    }
    RC(sluice_usage_reader_stats(reader, &stats), SLUICE_OK);
    rc = sluice_usage_reader_finish(reader, &u, &found); /* before `found` is read */
    sane_usage(rc, &u, found, "reader_finish");
    RC(sluice_usage_reader_feed(reader, ptr, len), ptr == NULL && len != 0 ? SLUICE_INVALID_ARGUMENT
                                                                           : SLUICE_FAILED_PRECONDITION);
    rc = sluice_usage_reader_finish(reader, &u, &found);
    sane_usage(rc, &u, found, "reader_finish again");
    RC(sluice_usage_reader_stats(reader, &stats), SLUICE_OK);
    EXPECT(stats.events >= 0 && stats.malformed_events >= 0 && stats.oversized_events >= 0 &&
           stats.rejected_counts >= 0 && stats.usage_reports >= 0, "negative stats");
    sluice_usage_reader_destroy(reader);
  }
  found = 2;
  rc = sluice_read_usage(ptr, len, provider, &u, &found);
  sane_usage(rc, &u, found, "read_usage");
  rc = sluice_include_usage_in_stream(ptr, len, &out, &out_len);
  EXPECT(documented(rc), "include_usage_in_stream returned %s", sluice_status_name(rc));
  if (rc == SLUICE_OK) {
    EXPECT(out != NULL && out[out_len] == 0, "the rewritten body is NUL-terminated");
  } else {
    EXPECT(out == NULL && out_len == 0, "a failed rewrite left *out set");
  }
  sluice_free(rc == SLUICE_OK ? out : NULL);
  rc = sluice_estimate_prompt_tokens(ptr, len, o, &tokens);
  sane_tokens(rc, tokens, "estimate_prompt_tokens");
  tokens = -1;
  rc = sluice_estimate_text_tokens(ptr, len, o, &tokens);
  sane_tokens(rc, tokens, "estimate_text_tokens");
}

static const int USAGE_PARAMS[] = {
    SLUICE_PARAM_USAGE_MAX_EVENT_BYTES,         SLUICE_PARAM_ESTIMATE_TOKENS_PER_MESSAGE,
    SLUICE_PARAM_ESTIMATE_TOKENS_PER_REQUEST,   SLUICE_PARAM_ESTIMATE_TOKENS_PER_IMAGE,
    SLUICE_PARAM_ESTIMATE_CJK_CHARS_PER_TOKEN_MILLI, SLUICE_PARAM_ESTIMATE_SCALE_MILLI,
};
static const char* const USAGE_PARAM_NAMES[] = {
    "USAGE_MAX_EVENT_BYTES", "ESTIMATE_TOKENS_PER_MESSAGE", "ESTIMATE_TOKENS_PER_REQUEST",
    "ESTIMATE_TOKENS_PER_IMAGE", "ESTIMATE_CJK_CHARS_PER_TOKEN_MILLI", "ESTIMATE_SCALE_MILLI",
};
#define N_USAGE_PARAMS (sizeof(USAGE_PARAMS) / sizeof(USAGE_PARAMS[0]))

/* One parameter at one extreme: the object it applies to takes it or refuses it by name, and is
 * used; the one it does not apply to refuses it. */
static void usage_option(int64_t value, const void* data) {
  const int param = *(const int*)data;
  sluice_options* o = sluice_options_create();
  size_t i;
  RC(sluice_options_set(o, param, value), SLUICE_OK);
  use_usage_calls(USAGE_STREAM, strlen(USAGE_STREAM), SLUICE_PROVIDER_AUTO, o);
  for (i = 0; i < N_BODIES; ++i) use_usage_calls(BODIES[i], strlen(BODIES[i]), SLUICE_PROVIDER_AUTO, o);
  use_usage_calls(big_buffer, BIG_LEN, SLUICE_PROVIDER_OPENAI_RESPONSES, o);
  sluice_options_destroy(o);
}

static void usage_providers(int64_t value, const void* data) {
  const int provider = (int)value;
  const int known = provider >= SLUICE_PROVIDER_AUTO && provider <= SLUICE_PROVIDER_DASHSCOPE;
  sluice_usage_reader* reader = NULL;
  sluice_usage u;
  (void)data;
  EXPECT(sluice_provider_name(provider) != NULL, "provider_name is never NULL");
  RC(sluice_usage_reader_create(provider, NULL, &reader), known ? SLUICE_OK : SLUICE_INVALID_ARGUMENT);
  sluice_usage_reader_destroy(reader);
  RC(sluice_read_usage(USAGE_STREAM, strlen(USAGE_STREAM), provider, &u, NULL),
     known ? SLUICE_OK : SLUICE_INVALID_ARGUMENT);
  use_usage_calls(USAGE_STREAM, strlen(USAGE_STREAM), provider, NULL);
}

static void usage_strings(int64_t which, const void* data) {
  const hs* s = &strings[which];
  int provider;
  (void)data;
  for (provider = SLUICE_PROVIDER_AUTO; provider <= SLUICE_PROVIDER_DASHSCOPE; ++provider) {
    use_usage_calls(s->ptr, s->len, provider, NULL);
  }
}

static void usage_bodies(int64_t which, const void* data) {
  int provider;
  (void)data;
  for (provider = SLUICE_PROVIDER_AUTO; provider <= SLUICE_PROVIDER_DASHSCOPE; ++provider) {
    use_usage_calls(BODIES[which], strlen(BODIES[which]), provider, NULL);
  }
}

/* (NULL, len): refused unless len is 0, by every call that takes bytes. */
static void usage_lying_lengths(int64_t value, const void* data) {
  const size_t len = (size_t)value;
  const int want = len == 0 ? SLUICE_OK : SLUICE_INVALID_ARGUMENT;
  sluice_usage_reader* reader = NULL;
  sluice_usage u;
  char* out = NULL;
  size_t out_len = 0;
  int64_t tokens = 0;
  (void)data;
  RC(sluice_usage_reader_create(SLUICE_PROVIDER_AUTO, NULL, &reader), SLUICE_OK);
  RC(sluice_usage_reader_feed(reader, NULL, len), want);
  RC(sluice_read_usage(NULL, len, SLUICE_PROVIDER_AUTO, &u, NULL), want);
  RC(sluice_include_usage_in_stream(NULL, len, &out, &out_len), SLUICE_INVALID_ARGUMENT);
  EXPECT(out == NULL && out_len == 0, "a failed rewrite left *out set");
  RC(sluice_estimate_prompt_tokens(NULL, len, NULL, &tokens), want);
  RC(sluice_estimate_text_tokens(NULL, len, NULL, &tokens), want);
  sluice_usage_reader_destroy(reader);
  use_usage_calls(NULL, len, SLUICE_PROVIDER_AUTO, NULL);
}

static void usage_nulls(int64_t value, const void* data) {
  sluice_usage_reader* reader = NULL;
  sluice_usage u;
  sluice_usage_stats stats;
  uint8_t found = 3;
  char* out = NULL;
  size_t out_len = 0;
  int64_t tokens = 0;
  sluice_options* o = sluice_options_create();
  (void)value;
  (void)data;
  sluice_free(NULL);
  sluice_usage_reader_destroy(NULL);
  RC(sluice_usage_reader_create(SLUICE_PROVIDER_AUTO, NULL, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_usage_reader_feed(NULL, "x", 1), SLUICE_INVALID_ARGUMENT);
  RC(sluice_usage_reader_feed(NULL, NULL, 0), SLUICE_INVALID_ARGUMENT);
  RC(sluice_usage_reader_finish(NULL, &u, &found), SLUICE_INVALID_ARGUMENT);
  EXPECT(found == 0, "finish on NULL left found %d", found);
  RC(sluice_usage_reader_finish(NULL, NULL, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_usage_reader_stats(NULL, &stats), SLUICE_INVALID_ARGUMENT);
  RC(sluice_usage_reader_stats(NULL, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_usage_reader_create(SLUICE_PROVIDER_AUTO, NULL, &reader), SLUICE_OK);
  RC(sluice_usage_reader_finish(reader, NULL, &found), SLUICE_INVALID_ARGUMENT);
  RC(sluice_usage_reader_stats(reader, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_usage_reader_finish(reader, &u, NULL), SLUICE_OK);
  RC(sluice_usage_reader_feed(reader, "x", 1), SLUICE_FAILED_PRECONDITION);
  sluice_usage_reader_destroy(reader);
  RC(sluice_read_usage("{}", 2, SLUICE_PROVIDER_AUTO, NULL, &found), SLUICE_INVALID_ARGUMENT);
  RC(sluice_read_usage("{}", 2, SLUICE_PROVIDER_AUTO, NULL, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_include_usage_in_stream("{}", 2, NULL, &out_len), SLUICE_INVALID_ARGUMENT);
  RC(sluice_include_usage_in_stream("{}", 2, &out, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_include_usage_in_stream("{}", 2, NULL, NULL), SLUICE_INVALID_ARGUMENT);
  EXPECT(out == NULL, "a failed rewrite left *out set");
  RC(sluice_estimate_prompt_tokens("{}", 2, NULL, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_estimate_text_tokens("x", 1, NULL, NULL), SLUICE_INVALID_ARGUMENT);
  /* Options that do not apply: another object's parameter, windows, a store. */
  sluice_options_set(o, SLUICE_PARAM_RATE, 1);
  RC(sluice_usage_reader_create(SLUICE_PROVIDER_AUTO, o, &reader), SLUICE_INVALID_ARGUMENT);
  EXPECT(reader == NULL, "a failed create left *out set");
  RC(sluice_estimate_prompt_tokens("{}", 2, o, &tokens), SLUICE_INVALID_ARGUMENT);
  sluice_options_destroy(o);
  o = sluice_options_create();
  sluice_options_add_window(o, 1, SECOND, 0);
  RC(sluice_usage_reader_create(SLUICE_PROVIDER_AUTO, o, &reader), SLUICE_INVALID_ARGUMENT);
  RC(sluice_estimate_text_tokens("x", 1, o, &tokens), SLUICE_INVALID_ARGUMENT);
  sluice_options_destroy(o);
}

static void register_usage(void) {
  static const hv one[] = {{"", 0}};
  static hv string_values[16];
  static hv body_values[N_BODIES];
  static char body_labels[N_BODIES][16];
  size_t i;
  char name[200];
  for (i = 0; i < N_USAGE_PARAMS; ++i) {
    snprintf(name, sizeof(name), "usage/option/%s", USAGE_PARAM_NAMES[i]);
    add_sweep(name, usage_option, I64, N_I64, &USAGE_PARAMS[i], 0);
  }
  for (i = 0; i < n_strings; ++i) string_values[i] = (hv){strings[i].label, (int64_t)i};
  for (i = 0; i < N_BODIES; ++i) {
    snprintf(body_labels[i], sizeof(body_labels[i]), "body%zu", i);
    body_values[i] = (hv){body_labels[i], (int64_t)i};
  }
  add_sweep("usage/provider", usage_providers, INTS, N_INTS, NULL, 0);
  add_sweep("usage/bytes", usage_strings, string_values, n_strings, NULL, 0);
  add_sweep("usage/json_bodies", usage_bodies, body_values, N_BODIES, NULL, 0);
  add_sweep("usage/lying_lengths", usage_lying_lengths, SIZES, N_SIZES, NULL, 0);
  add_sweep("usage/null_handles_and_outs", usage_nulls, one, 1, NULL, 0);
  covers("sluice_free sluice_provider_name sluice_usage_reader_create sluice_usage_reader_destroy "
         "sluice_usage_reader_feed sluice_usage_reader_finish sluice_usage_reader_stats "
         "sluice_read_usage sluice_include_usage_in_stream sluice_estimate_prompt_tokens "
         "sluice_estimate_text_tokens");
}

/* ---- the Governor (experimental) ------------------------------------------------------------------ */

/* Per-key limits are not built by the C++ Governor yet (RuleState::CompileOverride answers
 * UnimplementedError, which the status table maps to SLUICE_INTERNAL): accepted by that message
 * only, until they are. */
static int documented_key_limits(int rc) {
  return documented(rc) ||
         (rc == SLUICE_INTERNAL && strstr(sluice_last_error_message(), "not built yet") != NULL);
}

#define DOC_KEY_LIMITS(call)                                                                  \
  do {                                                                                        \
    int rc_ = (call);                                                                         \
    EXPECT(documented_key_limits(rc_), "%s returned %d (%s): %s", #call, rc_,                 \
           sluice_status_name(rc_), sluice_last_error_message());                             \
  } while (0)

static const char* const GOVERNOR_POLICY =
    "version: 1\n"
    "name: hostile\n"
    "rules:\n"
    "  - name: rpm\n"
    "    key: [tenant]\n"
    "    requests: [{limit: 3, per: 1m}]\n"
    "  - name: apps\n"
    "    match: {app: \"*\"}\n"
    "    key: [app, tenant]\n"
    "    concurrency: 2\n"
    "  - name: tokens\n"
    "    key: [end_user]\n"
    "    tokens: [{limit: 1000, per: 1h}]\n"
    "  - name: shaped\n"
    "    match: {model: [shaped]}\n"
    "    shaping: {rate: 10, per: 1s, max_wait: 1s}\n"
    "fallbacks:\n"
    "  - name: chain\n"
    "    targets: [{name: a, model: m}, {name: b, model: n}]\n"
    "cache:\n"
    "  admission: false\n";

static sluice_governor* hostile_governor(const sluice_clock* clock) {
  sluice_governor* g = NULL;
  RC(sluice_governor_create(GOVERNOR_POLICY, strlen(GOVERNOR_POLICY), "hostile.yaml", 12, clock, &g),
     SLUICE_OK);
  return g;
}

/* Every admission call with ordinary arguments, on an admission allowed or not. */
static void use_admission(sluice_admission* a, sluice_clock* clock) {
  sluice_decision d;
  sluice_cached_answer* answer = NULL;
  sluice_fallback_call* call = NULL;
  sluice_fallback_step step;
  size_t count = 0, i, len = 0;
  uint8_t stored = 0;
  const char* chunks[1] = {"data: x\n\n"};
  size_t chunk_lens[1] = {9};
  EXPECT(sluice_admission_allowed(a) <= 1, "allowed");
  if (sluice_admission_decision(a, &d) == SLUICE_OK) sane(&d, "admission decision");
  (void)sluice_admission_rule(a, &len);
  DOC(sluice_admission_status(a));
  EXPECT(sluice_admission_delay_nanos(a) >= 0, "delay_nanos < 0");
  EXPECT(sluice_admission_token_estimate(a) >= 0, "token_estimate < 0");
  for (i = 0; i <= sluice_admission_matched_count(a); ++i) (void)sluice_admission_matched_rule(a, i, &len);
  DOC(sluice_admission_headers(a, SLUICE_HEADERS_ALL, &count));
  for (i = 0; i <= count; ++i) {
    const char *n = NULL, *v = NULL;
    size_t nl = 0, vl = 0;
    DOC(sluice_admission_header(a, i, &n, &nl, &v, &vl));
  }
  DOC(sluice_admission_cached_answer(a, &answer));
  sluice_cached_answer_destroy(answer);
  DOC(sluice_admission_store_answer(a, "{\"a\":1}", 7, NULL, NULL, 0, &stored));
  DOC(sluice_admission_store_answer(a, NULL, 0, chunks, chunk_lens, 1, &stored));
  DOC(sluice_admission_begin_call(a, 0, &call, &step));
  if (call != NULL) {
    DOC(sluice_fallback_call_next(call, 503, SLUICE_TRANSPORT_NONE, NULL, 0, 0, 0, &step));
    sluice_fallback_call_destroy(call);
  }
  if (clock != NULL) DOC(sluice_manual_clock_advance(clock, SECOND));
  DOC(sluice_admission_settle(a, 10));
  DOC(sluice_admission_cancel(a));
  DOC(sluice_admission_release(a));
}

static void admit_and_use(sluice_governor* g, sluice_clock* clock, const sluice_attribute* attrs,
                          size_t n, const char* body, size_t body_len, int64_t tokens) {
  sluice_admission* a = (sluice_admission*)&a;
  int rc = sluice_governor_admit(g, attrs, n, body, body_len, tokens, &a);
  DOC(rc);
  if (rc == SLUICE_OK) {
    EXPECT(a != NULL, "admit succeeded without an admission");
    use_admission(a, clock);
  } else {
    EXPECT(a == NULL, "a failed admit left *out set");
  }
  sluice_admission_destroy(rc == SLUICE_OK ? a : NULL);
}

/* Each hostile string as every (ptr, len) argument of the section. */
static void governor_strings(int64_t which, const void* data) {
  const hs* s = &strings[which];
  sluice_clock* clock = NULL;
  sluice_governor* g;
  sluice_governor* other = (sluice_governor*)&other;
  sluice_attribute attrs[5];
  sluice_rule_limits limits;
  int rc;
  (void)data;
  memset(&limits, 0, sizeof(limits));
  RC(sluice_manual_clock_create(0, &clock), SLUICE_OK);
  g = hostile_governor(clock);
  if (g == NULL) return;
  /* As a policy, a source, a path. */
  rc = sluice_governor_create(s->ptr, s->len, "s", 1, clock, &other);
  DOC(rc);
  sluice_governor_destroy(rc == SLUICE_OK ? other : NULL);
  other = (sluice_governor*)&other;
  rc = sluice_governor_create(GOVERNOR_POLICY, strlen(GOVERNOR_POLICY), s->ptr, s->len, clock, &other);
  DOC(rc);
  sluice_governor_destroy(rc == SLUICE_OK ? other : NULL);
  other = (sluice_governor*)&other;
  rc = sluice_governor_create_from_file(s->ptr, s->len, clock, &other);
  EXPECT(rc != SLUICE_OK || s->len == 0, "a hostile path opened a policy");
  DOC(rc);
  sluice_governor_destroy(rc == SLUICE_OK ? other : NULL);
  DOC(sluice_governor_reload(g, s->ptr, s->len, s->ptr, s->len));
  DOC(sluice_governor_reload_from_file(g, s->ptr, s->len));
  /* As attribute names and values, and as the body. */
  attrs[0] = (sluice_attribute){"tenant", 6, s->ptr, s->len};
  attrs[1] = (sluice_attribute){"app", 3, s->ptr, s->len};
  attrs[2] = (sluice_attribute){"end_user", 8, s->ptr, s->len};
  attrs[3] = (sluice_attribute){"model", 5, s->ptr, s->len};
  attrs[4] = (sluice_attribute){s->ptr, s->len, "v", 1};
  admit_and_use(g, clock, attrs, 5, s->ptr, s->len, -1);
  admit_and_use(g, clock, attrs + 4, 1, BODY, strlen(BODY), 5);
  /* As a rule and a key. */
  DOC(sluice_governor_set_key_limits(g, s->ptr, s->len, "k", 1, &limits));
  DOC(sluice_governor_set_key_limits(g, "rpm", 3, s->ptr, s->len, &limits));
  DOC(sluice_governor_clear_key_limits(g, s->ptr, s->len, s->ptr, s->len));
  DOC(sluice_governor_clear_key_limits(g, "rpm", 3, s->ptr, s->len));
  sluice_governor_destroy(g);
  sluice_clock_destroy(clock);
}

/* Each extreme int64 as the token estimate, the settled total, the call deadline, and every
 * field of per-key limits. */
static void governor_int64(int64_t v, const void* data) {
  sluice_clock* clock = NULL;
  sluice_governor* g;
  sluice_attribute attrs[3] = {{"tenant", 6, "t", 1}, {"end_user", 8, "u", 1}, {"app", 3, "x", 1}};
  sluice_admission* a = NULL;
  sluice_fallback_call* call = NULL;
  sluice_rule_limits limits;
  sluice_window w;
  int field, i;
  (void)data;
  RC(sluice_manual_clock_create(0, &clock), SLUICE_OK);
  g = hostile_governor(clock);
  if (g == NULL) return;
  for (i = 0; i < 3; ++i) admit_and_use(g, clock, attrs, 3, BODY, strlen(BODY), v);
  DOC(sluice_governor_admit(g, attrs, 3, NULL, 0, v, &a));
  if (a != NULL) {
    DOC(sluice_admission_settle(a, v));
    DOC(sluice_admission_settle(a, v));
    DOC(sluice_admission_begin_call(a, v, &call, NULL));
    sluice_fallback_call_destroy(call);
    sluice_admission_destroy(a);
  }
  for (field = 0; field < 9; ++field) {
    memset(&limits, 0, sizeof(limits));
    w = (sluice_window){5, 60 * SECOND, 0, SLUICE_WINDOW_GCRA};
    switch (field) {
      case 0: w.limit = v; limits.requests = &w; limits.request_count = 1; break;
      case 1: w.period_nanos = v; limits.requests = &w; limits.request_count = 1; break;
      case 2: w.burst = v; limits.tokens = &w; limits.token_count = 1; break;
      case 3: w.kind = (int)(v % 1000); limits.requests = &w; limits.request_count = 1; break;
      case 4: limits.concurrency = v; break;
      case 5: limits.shaping_rate = v; break;
      case 6: limits.shaping_rate = 1; limits.shaping_per_nanos = v; break;
      case 7: limits.shaping_rate = 1; limits.shaping_burst = v; break;
      default: limits.shaping_rate = 1; limits.shaping_max_wait_nanos = v; break;
    }
    DOC_KEY_LIMITS(sluice_governor_set_key_limits(g, "rpm", 3, "t", 1, &limits));
    DOC_KEY_LIMITS(sluice_governor_set_key_limits(g, "apps", 4, "x/t", 3, &limits));
    admit_and_use(g, clock, attrs, 3, NULL, 0, -1);
    DOC(sluice_governor_clear_key_limits(g, "rpm", 3, "t", 1));
  }
  sluice_governor_destroy(g);
  sluice_clock_destroy(clock);
}

/* Hostile policies: none may crash, hang or be SLUICE_INTERNAL; the ones that build are used. */
static const char* const HOSTILE_POLICIES[] = {
    "",
    "\xff\xfe",
    "null",
    "[]",
    "version: 1\nrules: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
    "version: 1\nrules:\n  - {name: r, requests: [{limit: 99999999999999999999999, per: 1m}]}\n",
    "version: 1\nrules:\n  - {name: r, requests: [{limit: 9223372036854775807, per: 1ns}]}\n",
    "version: 1\nrules:\n  - {name: r, requests: [{limit: 1, per: 99999999999h}]}\n",
    "version: 1\nrules:\n  - {name: r, concurrency: 9223372036854775807, key: [tenant]}\n",
    "version: 1\nrules:\n  - {name: r, tokens: [{limit: 1, per: 1s}], key: [a, b, c, d, e, f]}\n",
    "version: 1\nrules:\n  - &r {name: r, concurrency: 1}\n  - *r\n",
    "version: 1\nversion: 2\nrules: []\n",
    "version: 1\nrules:\n  - {name: \"\\u0000\", concurrency: 1}\n",
    "{\"version\": 1, \"rules\": [{\"name\": \"j\", \"requests\": [{\"limit\": 1, \"per\": \"1s\"}]}]}\n",
    "version: 1\n---\nversion: 1\n",
    "version: 1\nrules:\n  - {name: r, match: {ip: {cidr: [\"300.1.1.1/99\", \"::/200\"]}}, concurrency: 1}\n",
};
#define N_HOSTILE_POLICIES (sizeof(HOSTILE_POLICIES) / sizeof(HOSTILE_POLICIES[0]))

static void governor_policies(int64_t which, const void* data) {
  const char* text = HOSTILE_POLICIES[which];
  sluice_clock* clock = NULL;
  sluice_governor* g = (sluice_governor*)&g;
  sluice_governor* good;
  sluice_attribute attrs[2] = {{"tenant", 6, "t", 1}, {"ip", 2, "10.0.0.1", 8}};
  int rc;
  (void)data;
  RC(sluice_manual_clock_create(0, &clock), SLUICE_OK);
  rc = sluice_governor_create(text, strlen(text), "p.yaml", 6, clock, &g);
  DOC(rc);
  if (rc == SLUICE_OK) {
    admit_and_use(g, clock, attrs, 2, BODY, strlen(BODY), -1);
    sluice_governor_destroy(g);
  } else {
    EXPECT(g == NULL, "a failed create left *out set");
    EXPECT(strstr(sluice_last_error_message(), "p.yaml") != NULL, "the error names no source: %s",
           sluice_last_error_message());
  }
  good = hostile_governor(clock);
  if (good != NULL) {
    DOC(sluice_governor_reload(good, text, strlen(text), NULL, 0));
    admit_and_use(good, clock, attrs, 2, BODY, strlen(BODY), -1);
    sluice_governor_destroy(good);
  }
  sluice_clock_destroy(clock);
}

/* NULL handles and out-pointers, and lying lengths, for every call of the section. */
static void governor_nulls(int64_t value, const void* data) {
  sluice_clock* clock = NULL;
  sluice_governor* g;
  sluice_governor* out = (sluice_governor*)&out;
  sluice_admission* a = (sluice_admission*)&a;
  sluice_admission* live = NULL;
  sluice_rule_limits limits;
  sluice_decision d;
  sluice_cached_answer* answer = (sluice_cached_answer*)&answer;
  sluice_fallback_call* call = (sluice_fallback_call*)&call;
  sluice_attribute lying[1] = {{NULL, (size_t)-1, NULL, (size_t)-1}};
  size_t len = 0, count = 0, huge = (size_t)(value == 0 ? SIZE_MAX : SIZE_MAX / 2);
  (void)data;
  memset(&limits, 0, sizeof(limits));
  RC(sluice_manual_clock_create(0, &clock), SLUICE_OK);
  g = hostile_governor(clock);
  if (g == NULL) return;
  sluice_governor_destroy(NULL);
  sluice_admission_destroy(NULL);
  RC(sluice_governor_create(NULL, huge, NULL, 0, clock, &out), SLUICE_INVALID_ARGUMENT);
  EXPECT(out == NULL, "create left *out set");
  RC(sluice_governor_create("x", 1, NULL, huge, clock, &out), SLUICE_INVALID_ARGUMENT);
  RC(sluice_governor_create("x", 1, NULL, 0, clock, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_governor_create_from_file(NULL, huge, clock, &out), SLUICE_INVALID_ARGUMENT);
  RC(sluice_governor_create_from_file("x", 1, clock, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_governor_reload(NULL, "x", 1, NULL, 0), SLUICE_INVALID_ARGUMENT);
  RC(sluice_governor_reload(g, NULL, huge, NULL, 0), SLUICE_INVALID_ARGUMENT);
  RC(sluice_governor_reload(g, "x", 1, NULL, huge), SLUICE_INVALID_ARGUMENT);
  RC(sluice_governor_reload_from_file(NULL, "x", 1), SLUICE_INVALID_ARGUMENT);
  RC(sluice_governor_reload_from_file(g, NULL, huge), SLUICE_INVALID_ARGUMENT);
  RC(sluice_governor_admit(NULL, NULL, 0, NULL, 0, -1, &a), SLUICE_INVALID_ARGUMENT);
  EXPECT(a == NULL, "admit left *out set");
  RC(sluice_governor_admit(g, NULL, 0, NULL, 0, -1, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_governor_admit(g, NULL, huge, NULL, 0, -1, &a), SLUICE_INVALID_ARGUMENT);
  RC(sluice_governor_admit(g, NULL, 0, NULL, huge, -1, &a), SLUICE_INVALID_ARGUMENT);
  RC(sluice_governor_admit(g, lying, 1, NULL, 0, -1, &a), SLUICE_INVALID_ARGUMENT);
  RC(sluice_governor_set_key_limits(NULL, "rpm", 3, "k", 1, &limits), SLUICE_INVALID_ARGUMENT);
  RC(sluice_governor_set_key_limits(g, "rpm", 3, "k", 1, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_governor_set_key_limits(g, NULL, huge, "k", 1, &limits), SLUICE_INVALID_ARGUMENT);
  RC(sluice_governor_set_key_limits(g, "rpm", 3, NULL, huge, &limits), SLUICE_INVALID_ARGUMENT);
  limits.requests = NULL;
  limits.request_count = huge;
  RC(sluice_governor_set_key_limits(g, "rpm", 3, "k", 1, &limits), SLUICE_INVALID_ARGUMENT);
  limits.request_count = 0;
  limits.tokens = (const sluice_window*)&limits; /* never read: a count past 8 is refused first */
  limits.token_count = huge;
  RC(sluice_governor_set_key_limits(g, "rpm", 3, "k", 1, &limits), SLUICE_INVALID_ARGUMENT);
  RC(sluice_governor_clear_key_limits(NULL, "rpm", 3, "k", 1), SLUICE_INVALID_ARGUMENT);
  RC(sluice_governor_clear_key_limits(g, NULL, huge, "k", 1), SLUICE_INVALID_ARGUMENT);
  RC(sluice_governor_clear_key_limits(g, "rpm", 3, NULL, huge), SLUICE_INVALID_ARGUMENT);
  EXPECT(sluice_governor_waits_for_redis(NULL) == 0, "waits_for_redis(NULL)");
  EXPECT(sluice_governor_waits_for_redis(g) == 0, "waits_for_redis in process scope");
  {
    char* text = (char*)&case_failed;
    size_t text_len = 7;
    RC(sluice_governor_metrics_text(NULL, &text, &text_len), SLUICE_INVALID_ARGUMENT);
    EXPECT(text == NULL && text_len == 0, "a failed metrics_text left its outputs set");
    RC(sluice_governor_metrics_text(g, NULL, &text_len), SLUICE_INVALID_ARGUMENT);
    RC(sluice_governor_metrics_text(g, &text, NULL), SLUICE_INVALID_ARGUMENT);
    EXPECT(text == NULL, "a failed metrics_text left *out set");
    RC(sluice_governor_metrics_text(g, &text, &text_len), SLUICE_OK);
    EXPECT(text != NULL && strlen(text) == text_len, "metrics_text: length and NUL");
    sluice_free(text);
  }

  EXPECT(sluice_admission_allowed(NULL) == 0, "allowed(NULL)");
  RC(sluice_admission_decision(NULL, &d), SLUICE_INVALID_ARGUMENT);
  EXPECT(sluice_admission_rule(NULL, &len) == NULL && len == 0, "rule(NULL)");
  (void)sluice_admission_rule(NULL, NULL);
  RC(sluice_admission_status(NULL), SLUICE_INVALID_ARGUMENT);
  EXPECT(sluice_admission_delay_nanos(NULL) == 0, "delay_nanos(NULL)");
  EXPECT(sluice_admission_token_estimate(NULL) == 0, "token_estimate(NULL)");
  EXPECT(sluice_admission_matched_count(NULL) == 0, "matched_count(NULL)");
  EXPECT(sluice_admission_matched_rule(NULL, 0, &len) == NULL && len == 0, "matched_rule(NULL)");
  RC(sluice_admission_headers(NULL, SLUICE_HEADERS_ALL, &count), SLUICE_INVALID_ARGUMENT);
  RC(sluice_admission_header(NULL, 0, NULL, NULL, NULL, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_admission_settle(NULL, 1), SLUICE_INVALID_ARGUMENT);
  RC(sluice_admission_cancel(NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_admission_release(NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_admission_cached_answer(NULL, &answer), SLUICE_INVALID_ARGUMENT);
  EXPECT(answer == NULL, "cached_answer left *out set");
  RC(sluice_admission_store_answer(NULL, "x", 1, NULL, NULL, 0, NULL), SLUICE_INVALID_ARGUMENT);
  RC(sluice_admission_begin_call(NULL, 0, &call, NULL), SLUICE_INVALID_ARGUMENT);
  EXPECT(call == NULL, "begin_call left *out set");

  RC(sluice_governor_admit(g, NULL, 0, NULL, 0, -1, &live), SLUICE_OK);
  if (live != NULL) {
    unsigned styles;
    RC(sluice_admission_decision(live, NULL), SLUICE_INVALID_ARGUMENT);
    RC(sluice_admission_headers(live, SLUICE_HEADERS_ALL, NULL), SLUICE_INVALID_ARGUMENT);
    for (styles = 0; styles < 40; styles += 3) DOC(sluice_admission_headers(live, styles, &count));
    DOC(sluice_admission_headers(live, 0xffffffffu, &count));
    RC(sluice_admission_header(live, huge, NULL, NULL, NULL, NULL), SLUICE_INVALID_ARGUMENT);
    RC(sluice_admission_cached_answer(live, NULL), SLUICE_INVALID_ARGUMENT);
    RC(sluice_admission_store_answer(live, NULL, huge, NULL, NULL, 0, NULL), SLUICE_INVALID_ARGUMENT);
    RC(sluice_admission_store_answer(live, NULL, 0, NULL, NULL, huge, NULL), SLUICE_INVALID_ARGUMENT);
    RC(sluice_admission_begin_call(live, 0, NULL, NULL), SLUICE_INVALID_ARGUMENT);
    EXPECT(sluice_admission_matched_rule(live, huge, NULL) == NULL, "matched_rule past the end");
    sluice_admission_destroy(live);
  }
  sluice_governor_destroy(g);
  sluice_clock_destroy(clock);
}

/* Admissions (and their calls and answers) used after a reload, and after their governor is
 * destroyed: the admission keeps its policy snapshot alive. */
static void governor_lifetimes(int64_t which, const void* data) {
  sluice_clock* clock = NULL;
  sluice_governor* g;
  sluice_attribute attrs[3] = {{"tenant", 6, "t", 1}, {"app", 3, "x", 1}, {"end_user", 8, "u", 1}};
  sluice_admission* held[5] = {NULL, NULL, NULL, NULL, NULL};
  int i;
  (void)data;
  RC(sluice_manual_clock_create(0, &clock), SLUICE_OK);
  g = hostile_governor(clock);
  if (g == NULL) return;
  for (i = 0; i < 5; ++i) DOC(sluice_governor_admit(g, attrs, 3, BODY, strlen(BODY), 100, &held[i]));
  if (which == 0) {
    sluice_governor_destroy(g);
    g = NULL;
  } else {
    DOC(sluice_governor_reload(g, "version: 1\n", 11, NULL, 0));
  }
  for (i = 0; i < 5; ++i) {
    if (held[i] != NULL) use_admission(held[i], clock);
    sluice_admission_destroy(held[i]);
  }
  sluice_governor_destroy(g);
  sluice_clock_destroy(clock);
}

static void register_governor(void) {
  static const hv one[] = {{"", 0}, {"half", 1}};
  static const hv lifetimes_of[] = {{"after_governor", 0}, {"after_reload", 1}};
  static hv string_values[16];
  static hv policy_values[N_HOSTILE_POLICIES];
  static char policy_labels[N_HOSTILE_POLICIES][16];
  size_t i;
  for (i = 0; i < n_strings; ++i) string_values[i] = (hv){strings[i].label, (int64_t)i};
  for (i = 0; i < N_HOSTILE_POLICIES; ++i) {
    snprintf(policy_labels[i], sizeof(policy_labels[i]), "policy%zu", i);
    policy_values[i] = (hv){policy_labels[i], (int64_t)i};
  }
  add_sweep("governor/strings", governor_strings, string_values, n_strings, NULL, 0);
  add_sweep("governor/int64", governor_int64, I64, N_I64, NULL, 0);
  add_sweep("governor/policies", governor_policies, policy_values, N_HOSTILE_POLICIES, NULL, 0);
  add_sweep("governor/nulls", governor_nulls, one, 2, NULL, 0);
  add_sweep("governor/lifetime", governor_lifetimes, lifetimes_of, 2, NULL, 0);
  covers("sluice_governor_create sluice_governor_create_from_file sluice_governor_destroy "
         "sluice_governor_reload sluice_governor_reload_from_file sluice_governor_admit "
         "sluice_governor_set_key_limits sluice_governor_clear_key_limits "
         "sluice_governor_waits_for_redis sluice_governor_metrics_text sluice_admission_allowed sluice_admission_decision "
         "sluice_admission_rule sluice_admission_status sluice_admission_delay_nanos "
         "sluice_admission_token_estimate sluice_admission_matched_count "
         "sluice_admission_matched_rule sluice_admission_headers sluice_admission_header "
         "sluice_admission_settle sluice_admission_cancel sluice_admission_release "
         "sluice_admission_destroy sluice_admission_cached_answer sluice_admission_store_answer "
         "sluice_admission_begin_call");
}

/* ---- the completeness check: every function of c.h has hostile cases ---------------------------- */

/* The first "sluice_name(" of a declaration line into `name`; its length, or 0. */
static size_t declared_name(const char* line, char* name, size_t size) {
  const char* p = line;
  while ((p = strstr(p, "sluice_")) != NULL) {
    const char* end = p;
    while (*end == '_' || (*end >= 'a' && *end <= 'z') || (*end >= '0' && *end <= '9')) ++end;
    if (*end == '(' && (size_t)(end - p) < size) {
      memcpy(name, p, (size_t)(end - p));
      name[end - p] = 0;
      return (size_t)(end - p);
    }
    p = end;
  }
  return 0;
}

/* Every SLUICE_PARAM_X = N of c.h is a number sluice_options_set knows (the table has a row for
 * it), except SLUICE_PARAM_FALLBACK_ACTION, a base to add a failure class to. */
static int header_params_are_known(void) {
  FILE* f = fopen(SLUICE_HEADER_PATH, "r");
  char line[1024];
  int found = 0, unknown = 0;
  sluice_options* o = sluice_options_create();
  if (f == NULL || o == NULL) return 0;
  while (fgets(line, sizeof(line), f) != NULL) {
    const char* p = strstr(line, "SLUICE_PARAM_");
    const char* eq = p ? strchr(p, '=') : NULL;
    char name[96];
    long number;
    size_t len = 0;
    if (p == NULL || p != line + strspn(line, " ") || eq == NULL) continue; /* enumerators only */
    while (p[len] == '_' || (p[len] >= 'A' && p[len] <= 'Z')) ++len;
    if (len >= sizeof(name)) continue;
    memcpy(name, p, len);
    name[len] = 0;
    number = strtol(eq + 1, NULL, 10);
    if (number <= 0) continue; /* "= SLUICE_PARAM_..." is not a number */
    ++found;
    if (strcmp(name, "SLUICE_PARAM_FALLBACK_ACTION") == 0) {
      EXPECT(sluice_options_set(o, (int)number, 1) == SLUICE_INVALID_ARGUMENT, "the action base");
      EXPECT(sluice_options_set(o, (int)number + SLUICE_FAIL_CLIENT, 1) == SLUICE_OK, "an action");
    } else if (sluice_options_set(o, (int)number, 0) != SLUICE_OK) {
      fprintf(stderr, "c.h declares %s = %ld, which sluice_options_set refuses: %s\n", name, number,
              sluice_last_error_message());
      ++unknown;
    }
  }
  fclose(f);
  sluice_options_destroy(o);
  printf("c.h: %d parameters, all known to the library: %s\n", found, unknown ? "NO" : "yes");
  return found >= 70 && unknown == 0 && !case_failed;
}

static int header_is_covered(void) {
  FILE* f = fopen(SLUICE_HEADER_PATH, "r");
  char line[1024];
  int missing = 0, found = 0;
  if (f == NULL) {
    fprintf(stderr, "cannot read %s\n", SLUICE_HEADER_PATH);
    return 0;
  }
  while (fgets(line, sizeof(line), f) != NULL) {
    char name[128];
    if (strncmp(line, "SLUICE_API ", 11) != 0) continue; /* declarations start the line */
    /* The markers (SLUICE_DEPRECATED(...), SLUICE_EXPERIMENTAL) come first; the function's name
     * may then be on the next line. */
    if (declared_name(line, name, sizeof(name)) == 0) {
      size_t used = strlen(line);
      if (fgets(line + used, (int)(sizeof(line) - used), f) == NULL) break;
      if (declared_name(line, name, sizeof(name)) == 0) continue;
    }
    ++found;
    if (!is_covered(name)) {
      fprintf(stderr, "c.h declares %s, which has no hostile case (add one to %s)\n", name,
              __FILE__);
      ++missing;
    }
  }
  fclose(f);
  if (found < 50) {
    fprintf(stderr, "found only %d functions in %s: the header reader is broken\n", found,
            SLUICE_HEADER_PATH);
    return 0;
  }
  printf("c.h: %d functions, all with hostile cases: %s\n", found, missing ? "NO" : "yes");
  return missing == 0;
}

/* ---- main: fork per case --------------------------------------------------------------------------- */

/* Removes the regions a case made but could not remove (it crashed): their names carry its pid. */
static void remove_regions_of(pid_t pid) {
  char prefix[64];
  DIR* dir = opendir("/dev/shm");
  struct dirent* entry;
  size_t len;
  if (dir == NULL) return;
  snprintf(prefix, sizeof(prefix), "sluice.capi-hostile-%ld-", (long)pid);
  len = strlen(prefix);
  while ((entry = readdir(dir)) != NULL) {
    if (strncmp(entry->d_name, prefix, len) == 0) {
      const char* name = entry->d_name + strlen("sluice.");
      sluice_shared_region_remove(name, strlen(name));
    }
  }
  closedir(dir);
}

static int run_case(const hcase* c) {
  pid_t pid;
  int status = 0;
  fflush(stdout);
  fflush(stderr);
  pid = fork();
  if (pid == 0) {
    struct rlimit fsize = {MAX_REGION_BYTES, MAX_REGION_BYTES};
    /* A hostile size may make a huge shared region: it must fail, not fill the host's RAM. */
    setrlimit(RLIMIT_FSIZE, &fsize);
    signal(SIGXFSZ, SIG_IGN);
    alarm(CASE_SECONDS);
    case_failed = 0;
    c->fn(c->value, c->data);
    fflush(stderr);
    _exit(case_failed ? 3 : 0);
  }
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  remove_regions_of(pid);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 1;
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
    fprintf(stderr, "FAIL %s: hung (no result within %d s)\n", c->name, CASE_SECONDS);
  } else if (WIFSIGNALED(status)) {
    fprintf(stderr, "FAIL %s: crashed (signal %d, %s)\n", c->name, WTERMSIG(status),
            strsignal(WTERMSIG(status)));
  } else if (WEXITSTATUS(status) == 3) {
    fprintf(stderr, "FAIL %s: the checks above failed\n", c->name);
  } else {
    fprintf(stderr, "FAIL %s: exited with %d (a sanitizer report above: undefined behaviour or a "
            "memory error)\n", c->name, WEXITSTATUS(status));
  }
  return 0;
}

int main(int argc, char** argv) {
  const char* filter = argc > 1 ? argv[1] : NULL;
  size_t i, ran = 0, failed = 0;
  int complete, have_redis;
  char** failures;
  init_strings();
  register_params();
  register_windows();
  register_string_params();
  register_calls();
  register_misc();
  register_deprecated();
  register_usage();
  register_governor();
  complete = header_is_covered() && header_params_are_known();
  have_redis = start_redis();
  if (!have_redis) fprintf(stderr, "could not start redis-server: cluster cases fail\n");
  failures = calloc(n_cases, sizeof(char*));
  for (i = 0; i < n_cases; ++i) {
    if (filter != NULL && strstr(cases[i].name, filter) == NULL) continue;
    ++ran;
    if (cases[i].needs_redis && !have_redis) {
      fprintf(stderr, "FAIL %s: needs redis-server\n", cases[i].name);
      failures[failed++] = cases[i].name;
      continue;
    }
    if (!run_case(&cases[i])) failures[failed++] = cases[i].name;
  }
  if (redis_pid > 0) {
    kill(redis_pid, SIGTERM);
    waitpid(redis_pid, NULL, 0);
  }
  printf("%zu hostile cases, %zu failed%s\n", ran, failed,
         complete ? "" : "; and c.h has functions without hostile cases or parameters the library refuses");
  for (i = 0; i < failed; ++i) printf("  failed: %s\n", failures[i]);
  free(failures);
  return failed == 0 && complete ? 0 : 1;
}
