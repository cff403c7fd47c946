/** Number formatting shared by the Markdown report and the chart. */

export function fixed (value, digits = 1) {
  return value == null || !Number.isFinite(value) ? '—' : value.toFixed(digits)
}

export function times (value) {
  return value == null || !Number.isFinite(value) ? '—' : `${value.toFixed(2)}×`
}

export function integer (value) {
  return value == null || !Number.isFinite(value) ? '—' : Math.round(value).toLocaleString('en-US')
}

export function percent (value) {
  return value == null || !Number.isFinite(value) ? '—' : `${Math.round(value * 100)}%`
}

/** Text safe inside a Markdown table cell. */
export function cell (text) {
  return String(text ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ')
}
