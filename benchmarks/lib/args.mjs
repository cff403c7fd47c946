/**
 * Command-line options of `benchmarks/run.mjs`:
 *   --quick              smoke run: 1 round of short runs, a 10 MiB stream, 2 000 requests in the scale row;
 *                        writes to a temp dir unless --out
 *   --rounds=N           rounds per scenario (default 3; medians are taken across rounds)
 *   --duration=MS        measured time per run (default 2000), --warmup=MS (default 500)
 *   --only=a,b           scenario ids to run (h1-get-64, h1-post-4k, h1-get-1m, h1s-get-64, h1-busy-64,
 *                        h1-latency-64, h1-get-64-c8, h2-get-64, h2-post-4k, h1-stream-100m, h1-scale-10k, ws-echo-1k, ws-echo-1m, glue)
 *   --clients=a,b        client ids to run (ours-dispatch, undici-fetch, node, impit, ceiling, …)
 *   --cpu-prof           write a V8 CPU profile of each client process to <out>/profiles/
 *   --out=DIR            where RESULTS.md, results.svg and results.json go (default: benchmarks/)
 *   --before=DIR         also run another build of ours (DIR holds a copy of packages/node's dist/ and
 *                        index.node, inside this repository so that it finds undici) as `before-<api>` clients,
 *                        each right after ours: before/after figures of a change in one run
 */
import { resolve } from 'node:path'

export function parseArgs (argv) {
  const options = { quick: false, only: null, clients: null, cpuProf: false, out: null, rounds: null, durationMs: null, warmupMs: null, before: null }
  for (const arg of argv) {
    const [name, value] = arg.split('=', 2)
    switch (name) {
      case '--quick': options.quick = true; break
      case '--cpu-prof': options.cpuProf = true; break
      case '--only': options.only = value.split(','); break
      case '--clients': options.clients = value.split(','); break
      case '--out': options.out = value; break
      case '--rounds': options.rounds = Number(value); break
      case '--duration': options.durationMs = Number(value); break
      case '--warmup': options.warmupMs = Number(value); break
      case '--before': options.before = resolve(value); break
      default: throw new Error(`unknown option ${arg} (see the header of benchmarks/lib/args.mjs)`)
    }
  }
  return options
}
