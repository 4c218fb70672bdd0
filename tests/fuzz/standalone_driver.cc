// Runs a libFuzzer target without libFuzzer (GCC has none): every seed of the corpus, then a
// bounded number of deterministic random mutations of them (bit flips, byte insertions and
// deletions, truncations, splices of two seeds). Usage: <target> <corpus-file> [iterations]
// The corpus file holds seeds separated by lines of "-----".
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<std::string> ReadSeeds(const char* path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read corpus %s\n", path);
    std::exit(2);
  }
  std::stringstream all;
  all << in.rdbuf();
  std::vector<std::string> seeds;
  std::string text = all.str(), seed;
  for (size_t at = 0; at <= text.size();) {
    const size_t end = text.find("\n-----\n", at);
    seeds.push_back(text.substr(at, end == std::string::npos ? std::string::npos : end - at));
    if (end == std::string::npos) break;
    at = end + 7;
  }
  return seeds;
}

void Run(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <corpus-file> [iterations]\n", argv[0]);
    return 2;
  }
  const std::vector<std::string> seeds = ReadSeeds(argv[1]);
  const long iterations = argc > 2 ? std::atol(argv[2]) : 20000;
  for (const std::string& s : seeds) Run(s);
  std::mt19937_64 rng(20261123);
  const std::string interesting = "{}[]\":,\\\n \t{}\"0-+eE.nultrfasNIinf#";
  for (long i = 0; i < iterations; ++i) {
    std::string input = seeds[rng() % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits; ++e) {
      const size_t at = input.empty() ? 0 : rng() % input.size();
      switch (rng() % 6) {
        case 0: if (!input.empty()) input[at] ^= static_cast<char>(1 << (rng() % 8)); break;
        case 1: input.insert(at, 1, interesting[rng() % interesting.size()]); break;
        case 2: if (!input.empty()) input.erase(at, 1 + rng() % 4); break;
        case 3: input.resize(at); break;
        case 4: {
          const std::string& other = seeds[rng() % seeds.size()];
          input = input.substr(0, at) + other.substr(other.empty() ? 0 : rng() % other.size());
          break;
        }
        case 5: input.insert(at, input.substr(at, rng() % 16)); break;
      }
    }
    Run(input);
  }
  std::printf("%zu seeds and %ld mutations ran clean\n", seeds.size(), iterations);
  return 0;
}
