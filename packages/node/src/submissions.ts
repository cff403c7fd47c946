/**
 * The requests started in one tick, encoded for `dispatchBatch` (layout in `native/src/protocol.rs`): one
 * string and one `Float64Array` cross into the addon, instead of an array of values it would read one N-API
 * call at a time.
 *
 * Per request, `REQUEST_FIELDS` numbers (id, the lengths of method, URL and headers, body mode, timeouts, how it
 * leaves HTTP, the length of its switch target, and whether it is gated: held once its connection is assigned
 * until its start callback ran, see `DispatchController`); the text is every request's method, URL, `name\0value\0…`
 * headers and switch target (an upgrade's protocol, a CONNECT's request target, or nothing) back to back. Every char is latin1
 * (validation rejects anything above U+00FF), so lengths in chars are lengths in bytes. Bodies given as bytes
 * travel in `bodies`, in request order.
 */
import { REQUEST_FIELDS } from './native'

export class Submissions {
  text = ''
  /** Grown by doubling, reused from tick to tick: the addon copies what it reads. */
  numbers = new Float64Array(64 * REQUEST_FIELDS)
  count = 0
  bodies: Uint8Array[] | null = null

  add(
    id: number,
    method: string,
    url: string,
    headers: string,
    bodyMode: number,
    body: Uint8Array | null,
    headersTimeout: number,
    bodyTimeout: number,
    switchMode: number,
    switchTo: string,
    gated: boolean
  ): void {
    let at = this.count * REQUEST_FIELDS
    if (at + REQUEST_FIELDS > this.numbers.length) {
      const grown = new Float64Array(this.numbers.length * 2)
      grown.set(this.numbers)
      this.numbers = grown
    }
    const numbers = this.numbers
    numbers[at++] = id
    numbers[at++] = method.length
    numbers[at++] = url.length
    numbers[at++] = headers.length
    numbers[at++] = bodyMode
    numbers[at++] = headersTimeout
    numbers[at++] = bodyTimeout
    numbers[at++] = switchMode
    numbers[at++] = switchTo.length
    numbers[at] = gated ? 1 : 0
    this.text += method + url + headers + switchTo
    if (body !== null) (this.bodies ??= []).push(body)
    this.count++
  }

  /** Empties the batch once the addon has read it. */
  clear(): void {
    this.text = ''
    this.count = 0
    this.bodies = null
  }
}
