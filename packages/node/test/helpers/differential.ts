/**
 * Differential testing: run one scenario against `undici.Agent` and against ours, and reduce each run to a
 * transcript of what the handler observed (callback order, status, headers, body, trailers, error class and
 * code). Two implementations that are compatible produce equal transcripts.
 */
import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'
import { Agent as UndiciAgent, Dispatcher } from 'undici'
import { Agent } from 'reqwest-dispatcher'

export type Style = 'controller' | 'legacy'

/** Headers that legitimately differ between runs or transports. */
const VOLATILE = new Set(['date', 'keep-alive', 'connection'])

function stableHeaders(headers: Record<string, unknown> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(headers ?? {})) if (!VOLATILE.has(k)) out[k] = v
  return out
}

function rawToObject(raw: Buffer[] | string[] | null | undefined): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  if (!raw) return out
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const k = raw[i].toString().toLowerCase()
    const v = raw[i + 1].toString()
    const prev = out[k]
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v]
  }
  return out
}

function summarize(body: Buffer): string {
  if (body.length <= 256) return body.toString()
  return `${body.length} bytes sha256:${createHash('sha256').update(body).digest('hex')}`
}

function describeError(err: unknown): string {
  const e = err as Error & { code?: string }
  return `${e?.constructor?.name ?? typeof err} ${e?.code ?? ''}`.trim()
}

/** Hooks a scenario may use to steer the request from inside callbacks. */
export interface Steering {
  onRequestStart?(controller: Dispatcher.DispatchController): void
  onResponseStart?(controller: Dispatcher.DispatchController): void
  onResponseData?(controller: Dispatcher.DispatchController, chunk: Buffer): void
}

export interface Outcome {
  transcript: string[]
  /** Small bodies verbatim, large ones as `<length> bytes sha256:<hex>`. */
  body: string
  returned: boolean | string
}

/** Runs one dispatch and records what the handler saw. Data callbacks are collapsed into one `data` line. */
export function record(
  dispatcher: Dispatcher,
  opts: Dispatcher.DispatchOptions,
  style: Style,
  steer: Steering = {}
): Promise<Outcome> {
  const transcript: string[] = []
  const chunks: Buffer[] = []
  const push = (line: string): void => {
    if (line === 'data' && transcript.at(-1) === 'data') return
    transcript.push(line)
  }
  return new Promise((resolve) => {
    const finish = (returned: boolean | string): void => {
      // Give a misbehaving implementation the chance to call something after the end.
      setTimeout(() => resolve({ transcript, body: summarize(Buffer.concat(chunks)), returned }), 30)
    }
    let returned: boolean | string = 'pending'
    let handler: Dispatcher.DispatchHandler
    if (style === 'controller') {
      handler = {
        onRequestStart(controller) {
          push('onRequestStart')
          steer.onRequestStart?.(controller)
        },
        onResponseStart(controller, statusCode, headers, statusMessage) {
          push(`onResponseStart ${statusCode} ${statusMessage} ${JSON.stringify(stableHeaders(headers))}`)
          steer.onResponseStart?.(controller)
        },
        onResponseData(controller, chunk) {
          push('data')
          chunks.push(chunk)
          steer.onResponseData?.(controller, chunk)
        },
        onResponseEnd(_controller, trailers) {
          push(`onResponseEnd ${JSON.stringify(trailers)}`)
          finish(returned)
        },
        onResponseError(_controller, err) {
          push(`onResponseError ${describeError(err)}`)
          finish(returned)
        }
      }
    } else {
      let controller: Dispatcher.DispatchController | undefined
      const legacy = {
        onConnect(abort: (err?: Error) => void) {
          push('onConnect')
          let paused = false
          controller = {
            abort: (err: Error) => abort(err),
            pause: () => void (paused = true),
            resume: () => resumeFn?.(),
            get aborted() {
              return false
            },
            get paused() {
              return paused
            },
            get reason() {
              return null
            }
          }
          steer.onRequestStart?.(controller)
        },
        onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string) {
          push(`onHeaders ${statusCode} ${statusText} ${JSON.stringify(stableHeaders(rawToObject(rawHeaders)))}`)
          resumeFn = resume
          steer.onResponseStart?.(controller as Dispatcher.DispatchController)
          return true
        },
        onData(chunk: Buffer) {
          push('data')
          chunks.push(chunk)
          steer.onResponseData?.(controller as Dispatcher.DispatchController, chunk)
          return true
        },
        onComplete(trailers: Buffer[] | null) {
          push(`onComplete ${JSON.stringify(rawToObject(trailers))}`)
          finish(returned)
        },
        onError(err: Error) {
          push(`onError ${describeError(err)}`)
          finish(returned)
        }
      }
      let resumeFn: (() => void) | undefined
      handler = legacy as unknown as Dispatcher.DispatchHandler
    }
    try {
      returned = dispatcher.dispatch(opts, handler)
    } catch (err) {
      push(`throws ${describeError(err)}`)
      finish('threw')
    }
  })
}

export interface Pair {
  undici: Dispatcher
  ours: Dispatcher
  close(): Promise<void>
}

/**
 * undici's behaviour for both handler styles. undici 8 dropped legacy handlers (`onConnect`, `onHeaders`, …); ours
 * still takes them (Node's built-in fetch before undici 8 dispatches with them), so when the tests run on undici 8
 * the legacy reference is undici 7's Agent (installed beside it as `undici7`) and the controller-style one undici 8's.
 */
class ReferenceAgent extends Dispatcher {
  constructor(
    private readonly controllerStyle: Dispatcher,
    private readonly legacy: Dispatcher
  ) {
    super()
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const target = typeof handler?.onRequestStart === 'function' ? this.controllerStyle : this.legacy
    return target.dispatch(opts, handler)
  }

  override close(): Promise<void> {
    return Promise.all([this.controllerStyle.close(), this.legacy.close()]).then(() => undefined)
  }

  override destroy(): Promise<void> {
    return Promise.all([this.controllerStyle.destroy(), this.legacy.destroy()]).then(() => undefined)
  }
}

/** The undici major the tests run against. */
export const undiciMajor = Number((createRequire(__filename)('undici/package.json') as { version: string }).version.split('.')[0])

/** An undici Agent answering both handler styles as undici does (see ReferenceAgent). */
export function undiciAgent(options: Record<string, unknown> = {}): Dispatcher {
  if (undiciMajor < 8) return new UndiciAgent(options)
  const { Agent: Undici7Agent } = createRequire(__filename)('undici7') as { Agent: new (o: object) => Dispatcher }
  return new ReferenceAgent(new UndiciAgent(options), new Undici7Agent(options))
}

/** One undici.Agent and one of ours, built with the same options. */
export function agents(options: Record<string, unknown> = {}): Pair {
  const undici = undiciAgent(options)
  const ours = new Agent(options)
  return {
    undici,
    ours,
    close: async () => {
      await Promise.all([undici.destroy(), ours.destroy()])
    }
  }
}
