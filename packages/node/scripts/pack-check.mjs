// `npm run pack:check`: installs the package as a user would and sends a request through it, with no Rust toolchain.
//
// 1. builds this machine's platform package (linux-x64-gnu on CI) and packs it (`--no-build`: packs the binary
//    already in platforms/<platform>/, as the build workflow does after a cross or zig build);
// 2. stages and packs the library as it is published (scripts/stage.mjs);
// 3. installs both tarballs and undici into a fresh folder, with cargo off PATH and the rustup/cargo homes hidden,
//    then sends requests through the Agent (CommonJS and ES module entries) to a local server and checks that the
//    addon came from the platform package;
// 4. does the same with the from-source package (the local build inside the library's tarball), the route of a user
//    on a platform without a prebuilt binary.
// Prints each tarball's size and file count; exits non-zero on any failure.
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { npm, npmEnv } from './npm.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const pkg = join(here, '..')
const { currentPlatform } = createRequire(import.meta.url)(join(pkg, 'dist', 'load.js'))
const platform = currentPlatform()
const work = mkdtempSync(join(tmpdir(), 'reqwest-dispatcher-pack-check-'))
const keep = process.env.PACK_CHECK_KEEP === '1'
const { values: flags } = parseArgs({ options: { 'no-build': { type: 'boolean' } } })

/** Runs a command, echoing it; output goes to this process's. */
function sh(cmd, args, options = {}) {
  console.log(`$ ${[cmd, ...args].map((a) => (a.length > 80 ? `${a.slice(0, 60).trim().split('\n')[0]}…` : a)).join(' ')}`)
  return execFileSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'], ...options })
}

/** Packs `dir` into `dest` and returns the tarball's path. */
function pack(dir, dest) {
  mkdirSync(dest, { recursive: true })
  const [info] = JSON.parse(npm(['pack', dir, '--json', '--ignore-scripts', '--pack-destination', dest]))
  const file = join(dest, info.filename)
  console.log(`packed ${info.filename}: ${(statSync(file).size / 1024).toFixed(0)} KiB, ${info.entryCount} files (${info.files.map((f) => f.path).join(', ')})`)
  return file
}

/**
 * The environment of a user without Rust: PATH without any directory holding cargo or rustc, CARGO_HOME and
 * RUSTUP_HOME pointing at an empty folder, and none of the npm variables that would tie the installs to this
 * workspace.
 */
function userEnvironment() {
  const empty = join(work, 'no-rust')
  mkdirSync(empty, { recursive: true })
  const hasRust = (dir) => ['cargo', 'rustc', 'rustup'].some((bin) =>
    ['', '.exe'].some((ext) => {
      try {
        return statSync(join(dir, bin + ext)).isFile()
      } catch {
        return false
      }
    })
  )
  const env = {}
  // (PATH is `Path` on Windows, where the environment's names ignore case: drop every spelling, set one.)
  for (const [key, value] of Object.entries(npmEnv())) if (!/^(CARGO|RUSTUP)|^path$/i.test(key)) env[key] = value
  env.PATH = (process.env.PATH ?? '').split(delimiter).filter((dir) => dir !== '' && !hasRust(dir)).join(delimiter)
  env.CARGO_HOME = empty
  env.RUSTUP_HOME = empty
  const probe = spawnSync('cargo', ['--version'], { env, stdio: 'ignore' })
  if (probe.error?.code !== 'ENOENT') throw new Error('cargo is still reachable in the install environment')
  return env
}

/** Sends requests through the installed package from `app`; `expectAddon` is where the addon must come from. */
function exercise(app, expectAddon, env) {
  const check = `
    const http = require('node:http')
    const assert = require('node:assert/strict')
    const { Agent } = require('reqwest-dispatcher')
    const { request, fetch } = require('undici')
    const server = http.createServer((req, res) => res.end('hello from ' + req.url)).listen(0, '127.0.0.1', async () => {
      const url = 'http://127.0.0.1:' + server.address().port
      const agent = new Agent()
      const r = await request(url + '/request', { dispatcher: agent })
      assert.equal(r.statusCode, 200)
      assert.equal(await r.body.text(), 'hello from /request')
      const f = await fetch(url + '/fetch', { dispatcher: agent })
      assert.equal(await f.text(), 'hello from /fetch')
      const esm = await import('reqwest-dispatcher')
      assert.equal(esm.Agent, Agent, 'the ES module entry re-exports the CommonJS one')
      const addons = Object.keys(require.cache).filter((f) => f.endsWith('.node'))
      assert.deepEqual(addons.map((f) => require('node:path').relative(process.cwd(), f)), [${JSON.stringify(expectAddon)}])
      await agent.close()
      server.close()
      console.log('pack:check: request and fetch through the Agent succeeded; addon loaded from ' + addons[0])
    })`
  sh(process.execPath, ['-e', check], { cwd: app, env })
}

/** A fresh folder with `tarballs` and undici installed the way a user installs them. */
function install(name, tarballs, env) {
  const app = join(work, name)
  mkdirSync(app, { recursive: true })
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name, private: true }, null, 2))
  // undici 8 needs Node >= 22.19; npm would pick it for the peer range on any Node.
  const [major, minor] = process.versions.node.split('.').map(Number)
  const undici = major > 22 || (major === 22 && minor >= 19) ? 'undici@8' : 'undici@7'
  console.log(`$ npm install ${tarballs.join(' ')} ${undici}`)
  npm(['install', '--no-audit', '--no-fund', '--prefer-offline', ...tarballs, undici], { cwd: app, env, stdio: 'inherit' })
  return app
}

try {
  console.log(`== pack:check for ${platform} in ${work}`)
  if (!flags['no-build']) sh(process.execPath, [join(here, 'build-native.mjs'), '--platform', platform], { cwd: pkg })
  const platformTarball = pack(join(pkg, 'platforms', platform), join(work, 'tarballs', 'platform'))
  sh(process.execPath, [join(here, 'stage.mjs'), '--out', join(work, 'stage')], { cwd: pkg })
  const libraryTarball = pack(join(work, 'stage'), join(work, 'tarballs', 'library'))
  sh(process.execPath, [join(here, 'stage.mjs'), '--out', join(work, 'stage-source'), '--source'], { cwd: pkg })
  const sourceTarball = pack(join(work, 'stage-source'), join(work, 'tarballs', 'source'))

  const env = userEnvironment()
  console.log('== prebuilt: the library and its platform package, no Rust toolchain')
  const prebuilt = install('app-prebuilt', [libraryTarball, platformTarball], env)
  const installed = readdirSync(join(prebuilt, 'node_modules', '@reqwest-dispatcher'))
  if (installed.join() !== platform) throw new Error(`expected only ${platform} under @reqwest-dispatcher, found ${installed.join(', ')}`)
  exercise(prebuilt, join('node_modules', '@reqwest-dispatcher', platform, 'index.node'), env)

  console.log('== from source: the library with its local build inside, no Rust toolchain')
  const fromSource = install('app-source', [sourceTarball], env)
  exercise(fromSource, join('node_modules', 'reqwest-dispatcher', 'index.node'), env)
  console.log('pack:check passed')
} finally {
  if (!keep) rmSync(work, { recursive: true, force: true })
}
