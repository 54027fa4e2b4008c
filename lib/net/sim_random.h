// Small, fast, explicitly seeded random engines for the simulated network.
// The simulation's randomness must be identical on every machine and library
// version, so it does not use std:: or absl:: distributions (their algorithms
// are unspecified or may change); it draws bits from xoshiro256** and turns
// them into numbers with fixed formulas here.
#ifndef DYNAMO_NET_SIM_RANDOM_H_
#define DYNAMO_NET_SIM_RANDOM_H_

#include <cmath>
#include <cstdint>
#include <limits>

namespace dynamo::sim::internal {

// The splitmix64 finaliser: a bijective 64-bit mixer. Used to split one seed
// into independent per-node seeds and to fold values into the trace digest.
inline uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// xoshiro256** (Blackman and Vigna): 32 bytes of state, sub-nanosecond per
// draw, good statistical quality. Satisfies UniformRandomBitGenerator, so it
// can back an absl::BitGenRef.
class Xoshiro256 {
 public:
  using result_type = uint64_t;
  explicit Xoshiro256(uint64_t seed) {
    // Fill the state from a splitmix64 sequence, as the authors recommend;
    // it is never all zero.
    for (uint64_t& word : s_) {
      seed += 0x9e3779b97f4a7c15ULL;
      word = Mix64(seed);
    }
  }
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return std::numeric_limits<uint64_t>::max(); }
  result_type operator()() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

  // Uniform on [0, 1), 53 bits.
  double Uniform01() { return static_cast<double>((*this)() >> 11) * 0x1.0p-53; }
  // True with probability p; draws nothing when p <= 0 so that a fault that
  // is off costs nothing.
  bool Bernoulli(double p) {
    if (p <= 0) return false;
    if (p >= 1) return true;
    return Uniform01() < p;
  }
  // Exponential with mean 1.
  double Exponential() { return -std::log1p(-Uniform01()); }
  // Standard normal (Box-Muller; the second value is discarded for simplicity).
  double Normal() {
    const double u1 = 1.0 - Uniform01();  // (0, 1]
    const double u2 = Uniform01();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace dynamo::sim::internal

#endif  // DYNAMO_NET_SIM_RANDOM_H_
