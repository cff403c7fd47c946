/**
 * Name resolution and the local end of connections: the system resolver (getaddrinfo, as Node's `dns.lookup`),
 * `localAddress`, and `ENOTFOUND` for names that do not resolve.
 */
import http from 'node:http'
import { describe, expect, it } from 'vitest'
import { Agent as UndiciAgent, errors, request } from 'undici'
import { Agent } from 'reqwest-dispatcher'
import { serve, type Running } from './helpers/servers'

function whoAmI(): Promise<Running> {
  return serve(http.createServer((req, res) => res.end(req.socket.remoteAddress)))
}

describe('resolver', () => {
  it('resolves names with the system resolver, as dns.lookup does (localhost from /etc/hosts)', async () => {
    const server = await whoAmI()
    const agent = new Agent()
    try {
      const res = await request(`http://localhost:${server.port}/`, { dispatcher: agent })
      expect(res.statusCode).toBe(200)
      await res.body.dump()
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('a name that does not resolve fails with ENOTFOUND, as with undici', async () => {
    const agent = new Agent()
    try {
      const err = await request('http://name-that-does-not-exist.invalid/', { dispatcher: agent }).catch((e: Error) => e)
      expect(err).toMatchObject({ code: 'ENOTFOUND', syscall: 'getaddrinfo', hostname: 'name-that-does-not-exist.invalid' })
    } finally {
      await agent.close()
    }
  })
})

describe('localAddress', () => {
  it('binds outgoing connections to localAddress', async () => {
    const server = await whoAmI()
    const agent = new Agent({ localAddress: '127.0.0.2' })
    try {
      const res = await request(`http://127.0.0.1:${server.port}/`, { dispatcher: agent })
      expect(await res.body.text()).toBe('127.0.0.2')
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('takes connect.localAddress too', async () => {
    const server = await whoAmI()
    const agent = new Agent({ connect: { localAddress: '127.0.0.3' } })
    try {
      const res = await request(`http://127.0.0.1:${server.port}/`, { dispatcher: agent })
      expect(await res.body.text()).toBe('127.0.0.3')
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('must be an IP address, as undici requires', () => {
    expect(() => new Agent({ localAddress: 'localhost' })).toThrow(errors.InvalidArgumentError)
  })

  it('connects with autoSelectFamily on or off (happy eyeballs itself: cargo test connect::tests, as no name here resolves to two addresses)', async () => {
    const server = await whoAmI()
    try {
      for (const options of [{ autoSelectFamily: true, autoSelectFamilyAttemptTimeout: 100 }, { autoSelectFamily: false }, { connect: { autoSelectFamily: false } }]) {
        const agent = new Agent(options)
        try {
          const res = await request(`http://localhost:${server.port}/`, { dispatcher: agent })
          expect(res.statusCode).toBe(200)
          await res.body.dump()
        } finally {
          await agent.close()
        }
      }
    } finally {
      await server.close()
    }
  })

  it("refuses an attempt timeout Node refuses, with Node's error (undici: on every request; here: at once)", async () => {
    const server = await whoAmI()
    try {
      for (const options of [
        { autoSelectFamily: true, autoSelectFamilyAttemptTimeout: 0 },
        { autoSelectFamily: true, autoSelectFamilyAttemptTimeout: 1.5 },
        { autoSelectFamily: false, autoSelectFamilyAttemptTimeout: '5' },
        { connect: { autoSelectFamily: 'yes' } }
      ]) {
        const reference = new UndiciAgent(options as never)
        const expected = await request(`http://localhost:${server.port}/`, { dispatcher: reference }).catch((e: Error) => e)
        await reference.close()
        let ours: unknown
        try {
          new Agent(options as never)
        } catch (err) {
          ours = err
        }
        expect(ours, JSON.stringify(options)).toBeInstanceOf((expected as Error).constructor)
        expect(ours).toMatchObject({ code: (expected as NodeJS.ErrnoException).code, message: (expected as Error).message })
      }
      // Without a boolean autoSelectFamily undici passes neither option on: nothing is checked.
      await new Agent({ autoSelectFamilyAttemptTimeout: 1.5 }).close()
    } finally {
      await server.close()
    }
  })
})
