/**
 * The socket of an upgraded request (a `101 Switching Protocols`, or the answer to `CONNECT`): a Node `Duplex`
 * over the connection the core took out of its pool, as undici hands its handlers a `net.Socket`.
 *
 * Reads come as the request's DATA events, under the same credit as response bodies: when `push()` says the
 * readable buffer is full the core stops reading, so a server writing to a reader that does not read meets TCP
 * backpressure and memory stays flat. Each `_writev` (and `_final`, the half-close) is one call into the addon
 * whose completion comes back as a WRITTEN event, in order; that is when its callback runs. `destroy()` closes
 * the connection. The socket keeps the process alive like a `net.Socket`, until it is closed or `unref()`'d.
 */
import { Duplex } from 'node:stream'
import type { AddressInfo } from 'node:net'
import { inFlight } from './batch'
import { splitAddress } from './connection-info'
import { errorFromCore } from './errors'
import { binding, EVENT_DATA, EVENT_ERROR, EVENT_READ_END, EVENT_WRITTEN, type NativeAgent } from './native'

/** What a socket needs from the agent its request ran on. */
export interface SocketHost {
  readonly native: NativeAgent
  /** Counts a socket that keeps the process alive (`true`), or one that no longer does (`false`). */
  hold(held: boolean): void
}

type WriteCallback = (err?: Error | null) => void

function ignore(): void {}

/** An error for the callbacks of writes the socket could not finish because it was destroyed first. */
function destroyedError(): Error {
  const err = new Error('Cannot call write after a stream was destroyed') as Error & { code: string }
  err.code = 'ERR_STREAM_DESTROYED'
  return err
}

export class UpgradedSocket extends Duplex {
  readonly #host: SocketHost
  readonly #id: number
  /** Where the request went, for Node-style error messages (`read ECONNRESET`). */
  readonly #destination: { hostname: string; address: string }
  /** The core was asked to stop reading (the readable buffer was full). */
  #nativePaused = false
  /** Callbacks of writes (and of the end) handed to the addon, oldest first. */
  #writing: WriteCallback[] = []
  #held = false
  #timeout = 0
  #timer: NodeJS.Timeout | null = null
  #bytesRead = 0
  #bytesWritten = 0

  readonly remoteAddress: string | undefined
  readonly remotePort: number | undefined
  readonly remoteFamily: string | undefined
  readonly localAddress: string | undefined
  readonly localPort: number | undefined
  /** Set on sockets to `https:` origins, as on a `tls.TLSSocket`. */
  readonly encrypted: true | undefined
  /** Always `false`: the socket is connected by the time a handler has it. */
  readonly connecting = false
  readonly pending = false

  constructor(
    host: SocketHost,
    id: number,
    remote: string,
    local: string,
    destination: { hostname: string; address: string; origin: string }
  ) {
    // As a client `net.Socket`: once the server ended its side, this side ends too.
    super({ allowHalfOpen: false })
    this.#host = host
    this.#id = id
    this.#destination = destination
    const peer = splitAddress(remote)
    this.remoteAddress = peer.address
    this.remotePort = peer.port
    this.remoteFamily = peer.family
    const own = splitAddress(local)
    this.localAddress = own.address
    this.localPort = own.port
    this.encrypted = destination.origin.startsWith('https:') ? true : undefined
    // undici's sockets keep the error listener their connector added: an error nobody listens for is not
    // thrown at the process (the handler hears of it through `close`). Same here.
    this.on('error', ignore)
    inFlight.set(id, this)
    this.ref()
  }

