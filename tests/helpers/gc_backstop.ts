// Run by tests/memory_test.ts in its own process with --v8-flags=--expose-gc: drops tensors that no
// scope owns, forces collection, and prints how many native handles are left.
import { keep, liveTensors, tensor, tidy, zeros } from "../../mod.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("gc_backstop.ts needs --v8-flags=--expose-gc");

const start = liveTensors();

// In a function of its own, so that no local variable keeps the last tensor reachable.
function drop(): void {
  for (let i = 0; i < 200; i++) zeros([1024]);
  tidy(() => {
    keep(zeros([4]));
  });
  tidy(() => zeros([4]));
}
drop();

// Explicitly disposed tensors were freed already: the backstop must not free them a second time.
for (let i = 0; i < 50; i++) zeros([4]).dispose();

const held = tensor([1, 2, 3]);
const allocated = liveTensors() - start;

// Finalizers run as tasks after a collection, and registration itself waits for a microtask, so
// alternate collections and turns of the event loop until only `held` remains (or we give up).
for (let round = 0; round < 50 && liveTensors() - start > 1; round++) {
  await new Promise((resolve) => setTimeout(resolve, 0));
  gc();
  await new Promise((resolve) => setTimeout(resolve, 5));
}

console.log(JSON.stringify({ allocated, remaining: liveTensors() - start, held: [...held.toArray()] }));
