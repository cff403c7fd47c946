// Makes Node resolve `undici` to the major chosen for a test run, in the test workers and in every process they
// start (vitest.config.mts puts this file in NODE_OPTIONS). Both majors are installed side by side under aliases,
// `undici7` and `undici8`; REQWEST_DISPATCHER_TEST_UNDICI=7|8 picks one. Vite resolves the test files' own imports
// (vitest.config.mts aliases them the same way); this covers what Node resolves: the built package's
// `require('undici')` and the scripts tests run in child processes. One copy of undici per process is the point: the
// Agent extends that copy's Dispatcher and throws its error classes, so `instanceof` holds in the tests.
'use strict'
const major = process.env.REQWEST_DISPATCHER_TEST_UNDICI
if (major) {
  const Module = require('node:module')
  const alias = `undici${major}`
  const redirect = (specifier) =>
    specifier === 'undici' || specifier.startsWith('undici/') ? alias + specifier.slice('undici'.length) : specifier
  if (typeof Module.registerHooks === 'function') {
    // Node >= 22.15: one synchronous hook for require() and import alike.
    Module.registerHooks({ resolve: (specifier, context, next) => next(redirect(specifier), context) })
  } else {
    // Node 20: require() only (the package's ES module entry loads the CommonJS build through require()).
    const resolveFilename = Module._resolveFilename
    Module._resolveFilename = function (request, ...rest) {
      return resolveFilename.call(this, redirect(request), ...rest)
    }
  }
}
