/**
 * TLS configured as undici users configure it (`connect: { ca, cert, key, passphrase, rejectUnauthorized,
 * servername }`), against node:https servers using certificates made for the test. Where a certificate is
 * refused, the error's code (and message) is compared with what undici's own Agent gets from Node.
 */
import { execFile } from 'node:child_process'
import https from 'node:https'
import { join } from 'node:path'
import { writeFileSync } from 'node:fs'
import type { TLSSocket } from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Agent as UndiciAgent, errors, fetch } from 'undici'
import { Agent } from 'reqwest-dispatcher'
import { answer, failure } from './helpers/requests'
import { serve } from './helpers/servers'
import { makePki, type Pki } from './helpers/transport-certs'

let pki: Pki

beforeAll(() => {
  pki = makePki()
})

afterAll(() => pki?.cleanup())

interface TlsServer {
  port: number
  close(): Promise<void>
}

async function tlsServer(options: https.ServerOptions, handler?: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void): Promise<TlsServer> {
  const server = https.createServer(
    options,
    handler ??
      ((req, res) => {
        const socket = req.socket as TLSSocket
        const peer = socket.getPeerCertificate()
        res.setHeader('content-type', 'application/json')
        res.end(
          JSON.stringify({
            ok: true,
            servername: (socket as TLSSocket & { servername?: string | false }).servername || null,
            client: peer && peer.subject ? peer.subject.CN : null
          })
        )
      })
  )
  server.on('tlsClientError', () => {})
  return serve(server, 'https')
}

