// rotor: command-line entry point. A table of subcommands; adding one is one
// line in kCommands. Each command takes the words after its name, writes its
// result to `out` and diagnostics to `err`, and returns the exit status
// (0 success, 2 usage or input error).
//
//   rotor <command> [args...]     run a command
//   rotor --help | -h | help      list the commands (stdout, status 0)
//   rotor help <command>          the command's own --help
//   anything else                 usage on stderr, status 2
#include <csignal>
#include <iostream>
#include <ostream>
#include <string>
#include <vector>

#include "trainer/cli/eval_command.h"
#include "trainer/cli/hf_command.h"
#include "trainer/cli/prep_command.h"
#include "trainer/cli/report_command.h"
#include "trainer/cli/retrieval_command.h"
#include "trainer/cli/plan_command.h"
#include "trainer/cli/rope_command.h"
#include "trainer/cli/ruler_command.h"
#include "trainer/cli/score_command.h"
#include "trainer/cli/sweep_command.h"
#include "trainer/cli/train_command.h"

namespace {

using CommandFn = int (*)(const std::vector<std::string>& args, std::ostream& out,
                          std::ostream& err);

// `rotor eval KIND ...`: passkey and needle are the retrieval grids
// (retrieval_command.h), ruler is ruler_command.h's, the others
// eval_command.h's.
int run_eval(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  if (!args.empty() && args[0] == "ruler") {
    return rotor::run_eval_ruler(std::vector<std::string>(args.begin() + 1, args.end()), out, err);
  }
  if (!args.empty() && (args[0] == "passkey" || args[0] == "needle")) {
    return rotor::run_eval_retrieval(args[0], std::vector<std::string>(args.begin() + 1, args.end()),
                                     out, err);
  }
  return rotor::run_eval_command(args, out, err);
}

struct Command {
  const char* name;
  const char* summary;
  CommandFn run;
};

constexpr Command kCommands[] = {
    {"train", "train (or resume) the run a recipe describes", rotor::run_train_command},
    {"plan", "predict a training step's peak memory per rank, and the longest sequence that fits",
     rotor::run_plan_command},
    {"rope", "print a recipe's RoPE inverse frequencies and logit scalars as JSON",
     rotor::run_rope_command},
    {"sweep", "list the runs of a recipe's sweep grid, or --run them one after another",
     rotor::run_sweep_command},
    {"eval", "evaluate a checkpoint: ppl (perplexity vs length), attention (entropy, distance, JS), "
             "passkey, needle, ruler (RULER's synthetic tasks)",
     run_eval},
    {"score", "per-token log-probabilities of a text under a checkpoint", rotor::run_score_command},
    {"prep", "tokenize text or JSONL into a Megatron indexed dataset", rotor::run_prep_command},
    {"report", "merge runs' eval CSVs into tables, report.md and PNG plots", rotor::run_report},
    {"export-hf", "write a checkpoint as a Hugging Face Llama directory", rotor::run_export_hf_command},
    {"import-hf", "convert a Hugging Face Llama directory into a rotor checkpoint",
     rotor::run_import_hf_command},
};

void print_usage(std::ostream& os) {
  os << "usage: rotor <command> [args...]\n\ncommands:\n";
  for (const Command& c : kCommands) os << "  " << c.name << "\t" << c.summary << "\n";
  os << "\n'rotor <command> --help' describes a command.\n";
}

const Command* find_command(const std::string& name) {
  for (const Command& c : kCommands) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  // A write past the file-size limit (ulimit -f) fails with EFBIG, reported
  // like a full disk with the file's name, instead of killing the process.
  std::signal(SIGXFSZ, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    print_usage(std::cerr);
    return 2;
  }
  const std::string& name = args[0];
  if (name == "--help" || name == "-h" || (name == "help" && args.size() == 1)) {
    print_usage(std::cout);
    return 0;
  }
  if (name == "help") {
    if (const Command* c = find_command(args[1])) return c->run({"--help"}, std::cout, std::cerr);
    std::cerr << "rotor: unknown command '" << args[1] << "'\n";
    print_usage(std::cerr);
    return 2;
  }
  if (const Command* c = find_command(name)) {
    return c->run(std::vector<std::string>(args.begin() + 1, args.end()), std::cout, std::cerr);
  }
  std::cerr << "rotor: unknown command '" << name << "'\n";
  print_usage(std::cerr);
  return 2;
}
