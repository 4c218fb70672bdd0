/* Usage metering through the C ABI, from C (sluice/c.h, "usage metering"): recorded-shaped
 * answers fed to a reader in random chunk sizes (1 byte up) give the usage the whole answer
 * gives; an answer without usage is found == 0, never zeros passed off as a usage; NULL and
 * hostile arguments are refused by name; feed after finish is refused; two threads on one
 * reader are refused, not raced; the include_usage rewrite and the estimates, with options.
 * Prints "N passed, N failed" and exits non-zero on any failure. */
#define _POSIX_C_SOURCE 200112L /* pthread_barrier_t under -std=c99 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/c.h"

static int passed = 0;
static int failed = 0;

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (cond) {                                                                  \
      ++passed;                                                                  \
    } else {                                                                     \
      ++failed;                                                                  \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
    }                                                                            \
  } while (0)

/* The message of the last failure starts with the C function's name (c.h, convention 7). */
#define CHECK_MESSAGE(prefix) CHECK(strncmp(sluice_last_error_message(), prefix, strlen(prefix)) == 0)
#define CHECK_MENTIONS(text) CHECK(strstr(sluice_last_error_message(), text) != NULL)

/* ---- answers, shaped as the providers send them (tests/cpp/formats/usage_reader_test.cc) ----- */

/* OpenAI chat, stream_options.include_usage: "usage": null, then a usage chunk, then [DONE];
 * CRLF line ends and multi-byte UTF-8 so that chunks cut inside both. */
static const char OPENAI_STREAM[] =
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
    "\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
    "\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\r\n\r\n"
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
    "\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello \xe2\x80\x93 "
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\"},\"finish_reason\":\"stop\"}],\"usage\":null}\r\n\r\n"
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
    "\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":13,"
    "\"completion_tokens\":203,\"total_tokens\":216,\"prompt_tokens_details\":"
    "{\"cached_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":192}}}\r\n\r\n"
    "data: [DONE]\r\n\r\n";

/* The same stream when the request did not ask for usage. */
static const char OPENAI_STREAM_NO_USAGE[] =
    "data: {\"id\":\"chatcmpl-2\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n"
    "data: [DONE]\n\n";

