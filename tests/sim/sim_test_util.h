// Helpers for simulation tests: the seed a test runs with (overridable with
// DYNAMO_SEED to replay or explore), and the line that replays a failure.
#ifndef DYNAMO_TESTS_SIM_SIM_TEST_UTIL_H_
#define DYNAMO_TESTS_SIM_SIM_TEST_UTIL_H_

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace dynamo::testing {

inline uint64_t TestSeed(uint64_t fixed) {
  const char* env = std::getenv("DYNAMO_SEED");
  return env != nullptr ? std::strtoull(env, nullptr, 10) : fixed;
}

// Attach to every simulation test: printed with any failure.
#define DYNAMO_SEED_INFO(seed)                                                          \
  INFO("seed " << (seed) << "; replay: DYNAMO_SEED=" << (seed) << " ./tests/sim_test \"" \
               << Catch::getResultCapture().getCurrentTestName() << "\"")

}  // namespace dynamo::testing

#endif  // DYNAMO_TESTS_SIM_SIM_TEST_UTIL_H_
