// ROTOR_FAULT's parser (trainer/fault_injection.h): the faults the reliability
// tests inject are parsed as written, and a malformed value is an error naming
// ROTOR_FAULT and the part that is wrong (so a typo cannot silently test nothing).
#include <gtest/gtest.h>

#include "trainer/fault_injection.h"

namespace rotor {
namespace {

TEST(FaultPlan, ParsesEveryKind) {
  absl::StatusOr<FaultPlan> p = FaultPlan::parse(
      "kill:step=3,rank=1; fail:step=4 ;kill_checkpoint:step=6,stage=2;nan_activation:step=2,layer=1;"
      "nan_grad:step=5,layer=0");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE(p->empty());
  EXPECT_TRUE(FaultPlan::parse("")->empty());
  // fail at step 4 on rank 0 only; other steps and ranks go on.
  EXPECT_TRUE(p->at_step_start(4, 1).ok());
  EXPECT_TRUE(p->at_step_start(5, 0).ok());
  const absl::Status s = p->at_step_start(4, 0);
  EXPECT_NE(s.message().find("step 4: injected failure"), std::string::npos) << s;
}

TEST(FaultPlan, MalformedIsAnErrorNamingThePart) {
  for (const auto& [spec, want] : std::vector<std::pair<std::string, std::string>>{
           {"kil:step=3", "'kil:step=3': unknown fault"},
           {"kill", "'kill': step=S (S >= 1) is required"},
           {"kill:step=0", "step=S (S >= 1) is required"},
           {"kill:step=x", "'step=x' is not KEY=N"},
           {"kill:step=2,when=3", "unknown argument 'when'"},
           {"kill_checkpoint:step=2", "kill_checkpoint needs stage=1..4"},
           {"kill_checkpoint:step=2,stage=5", "stage must be 1..4"},
           {"kill:step=2;nan_grad:layer=1", "'nan_grad:layer=1': step=S"}}) {
    absl::StatusOr<FaultPlan> p = FaultPlan::parse(spec);
    ASSERT_FALSE(p.ok()) << spec;
    EXPECT_NE(p.status().message().find("ROTOR_FAULT: "), std::string::npos) << p.status();
    EXPECT_NE(p.status().message().find(want), std::string::npos) << spec << ": " << p.status();
  }
}

}  // namespace
}  // namespace rotor
