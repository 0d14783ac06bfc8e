// Failure paths: every bad call must throw a precise, typed error and leave the process (handles,
// status block, grad mode) exactly as usable as before.
import assert from "node:assert/strict";
import {
  Adam,
  arange,
  cat,
  cudaAvailable,
  DisposedError,
  F,
  Generator,
  isGradEnabled,
  liveTensors,
  noGrad,
  ones,
  randint,
  randn,
  synchronize,
  type Tensor,
  tensor,
  tidy,
  TorchError,
  where,
  zeros,
} from "../mod.ts";
import { torchRef } from "./helpers/torch_ref.ts";

/**
 * Checks what every failure must leave behind. The gradient query comes first: it is the one call
 * that reads the status block on success, so a stale error from the failure would surface there.
 */
function assertHealthy(): void {
  const before = liveTensors();
  tidy(() => {
    assert.equal(zeros([2], { requiresGrad: true }).grad, null);
    assert.deepEqual([...tensor([1, 2, 3]).mul(2).add(1).toArray()], [3, 5, 7]);
  });
  assert.equal(liveTensors(), before);
  assert.equal(isGradEnabled(), true);
}

/**
 * Runs `fn` (which builds its own inputs) in a scope, returns what it threw, and checks that the
 * failure leaked no native handle and left the process healthy.
 */
function failure(fn: () => unknown): unknown {
  const before = liveTensors();
  let caught: unknown = null;
  try {
    tidy(fn);
  } catch (e) {
    caught = e;
  }
  assert.notEqual(caught, null, "expected the call to throw");
  assert.equal(liveTensors(), before, "the failed call leaked native handles");
  assertHealthy();
  return caught;
}

// Where libtorch's wording changed between releases (1.13 and 2.x), the text expected is what the
// reference PyTorch (the same libtorch) says for the same call: its message's first line.
const PY_FAILURES: Record<string, string> = {
  "matmul float32 float64": "torch.zeros(2, 3).matmul(torch.zeros(3, 2, dtype=torch.float64))",
  "cross_entropy float targets": "F.cross_entropy(torch.zeros(4, 5), torch.zeros(4))",
  "gather float index": "torch.zeros(4, 5).gather(0, torch.zeros(2, 5))",
  "scatter float index": "torch.zeros(4, 5).scatter(0, torch.zeros(2, 5), torch.zeros(2, 5))",
  "narrow negative length": "torch.zeros(4).narrow(0, 0, -1)",
};
const pyFailures = await torchRef(Object.fromEntries(
  Object.entries(PY_FAILURES).map(([name, call]) => [name, {
    code: `try:\n    ${call}\n    result = None\nexcept Exception as e:\n    result = str(e).splitlines()[0]`,
  }]),
));
/** PyTorch's message for one of PY_FAILURES; the call must fail there too. */
function pyFailure(name: keyof typeof PY_FAILURES): string {
  const text = pyFailures[name];
  if (typeof text !== "string" || text === "") throw new Error(`PyTorch did not fail on ${PY_FAILURES[name]}`);
  return text;
}

/** A libtorch failure: a TorchError naming the op and the input shapes, carrying libtorch's text. */
function torchFailure(
  fn: () => unknown,
  op: string,
  shapes: (readonly number[] | null)[],
  libtorchText: string,
): TorchError {
  const e = failure(fn);
  assert.ok(e instanceof TorchError, `expected a TorchError, got ${e}`);
  assert.equal(e.name, "TorchError");
  assert.equal(e.op, op);
  assert.deepEqual(e.inputShapes, shapes);
  assert.ok(e.torchMessage.includes(libtorchText), `libtorch's message "${e.torchMessage}" lacks "${libtorchText}"`);
  assert.ok(e.message.includes(libtorchText), `message "${e.message}" lacks libtorch's text`);
  assert.ok(e.message.startsWith(`${op}(`), `message "${e.message}" does not start with the op`);
  return e;
}

/** A check made in TypeScript before any native call: the given class, with a message naming `what`. */
function argFailure(fn: () => unknown, type: typeof TypeError | typeof RangeError, what: string): Error {
  const e = failure(fn);
  assert.ok(e instanceof type, `expected a ${type.name}, got ${e}`);
  assert.ok(!(e instanceof TorchError));
  assert.ok((e as Error).message.includes(what), `message "${(e as Error).message}" does not name "${what}"`);
  return e as Error;
}