/* Anthropic Messages: message_start's usage, then message_delta's cumulative output_tokens. */
static const char ANTHROPIC_STREAM[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\","
    "\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-20250514\","
    "\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,"
    "\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":2000,\"output_tokens\":1}}}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
    "\"text\":\"\"}}\n\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"Hello \xe2\x80\x93 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\"}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
    "\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n\n";

/* A non-streamed OpenAI chat answer. */
static const char OPENAI_BODY[] =
    "{\"id\":\"chatcmpl-3\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"gpt-4o\","
    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"{\\\"a\\\": "
    "[1, \\\"}\\\"]}\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":19,"
    "\"completion_tokens\":10,\"total_tokens\":29,\"prompt_tokens_details\":"
    "{\"cached_tokens\":8}}}";

typedef struct {
  const char* name;
  const char* bytes;
  size_t len;
  int provider; /* the reader's; AUTO is tried too */
  sluice_usage want;
} fixture;

static fixture fixtures[3];

static void init_fixtures(void) {
  fixture* f = fixtures;
  memset(fixtures, 0, sizeof(fixtures));
  f->name = "openai stream";
  f->bytes = OPENAI_STREAM;
  f->len = sizeof(OPENAI_STREAM) - 1;
  f->provider = SLUICE_PROVIDER_OPENAI_CHAT;
  f->want.prompt_tokens = 13;
  f->want.completion_tokens = 203;
  f->want.total_tokens = 216;
  f->want.cached_tokens = 0;
  f->want.reasoning_tokens = 192;
  f->want.present = SLUICE_USAGE_PROMPT_TOKENS | SLUICE_USAGE_COMPLETION_TOKENS |
                    SLUICE_USAGE_TOTAL_TOKENS | SLUICE_USAGE_CACHED_TOKENS |
                    SLUICE_USAGE_REASONING_TOKENS;
  f->want.provider = SLUICE_PROVIDER_OPENAI_CHAT;
  ++f;
  f->name = "anthropic stream";
  f->bytes = ANTHROPIC_STREAM;
  f->len = sizeof(ANTHROPIC_STREAM) - 1;
  f->provider = SLUICE_PROVIDER_ANTHROPIC;
  f->want.prompt_tokens = 2125; /* input + cache creation + cache read */
  f->want.completion_tokens = 15;
  f->want.total_tokens = 2140; /* not reported: the sum */
  f->want.cached_tokens = 2000;
  f->want.cache_creation_tokens = 100;
  f->want.present = SLUICE_USAGE_PROMPT_TOKENS | SLUICE_USAGE_COMPLETION_TOKENS |
                    SLUICE_USAGE_CACHED_TOKENS | SLUICE_USAGE_CACHE_CREATION_TOKENS;
  f->want.provider = SLUICE_PROVIDER_ANTHROPIC;
  ++f;
  f->name = "openai body";
  f->bytes = OPENAI_BODY;
  f->len = sizeof(OPENAI_BODY) - 1;
  f->provider = SLUICE_PROVIDER_OPENAI_CHAT;
  f->want.prompt_tokens = 19;
  f->want.completion_tokens = 10;
  f->want.total_tokens = 29;
  f->want.cached_tokens = 8;
  f->want.present = SLUICE_USAGE_PROMPT_TOKENS | SLUICE_USAGE_COMPLETION_TOKENS |
                    SLUICE_USAGE_TOTAL_TOKENS | SLUICE_USAGE_CACHED_TOKENS;
  f->want.provider = SLUICE_PROVIDER_OPENAI_CHAT;
}

static int same_usage(const sluice_usage* a, const sluice_usage* b) {
  return a->prompt_tokens == b->prompt_tokens && a->completion_tokens == b->completion_tokens &&
         a->total_tokens == b->total_tokens && a->cached_tokens == b->cached_tokens &&
         a->cache_creation_tokens == b->cache_creation_tokens &&
         a->reasoning_tokens == b->reasoning_tokens && a->present == b->present &&
         a->provider == b->provider;
}

static void print_usage(const char* what, const sluice_usage* u) {
  fprintf(stderr, "  %s: prompt %lld completion %lld total %lld cached %lld creation %lld "
          "reasoning %lld present 0x%x provider %s\n", what, (long long)u->prompt_tokens,
          (long long)u->completion_tokens, (long long)u->total_tokens, (long long)u->cached_tokens,
          (long long)u->cache_creation_tokens, (long long)u->reasoning_tokens, u->present,
          sluice_provider_name(u->provider));
}

/* xorshift64*: a seeded stream of chunk sizes, the same on every run. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t next_random(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ull;
}

/* Feeds `f` to a new reader in chunks: `max_chunk` 1 is byte by byte, else random sizes in
 * [1, max_chunk]. The usage, found, and the reader's stats come back. */
static int feed_chunked(const fixture* f, int provider, size_t max_chunk, sluice_usage* usage,
                        uint8_t* found, sluice_usage_stats* stats) {
  sluice_usage_reader* reader = NULL;
  size_t at = 0;
  int ok = 1;
  if (sluice_usage_reader_create(provider, NULL, &reader) != SLUICE_OK) return 0;
  while (at < f->len) {
    size_t n = max_chunk == 1 ? 1 : 1 + (size_t)(next_random() % max_chunk);
    if (n > f->len - at) n = f->len - at;
    ok = ok && sluice_usage_reader_feed(reader, f->bytes + at, n) == SLUICE_OK;
    at += n;
  }
  ok = ok && sluice_usage_reader_finish(reader, usage, found) == SLUICE_OK;
  ok = ok && sluice_usage_reader_stats(reader, stats) == SLUICE_OK;
  sluice_usage_reader_destroy(reader);
  return ok;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_chunkings_give_the_whole_answers_usage(void) {
  size_t i;
  for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); ++i) {
    const fixture* f = &fixtures[i];
    sluice_usage whole, usage;
    sluice_usage_stats whole_stats, stats;
    uint8_t found = 0;
    int provider_pass, run, mismatches = 0;
    /* In memory, at once. */
    CHECK(sluice_read_usage(f->bytes, f->len, f->provider, &whole, &found) == SLUICE_OK);
    CHECK(found == 1);
    if (!same_usage(&whole, &f->want)) {
      fprintf(stderr, "%s, read whole:\n", f->name);
      print_usage("got", &whole);
      print_usage("want", &f->want);
    }
    CHECK(same_usage(&whole, &f->want));
    CHECK(feed_chunked(f, f->provider, f->len, &usage, &found, &whole_stats)); /* sets stats */
    for (provider_pass = 0; provider_pass < 2; ++provider_pass) {
      const int provider = provider_pass == 0 ? f->provider : SLUICE_PROVIDER_AUTO;
      /* Byte by byte, then 200 random chunkings of 1 to 2..64 bytes. */
      for (run = 0; run <= 200; ++run) {
        const size_t max_chunk = run == 0 ? 1 : 2 + (size_t)(run % 63);
        found = 0;
        memset(&usage, 0x5a, sizeof(usage));
        if (!feed_chunked(f, provider, max_chunk, &usage, &found, &stats) || found != 1 ||
            !same_usage(&usage, &f->want) || stats.events != whole_stats.events ||
            stats.usage_reports != whole_stats.usage_reports ||
            stats.malformed_events != whole_stats.malformed_events) {
          if (mismatches++ == 0) {
            fprintf(stderr, "%s, provider %s, chunks of 1..%zu:\n", f->name,
                    sluice_provider_name(provider), max_chunk);
            print_usage("got", &usage);
            print_usage("want", &f->want);
          }
        }
      }
    }
    CHECK(mismatches == 0);
    CHECK(whole_stats.usage_reports >= 1 && whole_stats.malformed_events == 0);
  }
}

