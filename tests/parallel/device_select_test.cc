// Device selection (parallel/device_select.h): the local rank from the
// launchers' variables, the device for a local rank, and the check that no two
// ranks of a node share a GPU. Pure functions: no MPI, no CUDA.
#include "parallel/device_select.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace rotor {
namespace {

// A fake environment for local_rank_from_env.
struct FakeEnv {
  std::map<std::string, std::string> vars;
  std::function<const char*(const char*)> fn() const {
    return [this](const char* name) -> const char* {
      auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  }
};

TEST(LocalRankFromEnv, NoneSetIsUnknown) {
  FakeEnv env;
  auto r = local_rank_from_env(env.fn());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->rank, -1);
  EXPECT_EQ(r->source, "");
}

TEST(LocalRankFromEnv, OrderOpenMpiSlurmMpichGeneric) {
  FakeEnv env;
  env.vars = {{"LOCAL_RANK", "4"}};
  EXPECT_EQ(local_rank_from_env(env.fn())->rank, 4);
  EXPECT_EQ(local_rank_from_env(env.fn())->source, "LOCAL_RANK");
  env.vars["MPI_LOCALRANKID"] = "3";
  EXPECT_EQ(local_rank_from_env(env.fn())->source, "MPI_LOCALRANKID");
  env.vars["SLURM_LOCALID"] = "0";
  EXPECT_EQ(local_rank_from_env(env.fn())->source, "SLURM_LOCALID");
  EXPECT_EQ(local_rank_from_env(env.fn())->rank, 0);
  env.vars["OMPI_COMM_WORLD_LOCAL_RANK"] = "2";
  EXPECT_EQ(local_rank_from_env(env.fn())->source, "OMPI_COMM_WORLD_LOCAL_RANK");
  EXPECT_EQ(local_rank_from_env(env.fn())->rank, 2);
}

TEST(LocalRankFromEnv, EmptyIsSkippedGarbageIsAnError) {
  FakeEnv env;
  env.vars = {{"OMPI_COMM_WORLD_LOCAL_RANK", ""}, {"SLURM_LOCALID", "1"}};
  EXPECT_EQ(local_rank_from_env(env.fn())->rank, 1);
  env.vars = {{"SLURM_LOCALID", "x1"}};
  auto r = local_rank_from_env(env.fn());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("SLURM_LOCALID='x1'"), std::string::npos)
      << r.status();
  env.vars = {{"LOCAL_RANK", "-1"}};
  EXPECT_FALSE(local_rank_from_env(env.fn()).ok());
}

TEST(ParseVisibleDevices, Lists) {
  EXPECT_TRUE(parse_visible_devices("").empty());
  EXPECT_TRUE(parse_visible_devices("  ").empty());
  EXPECT_EQ(parse_visible_devices("0,1, 3"), (std::vector<std::string>{"0", "1", "3"}));
  EXPECT_EQ(parse_visible_devices("GPU-8f3c,GPU-aa01"),
            (std::vector<std::string>{"GPU-8f3c", "GPU-aa01"}));
}

TEST(ChooseDevice, LocalRankIsTheDevice) {
  for (int r = 0; r < 8; ++r) EXPECT_EQ(*choose_device(r, 8, nullptr, 8), r);
  EXPECT_EQ(*choose_device(1, 2, "4,5"), 1);  // visible devices are renumbered 0..n-1
}

TEST(ChooseDevice, OneDevicePerRankBinding) {
  // srun --gpus-per-task=1: each rank sees only its own GPU as device 0.
  EXPECT_EQ(*choose_device(5, 1, "5", 8), 0);
}

TEST(ChooseDevice, MoreRanksThanDevices) {
  auto r = choose_device(4, 4, "0,1,2,3", 8);
  ASSERT_FALSE(r.ok());
  const std::string m(r.status().message());
  EXPECT_NE(m.find("8 ranks per node"), std::string::npos) << m;
  EXPECT_NE(m.find("4 GPUs visible"), std::string::npos) << m;
  EXPECT_NE(m.find("CUDA_VISIBLE_DEVICES='0,1,2,3'"), std::string::npos) << m;
  auto unknown = choose_device(5, 2, nullptr);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(std::string(unknown.status().message()).find("at least 6 ranks per node"),
            std::string::npos)
      << unknown.status();
}

TEST(ChooseDevice, NoDevice) {
  auto hidden = choose_device(0, 0, "");
  ASSERT_FALSE(hidden.ok());
  EXPECT_NE(std::string(hidden.status().message()).find("hides every GPU"), std::string::npos)
      << hidden.status();
  auto slurm = choose_device(0, 0, "NoDevFiles");
  ASSERT_FALSE(slurm.ok());
  EXPECT_NE(std::string(slurm.status().message()).find("hides every GPU"), std::string::npos);
  auto none = choose_device(0, 0, nullptr);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(std::string(none.status().message()).find("no GPU or no driver"), std::string::npos)
      << none.status();
  EXPECT_FALSE(choose_device(-1, 4, nullptr).ok());
}

TEST(CheckUniqueDevices, DistinctIsOk) {
  std::vector<RankDevice> ranks = {{0, "n1", "GPU-a", 0}, {1, "n1", "GPU-b", 1},
                                   {2, "n2", "GPU-c", 0}, {3, "n2", "GPU-d", 1}};
  EXPECT_TRUE(check_unique_devices(ranks).ok());
  // The same PCI bus id on two hosts is two GPUs.
  std::vector<RankDevice> pci = {{0, "n1", "0000:1b:00.0", 0}, {1, "n2", "0000:1b:00.0", 0}};
  EXPECT_TRUE(check_unique_devices(pci).ok());
  EXPECT_TRUE(check_unique_devices({}).ok());
}

TEST(CheckUniqueDevices, SharedGpuNamesBothRanksAndHost) {
  std::vector<RankDevice> ranks = {{0, "n1", "GPU-a", 0}, {1, "n1", "GPU-b", 1},
                                   {2, "n2", "GPU-c", 0}, {3, "n2", "GPU-c", 0}};
  absl::Status s = check_unique_devices(ranks);
  ASSERT_FALSE(s.ok());
  const std::string m(s.message());
  EXPECT_NE(m.find("world ranks 2 and 3 on host n2 both use GPU GPU-c"), std::string::npos) << m;
}

}  // namespace
}  // namespace rotor
