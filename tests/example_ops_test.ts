import { F, manualSeed, randn } from "../mod.ts";
import { assertClose, torchRef } from "./helpers/torch_ref.ts";

Deno.test("conv2d and silu agree with PyTorch", async () => {
  manualSeed(0);
  const x = randn([2, 3, 8, 8]), w = randn([4, 3, 3, 3]), b = randn([4]);
  const ref = await torchRef({
    conv: { code: "F.conv2d(x, w, b, padding=1)", inputs: { x, w, b } },
    silu: { code: "F.silu(x)", inputs: { x } },
  });
  assertClose(F.conv2d(x, w, b, { padding: 1 }), ref.conv, { rtol: 1e-5, atol: 1e-5 });
  assertClose(x.silu(), ref.silu);
});
