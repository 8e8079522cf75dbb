// The command lines of the benches: "--name VALUE" flags and value-less
// switches, each with the code that stores it; "--help" / "-h" prints the
// usage and exits 0; anything else (an unknown flag, a flag without its
// value) prints the usage to stderr and exits 2.
//
//   bench::Flags f(kUsage);
//   f.value("--iters", [&](const char* v) { a.iters = std::atoi(v); });
//   f.on("--cpu-check", [&] { a.cpu_check = true; });
//   f.parse(argc, argv);
#pragma once

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>

namespace rotor::bench {

class Flags {
 public:
  explicit Flags(const char* usage) : usage_(usage) {}
  void value(const std::string& name, std::function<void(const char*)> store) { values_[name] = std::move(store); }
  void on(const std::string& name, std::function<void()> act) { switches_[name] = std::move(act); }

  void parse(int argc, char** argv) const {
    for (int i = 1; i < argc; ++i) {
      const std::string k = argv[i];
      if (k == "--help" || k == "-h") {
        std::printf("%s", usage_);
        std::exit(0);
      }
      if (auto s = switches_.find(k); s != switches_.end()) {
        s->second();
        continue;
      }
      auto v = values_.find(k);
      if (v == values_.end() || i + 1 >= argc) {
        std::fprintf(stderr, "%s", usage_);
        std::exit(2);
      }
      v->second(argv[++i]);
    }
  }

 private:
  const char* usage_;
  std::map<std::string, std::function<void(const char*)>> values_;
  std::map<std::string, std::function<void()>> switches_;
};

}  // namespace rotor::bench
