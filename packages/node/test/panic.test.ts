/**
 * Panic containment: a panic in the Rust side fails the request it happened in with an undici error, and
 * nothing else — Node survives, the other requests of the same batch complete, the agent keeps working.
 *
 * The panics come from a test hook (native/src/test_hook.rs) that exists only in a process started with
 * REQWEST_DISPATCHER_TEST_HOOKS set, so the scenario runs in a process of its own started that way.
 */
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { runIsolated } from './helpers/isolated'

/** The addon's exports: the module `reqwest-dispatcher` loads (Node loads a native module once per path). */
const ADDON = `require(require('node:path').join(require('node:path').dirname(require.resolve('reqwest-dispatcher/package.json')), 'index.node'))`

const POINTS = ['dispatch', 'beforeSend', 'atHead', 'inBody'] as const

describe('panic containment', () => {
  it('a panic fails only the request it happened in, with an undici error; Node and the agent live on', async () => {
    const { result, uncaught } = await runIsolated<Record<string, { batch: string[]; after: string }>>(
      `
      const addon = ${ADDON}
      const origin = await listen((req, res) => res.end('ok'))
      const agent = new lib.Agent()
      const run = () => new Promise((resolve) => {
        let status = 0
        let body = ''
        agent.dispatch({ origin, path: '/', method: 'GET' }, {
          onRequestStart() {},
          onResponseStart(_c, code) { status = code },
          onResponseData(_c, chunk) { body += chunk },
          onResponseEnd() { resolve(status + ' ' + body) },
          onResponseError(_c, err) {
            resolve('error ' + (err instanceof undici.errors.UndiciError ? 'UndiciError ' : '') + err.code + ' ' + err.message)
          }
        })
      })
      const report = {}
      for (const point of ${JSON.stringify(POINTS)}) {
        addon.testArmPanic(point)
        // One tick: the four cross into the addon in one batch, the armed one first.
        const batch = await Promise.all([run(), run(), run(), run()])
        report[point] = { batch, after: await run() }
      }
      await agent.close()
      return report
      `,
      { REQWEST_DISPATCHER_TEST_HOOKS: '1' }
    )
    expect(uncaught).toEqual([])
    for (const point of POINTS) {
      const { batch, after } = result[point]
      const name = point[0].toUpperCase() + point.slice(1)
      expect(batch[0]).toMatch(
        new RegExp(`^error UndiciError UND_ERR_INTERNAL internal error in reqwest-dispatcher: test panic \\(${name}\\)`)
      )
      expect(batch.slice(1)).toEqual(['200 ok', '200 ok', '200 ok'])
      expect(after).toBe('200 ok')
    }
  })

  it('the hook does not exist in a default configuration', () => {
    expect(process.env.REQWEST_DISPATCHER_TEST_HOOKS).toBeUndefined()
    const require = createRequire(__filename)
    const addon = require(join(dirname(require.resolve('reqwest-dispatcher/package.json')), 'index.node')) as Record<string, unknown>
    expect(addon.dispatchBatch).toBeTypeOf('function')
    expect(addon.testArmPanic).toBeUndefined()
  })
})
