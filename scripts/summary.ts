// Prints "N passed, N failed" from Deno's JUnit report, counting test steps as tests.
const path = Deno.args[0];
let xml = "";
try {
  xml = await Deno.readTextFile(path);
} catch {
  console.log("0 passed, 1 failed");
  Deno.exit(1);
}
let passed = 0, failed = 0, skipped = 0;
for (const m of xml.matchAll(/<testcase\b[^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g)) {
  const body = m[2] ?? "";
  if (/<failure|<error/.test(body)) failed++;
  else if (/<skipped/.test(body)) skipped++;
  else passed++;
}
console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
if (failed > 0 || passed === 0) Deno.exit(1);
