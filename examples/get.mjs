// Quick-start example: starts a local HTTP server, then sends requests to it through reqwest-dispatcher's Agent
// with undici's `request`, undici's `fetch`, and Node's global `fetch` after `setGlobalDispatcher`.
import http from 'node:http'
import { request, fetch, setGlobalDispatcher } from 'undici'
import { Agent } from 'reqwest-dispatcher'

const server = http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify({ method: req.method, url: req.url, servedBy: 'node:http on 127.0.0.1' }))
})
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
const origin = `http://127.0.0.1:${server.address().port}`

const agent = new Agent()

const res = await request(`${origin}/hello`, { dispatcher: agent })
console.log('undici.request  →', res.statusCode, await res.body.json())

const viaFetch = await fetch(`${origin}/fetch`, { dispatcher: agent, method: 'POST', body: 'hi' })
console.log('undici.fetch    →', viaFetch.status, await viaFetch.json())

setGlobalDispatcher(agent)
const viaGlobal = await globalThis.fetch(`${origin}/global`)
console.log('global fetch    →', viaGlobal.status, await viaGlobal.json())

await agent.close()
server.close()
