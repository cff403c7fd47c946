/**
 * A worker thread that is terminated with requests in flight: its agent's connections close, instead of living on
 * in the core with nobody left to read them. (undici leaves them open: its sockets belong to the dead worker's
 * event loop; measured 5 of 5 still open 6 s after `worker.terminate()`.)
 */
import net from 'node:net'
import { Worker } from 'node:worker_threads'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

let server: net.Server
let port = 0
const open = new Set<net.Socket>()

beforeAll(async () => {
  // Accepts connections and never answers: requests stay in flight until someone gives up.
  server = net.createServer((socket) => {
    open.add(socket)
    socket.on('close', () => open.delete(socket))
    socket.on('error', () => {})
    socket.resume()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  port = (server.address() as net.AddressInfo).port
})

afterAll(async () => {
  for (const socket of open) socket.destroy()
  await new Promise<void>((resolve) => server.close(() => resolve()))
})

async function until(probe: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms
  while (!probe() && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 20))
  return probe()
}

describe('worker threads', () => {
  it("terminating a worker with requests in flight closes the connections of its agent", async () => {
    const worker = new Worker(
      `
      const { Agent } = require('reqwest-dispatcher')
      const { parentPort, workerData } = require('node:worker_threads')
      const agent = new Agent()
      for (let i = 0; i < 5; i++) {
        agent.dispatch({ origin: 'http://127.0.0.1:' + workerData.port, path: '/' + i, method: 'GET' }, {
          onRequestStart() {}, onResponseStart() {}, onResponseData() {}, onResponseEnd() {}, onResponseError() {}
        })
      }
      parentPort.postMessage('dispatched')
      `,
      { eval: true, workerData: { port } }
    )
    try {
      await new Promise((resolve, reject) => {
        worker.once('message', resolve)
        worker.once('error', reject)
      })
      expect(await until(() => open.size === 5, 5000)).toBe(true)
    } finally {
      await worker.terminate()
    }
    expect(await until(() => open.size === 0, 3000)).toBe(true)
  })
})
