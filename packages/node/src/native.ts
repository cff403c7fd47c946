/**
 * The native addon's surface, typed. Everything here is implemented in `native/src` (Rust, Neon) and only
 * marshals: HTTP behaviour lives in the core crate, the undici contract in the TypeScript layer.
 */
import { join } from 'node:path'

/** Opaque handle on a native agent (a Neon `JsBox`). */
export interface NativeAgent {
  readonly __nativeAgent: never
}

/** Opaque handle on one native request in flight. */
export interface NativeRequest {
  readonly __nativeRequest: never
}

/** Agent options as the native side reads them; times in milliseconds, 0 disables a timeout. */
export interface NativeAgentOptions {
  connectTimeout: number
  headersTimeout: number
  bodyTimeout: number
  keepAliveTimeout: number
  maxResponseSize: number
  maxHeaderSize: number
  allowH2: boolean
}

/** Receives batches of events: a flat array of `kind, id, a, b` quadruples. */
export type DeliverFn = (batch: unknown[]) => void

export interface NativeBinding {
  agentNew(options: NativeAgentOptions, deliver: DeliverFn): NativeAgent
  agentSetActive(agent: NativeAgent, active: boolean): void
  agentClose(agent: NativeAgent): void
  setWorkerThreads(threads: number): boolean
  dispatch(
    agent: NativeAgent,
    id: number,
    method: string,
    url: string,
    headers: string[],
    bodyMode: number,
    body: Uint8Array | null,
    headersTimeout: number,
    bodyTimeout: number
  ): NativeRequest
  requestAbort(request: NativeRequest): void
  requestPause(request: NativeRequest): void
  requestResume(request: NativeRequest): void
  requestPushBody(request: NativeRequest, chunk: Uint8Array | string | null): void
}

/** Event kinds (mirrors `native/src/events.rs`). */
export const EVENT_START = 1
export const EVENT_DATA = 2
export const EVENT_END = 3
export const EVENT_ERROR = 4
export const EVENT_PULL = 5

/** `bodyMode` values besides a non-negative pulled length (mirrors `native/src/dispatch.rs`). */
export const BODY_NONE = -1
export const BODY_PULL_UNKNOWN_LENGTH = -2
export const BODY_BYTES = -3

let loaded: NativeBinding | undefined

/** The addon, loaded on first use so that a missing build fails with a message rather than at import. */
export function binding(): NativeBinding {
  if (loaded === undefined) {
    const file = join(__dirname, '..', 'index.node')
    try {
      loaded = require(file) as NativeBinding
    } catch (cause) {
      throw new Error(
        `reqwest-dispatcher: the native addon (${file}) could not be loaded. ` +
          'Build it with `npm run build` (needs a Rust toolchain: https://rustup.rs).',
        { cause }
      )
    }
  }
  return loaded
}
