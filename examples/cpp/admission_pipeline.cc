// The admission path of a C++ LLM server: per-tenant request limit, per-tenant token budget, a
// per-app concurrency cap, and shaping towards the provider, in the order a request meets them.
// The caller owns the HTTP; sluice only decides.
#include <cstdio>
#include <memory>
#include <string>

#include "sluice/sluice.hpp"

namespace {

struct Governance {
  std::unique_ptr<sluice::RateLimiter> tenant_requests;
  std::unique_ptr<sluice::TokenBudget> tenant_tokens;
  std::unique_ptr<sluice::ConcurrencyLimiter> app_in_flight;
  std::unique_ptr<sluice::LeakyBucket> provider;
};

absl::StatusOr<Governance> Build() {
  Governance g;
  sluice::RateLimiter::Options requests;
  requests.windows = {sluice::Window::PerSecond(5, 10), sluice::Window::PerDay(10'000)};
  auto r = sluice::RateLimiter::Create(requests);
  if (!r.ok()) return r.status();
  g.tenant_requests = *std::move(r);

  sluice::TokenBudget::Options tokens;
  tokens.windows = {sluice::Window::PerMinute(20'000)};
  auto t = sluice::TokenBudget::Create(tokens);
  if (!t.ok()) return t.status();
  g.tenant_tokens = *std::move(t);

  sluice::ConcurrencyLimiter::Options cap;
  cap.max_in_flight = 2;
  auto c = sluice::ConcurrencyLimiter::Create(cap);
  if (!c.ok()) return c.status();
  g.app_in_flight = *std::move(c);

  sluice::LeakyBucket::Options shape;
  shape.rate = 20;
  auto p = sluice::LeakyBucket::Create(shape);
  if (!p.ok()) return p.status();
  g.provider = *std::move(p);
  return g;
}

// Returns the HTTP status the server would answer with, printing the headers it would send.
int Handle(Governance& g, const std::string& tenant, const std::string& app, int64_t estimate) {
  absl::StatusOr<sluice::Decision> d = g.tenant_requests->TryAcquire(tenant);
  if (!d.ok()) return 500;
  if (!d->allowed) {
    for (auto& [name, value] : sluice::RateLimitHeaders(*d)) std::printf("  %s: %s\n", name.c_str(), value.c_str());
    return 429;
  }
  absl::StatusOr<sluice::TokenBudget::Reservation> tokens = g.tenant_tokens->TryReserve(tenant, estimate);
  if (!tokens.ok()) return 400;  // the estimate can never fit
  if (!*tokens) return 429;
  sluice::ConcurrencyLimiter::Permit permit = g.app_in_flight->TryAcquire(app);
  if (!permit) {
    (void)tokens->Cancel();
    return 429;
  }
  absl::StatusOr<sluice::Decision> slot = g.provider->TryAcquire("provider");
  if (!slot.ok() || !slot->allowed) {
    (void)tokens->Cancel();
    return 503;
  }
  // ... wait slot->delay() on the server's own timer, call the model, stream the answer ...
  (void)tokens->Settle(estimate / 2);  // the real usage, parsed from the response
  return 200;
}

}  // namespace

int main() {
  absl::StatusOr<Governance> g = Build();
  if (!g.ok()) {
    std::fprintf(stderr, "%s\n", std::string(g.status().message()).c_str());
    return 1;
  }
  int ok = 0, limited = 0;
  for (int i = 0; i < 14; ++i) {
    const int status = Handle(*g, "tenant-1", "app-1", 800);
    std::printf("request %2d -> %d\n", i, status);
    (status == 200 ? ok : limited)++;
  }
  std::printf("%d served, %d refused\n", ok, limited);
  return ok == 10 && limited == 4 ? 0 : 1;  // the burst of 10, then the per-second limit
}
