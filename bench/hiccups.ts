/**
 * A clock loop and nothing else, for `npm run bench`: how often this core is taken away from a
 * process that never waits (the hypervisor, other tasks). It allocates nothing, so no collection
 * runs; every gap between two readings of the clock longer than 1 ms is a stall of the machine,
 * not of Node. The first half second is not counted: the loop is being compiled then, on a
 * thread that shares the core. Prints one JSON line.
 */
const seconds = Number(process.argv[2] ?? 3);
const started = performance.now() + 500;
const end = started + seconds * 1000;
while (performance.now() < started);
let last = started;
let over1 = 0;
let over3 = 0;
let longest = 0;
let lost = 0;
for (let now = performance.now(); now < end; now = performance.now()) {
  const gap = now - last;
  if (gap > 1) {
    over1++;
    lost += gap;
    if (gap > 3) over3++;
    if (gap > longest) longest = gap;
  }
  last = now;
}
process.stdout.write(`${JSON.stringify({ seconds, over1, over3, longestMs: longest, lostMs: lost })}\n`);
