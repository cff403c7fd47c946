/**
 * Bounds on the numbers handed to the core. undici accepts any finite delay or size; values far beyond what a
 * process can live through or address are clamped here, so that none can overflow the core's clock or size
 * arithmetic (the core clamps again: no value may make it panic).
 */

/**
 * Longest wait the core's timers are set to, in ms (about 31 years): a longer undici timer never fires within a
 * process's life either.
 */
export const LONGEST_WAIT_MS = 1e12

/** Largest size or count handed to the core: beyond it, a limit is as good as none. */
export const LARGEST_COUNT = Number.MAX_SAFE_INTEGER

/**
 * A delay in ms as the core takes it: clamped to {@link LONGEST_WAIT_MS}, and a delay between 0 and 1 ms made
 * 1 ms, as Node's timers (and so undici's) make it. 0 keeps its meaning (no timeout).
 */
export function waitMs(value: number): number {
  return value > 0 && value < 1 ? 1 : Math.min(value, LONGEST_WAIT_MS)
}
