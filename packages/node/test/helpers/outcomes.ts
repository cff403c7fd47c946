/** How the differential harnesses (hostile servers, hostile callers, fuzzing) reduce a request to one line. */
import type http from 'node:http'
import { afterAll, beforeAll } from 'vitest'
import { httpServer, type Running } from './servers'

/** An error as `Class code message`, the form the harnesses compare. */
export function describeError(err: unknown): string {
  const e = err as Error & { code?: string }
  return `${e?.constructor?.name ?? typeof err} ${e?.code ?? '-'} ${e?.message ?? String(err)}`
}

/**
 * The first outcome `start` reports through `settle`, or `'HANG'` when none came within `ms`: a request that
 * never ends is an outcome too, never a hung test.
 */
export function firstOutcome(ms: number, start: (settle: (outcome: string) => void) => void): Promise<string> {
  return new Promise((resolve) => {
    let settled = false
    const settle = (outcome: string): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolve(outcome)
    }
    const timer = setTimeout(() => settle('HANG'), ms)
    start(settle)
  })
}

/** A server that reads each request whole and answers `ok`. */
export const answerOk: http.RequestListener = (req, res) => {
  req.resume()
  req.on('end', () => res.end('ok'))
}

/** A server answering `ok` for the tests of one file: started before them, closed after; `origin` once started. */
export function okServerForFile(): { origin: string } {
  const state = { origin: '' }
  let running: Running | undefined
  beforeAll(async () => {
    running = await httpServer(answerOk)
    state.origin = running.origin
  })
  afterAll(async () => {
    await running?.close()
  })
  return state
}
