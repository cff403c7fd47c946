/** Small statistics helpers: percentiles of sorted samples and medians of per-round results. */

/** The `q` quantile (0..1) of an ascending array, nearest-rank; null when empty. */
export function percentile (sorted, q) {
  if (sorted.length === 0) return null
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))
  return sorted[rank]
}

/** Median of the finite numbers in `values`; null when there are none. */
export function median (values) {
  const finite = values.filter((v) => typeof v === 'number' && Number.isFinite(v)).sort((a, b) => a - b)
  if (finite.length === 0) return null
  const mid = finite.length >> 1
  return finite.length % 2 ? finite[mid] : (finite[mid - 1] + finite[mid]) / 2
}
