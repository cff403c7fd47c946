/** Handlers that record every callback, in both of undici's handler styles. */
import type { Dispatcher } from 'undici'

export interface Recorded {
  events: string[]
  statusCode?: number
  statusMessage?: string
  headers?: Record<string, string | string[] | undefined>
  rawHeaders?: Buffer[]
  trailers?: Record<string, string | string[] | undefined> | Buffer[] | null
  body: Buffer
  error?: Error
  controller?: Dispatcher.DispatchController
}

/** A controller-style handler and a promise that settles when the request ends either way. */
export function controllerHandler(hooks: Partial<Dispatcher.DispatchHandler> = {}): {
  handler: Dispatcher.DispatchHandler
  done: Promise<Recorded>
} {
  const rec: Recorded = { events: [], body: Buffer.alloc(0) }
  const chunks: Buffer[] = []
  let finish!: (r: Recorded) => void
  const done = new Promise<Recorded>((resolve) => (finish = resolve))
  const handler: Dispatcher.DispatchHandler = {
    onRequestStart(controller, context) {
      rec.events.push('start')
      rec.controller = controller
      hooks.onRequestStart?.(controller, context)
    },
    onResponseStart(controller, statusCode, headers, statusMessage) {
      rec.events.push('headers')
      rec.statusCode = statusCode
      rec.headers = headers
      rec.statusMessage = statusMessage
      hooks.onResponseStart?.(controller, statusCode, headers, statusMessage)
    },
    onResponseData(controller, chunk) {
      rec.events.push('data')
      chunks.push(chunk)
      hooks.onResponseData?.(controller, chunk)
    },
    onResponseEnd(controller, trailers) {
      rec.events.push('end')
      rec.trailers = trailers
      rec.body = Buffer.concat(chunks)
      finish(rec)
    },
    onResponseError(_controller, error) {
      rec.events.push('error')
      rec.error = error
      rec.body = Buffer.concat(chunks)
      finish(rec)
    }
  }
  return { handler, done }
}

/** A legacy handler (the shape undici's and Node's `fetch` use). `onData` may return false to pause. */
export function legacyHandler(hooks: { onData?: (chunk: Buffer) => boolean | void; onConnect?: (abort: (e?: Error) => void) => void } = {}): {
  handler: Dispatcher.DispatchHandler
  done: Promise<Recorded & { resume?: () => void }>
} {
  const rec: Recorded & { resume?: () => void } = { events: [], body: Buffer.alloc(0) }
  const chunks: Buffer[] = []
  let finish!: (r: Recorded) => void
  const done = new Promise<Recorded>((resolve) => (finish = resolve))
  const handler = {
    onConnect(abort: (e?: Error) => void) {
      rec.events.push('connect')
      hooks.onConnect?.(abort)
    },
    onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string) {
      rec.events.push('headers')
      rec.statusCode = statusCode
      rec.rawHeaders = rawHeaders
      rec.statusMessage = statusText
      rec.resume = resume
      return true
    },
    onData(chunk: Buffer) {
      rec.events.push('data')
      chunks.push(chunk)
      return hooks.onData?.(chunk)
    },
    onComplete(trailers: Buffer[] | null) {
      rec.events.push('complete')
      rec.trailers = trailers
      rec.body = Buffer.concat(chunks)
      finish(rec)
    },
    onError(error: Error) {
      rec.events.push('error')
      rec.error = error
      finish(rec)
    }
  } as unknown as Dispatcher.DispatchHandler
  return { handler, done }
}