static void test_no_usage_is_not_found_never_zeros(void) {
  sluice_usage usage;
  sluice_usage_reader* reader = NULL;
  uint8_t found = 7;
  memset(&usage, 0x5a, sizeof(usage));
  CHECK(sluice_read_usage(OPENAI_STREAM_NO_USAGE, sizeof(OPENAI_STREAM_NO_USAGE) - 1,
                          SLUICE_PROVIDER_AUTO, &usage, &found) == SLUICE_OK);
  CHECK(found == 0);
  CHECK(usage.present == 0 && usage.prompt_tokens == 0 && usage.total_tokens == 0 &&
        usage.provider == SLUICE_PROVIDER_AUTO);
  /* found may be NULL: present tells. */
  CHECK(sluice_read_usage(OPENAI_BODY, sizeof(OPENAI_BODY) - 1, SLUICE_PROVIDER_AUTO, &usage,
                          NULL) == SLUICE_OK);
  CHECK(usage.present != 0 && usage.total_tokens == 29);
  CHECK(sluice_read_usage("", 0, SLUICE_PROVIDER_AUTO, &usage, &found) == SLUICE_OK && found == 0);
  CHECK(sluice_read_usage(NULL, 0, SLUICE_PROVIDER_GEMINI, &usage, &found) == SLUICE_OK && found == 0);
  /* A stream cut off before its usage chunk. */
  CHECK(sluice_usage_reader_create(SLUICE_PROVIDER_OPENAI_CHAT, NULL, &reader) == SLUICE_OK);
  CHECK(sluice_usage_reader_feed(reader, OPENAI_STREAM, 200) == SLUICE_OK);
  found = 7;
  CHECK(sluice_usage_reader_finish(reader, &usage, &found) == SLUICE_OK);
  CHECK(found == 0 && usage.present == 0);
  sluice_usage_reader_destroy(reader);
}

static void test_finish_is_final(void) {
  sluice_usage_reader* reader = NULL;
  sluice_usage first, again;
  sluice_usage_stats stats;
  uint8_t found = 0;
  CHECK(sluice_usage_reader_create(SLUICE_PROVIDER_AUTO, NULL, &reader) == SLUICE_OK);
  CHECK(sluice_usage_reader_feed(reader, ANTHROPIC_STREAM, sizeof(ANTHROPIC_STREAM) - 1) ==
        SLUICE_OK);
  CHECK(sluice_usage_reader_finish(reader, &first, &found) == SLUICE_OK && found == 1);
  CHECK(first.provider == SLUICE_PROVIDER_ANTHROPIC); /* AUTO resolved */
  /* Feed after finish is refused and changes nothing. */
  CHECK(sluice_usage_reader_feed(reader, OPENAI_BODY, sizeof(OPENAI_BODY) - 1) ==
        SLUICE_FAILED_PRECONDITION);
  CHECK_MESSAGE("sluice_usage_reader_feed: ");
  CHECK_MENTIONS("after sluice_usage_reader_finish");
  CHECK(sluice_usage_reader_feed(reader, NULL, 0) == SLUICE_FAILED_PRECONDITION);
  found = 0;
  CHECK(sluice_usage_reader_finish(reader, &again, &found) == SLUICE_OK && found == 1);
  CHECK(same_usage(&first, &again));
  CHECK(sluice_usage_reader_stats(reader, &stats) == SLUICE_OK);
  CHECK(stats.events == 7 && stats.usage_reports == 2);
  sluice_usage_reader_destroy(reader);
}

