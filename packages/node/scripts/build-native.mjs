// Builds the Rust addon (release, LTO) through @neon-rs/cli.
//
//   node scripts/build-native.mjs                     this machine, into index.node (the local build, from source)
//   node scripts/build-native.mjs --platform P        into platforms/P/index.node, the prebuilt package of platform P
//                                                     (a cross build with `--target` when P is not this machine)
//   node scripts/build-native.mjs --platform P --zig  the same through `cargo zigbuild`; linux-*-gnu builds then link
//                                                     against glibc 2.17, so they load on every glibc distribution
//
// A machine without a Rust toolchain gets a message saying what to install instead of a stack trace.
import { spawn, spawnSync } from 'node:child_process'
import { copyFileSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const here = dirname(fileURLToPath(import.meta.url))
const pkg = join(here, '..')
const manifest = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8'))
const { values: flags } = parseArgs({ options: { platform: { type: 'string' }, zig: { type: 'boolean' } } })
const profile = process.env.REQWEST_DISPATCHER_PROFILE === 'debug' ? 'debug' : 'release'

const probe = spawnSync('cargo', ['--version'], { encoding: 'utf8' })
if (probe.error || probe.status !== 0) {
  console.error(
    '\nreqwest-dispatcher: building the native addon needs a Rust toolchain (cargo), and none was found.\n' +
      'Install Rust from https://rustup.rs (stable), make sure `cargo` is on PATH, then run `npm run build` again.\n'
  )
  process.exit(1)
}

let output = join(pkg, 'index.node')
let target
if (flags.platform !== undefined) {
  const triple = manifest.neon.platforms[flags.platform]
  if (triple === undefined) {
    console.error(`reqwest-dispatcher: unknown platform ${flags.platform}; package.json lists ${Object.keys(manifest.neon.platforms).join(', ')}`)
    process.exit(1)
  }
  output = join(pkg, 'platforms', flags.platform, 'index.node')
  // Building for this machine without --target reuses target/release, the build `npm ci` already made.
  const host = /^host: (.+)$/m.exec(spawnSync('rustc', ['-vV'], { encoding: 'utf8' }).stdout ?? '')?.[1]
  if (triple !== host || flags.zig) target = flags.zig && triple.endsWith('-linux-gnu') ? `${triple}.2.17` : triple
}

const args = [flags.zig ? 'zigbuild' : 'build', '-p', 'reqwest-dispatcher-node', '--message-format=json-render-diagnostics']
if (profile === 'release') args.push('--release')
if (target !== undefined) args.push('--target', target)
const cargo = spawn('cargo', args, { cwd: pkg, stdio: ['ignore', 'pipe', 'inherit'] })
// @neon-rs/cli's entry runs under this Node (its .bin shim is a .cmd on Windows, which spawn() cannot start).
const neonCli = createRequire(import.meta.url).resolve('@neon-rs/cli')
const neon = spawn(process.execPath, [neonCli, 'dist', '-n', 'reqwest-dispatcher-node', '-o', output], {
  cwd: pkg,
  stdio: ['pipe', 'inherit', 'inherit']
})
cargo.stdout.pipe(neon.stdin)

const exited = (child) => new Promise((resolve) => child.on('close', (code) => resolve(code)))
const [cargoCode, neonCode] = await Promise.all([exited(cargo), exited(neon)])
if (cargoCode !== 0 || neonCode !== 0) {
  console.error(`reqwest-dispatcher: native build failed (cargo exit ${cargoCode}, neon exit ${neonCode})`)
  process.exit(1)
}
// A platform package ships the licence next to the binary.
if (flags.platform !== undefined) copyFileSync(join(pkg, '..', '..', 'LICENSE'), join(dirname(output), 'LICENSE'))
console.log(`reqwest-dispatcher: built ${output}`)
