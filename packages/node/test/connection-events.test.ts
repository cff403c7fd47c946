/**
 * connect, disconnect and connectionError events with undici's arguments, and `connected` in agent.stats.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Agent as UndiciAgent, request, type Dispatcher } from 'undici'
import { Agent } from 'reqwest-dispatcher'
import { closedPort, httpServer, type Running } from './helpers/servers'

let server: Running & { server: import('node:http').Server }

beforeAll(async () => {
  server = await httpServer((_req, res) => res.end('ok'))
})

afterAll(async () => {
  await server.close()
})

interface Seen {
  name: string
  origin: string
  firstTarget: unknown
  code?: string
}

function watch(dispatcher: Dispatcher): Seen[] {
  const seen: Seen[] = []
  for (const name of ['connect', 'disconnect', 'connectionError'] as const) {
    dispatcher.on(name as 'connect', (...args: unknown[]) => {
      const [origin, targets, error] = args as [URL, Dispatcher[], (Error & { code?: string }) | undefined]
      seen.push({ name, origin: origin.origin, firstTarget: targets[0], code: error?.code })
    })
  }
  return seen
}

const until = async (cond: () => boolean): Promise<void> => {
  for (let i = 0; i < 100 && !cond(); i++) await new Promise((r) => setTimeout(r, 20))
}

describe('connection events', () => {
  it('connect is emitted once per new connection with (origin URL, [agent]), as undici does', async () => {
    const ours = new Agent()
    const theirs = new UndiciAgent()
    const oursSeen = watch(ours)
    const theirsSeen = watch(theirs)
    let accepted = 0
    const onConnection = (): void => void accepted++
    server.server.on('connection', onConnection)
    for (let i = 0; i < 3; i++) await (await request(`${server.origin}/`, { dispatcher: ours })).body.text()
    server.server.off('connection', onConnection)
    for (let i = 0; i < 3; i++) await (await request(`${server.origin}/`, { dispatcher: theirs })).body.text()
    const connects = (seen: Seen[]): Seen[] => seen.filter((s) => s.name === 'connect')
    // Three sequential requests share one kept-alive connection: one connect event. (undici 7.30 emits its
    // Agent's connect twice per connection, once per listener its Pool and Agent attach; see COMPATIBILITY.md.)
    expect(accepted).toBe(1)
    expect(connects(oursSeen).length).toBe(accepted)
    expect(connects(theirsSeen).length).toBeGreaterThan(0)
    expect(connects(oursSeen)[0].origin).toBe(server.origin)
    expect(connects(oursSeen)[0].firstTarget).toBe(ours)
    expect(connects(theirsSeen)[0].firstTarget).toBe(theirs)
    await Promise.all([ours.close(), theirs.close()])
  })

  it('disconnect follows when the server closes an idle connection', async () => {
    const ours = new Agent()
    const seen = watch(ours)
    await (await request(`${server.origin}/`, { dispatcher: ours })).body.text()
    expect(ours.stats[server.origin]?.connected).toBe(1)
    server.server.closeIdleConnections()
    await until(() => seen.some((s) => s.name === 'disconnect'))
    const disconnect = seen.find((s) => s.name === 'disconnect')
    expect(disconnect?.origin).toBe(server.origin)
    expect(disconnect?.firstTarget).toBe(ours)
    expect(disconnect?.code).toBe('UND_ERR_SOCKET')
    expect(ours.stats[server.origin]?.connected ?? 0).toBe(0)
    await ours.close()
  })

  it('connectionError carries the connect failure, as undici does', async () => {
    const port = await closedPort()
    const ours = new Agent()
    const theirs = new UndiciAgent()
    const oursSeen = watch(ours)
    const theirsSeen = watch(theirs)
    for (const d of [ours, theirs]) {
      await request(`http://127.0.0.1:${port}/`, { dispatcher: d }).catch(() => {})
    }
    await until(() => oursSeen.length > 0)
    const failure = (seen: Seen[]): Seen | undefined => seen.find((s) => s.name === 'connectionError')
    expect(failure(oursSeen)).toMatchObject({ origin: `http://127.0.0.1:${port}`, code: 'ECONNREFUSED' })
    expect(failure(oursSeen)?.code).toBe(failure(theirsSeen)?.code)
    expect(failure(oursSeen)?.firstTarget).toBe(ours)
    await Promise.all([ours.close(), theirs.close()])
  })

  it('closing the agent closes its connections, each with a disconnect', async () => {
    const ours = new Agent()
    const seen = watch(ours)
    await Promise.all(Array.from({ length: 3 }, async () => (await request(`${server.origin}/`, { dispatcher: ours })).body.text()))
    const opened = seen.filter((s) => s.name === 'connect').length
    expect(opened).toBeGreaterThan(0)
    await ours.close()
    await until(() => seen.filter((s) => s.name === 'disconnect').length === opened)
    expect(seen.filter((s) => s.name === 'disconnect').length).toBe(opened)
  })
})