describe('trusted roots', () => {
  it('trusts a server certificate issued by connect.ca', async () => {
    const server = await tlsServer({ cert: pki.server.cert, key: pki.server.key })
    const agent = new Agent({ connect: { ca: pki.ca.cert } })
    try {
      const { status, json } = await answer(`https://127.0.0.1:${server.port}/`, agent)
      expect(status).toBe(200)
      expect(json.ok).toBe(true)
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('takes ca as Buffers and arrays, any of which may be the issuer', async () => {
    const server = await tlsServer({ cert: pki.server.cert, key: pki.server.key })
    const agent = new Agent({ connect: { ca: [Buffer.from(pki.otherCa.cert), Buffer.from(pki.ca.cert)] } })
    try {
      expect((await answer(`https://localhost:${server.port}/`, agent)).status).toBe(200)
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('verifies a chain the server sends up to a root in ca', async () => {
    const server = await tlsServer({ cert: pki.chained.cert + pki.intermediate.cert, key: pki.chained.key })
    const agent = new Agent({ connect: { ca: pki.ca.cert } })
    try {
      expect((await answer(`https://127.0.0.1:${server.port}/`, agent)).status).toBe(200)
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('accepts a self-signed CA certificate trusted as itself, as OpenSSL does', async () => {
    const server = await tlsServer({ cert: pki.selfSigned.cert, key: pki.selfSigned.key })
    const agent = new Agent({ connect: { ca: pki.selfSigned.cert } })
    try {
      expect((await answer(`https://127.0.0.1:${server.port}/`, agent)).status).toBe(200)
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('refuses a server certificate from an unknown issuer with the system roots (the default)', async () => {
    const server = await tlsServer({ cert: pki.server.cert, key: pki.server.key })
    const agent = new Agent()
    try {
      const err = await failure(`https://127.0.0.1:${server.port}/`, agent)
      expect(err.code).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE')
      // Node >= 24 appends a --use-system-ca hint to this message (src/errors.ts), and so do we there.
      expect(err.message).toMatch(/^unable to verify the first certificate($|; if the root CA is installed locally)/)
    } finally {
      await agent.close()
      await server.close()
    }
  })
})

describe('certificate errors carry the code Node gives them', () => {
  interface Case {
    name: string
    server: () => https.ServerOptions
    connect: () => Record<string, unknown>
    host?: string
    code: string
  }
  const cases: Case[] = [
    {
      name: 'self-signed certificate',
      server: () => ({ cert: pki.selfSigned.cert, key: pki.selfSigned.key }),
      connect: () => ({}),
      code: 'DEPTH_ZERO_SELF_SIGNED_CERT'
    },
    {
      name: 'expired certificate',
      server: () => ({ cert: pki.expired.cert, key: pki.expired.key }),
      connect: () => ({ ca: pki.ca.cert }),
      code: 'CERT_HAS_EXPIRED'
    },
    {
      name: 'certificate for another IP address',
      server: () => ({ cert: pki.otherName.cert, key: pki.otherName.key }),
      connect: () => ({ ca: pki.ca.cert }),
      code: 'ERR_TLS_CERT_ALTNAME_INVALID'
    },
    {
      name: 'certificate for another host name',
      server: () => ({ cert: pki.otherName.cert, key: pki.otherName.key }),
      connect: () => ({ ca: pki.ca.cert }),
      host: 'localhost',
      code: 'ERR_TLS_CERT_ALTNAME_INVALID'
    },
    {
      name: 'leaf from an issuer not in ca',
      server: () => ({ cert: pki.server.cert, key: pki.server.key }),
      connect: () => ({ ca: pki.otherCa.cert }),
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'
    },
    {
      name: 'chain ending below a root not in ca',
      server: () => ({ cert: pki.chained.cert + pki.intermediate.cert, key: pki.chained.key }),
      connect: () => ({ ca: pki.otherCa.cert }),
      code: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY'
    },
    {
      name: 'chain with an untrusted self-signed root',
      server: () => ({ cert: pki.chained.cert + pki.intermediate.cert + pki.ca.cert, key: pki.chained.key }),
      connect: () => ({ ca: pki.otherCa.cert }),
      code: 'SELF_SIGNED_CERT_IN_CHAIN'
    },
    {
      name: 'expired certificate from an unknown issuer (Node reports the dates, found last)',
      server: () => ({ cert: pki.expired.cert, key: pki.expired.key }),
      connect: () => ({ ca: pki.otherCa.cert }),
      code: 'CERT_HAS_EXPIRED'
    }
  ]

  for (const c of cases) {
    it(`${c.name}: ${c.code}, as undici's Agent`, async () => {
      const server = await tlsServer(c.server())
      const url = `https://${c.host ?? '127.0.0.1'}:${server.port}/`
      const ours = new Agent({ connect: c.connect() })
      const theirs = new UndiciAgent({ connect: c.connect() })
      try {
        const expected = await failure(url, theirs)
        const actual = await failure(url, ours)
        expect(expected.code).toBe(c.code)
        expect(actual.code).toBe(c.code)
        expect(actual.message).toBe(expected.message)
        expect(actual).toBeInstanceOf(Error)
        if (c.code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
          const fields = (e: Error): unknown => ({ reason: (e as { reason?: string }).reason, host: (e as { host?: string }).host })
          expect(fields(actual)).toEqual(fields(expected))
        }
      } finally {
        await ours.close()
        await theirs.close()
        await server.close()
      }
    })
  }

  it('a TLS request to a cleartext server fails with ERR_SSL_WRONG_VERSION_NUMBER, as undici', async () => {
    const http = await import('node:http')
    const server = await serve(http.createServer((_req, res) => res.end('plain')))
    const { port } = server
    const ours = new Agent()
    const theirs = new UndiciAgent()
    try {
      const expected = await failure(`https://127.0.0.1:${port}/`, theirs)
      const actual = await failure(`https://127.0.0.1:${port}/`, ours)
      expect(actual.code).toBe(expected.code)
      expect(actual.code).toBe('ERR_SSL_WRONG_VERSION_NUMBER')
    } finally {
      await ours.close()
      await theirs.close()
      await server.close()
    }
  })
})

describe('servername', () => {
  it('sends connect.servername as SNI and checks the certificate against it instead of the URL host', async () => {
    const server = await tlsServer({ cert: pki.otherName.cert, key: pki.otherName.key })
    const agent = new Agent({ connect: { ca: pki.ca.cert, servername: 'example.test' } })
    try {
      const res = await answer(`https://127.0.0.1:${server.port}/`, agent)
      expect(res.status).toBe(200)
      expect(res.json.servername).toBe('example.test')
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('still refuses a certificate that does not match connect.servername', async () => {
    const server = await tlsServer({ cert: pki.server.cert, key: pki.server.key })
    const agent = new Agent({ connect: { ca: pki.ca.cert, servername: 'example.test' } })
    try {
      const err = await failure(`https://127.0.0.1:${server.port}/`, agent)
      expect(err.code).toBe('ERR_TLS_CERT_ALTNAME_INVALID')
      expect(err.message).toContain('Host: example.test.')
    } finally {
      await agent.close()
      await server.close()
    }
  })
})

describe('rejectUnauthorized: false', () => {
  it('accepts a certificate that does not verify, and warns once per process', async () => {
    const server = await tlsServer({ cert: pki.selfSigned.cert, key: pki.selfSigned.key })
    const warnings: Error[] = []
    const onWarning = (w: Error): void => {
      if ((w as { code?: string }).code === 'REQWEST_DISPATCHER_TLS_INSECURE') warnings.push(w)
    }
    process.on('warning', onWarning)
    const first = new Agent({ connect: { rejectUnauthorized: false } })
    const second = new Agent({ connect: { rejectUnauthorized: false } })
    try {
      expect((await answer(`https://127.0.0.1:${server.port}/`, first)).status).toBe(200)
      expect((await answer(`https://localhost:${server.port}/`, second)).status).toBe(200)
      await new Promise((resolve) => setImmediate(resolve))
      expect(warnings).toHaveLength(1)
      expect(warnings[0].message).toMatch(/rejectUnauthorized/)
    } finally {
      process.off('warning', onWarning)
      await first.close()
      await second.close()
      await server.close()
    }
  })

  it('follows NODE_TLS_REJECT_UNAUTHORIZED=0 when the option is not given', async () => {
    const server = await tlsServer({ cert: pki.selfSigned.cert, key: pki.selfSigned.key })
    const saved = process.env.NODE_TLS_REJECT_UNAUTHORIZED
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0'
    let agent: Agent
    try {
      agent = new Agent()
    } finally {
      if (saved === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED
      else process.env.NODE_TLS_REJECT_UNAUTHORIZED = saved
    }
    const strict = new Agent({ connect: { rejectUnauthorized: true } })
    try {
      expect((await answer(`https://127.0.0.1:${server.port}/`, agent)).status).toBe(200)
      expect((await failure(`https://127.0.0.1:${server.port}/`, strict)).code).toBe('DEPTH_ZERO_SELF_SIGNED_CERT')
    } finally {
      await agent.close()
      await strict.close()
      await server.close()
    }
  })
})

describe('mutual TLS', () => {
  const mtlsServer = (): Promise<TlsServer> =>
    tlsServer({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true })

  it('presents connect.cert and connect.key to a server that requires a client certificate', async () => {
    const server = await mtlsServer()
    const agent = new Agent({ connect: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key } })
    try {
      const { status, json } = await answer(`https://127.0.0.1:${server.port}/`, agent)
      expect(status).toBe(200)
      expect(json.client).toBe('reqwest-dispatcher client')
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('presents an X.509 v1 client certificate, as Node and undici do', async () => {
    const server = await mtlsServer()
    const options = { connect: { ca: pki.ca.cert, cert: pki.clientV1.cert, key: pki.clientV1.key } }
    const ours = new Agent(options)
    const theirs = new UndiciAgent(options)
    try {
      // Version 1: the DER's TBSCertificate starts with the serial number, no [0] version field.
      const der = Buffer.from(pki.clientV1.cert.replace(/-----[^-]+-----|\s/g, ''), 'base64')
      const tbs = der.subarray(der[1] & 0x80 ? 2 + (der[1] & 0x7f) : 2)
      expect(tbs[tbs[1] & 0x80 ? 2 + (tbs[1] & 0x7f) : 2]).not.toBe(0xa0)
      for (const agent of [theirs, ours]) {
        expect((await answer(`https://127.0.0.1:${server.port}/`, agent)).json.client).toBe('reqwest-dispatcher v1 client')
      }
    } finally {
      await Promise.all([ours.close(), theirs.close()])
      await server.close()
    }
  })

  it('refuses a key that does not belong to the certificate when the agent is created', () => {
    expect(() => new Agent({ connect: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.clientV1.key } })).toThrow(
      /invalid cert\/key pair: the key does not match the certificate/
    )
  })

  it('decrypts a key protected by connect.passphrase (Buffers work as well as strings)', async () => {
    const server = await mtlsServer()
    const agent = new Agent({
      connect: {
        ca: pki.ca.cert,
        cert: Buffer.from(pki.client.cert),
        key: Buffer.from(pki.clientEncryptedKey),
        passphrase: pki.passphrase
      }
    })
    try {
      expect((await answer(`https://127.0.0.1:${server.port}/`, agent)).json.client).toBe('reqwest-dispatcher client')
    } finally {
      await agent.close()
      await server.close()
    }
  })

  it('fails to construct with a wrong passphrase', () => {
    expect(
      () => new Agent({ connect: { cert: pki.client.cert, key: pki.clientEncryptedKey, passphrase: 'wrong' } })
    ).toThrow()
  })

  it('without a client certificate the server refuses the handshake, with an ERR_SSL_ code', async () => {
    const server = await mtlsServer()
    const agent = new Agent({ connect: { ca: pki.ca.cert } })
    try {
      const err = await failure(`https://127.0.0.1:${server.port}/`, agent)
      expect(err.code).toBe('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED')
    } finally {
      await agent.close()
      await server.close()
    }
  })
})

describe('NODE_EXTRA_CA_CERTS', () => {
  // Node reads the variable once at startup, so each case runs in a fresh process.
  const script = (url: string): string => `
    const { Agent } = require(${JSON.stringify(join(__dirname, '..', 'dist', 'index.js'))})
    const { request } = require('undici')
    request(${JSON.stringify(url)}, { dispatcher: new Agent() })
      .then(async (res) => console.log('status ' + res.statusCode, await res.body.text() && ''))
      .catch((err) => console.log('error ' + err.code))`

  it('adds the certificates in the file to the system roots', async () => {
    const server = await tlsServer({ cert: pki.server.cert, key: pki.server.key })
    const caFile = join(pki.dir, 'extra-ca.pem')
    writeFileSync(caFile, pki.ca.cert)
    try {
      // Asynchronous children: the server answering them runs in this process.
      const run = (env: Record<string, string>): Promise<string> =>
        new Promise((resolve, reject) => {
          execFile(
            process.execPath,
            ['-e', script(`https://127.0.0.1:${server.port}/`)],
            { cwd: join(__dirname, '..'), env: { ...process.env, ...env }, encoding: 'utf8', timeout: 15_000 },
            (err, stdout) => (err ? reject(err) : resolve(stdout.trim()))
          )
        })
      const [withExtra, without] = await Promise.all([run({ NODE_EXTRA_CA_CERTS: caFile }), run({ NODE_EXTRA_CA_CERTS: '' })])
      expect(withExtra).toBe('status 200')
      expect(without).toBe('error UNABLE_TO_VERIFY_LEAF_SIGNATURE')
    } finally {
      await server.close()
    }
  })
})

describe('options undici accepts that cannot be honoured', () => {
  it('refuses connect.pfx and a connector function with NotSupportedError', () => {
    expect(() => new Agent({ connect: { pfx: Buffer.alloc(1) } })).toThrow(errors.NotSupportedError)
    expect(() => new Agent({ connect: (() => {}) as never })).toThrow(errors.NotSupportedError)
  })
})

describe('fetch over TLS', () => {
  it('undici fetch reaches a TLS origin through the Agent', async () => {
    const server = await tlsServer({ cert: pki.server.cert, key: pki.server.key })
    const agent = new Agent({ connect: { ca: pki.ca.cert } })
    try {
      const res = await fetch(`https://localhost:${server.port}/`, { dispatcher: agent })
      expect(res.status).toBe(200)
      expect(((await res.json()) as { servername: string }).servername).toBe('localhost')
    } finally {
      await agent.close()
      await server.close()
    }
  })
})