static void test_hostile_bytes_are_skipped_and_counted(void) {
  static const char garbage[] =
      "\xff\xfe\x00\x01 not sse\n\n"
      "data: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":"
      "\"12\",\"completion_tokens\":-4,\"total_tokens\":5.5}}\n\n"                    /* rejected */
      "data: {\"object\":\"chat.completion.chunk\",\"bad\":\"\xff\xfe\"}\n\n"      /* malformed */
      "data: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":"
      "99999999999999999999}}\n\n"                                     /* beyond 64 bits */
      "data: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":"
      "4611686018427387905,\"completion_tokens\":4611686018427387904}}\n\n"; /* saturates */
  sluice_usage_reader* reader = NULL;
  sluice_usage usage;
  sluice_usage_stats stats;
  uint8_t found = 0;
  size_t i;
  CHECK(sluice_usage_reader_create(SLUICE_PROVIDER_AUTO, NULL, &reader) == SLUICE_OK);
  for (i = 0; i < sizeof(garbage) - 1; ++i) CHECK(sluice_usage_reader_feed(reader, garbage + i, 1) == SLUICE_OK);
  CHECK(sluice_usage_reader_finish(reader, &usage, &found) == SLUICE_OK);
  CHECK(found == 1);
  CHECK(usage.prompt_tokens == SLUICE_USAGE_MAX_TOKENS);
  CHECK(usage.completion_tokens == SLUICE_USAGE_MAX_TOKENS);
  CHECK(usage.total_tokens == SLUICE_USAGE_MAX_TOKENS); /* the sum saturates too */
  CHECK(sluice_usage_reader_stats(reader, &stats) == SLUICE_OK);
  CHECK(stats.rejected_counts >= 3);
  CHECK(stats.malformed_events >= 2);
  sluice_usage_reader_destroy(reader);
}

static void test_max_event_bytes(void) {
  sluice_options* o = sluice_options_create();
  sluice_usage_reader* reader = (sluice_usage_reader*)&passed; /* create must clear it */
  sluice_usage usage;
  sluice_usage_stats stats;
  uint8_t found = 1;
  /* Out of range: refused, naming the parameter; *out left NULL. */
  CHECK(sluice_options_set(o, SLUICE_PARAM_USAGE_MAX_EVENT_BYTES, 0) == SLUICE_OK);
  CHECK(sluice_usage_reader_create(SLUICE_PROVIDER_AUTO, o, &reader) == SLUICE_INVALID_ARGUMENT);
  CHECK(reader == NULL);
  CHECK_MESSAGE("sluice_usage_reader_create: SLUICE_PARAM_USAGE_MAX_EVENT_BYTES must be in [1, ");
  CHECK(sluice_options_set(o, SLUICE_PARAM_USAGE_MAX_EVENT_BYTES, INT64_MIN) == SLUICE_OK);
  CHECK(sluice_usage_reader_create(SLUICE_PROVIDER_AUTO, o, &reader) == SLUICE_INVALID_ARGUMENT);
  /* 64 bytes: the usage chunk is larger, dropped as oversized. */
  CHECK(sluice_options_set(o, SLUICE_PARAM_USAGE_MAX_EVENT_BYTES, 64) == SLUICE_OK);
  CHECK(sluice_usage_reader_create(SLUICE_PROVIDER_OPENAI_CHAT, o, &reader) == SLUICE_OK);
  CHECK(sluice_usage_reader_feed(reader, OPENAI_STREAM, sizeof(OPENAI_STREAM) - 1) == SLUICE_OK);
  CHECK(sluice_usage_reader_finish(reader, &usage, &found) == SLUICE_OK && found == 0);
  CHECK(sluice_usage_reader_stats(reader, &stats) == SLUICE_OK && stats.oversized_events == 3);
  sluice_usage_reader_destroy(reader);
  /* INT64_MAX is accepted and allocates nothing up front. */
  CHECK(sluice_options_set(o, SLUICE_PARAM_USAGE_MAX_EVENT_BYTES, INT64_MAX) == SLUICE_OK);
  CHECK(sluice_usage_reader_create(SLUICE_PROVIDER_OPENAI_CHAT, o, &reader) == SLUICE_OK);
  CHECK(sluice_usage_reader_feed(reader, OPENAI_STREAM, sizeof(OPENAI_STREAM) - 1) == SLUICE_OK);
  CHECK(sluice_usage_reader_finish(reader, &usage, &found) == SLUICE_OK && found == 1);
  sluice_usage_reader_destroy(reader);
  /* Parameters of other objects, an estimate's, and windows do not apply to a reader. */
  sluice_options_destroy(o);
  o = sluice_options_create();
  CHECK(sluice_options_set(o, SLUICE_PARAM_ESTIMATE_SCALE_MILLI, 1000) == SLUICE_OK);
  CHECK(sluice_usage_reader_create(SLUICE_PROVIDER_AUTO, o, &reader) == SLUICE_INVALID_ARGUMENT);
  CHECK_MENTIONS("SLUICE_PARAM_ESTIMATE_SCALE_MILLI");
  sluice_options_destroy(o);
  o = sluice_options_create();
  CHECK(sluice_options_add_window(o, 10, 1000000000LL, 0) == SLUICE_OK);
  CHECK(sluice_usage_reader_create(SLUICE_PROVIDER_AUTO, o, &reader) == SLUICE_INVALID_ARGUMENT);
  CHECK(reader == NULL);
  sluice_options_destroy(o);
}

