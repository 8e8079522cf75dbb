// `rotor report`: arguments, the plots subprocess and printing; the tables
// are eval/report.h's. See report_command.h.
#include "trainer/cli/report_command.h"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "eval/findings.h"
#include "eval/report.h"
#include "trainer/cli/args.h"
#include "trainer/loading.h"
#include "trainer/recipe/recipe.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

constexpr char kUsage[] =
    "usage: rotor report RUN_DIR... --out DIR [--no-plots] [--plots PLOTS_PY]\n"
    "\n"
    "Merges the eval CSVs of the runs (<RUN_DIR>/eval/{ppl,passkey,needle,attention,ruler}.csv)\n"
    "into DIR, writes DIR/report.md (the runs side by side) and the plots of\n"
    "eval/plots.py (PNG, needs python3 with matplotlib) unless --no-plots.\n";

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Exit status of a shell command (-1 when it could not run); its output is appended to `output`.
int run_shell(const std::string& command, std::string* output) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0)
    if (output != nullptr) output->append(buf, n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The last non-empty line of a command's output (its error message), or "no output".
std::string last_line(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  if (text.empty()) return "no output";
  const size_t nl = text.rfind('\n');
  return nl == std::string::npos ? text : text.substr(nl + 1);
}

// The plot script (see report_command.h), or "" when none is found.
std::string find_plots_script(const std::string& given) {
  if (!given.empty()) return given;
  if (const char* env = std::getenv("ROTOR_PLOTS"); env != nullptr && *env != '\0') return env;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  const fs::path dir = exe.parent_path();
  for (const fs::path& p : {dir / "../../eval/plots.py", dir / "../eval/plots.py",
                            dir / "../share/rotor/plots.py"})
    if (fs::is_regular_file(p, ec)) return fs::weakly_canonical(p, ec).string();
  return "";
}

// Runs plots.py on the merged CSVs in `out_dir`. Returns 1 when the script
// failed; a missing python3, matplotlib or script is a warning (note set).
int make_plots(const std::string& script_option, const std::string& out_dir, std::ostream& out,
               std::ostream& err, std::string& note) {
  const std::string script = find_plots_script(script_option);
  if (script.empty() || !fs::is_regular_file(script)) {
    note = "Plots not made: eval/plots.py not found (set ROTOR_PLOTS or --plots).";
    err << "rotor report: warning: " << (script.empty() ? "eval/plots.py" : script)
        << " not found (set ROTOR_PLOTS or pass --plots PATH); tables written, no plots\n";
    return 0;
  }
  const std::string python = fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  std::string probe;
  if (run_shell(shell_quote(python) + " -c 'import matplotlib'", &probe) != 0) {
    note = "Plots not made: python3 with matplotlib is not available.";
    err << "rotor report: warning: python3 with matplotlib is not available ("
        << last_line(probe) << "); tables written, no plots. Install python3-matplotlib.\n";
    return 0;
  }
  std::string output;
  const int rc = run_shell(absl::StrCat(shell_quote(python), " ", shell_quote(script), " --out ",
                                        shell_quote(out_dir), " ", shell_quote(out_dir)),
                           &output);
  out << output;
  if (rc != 0) {
    err << "rotor report: " << script << " failed (status " << rc << ")\n";
    return 1;
  }
  return 0;
}

// What findings need of each run: its recipe.yaml (a RUN_DIR without one,
// e.g. an eval folder, is left out and said on `err`).
std::vector<eval::RunInfo> run_infos(const std::vector<std::string>& run_dirs, std::ostream& err) {
  std::vector<eval::RunInfo> infos;
  for (const std::string& dir : run_dirs) {
    const fs::path path = fs::path(dir) / "recipe.yaml";
    if (!fs::exists(path)) {
      err << "rotor report: " << path.string() << " not found: " << dir << " is left out of findings.md\n";
      continue;
    }
    absl::StatusOr<LoadedRecipe> r = load_recipe(path.string(), {});
    if (!r.ok()) {
      err << "rotor report: " << r.status().message() << ": " << dir << " is left out of findings.md\n";
      continue;
    }
    // A staged run is described by its last stage: the model it ends with.
    const recipe::Recipe& p = r->stages.empty() ? r->proto : r->stages.back().recipe.proto;
    eval::RunInfo info;
    info.name = run_name(p.run().dir());
    info.rope = absl::StrFormat("%s theta=%g", p.rope().method(), p.rope().theta());
    if (p.rope().has_factor()) absl::StrAppendFormat(&info.rope, " factor=%g", p.rope().factor());
    info.logit_scale = p.logit_scale().kind();
    info.train_length = p.data().sequence_length();
    info.continued = !p.model().init_from().empty();
    infos.push_back(info);
  }
  return infos;
}

}  // namespace

int run_report(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  std::vector<std::string> run_dirs;
  std::string out_dir, plots_script;
  bool plots = true;
  for (size_t i = 0; i < args.size(); ++i) {
    const OptionWord w = split_option(args[i]);
    if (w.name == "--help" || w.name == "-h") {
      out << kUsage;
      return 0;
    } else if (w.name == "--out" || w.name == "--plots") {
      absl::StatusOr<std::string> v = option_value(w, args, i);
      if (!v.ok()) {
        err << "rotor report: " << v.status().message() << "\n" << kUsage;
        return 2;
      }
      (w.name == "--out" ? out_dir : plots_script) = *v;
    } else if (w.name == "--no-plots" && !w.inline_value) {
      plots = false;
    } else if (is_option(args[i])) {
      err << "rotor report: unknown option '" << args[i] << "'\n" << kUsage;
      return 2;
    } else {
      run_dirs.push_back(args[i]);
    }
  }
  if (run_dirs.empty() || out_dir.empty()) {
    err << "rotor report: " << (run_dirs.empty() ? "no RUN_DIR given" : "--out DIR is required") << "\n"
        << kUsage;
    return 2;
  }

  // Read and check every file before writing anything.
  eval::EvalTables tables;
  for (const std::string& run_dir : run_dirs) {
    const size_t missing_before = tables.missing.size();
    const absl::Status s = eval::read_run_evals(run_dir, tables);
    for (size_t i = missing_before; i < tables.missing.size(); ++i) {
      err << "rotor report: " << tables.missing[i] << " not found, skipped\n";
    }
    if (!s.ok()) {
      err << "rotor report: " << s.message() << "\n";
      return 1;
    }
  }
  eval::summarize(tables);
  if (absl::Status s = eval::write_merged_csvs(tables, out_dir); !s.ok()) {
    err << "rotor report: " << s.message() << "\n";
    return 1;
  }

  int status = 0;
  std::string plots_note;
  if (plots) {
    status = make_plots(plots_script, out_dir, out, err, plots_note);
  } else {
    plots_note = "Plots not made (--no-plots).";
  }
  const std::vector<eval::Finding> findings = eval::assess_findings(tables, run_infos(run_dirs, err));
  const fs::path findings_path = fs::path(out_dir) / "findings.md";
  std::ofstream(findings_path) << eval::findings_markdown(findings);
  const fs::path md_path = fs::path(out_dir) / "report.md";
  std::ofstream md(md_path);
  md << eval::report_markdown(run_dirs, tables, out_dir, plots_note);
  if (!md) {
    err << "rotor report: cannot write " << md_path.string() << "\n";
    return 1;
  }
  out << "\nFindings (" << findings_path.string() << "):\n" << eval::findings_table(findings);
  out << "rotor report: " << tables.runs.size() << " run(s) -> " << md_path.string() << "\n";
  return status;
}

}  // namespace rotor
