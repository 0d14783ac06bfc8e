"""PyTorch side of bench/ops.ts: the same work on the same libtorch build, same thread count.

Prints one JSON object: microseconds per tiny add, milliseconds per conv2d forward + backward.
"""
import json
import sys
import time

import torch
import torch.nn.functional as F


def per_call(fn, n, repeats=5):
    for _ in range(max(1, n // 10)):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def main():
    threads, add_n, conv_n = (int(x) for x in sys.argv[1:4])
    torch.set_num_threads(threads)
    a, b = torch.ones(4), torch.ones(4)
    add = per_call(lambda: a + b, add_n)

    torch.manual_seed(0)
    x = torch.randn(8, 64, 32, 32, requires_grad=True)
    w = torch.randn(64, 64, 3, 3, requires_grad=True)
    bias = torch.randn(64, requires_grad=True)
    up = torch.ones(8, 64, 32, 32)

    def conv():
        x.grad = w.grad = bias.grad = None
        F.conv2d(x, w, bias, padding=1).backward(up)

    print(json.dumps({"add_us": add * 1e6, "conv_ms": per_call(conv, conv_n) * 1e3}))


main()