Deno.test("mismatched shapes", async (t) => {
  await t.step("add of [2,3] and [4,5]", () => {
    torchFailure(
      () => zeros([2, 3]).add(zeros([4, 5])),
      "add",
      [[2, 3], [4, 5]],
      "The size of tensor a (3) must match the size of tensor b (5) at non-singleton dimension 1",
    );
  });

  await t.step("matmul of [2,3] and [4,5]", () => {
    torchFailure(
      () => zeros([2, 3]).matmul(zeros([4, 5])),
      "matmul",
      [[2, 3], [4, 5]],
      "mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)",
    );
  });

  await t.step("conv2d with the wrong channel count is caught before libtorch", () => {
    argFailure(() => F.conv2d(zeros([1, 4, 5, 5]), zeros([2, 3, 3, 3])), TypeError, "input has 4 channels");
  });

  await t.step("conv2d with a kernel larger than the input fails in libtorch", () => {
    torchFailure(
      () => F.conv2d(zeros([1, 3, 2, 2]), zeros([2, 3, 3, 3])),
      "conv2d",
      [[1, 3, 2, 2], [2, 3, 3, 3]],
      "Kernel size can't be greater than actual input size",
    );
  });

  await t.step("linear with a weight of the wrong width", () => {
    argFailure(() => F.linear(zeros([4, 3]), zeros([2, 4])), TypeError, "linear");
  });

  await t.step("cat of incompatible shapes", () => {
    torchFailure(
      () => cat([zeros([2, 3]), zeros([2, 4])]),
      "cat",
      [[2, 3], [2, 4]],
      "Sizes of tensors must match except in dimension 0",
    );
  });

  await t.step("reshape to a wrong element count", () => {
    torchFailure(() => zeros([2, 3]).reshape(7), "reshape", [[2, 3]], "shape '[7]' is invalid for input of size 6");
  });

  await t.step("expand of a non-singleton dimension", () => {
    torchFailure(
      () => zeros([2, 3]).expand(4, 3),
      "expand",
      [[2, 3]],
      "The expanded size of the tensor (4) must match the existing size (2)",
    );
  });

  await t.step("view of a non-contiguous tensor fails; contiguous() first works", () => {
    torchFailure(
      () => tensor([[1, 2, 3], [4, 5, 6]]).transpose(0, 1).view(6),
      "view",
      [[3, 2]],
      "view size is not compatible with input tensor's size and stride",
    );
    const flat = tidy(() => tensor([[1, 2, 3], [4, 5, 6]]).transpose(0, 1).contiguous().view(6));
    assert.deepEqual([...flat.toArray()], [1, 4, 2, 5, 3, 6]);
    flat.dispose();
  });
});

Deno.test("wrong dtypes", async (t) => {
  await t.step("mean of an int64 tensor", () => {
    torchFailure(
      () => zeros([2, 3], { dtype: "int64" }).mean(),
      "mean",
      [[2, 3]],
      "mean(): could not infer output dtype",
    );
  });

  await t.step("matmul of float32 and float64", () => {
    torchFailure(
      () => zeros([2, 3]).matmul(zeros([3, 2], { dtype: "float64" })),
      "matmul",
      [[2, 3], [3, 2]],
      pyFailure("matmul float32 float64"),
    );
  });

  await t.step("crossEntropy with float class targets", () => {
    torchFailure(
      () => F.crossEntropy(zeros([4, 5]), zeros([4]) as unknown as Tensor<"int64">),
      "crossEntropy",
      [[4, 5], [4]],
      pyFailure("cross_entropy float targets"),
    );
  });

  await t.step("crossEntropy with float targets of the logits' shape", () => {
    argFailure(
      () => F.crossEntropy(zeros([4, 5]), zeros([4, 5]) as unknown as Tensor<"int64">),
      TypeError,
      "class-index targets",
    );
  });

  await t.step("index ops with float indices", () => {
    const floatIndex = (shape: number[]) => zeros(shape) as unknown as Tensor<"int64">;
    torchFailure(
      () => zeros([4, 5]).indexSelect(0, floatIndex([2])),
      "indexSelect",
      [[4, 5], [2]],
      "Expected dtype int32 or int64 for index",
    );
    torchFailure(
      () => zeros([4, 5]).gather(0, floatIndex([2, 5])),
      "gather",
      [[4, 5], [2, 5]],
      pyFailure("gather float index"),
    );
    torchFailure(
      () => zeros([4, 5]).scatter(0, floatIndex([2, 5]), zeros([2, 5])),
      "scatter",
      [[4, 5], [2, 5], [2, 5]],
      pyFailure("scatter float index"),
    );
    torchFailure(() => zeros([4]).oneHot(3), "oneHot", [[4]], "one_hot is only applicable to index tensor");
  });

  await t.step("requiresGrad on an integer tensor", () => {
    argFailure(() => zeros([2], { dtype: "int64" }).requiresGrad_(), TypeError, "int64");
  });
});