static void test_null_and_hostile_arguments(void) {
  sluice_usage_reader* reader = NULL;
  sluice_usage usage;
  sluice_usage_stats stats;
  uint8_t found = 9;
  char* out = (char*)&passed;
  size_t out_len = 99;
  int64_t tokens = -5;
  /* Providers. */
  CHECK(strcmp(sluice_provider_name(SLUICE_PROVIDER_AUTO), "auto") == 0);
  CHECK(strcmp(sluice_provider_name(SLUICE_PROVIDER_OPENAI_CHAT), "openai_chat") == 0);
  CHECK(strcmp(sluice_provider_name(SLUICE_PROVIDER_OPENAI_COMPLETIONS), "openai_completions") == 0);
  CHECK(strcmp(sluice_provider_name(SLUICE_PROVIDER_OPENAI_RESPONSES), "openai_responses") == 0);
  CHECK(strcmp(sluice_provider_name(SLUICE_PROVIDER_ANTHROPIC), "anthropic") == 0);
  CHECK(strcmp(sluice_provider_name(SLUICE_PROVIDER_GEMINI), "gemini") == 0);
  CHECK(strcmp(sluice_provider_name(SLUICE_PROVIDER_DASHSCOPE), "dashscope") == 0);
  CHECK(strcmp(sluice_provider_name(-1), "unknown") == 0);
  CHECK(strcmp(sluice_provider_name(7), "unknown") == 0);
  CHECK(sluice_usage_reader_create(7, NULL, &reader) == SLUICE_INVALID_ARGUMENT && reader == NULL);
  CHECK_MESSAGE("sluice_usage_reader_create: provider must be a sluice_provider, got 7");
  CHECK(sluice_usage_reader_create(-1, NULL, &reader) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_read_usage(OPENAI_BODY, 10, 99, &usage, &found) == SLUICE_INVALID_ARGUMENT);
  CHECK(found == 0);
  /* NULL handles and out-pointers. */
  sluice_usage_reader_destroy(NULL);
  sluice_free(NULL);
  CHECK(sluice_usage_reader_create(SLUICE_PROVIDER_AUTO, NULL, NULL) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_usage_reader_feed(NULL, "x", 1) == SLUICE_INVALID_ARGUMENT);
  CHECK_MESSAGE("sluice_usage_reader_feed: reader is NULL");
  CHECK(sluice_usage_reader_finish(NULL, &usage, &found) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_usage_reader_stats(NULL, &stats) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_usage_reader_create(SLUICE_PROVIDER_AUTO, NULL, &reader) == SLUICE_OK);
  CHECK(sluice_usage_reader_stats(reader, NULL) == SLUICE_INVALID_ARGUMENT);
  /* Lying lengths: a NULL pointer with any length but 0. */
  CHECK(sluice_usage_reader_feed(reader, NULL, 5) == SLUICE_INVALID_ARGUMENT);
  CHECK_MESSAGE("sluice_usage_reader_feed: data is NULL but data_len is 5");
  CHECK(sluice_usage_reader_feed(reader, NULL, SIZE_MAX) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_usage_reader_feed(reader, NULL, 0) == SLUICE_OK);
  CHECK(sluice_usage_reader_feed(reader, "", 0) == SLUICE_OK);
  /* finish with a NULL out does not finish. */
  CHECK(sluice_usage_reader_finish(reader, NULL, &found) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_usage_reader_feed(reader, OPENAI_BODY, sizeof(OPENAI_BODY) - 1) == SLUICE_OK);
  CHECK(sluice_usage_reader_finish(reader, &usage, &found) == SLUICE_OK && found == 1);
  sluice_usage_reader_destroy(reader);
  CHECK(sluice_read_usage(OPENAI_BODY, 10, SLUICE_PROVIDER_AUTO, NULL, &found) ==
        SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_read_usage(NULL, SIZE_MAX, SLUICE_PROVIDER_AUTO, &usage, &found) ==
        SLUICE_INVALID_ARGUMENT);
  CHECK_MESSAGE("sluice_read_usage: body is NULL but body_len is ");
  /* include_usage_in_stream: *out NULL and *out_len 0 on every failure. */
  CHECK(sluice_include_usage_in_stream("{}", 2, NULL, &out_len) == SLUICE_INVALID_ARGUMENT);
  CHECK(out_len == 0);
  CHECK(sluice_include_usage_in_stream("{}", 2, &out, NULL) == SLUICE_INVALID_ARGUMENT);
  CHECK(out == NULL);
  out = (char*)&passed;
  CHECK(sluice_include_usage_in_stream(NULL, SIZE_MAX, &out, &out_len) == SLUICE_INVALID_ARGUMENT);
  CHECK(out == NULL && out_len == 0);
  CHECK(sluice_include_usage_in_stream(NULL, 0, &out, &out_len) == SLUICE_INVALID_ARGUMENT);
  CHECK_MESSAGE("sluice_include_usage_in_stream: usage: request body: not JSON");
  CHECK(sluice_include_usage_in_stream("\xff\xfe{", 3, &out, &out_len) == SLUICE_INVALID_ARGUMENT);
  {
    static const char bad_stream[] = "{\"messages\":[],\"stream\":\"yes\"}";
    CHECK(sluice_include_usage_in_stream(bad_stream, sizeof(bad_stream) - 1, &out, &out_len) ==
          SLUICE_INVALID_ARGUMENT);
  }
  CHECK_MENTIONS("stream must be a boolean");
  CHECK(out == NULL && out_len == 0);
  /* Estimates. */
  CHECK(sluice_estimate_prompt_tokens("{}", 2, NULL, NULL) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_estimate_text_tokens("x", 1, NULL, NULL) == SLUICE_INVALID_ARGUMENT);
  CHECK(sluice_estimate_prompt_tokens(NULL, 3, NULL, &tokens) == SLUICE_INVALID_ARGUMENT);
  CHECK(tokens == 0);
  CHECK(sluice_estimate_text_tokens(NULL, SIZE_MAX, NULL, &tokens) == SLUICE_INVALID_ARGUMENT);
  CHECK_MESSAGE("sluice_estimate_text_tokens: text is NULL but text_len is ");
  CHECK(sluice_estimate_prompt_tokens(NULL, 0, NULL, &tokens) == SLUICE_OK && tokens >= 0);
  CHECK(sluice_estimate_text_tokens(NULL, 0, NULL, &tokens) == SLUICE_OK && tokens == 0);
  CHECK(sluice_estimate_text_tokens("\xff\xfe\x80\xc3", 4, NULL, &tokens) == SLUICE_OK &&
        tokens >= 0);
  CHECK(sluice_estimate_prompt_tokens("\xff{\"messages\":[", 14, NULL, &tokens) == SLUICE_OK &&
        tokens >= 0);
}

