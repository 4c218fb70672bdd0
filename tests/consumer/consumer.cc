// Builds against the installed sluice: the headers, sluice::sluice and its Abseil dependency.
#include <cstdio>

#include "sluice/sluice.hpp"

int main() {
  sluice::ManualClock clock;
  sluice::RateLimiter::Options options;
  options.windows = {sluice::Window::PerSecond(2)};
  auto limiter = sluice::RateLimiter::Create(options, &clock);
  if (!limiter.ok()) return 1;
  const bool a = (*limiter)->Allow("k"), b = (*limiter)->Allow("k"), c = (*limiter)->Allow("k");
  std::printf("sluice %s: %d %d %d\n", SLUICE_VERSION_STRING, a, b, c);
  return (a && b && !c) ? 0 : 1;
}
