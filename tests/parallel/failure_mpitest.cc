// failure_mpitest MODE: one rank misbehaves while the others wait in an
// all_reduce; tests/parallel/CMakeLists.txt checks that the job ends, nonzero,
// soon, and says why.
//   abort    rank 1 calls abort("bad data file x")
//   exit     rank 1 exits with std::_Exit(3), without MPI_Finalize
//   kill     rank 1 raises SIGKILL
//   timeout  rank 1 sleeps 30 s before the all_reduce (run with
//            ROTOR_COMM_TIMEOUT_S=3: the others time out on communicator 'probe')
//   itimeout the same with iall_reduce: every rank starts it and waits on the
//            request, whose wait() keeps the timeout and the message
// Rank 1 is rank 0 when there is a single rank.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "kernels/tensor.h"
#include "parallel/mpi_communicator.h"

int main(int argc, char** argv) {
  auto world = rotor::mpi_world(&argc, &argv);
  if (argc != 2) {
    std::fprintf(stderr, "usage: failure_mpitest abort|exit|kill|timeout|itimeout\n");
    return 2;
  }
  const char* mode = argv[1];
  const int bad_rank = world->size() > 1 ? 1 : 0;
  // Collective over the world, so the timeout names a communicator made by split.
  auto probe = world->split(0, world->rank(), "probe");
  probe->barrier();
  rotor::Tensor t = rotor::Tensor::from_vector({1.0}, {1}, rotor::DType::kF32);
  if (world->rank() == bad_rank) {
    // Let the others get into the all_reduce first.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    if (std::strcmp(mode, "abort") == 0) {
      world->abort("bad data file x");
    } else if (std::strcmp(mode, "exit") == 0) {
      std::_Exit(3);
    } else if (std::strcmp(mode, "kill") == 0) {
      std::raise(SIGKILL);
    } else if (std::strcmp(mode, "timeout") == 0 || std::strcmp(mode, "itimeout") == 0) {
      std::this_thread::sleep_for(std::chrono::seconds(30));
    } else {
      world->abort(std::string("unknown mode ") + mode);
    }
  }
  if (std::strcmp(mode, "itimeout") == 0) {
    probe->iall_reduce(t)->wait();
  } else {
    probe->all_reduce(t);
  }
  std::printf("rank %d: all_reduce completed (%g)\n", world->rank(), t.item(0));
  probe.reset();
  world.reset();
  rotor::mpi_finalize();
  return 0;
}
