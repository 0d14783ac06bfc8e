// The faces protocol's pieces: small classes ignored, pixels collected without the ignored ones,
// the majority vote's tie rule, and a head that learns a separable pixel task.
import assert from "node:assert/strict";
import { manualSeed, noGrad, randn, tensor, tidy } from "../mod.ts";
import { PixelClassifier } from "../src/segment/classifier.ts";
import { dropSmallClasses, type FacesOptions, trainFacesHead } from "../src/segment/faces.ts";

Deno.test("classes with fewer than minPixels pixels in an image are ignored there", () => {
  // 3 pixels of class 2 (< 4) are dropped; classes 0 and 1 have 4 and stay; 255 stays 255.
  // Background is a class like any other here, as in ddpm-segmentation.
  const label = Uint8Array.from([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 255]);
  assert.deepEqual([...dropSmallClasses(label, 3, 4)], [0, 0, 0, 0, 1, 1, 1, 1, 255, 255, 255, 255]);
  // Absent classes are not "small": nothing changes when every present class is large enough.
  assert.deepEqual([...dropSmallClasses(label, 3, 2)], [...label]);
});

Deno.test("majority vote: the most frequent class wins, ties go to the lower class", () => {
  // Three heads' votes for four pixels; the vote is one-hot counting then argmax, as predictFaces does.
  const votes = tensor(BigInt64Array.from([0n, 1n, 2n, 2n, 1n, 1n, 0n, 2n, 1n, 0n, 1n, 0n]), { shape: [3, 4] });
  const winner = Array.from(votes.oneHot(3).sum(0).argmax(1).toArray() as BigInt64Array, Number);
  // pixel 0: votes 0,1,1 -> 1; pixel 1: 1,1,0 -> 1; pixel 2: 2,0,1 -> tie -> 0; pixel 3: 2,2,0 -> 2.
  assert.deepEqual(winner, [1, 1, 0, 2]);
});

Deno.test("a faces-protocol head learns a linearly separable pixel task", () => {
  manualSeed(0);
  // Two classes whose features differ in the mean of the first coordinate.
  const n = 1024, d = 8;
  const y = tensor(BigInt64Array.from({ length: n }, (_, i) => BigInt(i % 2)));
  const x = noGrad(() =>
    tidy(() => randn([n, d]).add(y.float().unsqueeze(1).mul(4).sub(2).mul(tensor([1, 0, 0, 0, 0, 0, 0, 0]))))
  );
  const protocol = {
    classes: 2,
    batch: 64,
    lr: 1e-3,
    maxEpochs: 20,
    checkAfterEpoch: 3,
    patience: 50,
    minClassPixels: 20,
    storage: "float32",
    device: "cpu",
    features: { method: "mdm", blocks: [], timesteps: [] },
  } as FacesOptions;
  const { classifier, steps } = trainFacesHead(x, y, protocol, 1);
  assert.ok(steps >= 16 * 4, `trains at least past the early-stopping start, took ${steps} steps`);
  assert.ok(classifier instanceof PixelClassifier);
  const accuracy = noGrad(() => tidy(() => classifier.forward(x).argmax(1).eq(y).float().mean().item()));
  // The class means are 4 standard deviations apart: the Bayes accuracy is about 0.977.
  assert.ok(accuracy > 0.95, `accuracy ${accuracy}`);
});