Deno.test("autograd misuse", async (t) => {
  await t.step("backward of a non-scalar without an upstream gradient", () => {
    torchFailure(
      () => ones([3], { requiresGrad: true }).mul(2).backward(),
      "backward",
      [[3]],
      "grad can be implicitly created only for scalar outputs",
    );
  });

  await t.step("a second backward through a freed graph", () => {
    torchFailure(
      () => {
        const a = ones([3], { requiresGrad: true });
        const loss = a.mul(a).sum();
        loss.backward();
        loss.backward();
      },
      "backward",
      [[]],
      "Trying to backward through the graph a second time",
    );
  });

  await t.step("in-place update of a leaf that requires grad", () => {
    torchFailure(
      () => ones([3], { requiresGrad: true }).copy_(zeros([3])),
      "copy_",
      [[3], [3]],
      "a leaf Variable that requires grad is being used in an in-place operation",
    );
  });

  await t.step("a failure inside noGrad restores grad mode", () => {
    assert.throws(() => noGrad(() => tidy(() => zeros([2, 3]).add(zeros([4, 5])))), TorchError);
    assert.equal(isGradEnabled(), true);
  });
});

Deno.test("use after dispose", async (t) => {
  const before = liveTensors();
  const x = tensor([[1, 2, 3], [4, 5, 6]]);
  // Cache the shape and dtype first: a cached value must not make a disposed tensor look alive.
  assert.deepEqual(x.shape, [2, 3]);
  assert.equal(x.dtype, "float32");
  x.dispose();
  assert.equal(x.disposed, true);
  assert.equal(liveTensors(), before);

  const disposed = (fn: () => unknown) => {
    const e = failure(fn);
    assert.ok(e instanceof DisposedError, `expected a DisposedError, got ${e}`);
    assert.match((e as Error).message, /after dispose/);
  };

  await t.step("method calls", () => {
    disposed(() => x.add(1));
    disposed(() => x.sum());
    disposed(() => x.reshape(6));
    disposed(() => x.clone());
    disposed(() => x.toArray());
    disposed(() => x.item());
    disposed(() => x.backward());
    disposed(() => x.split(1));
    disposed(() => x.to("float64"));
  });

  await t.step("property access", () => {
    disposed(() => x.ptr);
    disposed(() => x.shape);
    disposed(() => x.ndim);
    disposed(() => x.size(0));
    disposed(() => x.dtype);
    disposed(() => x.numel);
    disposed(() => x.device);
    disposed(() => x.requiresGrad);
    disposed(() => x.isLeaf);
    disposed(() => x.grad);
    assert.equal(x.toString(), "Tensor(disposed)");
  });

  await t.step("as an argument of another op", () => {
    disposed(() => zeros([2, 3]).add(x));
    disposed(() => zeros([3, 2]).matmul(x));
    disposed(() => cat([zeros([2, 3]), x]));
    disposed(() => where(zeros([2, 3]).gt(0), zeros([2, 3]), x));
    disposed(() => zeros([2, 3]).copy_(x));
    disposed(() => F.linear(zeros([4, 3]), x));
    disposed(() => F.mseLoss(zeros([2, 3]), x));
    disposed(() => new Adam([x as Tensor<"float32">]));
  });

  await t.step("disposing twice is fine and frees once", () => {
    const y = zeros([4]);
    const live = liveTensors();
    y.dispose();
    y.dispose();
    y[Symbol.dispose]();
    assert.equal(liveTensors(), live - 1);
    x.dispose();
    assertHealthy();
  });

  await t.step("a tensor freed by tidy or `using` is disposed too", () => {
    let inner: Tensor | null = null;
    tidy(() => {
      inner = zeros([2]);
    });
    disposed(() => inner!.sum());
    let scoped: Tensor;
    {
      using s = zeros([2]);
      scoped = s;
    }
    disposed(() => scoped.sum());
  });

  await t.step("disposing a tensor leaves its views valid", () => {
    const base = tensor([1, 2, 3, 4]);
    const view = base.reshape(2, 2);
    base.dispose();
    assert.deepEqual([...view.toArray()], [1, 2, 3, 4]);
    view.dispose();
  });

  assert.equal(liveTensors(), before);
});

