// main() of parallel_mpi_test, run under mpirun: initialises MPI, runs the
// tests on every rank, and exits nonzero when any test failed on ANY rank (the
// failure counts are summed over the world). Rank 0 prints gtest's usual
// output; the other ranks print only their failed assertions, prefixed with
// their rank.
#include <cstdio>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "kernels/tensor.h"
#include "parallel/mpi_communicator.h"
#include "tests/parallel/mpi_env.h"

namespace rotor::testing_mpi {
namespace {

std::unique_ptr<Communicator> g_world;

class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  // The test's name is kept from OnTestStart: asking gtest for the current
  // test inside OnTestPartResult takes a lock gtest already holds (deadlock).
  void OnTestStart(const ::testing::TestInfo& info) override {
    test_ = std::string(info.test_suite_name()) + "." + info.name();
  }
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s: %s:%d: %s\n", rank_, test_.c_str(),
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.message());
    std::fflush(stderr);
  }

 private:
  int rank_;
  std::string test_ = "?";
};

}  // namespace

Communicator& world() { return *g_world; }

}  // namespace rotor::testing_mpi

int main(int argc, char** argv) {
  using rotor::testing_mpi::g_world;
  g_world = rotor::mpi_world(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  const int rank = g_world->rank();
  if (rank != 0) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new rotor::testing_mpi::FailurePrinter(rank));
  }
  const int rc = RUN_ALL_TESTS();
  rotor::Tensor failed = rotor::Tensor::from_vector({rc != 0 ? 1.0 : 0.0}, {1}, rotor::DType::kI32);
  g_world->all_reduce(failed);
  const int failed_ranks = failed.data<int32_t>()[0];
  if (rank == 0) {
    std::printf("parallel_mpi_test: %d of %d ranks had failures\n", failed_ranks, g_world->size());
    std::fflush(stdout);
  }
  g_world.reset();
  rotor::mpi_finalize();
  return failed_ranks == 0 ? 0 : 1;
}
