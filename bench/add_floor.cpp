// The cost of a tiny at::add called straight from C++: the floor under any binding's dispatch.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 200000;
  at::set_num_threads(1);
  auto a = torch::ones({4}), b = torch::ones({4});
  double best = 1e9;
  for (int r = 0; r < 6; r++) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; i++) {
      auto c = at::add(a, b);
    }
    auto t1 = std::chrono::steady_clock::now();
    if (r > 0) best = std::min(best, std::chrono::duration<double, std::micro>(t1 - t0).count() / n);
  }
  std::printf("%f\n", best);
}
