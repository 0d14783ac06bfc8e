"""Evaluates PyTorch reference expressions for the TypeScript tests.

Reads one JSON request on stdin: {"threads": n, "cases": {name: {"code": str, "inputs": {var: tensor}}}}
where a tensor is {"dtype", "shape", "data" (base64 of the raw little-endian bytes), "requires_grad"}.
`code` is a Python expression, or statements that assign `result`. Names in scope: torch, F, np, the
inputs, and `g` (a torch.Generator seeded by the case's optional "seed"). Writes {name: value} where a
value is a tensor, a number, a list of values, or {"error": message}.
"""
import base64
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
NAMES = {v: k for k, v in DTYPES.items()}

# Case code may import the tests' own Python modules (tests/unet_ref.py) from any working directory.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def decode(t):
    dtype = DTYPES[t["dtype"]]
    raw = base64.b64decode(t["data"])
    if dtype in (torch.float16, torch.bfloat16):
        x = torch.frombuffer(bytearray(raw), dtype=torch.float32).to(dtype)
    elif len(raw) == 0:
        x = torch.empty(0, dtype=dtype)
    else:
        x = torch.frombuffer(bytearray(raw), dtype=dtype).clone()
    x = x.reshape(t["shape"])
    if t.get("requires_grad"):
        x.requires_grad_(True)
    return x


def encode(v):
    if isinstance(v, torch.Tensor):
        v = v.detach()
        name = NAMES[v.dtype]
        if v.dtype in (torch.float16, torch.bfloat16):
            v = v.float()
        v = v.contiguous()
        return {"dtype": name, "shape": list(v.shape), "data": base64.b64encode(v.numpy().tobytes()).decode()}
    if isinstance(v, (list, tuple)):
        return [encode(x) for x in v]
    if isinstance(v, dict):
        return {k: encode(x) for k, x in v.items()}
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    raise TypeError(f"cannot encode {type(v).__name__}")


def run(case):
    env = {"torch": torch, "F": F, "np": np}
    g = torch.Generator()
    if "seed" in case:
        g.manual_seed(case["seed"])
        torch.manual_seed(case["seed"])
    env["g"] = g
    for name, t in case.get("inputs", {}).items():
        env[name] = decode(t)
    code = case["code"]
    try:
        return encode(eval(compile(code, "<case>", "eval"), env))
    except SyntaxError:
        exec(compile(code, "<case>", "exec"), env)
        return encode(env["result"])


def main():
    req = json.load(sys.stdin)
    torch.set_num_threads(req.get("threads", 1))
    out = {}
    for name, case in req["cases"].items():
        try:
            out[name] = run(case)
        except Exception as e:  # reported per case, so one bad case does not hide the others
            out[name] = {"error": f"{type(e).__name__}: {e}"}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
