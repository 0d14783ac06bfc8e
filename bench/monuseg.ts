// MoNuSeg 2018 end to end: does masked-diffusion pre-training give features that segment nuclei
// from a few labelled images? Pre-trains MDM and DDPM on the 44 unlabelled images, trains pixel
// heads on their features and on two controls, and a supervised UNet from scratch, at 3 and 30
// labels; evaluates all of them on the 14 test images and writes report.md / report.json with the
// paper's Table 1 beside the results, overlays and the timings of every phase (bench/monuseg/).
//
//   deno run -A bench/monuseg.ts --scale quick|cpu|gpu|paper [--out DIR] [--data DIR] [flags]

// libtorch's OpenMP threads spin while they wait for each other; on a machine shared with other
// jobs a spinning thread holds the core its partner needs, and two threads measured 4× slower than
// one. Passive waiting avoids that at little cost on a quiet machine. OpenMP reads the setting when
// libtorch loads, so it is set before the experiment's modules (and libtorch) are imported.
if (Deno.env.get("OMP_WAIT_POLICY") === undefined) Deno.env.set("OMP_WAIT_POLICY", "PASSIVE");
const { run } = await import("./monuseg/main.ts");
Deno.exit(await run(Deno.args));
