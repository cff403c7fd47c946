import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawnSync } from 'node:child_process'
import { errors, request } from 'undici'
import { Agent } from 'reqwest-dispatcher'
import { controllerHandler } from './helpers/recorder'
import { httpServer, rawServer, readHead, type Running } from './helpers/servers'

let server: Running
let silent: Running

beforeAll(async () => {
  server = await httpServer((_req, res) => setTimeout(() => res.end('late'), 100))
  silent = await rawServer(async (socket) => {
    await readHead(socket)
  })
})

afterAll(async () => {
  await server.close()
  await silent.close()
})

describe('close and destroy', () => {
  it('close() waits for requests in flight, then refuses new ones with ClientClosedError', async () => {
    const agent = new Agent()
    const pending = request(`${server.origin}/`, { dispatcher: agent }).then((r) => r.body.text())
    await new Promise((r) => setTimeout(r, 10))
    const closing = agent.close()
    expect(closing).toBeInstanceOf(Promise)
    expect(agent.closed).toBe(true)
    const refused = await request(`${server.origin}/`, { dispatcher: agent }).catch((e: Error) => e)
    expect(refused).toBeInstanceOf(errors.ClientClosedError)
    await closing
    expect(await pending).toBe('late')
  })

  it('close(callback) calls back once idle', async () => {
    const agent = new Agent()
    await new Promise<void>((resolve) => agent.close(() => resolve()))
    expect(agent.closed).toBe(true)
  })

  it('destroy() fails requests in flight with ClientDestroyedError', async () => {
    const agent = new Agent()
    const { handler, done } = controllerHandler()
    agent.dispatch({ origin: silent.origin, path: '/', method: 'GET' }, handler)
    await new Promise((r) => setTimeout(r, 50))
    await agent.destroy()
    const rec = await done
    expect(rec.error).toBeInstanceOf(errors.ClientDestroyedError)
    expect(agent.destroyed).toBe(true)
  })

  it('destroy(err) fails requests in flight with err', async () => {
    const agent = new Agent()
    const { handler, done } = controllerHandler()
    agent.dispatch({ origin: silent.origin, path: '/', method: 'GET' }, handler)
    const reason = new Error('shutting down')
    await agent.destroy(reason)
    expect((await done).error).toBe(reason)
    const after = await request(`${server.origin}/`, { dispatcher: agent }).catch((e: Error) => e)
    expect(after).toBeInstanceOf(errors.ClientDestroyedError)
  })

  it('a process that used an Agent and has nothing in flight exits by itself', () => {
    const script = `
      const http = require('node:http')
      const { request } = require('undici')
      const { Agent } = require('reqwest-dispatcher')
      const server = http.createServer((req, res) => res.end('bye')).listen(0, '127.0.0.1', async () => {
        const agent = new Agent({ keepAliveTimeout: 60000 })
        const res = await request('http://127.0.0.1:' + server.address().port + '/', { dispatcher: agent })
        console.log(await res.body.text())
        server.close()
        server.closeAllConnections()
      })
    `
    const started = Date.now()
    const child = spawnSync(process.execPath, ['-e', script], { cwd: __dirname, encoding: 'utf8', timeout: 15_000 })
    expect(child.stdout.trim()).toBe('bye')
    expect(child.status).toBe(0)
    expect(Date.now() - started).toBeLessThan(15_000)
  })
})