static void test_include_usage_in_stream(void) {
  static const char streaming[] = "{\"prompt\":\"Say this\",\"stream\":true}";
  static const char want[] =
      "{\"prompt\":\"Say this\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
  static const char not_streaming[] = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
  char* out = NULL;
  size_t out_len = 0;
  CHECK(sluice_include_usage_in_stream(streaming, sizeof(streaming) - 1, &out, &out_len) ==
        SLUICE_OK);
  CHECK(out != NULL && out_len == sizeof(want) - 1);
  CHECK(out != NULL && memcmp(out, want, sizeof(want)) == 0); /* NUL-terminated too */
  sluice_free(out);
  CHECK(sluice_include_usage_in_stream(not_streaming, sizeof(not_streaming) - 1, &out,
                                       &out_len) == SLUICE_OK);
  CHECK(out != NULL && out_len == sizeof(not_streaming) - 1 &&
        memcmp(out, not_streaming, sizeof(not_streaming)) == 0);
  sluice_free(out);
}

static void test_estimates(void) {
  static const char chat[] =
      "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},"
      "{\"role\":\"user\",\"content\":\"What is the capital of France?\"}]}";
  sluice_options* o = sluice_options_create();
  int64_t base = 0, text = 0, scaled = 0, more = 0;
  CHECK(sluice_estimate_text_tokens("hello", 5, NULL, &text) == SLUICE_OK && text == 1);
  CHECK(sluice_estimate_prompt_tokens(chat, sizeof(chat) - 1, NULL, &base) == SLUICE_OK);
  CHECK(base > 10 && base < 40);
  /* Options: scale x2, and 100 more per message (two messages). */
  CHECK(sluice_options_set(o, SLUICE_PARAM_ESTIMATE_SCALE_MILLI, 2000) == SLUICE_OK);
  CHECK(sluice_estimate_prompt_tokens(chat, sizeof(chat) - 1, o, &scaled) == SLUICE_OK);
  CHECK(scaled >= 2 * base - 1 && scaled <= 2 * base + 1);
  CHECK(sluice_options_set(o, SLUICE_PARAM_ESTIMATE_SCALE_MILLI, 1000) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_ESTIMATE_TOKENS_PER_MESSAGE, 103) == SLUICE_OK);
  CHECK(sluice_estimate_prompt_tokens(chat, sizeof(chat) - 1, o, &more) == SLUICE_OK);
  CHECK(more == base + 200);
  /* CJK: 0.8 characters per token costs more than the default 1.2. */
  CHECK(sluice_estimate_text_tokens("\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c"
                                    "\xe4\xbd\xa0\xe5\xa5\xbd", 18, NULL, &base) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_ESTIMATE_CJK_CHARS_PER_TOKEN_MILLI, 800) == SLUICE_OK);
  CHECK(sluice_estimate_text_tokens("\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c"
                                    "\xe4\xbd\xa0\xe5\xa5\xbd", 18, o, &more) == SLUICE_OK);
  CHECK(base == 5 && more == 8);
  /* Out of range: refused, naming the parameter and the value given. */
  CHECK(sluice_options_set(o, SLUICE_PARAM_ESTIMATE_CJK_CHARS_PER_TOKEN_MILLI, 0) == SLUICE_OK);
  CHECK(sluice_estimate_text_tokens("x", 1, o, &more) == SLUICE_INVALID_ARGUMENT);
  CHECK_MESSAGE("sluice_estimate_text_tokens: SLUICE_PARAM_ESTIMATE_CJK_CHARS_PER_TOKEN_MILLI "
                "must be > 0, got 0");
  CHECK(sluice_options_set(o, SLUICE_PARAM_ESTIMATE_CJK_CHARS_PER_TOKEN_MILLI, 1200) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_ESTIMATE_TOKENS_PER_IMAGE, -1) == SLUICE_OK);
  CHECK(sluice_estimate_prompt_tokens(chat, sizeof(chat) - 1, o, &more) == SLUICE_INVALID_ARGUMENT);
  CHECK_MESSAGE("sluice_estimate_prompt_tokens: SLUICE_PARAM_ESTIMATE_TOKENS_PER_IMAGE must be "
                ">= 0, got -1");
  /* Extremes saturate instead of overflowing. */
  CHECK(sluice_options_set(o, SLUICE_PARAM_ESTIMATE_TOKENS_PER_IMAGE, INT64_MAX) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_ESTIMATE_TOKENS_PER_MESSAGE, INT64_MAX) == SLUICE_OK);
  CHECK(sluice_options_set(o, SLUICE_PARAM_ESTIMATE_SCALE_MILLI, INT64_MAX) == SLUICE_OK);
  CHECK(sluice_estimate_prompt_tokens(chat, sizeof(chat) - 1, o, &more) == SLUICE_OK);
  CHECK(more == SLUICE_USAGE_MAX_TOKENS);
  /* A reader's parameter does not apply to an estimate. */
  sluice_options_destroy(o);
  o = sluice_options_create();
  CHECK(sluice_options_set(o, SLUICE_PARAM_USAGE_MAX_EVENT_BYTES, 10) == SLUICE_OK);
  CHECK(sluice_estimate_text_tokens("x", 1, o, &more) == SLUICE_INVALID_ARGUMENT);
  CHECK_MENTIONS("SLUICE_PARAM_USAGE_MAX_EVENT_BYTES");
  sluice_options_destroy(o);
}

