// Lays the library out as it is published, in a folder of its own, ready for `npm pack` / `npm publish`:
//
//   node scripts/stage.mjs --out DIR            the npm release: what package.json's "files" select (dist without
//                                               source maps, COMPATIBILITY.md, CHANGELOG.md, README.md) and the
//                                               repository's LICENSE; package.json without scripts and devDependencies, with the
//                                               prebuilt platform packages as optionalDependencies at the library's
//                                               version (written by @neon-rs/cli's `neon update`)
//   node scripts/stage.mjs --out DIR --source   the same with the local build (index.node) inside and no
//                                               optionalDependencies: the package a user on a platform without a
//                                               prebuilt binary makes from a clone (README: "Building from source")
//   … --pack DEST                               then `npm pack` DIR into DEST and print the tarball's path
//
// The optionalDependencies are written here rather than kept in package.json because npm cannot resolve them before
// they are published, and `npm ci` refuses a package.json whose dependencies its lockfile lacks.
import { execFileSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { npm } from './npm.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const pkg = join(here, '..')
const { values: flags } = parseArgs({
  options: { out: { type: 'string' }, source: { type: 'boolean' }, pack: { type: 'string' } }
})
if (flags.out === undefined) {
  console.error('usage: node scripts/stage.mjs --out DIR [--source] [--pack DEST]')
  process.exit(2)
}
const out = flags.out

rmSync(out, { recursive: true, force: true })
mkdirSync(out, { recursive: true })

// What npm itself would pack from this folder, so that package.json's "files" stays the one list.
const [listing] = JSON.parse(npm(['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: pkg }))
for (const { path } of listing.files) {
  if (path === 'package.json') continue
  mkdirSync(dirname(join(out, path)), { recursive: true })
  copyFileSync(join(pkg, path), join(out, path))
}
// The licence lives at the repository's root.
copyFileSync(join(pkg, '..', '..', 'LICENSE'), join(out, 'LICENSE'))

const manifest = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8'))
delete manifest.scripts
delete manifest.devDependencies
if (flags.source) {
  if (!existsSync(join(pkg, 'index.node'))) {
    console.error('reqwest-dispatcher: no local build (index.node) to stage; run `npm run build` first')
    process.exit(1)
  }
  copyFileSync(join(pkg, 'index.node'), join(out, 'index.node'))
  manifest.files = [...manifest.files, 'index.node']
  delete manifest.neon
}
writeFileSync(join(out, 'package.json'), JSON.stringify(manifest, null, 2) + '\n')

if (!flags.source) {
  // @neon-rs/cli writes them from package.json's neon.platforms and version.
  execFileSync(process.execPath, [createRequire(import.meta.url).resolve('@neon-rs/cli'), 'update'], { cwd: out, stdio: 'inherit' })
  const written = JSON.parse(readFileSync(join(out, 'package.json'), 'utf8')).optionalDependencies ?? {}
  const expected = Object.keys(manifest.neon.platforms).map((p) => `${manifest.neon.org}/${p}`)
  const wrong = expected.filter((name) => written[name] !== manifest.version)
  if (wrong.length > 0) {
    console.error(`reqwest-dispatcher: neon update left these optionalDependencies off ${manifest.version}: ${wrong.join(', ')}`)
    process.exit(1)
  }
}
console.log(`reqwest-dispatcher: staged ${flags.source ? 'the from-source package' : 'the release package'} in ${out}`)
if (flags.pack !== undefined) {
  mkdirSync(flags.pack, { recursive: true })
  const [packed] = JSON.parse(npm(['pack', resolve(out), '--json', '--ignore-scripts', '--pack-destination', resolve(flags.pack)]))
  console.log(`reqwest-dispatcher: packed ${join(resolve(flags.pack), packed.filename)}`)
}