  /** One event of the upgraded connection, from the native side. */
  deliver(kind: number, a: unknown, b: unknown): void {
    if (kind === EVENT_DATA) {
      const chunk = a as Buffer
      this.#bytesRead += chunk.byteLength
      this.#touch()
      if (!this.push(chunk) && !this.#nativePaused) {
        this.#nativePaused = true
        binding().requestPause(this.#host.native, this.#id)
      }
    } else if (kind === EVENT_WRITTEN) {
      this.#touch()
      this.#writing.shift()?.()
    } else if (kind === EVENT_READ_END) {
      this.push(null)
    } else if (kind === EVENT_ERROR) {
      this.destroy(errorFromCore(a as string, b as string, this.#destination))
    }
  }

  override _read(): void {
    if (this.#nativePaused) {
      this.#nativePaused = false
      binding().requestResume(this.#host.native, this.#id)
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: WriteCallback): void {
    this.#send([chunk], callback)
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: WriteCallback): void {
    this.#send(
      chunks.map((c) => c.chunk),
      callback
    )
  }

  #send(chunks: Buffer[], callback: WriteCallback): void {
    for (const chunk of chunks) this.#bytesWritten += chunk.byteLength
    this.#writing.push(callback)
    binding().upgradeWrite(this.#host.native, this.#id, chunks)
  }

  override _final(callback: WriteCallback): void {
    this.#writing.push(callback)
    binding().upgradeWrite(this.#host.native, this.#id, null)
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    binding().requestAbort(this.#host.native, this.#id)
    if (inFlight.get(this.#id) === this) inFlight.delete(this.#id)
    this.#clearTimer()
    if (this.#held) {
      this.#held = false
      this.#host.hold(false)
    }
    const writing = this.#writing
    this.#writing = []
    callback(err)
    for (const done of writing) done(err ?? destroyedError())
  }

  /** Bytes received on the upgraded connection. */
  get bytesRead(): number {
    return this.#bytesRead
  }

  /** Bytes handed to the socket for writing (written or about to be). */
  get bytesWritten(): number {
    return this.#bytesWritten
  }

  /** `net.Socket#readyState`. */
  get readyState(): 'open' | 'readOnly' | 'writeOnly' | 'closed' {
    if (this.readable && this.writable) return 'open'
    if (this.readable) return 'readOnly'
    if (this.writable) return 'writeOnly'
    return 'closed'
  }

  /** The idle timeout set with {@link setTimeout}, in ms (`undefined` when none). */
  get timeout(): number | undefined {
    return this.#timeout === 0 ? undefined : this.#timeout
  }

  /** `{ address, family, port }` of the local end, as `net.Socket#address()`. */
  address(): AddressInfo | Record<string, never> {
    if (this.localAddress === undefined || this.localPort === undefined) return {}
    return { address: this.localAddress, family: this.localAddress.includes(':') ? 'IPv6' : 'IPv4', port: this.localPort }
  }

  /** Accepted for `net.Socket` compatibility: the core's connections always have `TCP_NODELAY` on. */
  setNoDelay(_noDelay?: boolean): this {
    return this
  }

  /** Accepted for `net.Socket` compatibility; the core does not set TCP keep-alive probes. */
  setKeepAlive(_enable?: boolean, _initialDelay?: number): this {
    return this
  }

  /**
   * As `net.Socket#setTimeout`: emits `timeout` after `ms` without reads or writes (the socket stays open);
   * 0 turns it off.
   */
  setTimeout(ms: number, callback?: () => void): this {
    this.#timeout = ms > 0 && Number.isFinite(ms) ? ms : 0
    if (callback !== undefined) {
      if (this.#timeout === 0) this.removeListener('timeout', callback)
      else this.once('timeout', callback)
    }
    this.#clearTimer()
    this.#touch()
    return this
  }

  /** Keeps the process alive while the socket is open (the default). */
  ref(): this {
    if (!this.#held && !this.destroyed) {
      this.#held = true
      this.#host.hold(true)
    }
    return this
  }

  /** Lets the process exit even though the socket is open. */
  unref(): this {
    if (this.#held) {
      this.#held = false
      this.#host.hold(false)
    }
    return this
  }

  /** Restarts the idle timer after activity. */
  #touch(): void {
    if (this.#timeout === 0) return
    if (this.#timer !== null) {
      this.#timer.refresh()
      return
    }
    this.#timer = setTimeout(() => this.emit('timeout'), this.#timeout)
    // The socket keeps the process alive (or not), not its timer.
    this.#timer.unref()
  }

  #clearTimer(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer)
      this.#timer = null
    }
  }
}