/* ---- one reader, two threads: refused, never raced -------------------------------------------- */

#define EVENTS_PER_THREAD 2000
#define EVENT_PADDING 4096 /* a longer feed: more chances for the two threads to overlap */

typedef struct {
  sluice_usage_reader* reader;
  pthread_barrier_t* start;
  const char* event;
  size_t event_len;
  int accepted;
  int refused;
  int other;
} feeder;

static void* feed_events(void* arg) {
  feeder* f = arg;
  sluice_usage_stats stats;
  int i;
  pthread_barrier_wait(f->start);
  for (i = 0; i < EVENTS_PER_THREAD; ++i) {
    int rc = sluice_usage_reader_feed(f->reader, f->event, f->event_len);
    if (rc == SLUICE_OK) ++f->accepted;
    else if (rc == SLUICE_FAILED_PRECONDITION) ++f->refused;
    else ++f->other;
    rc = sluice_usage_reader_stats(f->reader, &stats);
    if (rc != SLUICE_OK && rc != SLUICE_FAILED_PRECONDITION) ++f->other;
  }
  return NULL;
}

/* Whether the two threads overlap is up to the scheduler: the checks hold either way (the counts
 * are printed; here one thread usually holds the reader while the other is refused). Without the
 * reader's claim, overlapping feeds race on its buffers: the tsan preset (which runs the
 * "concurrency" label) reports the race, and the counts may tear. */
