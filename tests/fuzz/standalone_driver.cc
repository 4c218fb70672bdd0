// Runs a libFuzzer target without libFuzzer (GCC has none): every seed of the corpus, then a
// bounded number of deterministic random mutations of them (bit flips, byte insertions and
// deletions, truncations, splices of two seeds). Usage: <target> <corpus-dir> [iterations]
// The corpus directory is the one scripts/run-fuzz.sh gives libFuzzer: one input per file.
// Coverage-guided fuzzing is scripts/run-fuzz.sh's job (clang, -DSLUICE_BUILD_LIBFUZZER=ON).
#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<std::string> ReadSeeds(const char* dir) {
  std::error_code error;
  std::vector<std::filesystem::path> paths;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    if (entry.is_regular_file()) paths.push_back(entry.path());
  }
  if (error || paths.empty()) {
    std::fprintf(stderr, "cannot read a seed from corpus directory %s\n", dir);
    std::exit(2);
  }
  std::sort(paths.begin(), paths.end());  // the same order, so the same mutations, every run
  std::vector<std::string> seeds;
  for (const auto& path : paths) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream all;
    all << in.rdbuf();
    seeds.push_back(all.str());
  }
  return seeds;
}

const std::string* current = nullptr;  // the input being run, for the abort handler

// An invariant broke (FUZZ_CHECK aborts): show the input that broke it, C-escaped, as libFuzzer
// would have saved it.
void PrintInput(int) {
  if (current != nullptr) {
    std::fprintf(stderr, "input (%zu bytes): \"", current->size());
    for (unsigned char c : *current) {
      if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
        std::fputc(c, stderr);
      } else {
        std::fprintf(stderr, "\\x%02x", c);
      }
    }
    std::fprintf(stderr, "\"\n");
  }
  std::signal(SIGABRT, SIG_DFL);
  std::abort();
}

void Run(const std::string& input) {
  current = &input;
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  current = nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <corpus-dir> [iterations]\n", argv[0]);
    return 2;
  }
  std::signal(SIGABRT, PrintInput);
  const std::vector<std::string> seeds = ReadSeeds(argv[1]);
  const long iterations = argc > 2 ? std::atol(argv[2]) : 20000;
  for (const std::string& s : seeds) Run(s);
  Run(std::string());
  std::mt19937_64 rng(20261123);
  const std::string interesting = "{}[]\":,\\\n\r \t{}\"0-+eE.nultrfasNIinf#";
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
