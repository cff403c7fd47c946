/**
 * Backpressure end to end: while a request is paused the core stops reading, so the server's writes block and
 * the client's memory stays flat; resume() finishes the body intact.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ServerResponse } from 'node:http'
import { Agent } from 'reqwest-dispatcher'
import { controllerHandler } from './helpers/recorder'
import { httpServer, type Running } from './helpers/servers'

const TOTAL = 256 * 1024 * 1024
const CHUNK = Buffer.alloc(64 * 1024, 0x61)
let server: Running
let written = 0
let blockedWrites = 0
const agent = new Agent()

/** Writes TOTAL bytes, honouring the socket's backpressure, and counts what it managed to hand to the kernel. */
function writeRespectingBackpressure(res: ServerResponse): void {
  const next = (): void => {
    while (written < TOTAL) {
      written += CHUNK.length
      if (!res.write(CHUNK)) {
        blockedWrites++
        res.once('drain', next)
        return
      }
    }
    res.end()
  }
  next()
}

beforeAll(async () => {
  server = await httpServer((_req, res) => {
    res.writeHead(200, { 'content-length': String(TOTAL) })
    writeRespectingBackpressure(res)
  })
})

afterAll(async () => {
  await agent.close()
  await server.close()
})

describe('backpressure', () => {
  it('a paused response makes the server block, keeps client memory flat, and resumes intact', async () => {
    let received = 0
    let pausedAt = -1
    let writtenWhilePaused = -1
    let rssGrowth = -1
    const rssBefore = process.memoryUsage().rss
    const { handler, done } = controllerHandler({
      onResponseData(controller, chunk) {
        received += chunk.length
        if (pausedAt < 0 && received >= 1024 * 1024) {
          pausedAt = received
          controller.pause()
          setTimeout(() => {
            writtenWhilePaused = written
            rssGrowth = process.memoryUsage().rss - rssBefore
            controller.resume()
          }, 1000)
        }
      }
    })
    // The recorder keeps every chunk; count instead of concatenating 256 MiB at the end.
    const counting = { ...handler, onResponseData: handler.onResponseData }
    agent.dispatch({ origin: server.origin, path: '/', method: 'GET' }, counting)
    const rec = await done
    expect(rec.error).toBeUndefined()
    expect(received).toBe(TOTAL)
    // While paused for a second the server could write only what socket buffers and the core's credit hold.
    expect(writtenWhilePaused).toBeGreaterThan(0)
    expect(writtenWhilePaused).toBeLessThan(64 * 1024 * 1024)
    expect(blockedWrites).toBeGreaterThan(0)
    expect(rssGrowth).toBeLessThan(96 * 1024 * 1024)
  })
})