static void test_two_threads_on_one_reader(void) {
  static const char head[] =
      "data: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,"
      "\"completion_tokens\":2,\"total_tokens\":3},\"padding\":\"";
  static const char tail[] = "\"}\n\n";
  char* event = malloc(sizeof(head) + EVENT_PADDING + sizeof(tail));
  size_t event_len = 0;
  feeder feeders[2];
  pthread_t threads[2];
  pthread_barrier_t start;
  sluice_usage_stats stats;
  sluice_usage usage;
  uint8_t found = 0;
  int i;
  sluice_usage_reader* reader = NULL;
  memcpy(event, head, sizeof(head) - 1);
  event_len = sizeof(head) - 1;
  memset(event + event_len, 'x', EVENT_PADDING);
  event_len += EVENT_PADDING;
  memcpy(event + event_len, tail, sizeof(tail) - 1);
  event_len += sizeof(tail) - 1;
  CHECK(sluice_usage_reader_create(SLUICE_PROVIDER_OPENAI_CHAT, NULL, &reader) == SLUICE_OK);
  CHECK(pthread_barrier_init(&start, NULL, 2) == 0);
  for (i = 0; i < 2; ++i) {
    memset(&feeders[i], 0, sizeof(feeders[i]));
    feeders[i].reader = reader;
    feeders[i].start = &start;
    feeders[i].event = event;
    feeders[i].event_len = event_len;
    CHECK(pthread_create(&threads[i], NULL, feed_events, &feeders[i]) == 0);
  }
  for (i = 0; i < 2; ++i) pthread_join(threads[i], NULL);
  pthread_barrier_destroy(&start);
  CHECK(feeders[0].other == 0 && feeders[1].other == 0);
  /* Every accepted feed was one whole event, read whole: none torn, none lost. */
  CHECK(sluice_usage_reader_stats(reader, &stats) == SLUICE_OK);
  CHECK(stats.events == feeders[0].accepted + feeders[1].accepted);
  CHECK(stats.usage_reports == stats.events && stats.malformed_events == 0);
  CHECK(feeders[0].accepted + feeders[0].refused == EVENTS_PER_THREAD);
  CHECK(feeders[1].accepted + feeders[1].refused == EVENTS_PER_THREAD);
  printf("two threads on one reader: %d + %d feeds accepted, %d + %d refused as overlapping\n",
         feeders[0].accepted, feeders[1].accepted, feeders[0].refused, feeders[1].refused);
  CHECK(sluice_usage_reader_finish(reader, &usage, &found) == SLUICE_OK && found == 1);
  CHECK(usage.total_tokens == 3);
  sluice_usage_reader_destroy(reader);
  free(event);
}

int main(void) {
  init_fixtures();
  test_chunkings_give_the_whole_answers_usage();
  test_no_usage_is_not_found_never_zeros();
  test_finish_is_final();
  test_hostile_bytes_are_skipped_and_counted();
  test_max_event_bytes();
  test_null_and_hostile_arguments();
  test_include_usage_in_stream();
  test_estimates();
  test_two_threads_on_one_reader();
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
