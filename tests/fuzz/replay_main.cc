// replay_main.cc: runs a fuzz target's LLVMFuzzerTestOneInput over files, for the
// builds that are not fuzzing builds (every preset's ctest): each checked-in corpus
// file is then a regression test, under the sanitizers too.
//   replay_main PATH...   each PATH a directory, whose regular files are each one
//                         input (in name order, not recursively); a packed corpus
//                         NAME.hex, one input per line in hexadecimal (the checked-in
//                         form, tests/fuzz/corpus; tools/fuzz.sh packs and unpacks it;
//                         blank lines and lines starting with '#' are skipped); or
//                         any other file, one input (a reproducer libFuzzer saved)
// Exit status 0 if every input ran; 2 if a path could not be read, a packed line is
// not hexadecimal, or no input was given at all. A failed check aborts, and a
// sanitizer's report ends the process: either way the input is named first on stderr
// (PATH, or PATH:LINE of a packed corpus), to replay alone.
#include <algorithm>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
// Present in the sanitizer builds' runtimes: called as a report ends the process.
extern "C" void __sanitizer_set_death_callback(void (*callback)()) __attribute__((weak));

namespace {

// The input running now, as "replay: failed on PATH[:LINE]\n", for NameInput.
std::string g_current;

// Names the input on stderr; async-signal-safe (write(2) of a prepared string).
void NameInput() {
  if (!g_current.empty()) {
    [[maybe_unused]] const ssize_t n = write(STDERR_FILENO, g_current.data(), g_current.size());
  }
}

void OnAbort(int sig) {
  NameInput();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void Run(const std::string& bytes, const std::string& name) {
  g_current = "replay: failed on " + name + "\n";
  LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  g_current.clear();
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Runs every input of a file; the number run, or -1 if it could not be read.
long RunFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::cerr << "replay: cannot read " << path << "\n";
    return -1;
  }
  if (path.extension() != ".hex") {
    Run(std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()),
        path.string());
    return 1;
  }
  long ran = 0;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    std::string bytes;
    for (std::size_t i = 0; i + 1 < line.size(); i += 2) {
      const int hi = HexDigit(line[i]), lo = HexDigit(line[i + 1]);
      if (hi < 0 || lo < 0) break;
      bytes.push_back(static_cast<char>(hi * 16 + lo));
    }
    if (bytes.size() * 2 != line.size()) {
      std::cerr << "replay: " << path << ":" << number << " is not an even run of hex digits\n";
      return -1;
    }
    Run(bytes, path.string() + ":" + std::to_string(number));
    ++ran;
  }
  return ran;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGABRT, OnAbort);
  std::signal(SIGSEGV, OnAbort);
  if (__sanitizer_set_death_callback != nullptr) __sanitizer_set_death_callback(NameInput);
  std::size_t ran = 0;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path arg(argv[i]);
    std::vector<std::filesystem::path> files;
    std::error_code ec;
    if (std::filesystem::is_directory(arg, ec)) {
      for (const auto& entry : std::filesystem::directory_iterator(arg, ec)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
      if (ec) {
        std::cerr << "replay: cannot list " << arg << ": " << ec.message() << "\n";
        return 2;
      }
      std::sort(files.begin(), files.end());
    } else {
      files.push_back(arg);
    }
    for (const auto& f : files) {
      const long n = RunFile(f);
      if (n < 0) return 2;
      ran += static_cast<std::size_t>(n);
    }
  }
  if (ran == 0) {
    std::cerr << "replay: no input given (pass corpus files or directories)\n";
    return 2;
  }
  std::cout << "replay: " << ran << " inputs ran, every check held\n";
  return 0;
}
