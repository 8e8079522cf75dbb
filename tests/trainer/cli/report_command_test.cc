// `rotor report` (trainer/cli/report_command.h) on two fake run directories whose
// eval CSVs the test writes: merged CSVs, report.md, the plots of
// eval/plots.py (when python3 with matplotlib is there) and the errors.
#include "trainer/cli/report_command.h"
#include "tests/common/testing.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace rotor {
namespace {

namespace fs = std::filesystem;

constexpr char kPplHeader[] = "run,step,train_length,length,bucket,documents,tokens,loss,ppl\n";

class ReportCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) / (std::string("rotor_report_") + info->name());
    fs::remove_all(dir_);
    // Run "pi": every file but needle.csv; two steps of ppl (the latest is reported).
    write("pi/eval/ppl.csv", std::string(kPplHeader) +
                                 "pi,50,512,128,all,4,512,1.9,6.686\n"
                                 "pi,100,512,128,all,4,512,1.5,4.48\n"
                                 "pi,100,512,256,all,4,1024,1.4,4.05\n"
                                 "pi,100,512,1024,all,4,4096,3.0,20.1\n"
                                 "pi,100,512,1024,0-64,4,256,1.6,4.9\n"
                                 "pi,100,512,1024,64-128,4,256,1.5,4.5\n");
    write("pi/eval/passkey.csv",
          "run,step,length,depth,trials,passed,pass_rate,mean_entropy\n"
          "pi,100,128,0,4,4,1,2.1\n"
          "pi,100,128,0.5,4,2,0.5,2.5\n"
          "pi,100,256,0,4,1,0.25,3.1\n"
          "pi,100,256,0.5,4,1,0.25,3.5\n");
    write("pi/eval/attention.csv",
          "run,step,length,layer,head,bucket,metric,value,reference\n"
          "pi,100,256,0,-1,0-64,entropy,1.5,\n"
          "pi,100,256,0,-1,64-128,entropy,2.5,\n"
          "pi,100,256,0,-1,all,entropy,2.0,\n"
          "pi,100,256,1,-1,0-64,entropy,1.2,\n"
          "pi,100,256,1,-1,64-128,entropy,1.9,\n"
          "pi,100,256,1,-1,all,entropy,1.5,\n"
          "pi,100,256,1,-1,all,js_divergence,0.1,base\n");
    // Run "yarn": ppl, needle and RULER (a cell split over two rows: pooled by samples).
    write("yarn/eval/ruler.csv",
          "run,step,task,length,samples,passed,pass_rate,mean_entropy\n"
          "yarn,100,niah_single_1,4096,4,4,1,0.5\n"
          "yarn,100,niah_single_1,8192,4,2,0.75,0.6\n"
          "yarn,100,vt,4096,2,0,0.5,0.7\n"
          "yarn,100,vt,4096,2,0,0.25,0.7\n"
          "yarn,100,vt,8192,4,0,0,0.8\n");
    write("yarn/eval/ppl.csv", std::string(kPplHeader) +
                                   "yarn,100,512,128,all,4,512,1.4,4.06\n"
                                   "yarn,100,512,256,all,4,1024,1.3,3.67\n"
                                   "yarn,100,512,1024,all,4,4096,2.0,7.39\n");
    write("yarn/eval/needle.csv",
          "run,step,length,depth,trials,passed,pass_rate,mean_entropy\n"
          "yarn,100,128,0,2,2,1,1.0\n"
          "yarn,100,256,0,2,1,0.5,1.5\n");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  std::string read(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  int report(std::vector<std::string> extra) {
    std::vector<std::string> args = {(dir_ / "pi").string(), (dir_ / "yarn").string(), "--out",
                                     (dir_ / "report").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    out_.str("");
    err_.str("");
    return run_report(args, out_, err_);
  }

  fs::path dir_;
  std::ostringstream out_, err_;
};

fs::path plots_script() {
  return rotor::testing::source_root() / "eval/plots.py";
}

int count_lines(const std::string& text) {
  int n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

// Merged CSVs under the same headers and report.md with both runs' numbers.
TEST_F(ReportCommandTest, MergesRunsAndWritesTable) {
  ASSERT_EQ(report({"--no-plots"}), 0) << err_.str();
  const fs::path out = dir_ / "report";
  const std::string ppl = read(out / "ppl.csv");
  EXPECT_EQ(ppl.rfind(kPplHeader, 0), 0u) << ppl;
  EXPECT_EQ(count_lines(ppl), 1 + 6 + 3);
  EXPECT_NE(ppl.find("yarn,100,512,1024,all,4,4096,2.0,7.39"), std::string::npos);
  EXPECT_EQ(count_lines(read(out / "passkey.csv")), 1 + 4);
  EXPECT_EQ(count_lines(read(out / "needle.csv")), 1 + 2);
  EXPECT_EQ(count_lines(read(out / "attention.csv")), 1 + 7);
  // Missing files are said, not fatal.
  EXPECT_NE(err_.str().find("needle.csv not found"), std::string::npos) << err_.str();

  const std::string md = read(out / "report.md");
  EXPECT_NE(md.find("| ppl@128 | ppl@256 | ppl@1K |"), std::string::npos) << md;
  // pi: latest step 100, ppl 4.48 / 4.05 / 20.1, passkey mean (1+0.5+0.25+0.25)/4, entropy (2+1.5)/2,
  // JS vs reference: layer 1's 0.1 (layer 0 has none).
  EXPECT_NE(md.find("| pi | 100 | 512 | 4.480 | 4.050 | 20.100 | 0.500 | - | 1.750 (@256) | 0.100 (@256) |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| yarn | 100 | 512 | 4.060 | 3.670 | 7.390 | - | 0.750 | - | - |"), std::string::npos)
      << md;
  EXPECT_EQ(md.find("6.686"), std::string::npos) << "the older step is not in the table";
  // RULER: yarn's average over tasks per length (niah 100 and vt (0.5+0.25)/2 at 4K, 75 and 0 at 8K),
  // then its task x length table; pi has no ruler.csv (said) and no row.
  EXPECT_EQ(count_lines(read(out / "ruler.csv")), 1 + 5);
  EXPECT_NE(err_.str().find("pi/eval/ruler.csv not found"), std::string::npos) << err_.str();
  EXPECT_NE(md.find("## RULER"), std::string::npos) << md;
  // findings.md: these run dirs hold no recipe.yaml, so no finding can be assessed (said).
  const std::string findings = read(out / "findings.md");
  EXPECT_NE(findings.find("| 1 | The base model's perplexity breaks past its training length"), std::string::npos)
      << findings;
  EXPECT_NE(findings.find("**not measured** | no base run"), std::string::npos) << findings;
  EXPECT_NE(err_.str().find("pi/recipe.yaml not found"), std::string::npos) << err_.str();
  EXPECT_NE(out_.str().find("Findings ("), std::string::npos) << out_.str();
  EXPECT_NE(md.find("| run | 4K | 8K |\n|---|---:|---:|\n| yarn | 68.8 | 37.5 |\n"), std::string::npos) << md;
  EXPECT_NE(md.find("| niah_single_1 | 100.0 | 75.0 |\n| vt | 37.5 | 0.0 |\n| **average** | 68.8 | 37.5 |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("--no-plots"), std::string::npos);
}

// With python3 and matplotlib: the PNGs, linked from report.md.
TEST_F(ReportCommandTest, WritesPlots) {
  if (std::system("/usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "/usr/bin/python3 with matplotlib is not available (Debian: python3-matplotlib)";
  ASSERT_EQ(report({"--plots", plots_script().string()}), 0) << err_.str() << out_.str();
  const fs::path out = dir_ / "report";
  for (const char* name : {"ppl_vs_length.png", "ppl_by_position.png", "passkey_pi.png",
                           "needle_yarn.png", "entropy_by_layer.png", "ruler_yarn.png"}) {
    SCOPED_TRACE(name);
    const std::string png = read(out / name);
    ASSERT_GT(png.size(), 2000u);
    EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
    EXPECT_NE(read(out / "report.md").find(std::string("](") + name + ")"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(out / "passkey_yarn.png")) << "yarn has no passkey grid";
}

// No plot script: the tables are still written, a warning, status 0.
TEST_F(ReportCommandTest, MissingPlotScriptWarns) {
  ASSERT_EQ(report({"--plots", (dir_ / "no-such-plots.py").string()}), 0) << err_.str();
  EXPECT_NE(err_.str().find("warning"), std::string::npos) << err_.str();
  EXPECT_TRUE(fs::exists(dir_ / "report/report.md"));
  EXPECT_TRUE(fs::exists(dir_ / "report/ppl.csv"));
}

// A malformed CSV: status 1, the file and line named.
TEST_F(ReportCommandTest, MalformedCsvNamesFileAndLine) {
  write("yarn/eval/ppl.csv", std::string(kPplHeader) +
                                 "yarn,100,512,128,all,4,512,1.4,4.06\n"
                                 "yarn,100,512,256,all,4,1024,1.3,many\n");
  EXPECT_EQ(report({"--no-plots"}), 1);
  const std::string bad = (dir_ / "yarn/eval/ppl.csv").string();
  EXPECT_NE(err_.str().find(bad + ":3: column 'ppl'"), std::string::npos) << err_.str();
  EXPECT_FALSE(fs::exists(dir_ / "report/report.md")) << "nothing written on a bad input";

  write("yarn/eval/ppl.csv", std::string(kPplHeader) + "yarn,100,512\n");
  EXPECT_EQ(report({"--no-plots"}), 1);
  EXPECT_NE(err_.str().find(bad + ":2: expected 9 fields, got 3"), std::string::npos) << err_.str();

  write("yarn/eval/ppl.csv", "run,step,length\n");
  EXPECT_EQ(report({"--no-plots"}), 1);
  EXPECT_NE(err_.str().find(bad + ":1: expected header"), std::string::npos) << err_.str();
}

// plots.py itself names the file and line of a malformed CSV (status 1).
TEST_F(ReportCommandTest, PlotsScriptNamesFileAndLine) {
  if (std::system("/usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "/usr/bin/python3 with matplotlib is not available (Debian: python3-matplotlib)";
  write("bad/ppl.csv", std::string(kPplHeader) + "x,1,2,3,all,1,1,0.5,oops\n");
  const std::string log = (dir_ / "plots.log").string();
  const std::string cmd = "/usr/bin/python3 '" + plots_script().string() + "' --out '" +
                          (dir_ / "png").string() + "' '" + (dir_ / "bad").string() + "' >'" + log +
                          "' 2>&1";
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_NE(read(log).find((dir_ / "bad/ppl.csv").string() + ":2: column 'ppl'"), std::string::npos)
      << read(log);
}

TEST_F(ReportCommandTest, UsageErrors) {
  std::ostringstream out, err;
  EXPECT_EQ(run_report({(dir_ / "pi").string()}, out, err), 2);
  EXPECT_NE(err.str().find("--out DIR is required"), std::string::npos) << err.str();
  err.str("");
  EXPECT_EQ(run_report({"--out", (dir_ / "r").string()}, out, err), 2);
  EXPECT_NE(err.str().find("no RUN_DIR"), std::string::npos) << err.str();
  err.str("");
  EXPECT_EQ(run_report({(dir_ / "pi").string(), "--out"}, out, err), 2);
  EXPECT_NE(err.str().find("--out needs a value"), std::string::npos) << err.str();
  err.str("");
  EXPECT_EQ(run_report({(dir_ / "pi").string(), "--out", "x", "--plot"}, out, err), 2);
  EXPECT_NE(err.str().find("unknown option '--plot'"), std::string::npos) << err.str();
  err.str("");
  EXPECT_EQ(run_report({(dir_ / "nope").string(), "--out", (dir_ / "r").string()}, out, err), 1);
  EXPECT_NE(err.str().find("nope: not a directory"), std::string::npos) << err.str();
  EXPECT_EQ(run_report({"--help"}, out, err), 0);
}

}  // namespace
}  // namespace rotor