Deno.test("invalid arguments", async (t) => {
  await t.step("non-integer shape entries", () => {
    argFailure(() => zeros([2.5]), TypeError, "shape");
    argFailure(() => randn([2, NaN]), TypeError, "randn: shape");
    argFailure(() => zeros([2, 3]).reshape(2, 1.5), TypeError, "reshape: shape");
    argFailure(() => tensor(new Float32Array(6), { shape: [2, 3.5] }), TypeError, "tensor: shape");
  });

  await t.step("negative sizes are rejected by libtorch", () => {
    torchFailure(() => zeros([-1]), "full", [], "Trying to create tensor with negative dimension -1");
    torchFailure(() => randn([2, -3]), "randn", [], "Trying to create tensor with negative dimension -3");
    torchFailure(() => zeros([4]).narrow(0, 0, -1), "narrow", [[4]], pyFailure("narrow negative length"));
  });

  await t.step("dim out of range", () => {
    torchFailure(() => zeros([2, 3]).sum(5), "sum", [[2, 3]], "Dimension out of range");
    torchFailure(() => zeros([2, 3]).transpose(0, 2), "transpose", [[2, 3]], "Dimension out of range");
    torchFailure(() => zeros([2, 3]).softmax(3), "softmax", [[2, 3]], "Dimension out of range");
    torchFailure(() => zeros([4]).select(0, 7), "select", [[4]], "index 7 out of range");
    argFailure(() => zeros([2, 3]).size(2), RangeError, "size(2)");
    argFailure(() => zeros([2, 3]).transpose(0, 1.5), TypeError, "transpose: dim1");
  });

  await t.step("unknown dtype string", () => {
    argFailure(() => zeros([2], { dtype: "float8" as "float32" }), TypeError, '"float8"');
    argFailure(() => zeros([2]).to("int8" as "int32"), TypeError, '"int8"');
    argFailure(() => tensor([1, 2], { dtype: "complex64" as "float32" }), TypeError, '"complex64"');
  });

  await t.step("unknown device string", () => {
    argFailure(() => zeros([2], { device: "tpu" as "cpu" }), TypeError, '"tpu"');
    argFailure(() => zeros([2]).to({ device: "gpu" as "cpu" }), TypeError, '"gpu"');
    argFailure(() => zeros([2]).to("cuda:x" as "cuda"), TypeError, '"cuda:x"');
  });

  await t.step("clamp with no bounds", () => {
    argFailure(() => zeros([2]).clamp(), TypeError, "clamp");
    argFailure(() => zeros([2]).clamp(null, undefined), TypeError, "clamp");
  });

  await t.step("dropout p outside [0, 1]", () => {
    argFailure(() => F.dropout(zeros([2]), 2), RangeError, "p must be in [0, 1], got 2");
    argFailure(() => F.dropout(zeros([2]), -0.1), RangeError, "got -0.1");
    argFailure(() => F.dropout(zeros([2]), NaN), RangeError, "got NaN");
  });

  await t.step("split and chunk sizes", () => {
    argFailure(() => zeros([4]).split(0), RangeError, "split: size");
    argFailure(() => zeros([4]).split(-1), RangeError, "split: size");
    argFailure(() => zeros([4]).split(1.5), TypeError, "split: size");
    torchFailure(() => zeros([4]).chunk(0), "chunk", [[4]], "chunk expects `chunks` to be greater than 0");
  });

  await t.step("interpolate needs exactly one of size and scaleFactor", () => {
    argFailure(
      () => F.interpolate(zeros([1, 1, 2, 2]), { size: [4, 4], scaleFactor: 2 }),
      TypeError,
      "size and scaleFactor",
    );
    argFailure(() => F.interpolate(zeros([1, 1, 2, 2]), {}), TypeError, "size and scaleFactor");
  });

  await t.step("range and random bounds", () => {
    torchFailure(() => arange(0, 10, 0), "arange", [], "step must be nonzero");
    torchFailure(() => randint(5, 2, [3]), "randint", [], "expects 'from' to be less than 'to'");
  });

  await t.step("item of a tensor with more than one element", () => {
    torchFailure(() => zeros([2]).item(), "item", [[2]], "needs exactly one element, tensor has 2");
  });
});

Deno.test({
  name: "a CUDA request on a CPU-only build fails cleanly",
  ignore: cudaAvailable(),
  fn: async (t) => {
    await t.step("creation", () => {
      torchFailure(() => zeros([2], { device: "cuda" }), "full", [], "CUDA");
      torchFailure(() => randn([2], { device: "cuda" }), "randn", [], "CUDA");
      torchFailure(() => tensor([1, 2], { device: "cuda" }), "tensor", [], "CUDA");
    });
    await t.step("transfer", () => {
      torchFailure(() => tensor([1, 2]).to("cuda"), "to", [[2]], "CUDA");
    });
    await t.step("generator and synchronize", () => {
      torchFailure(() => new Generator(1, "cuda"), "Generator", [], "CUDA");
      torchFailure(() => synchronize("cuda"), "synchronize", [], "CUDA");
    });
  },
});
