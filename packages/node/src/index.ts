/**
 * reqwest-dispatcher: an undici-compatible `Dispatcher` with a Rust core (reqwest, hyper, tokio).
 *
 * Change `import { Agent } from 'undici'` to `import { Agent } from 'reqwest-dispatcher'`; everything else
 * (`request`, `stream`, `pipeline`, `fetch`, `setGlobalDispatcher`, interceptors) keeps working.
 */
export { Agent, setWorkerThreads } from './agent'
export type { AgentOptions } from './options'
export { ProxyAgent, EnvHttpProxyAgent } from './proxy-agent'
export type { ProxyAgentOptions, EnvHttpProxyAgentOptions } from './proxy-agent'
export type { ConnectOptions, WebSocketOptions } from './options'
export type { TlsConnectOptions, Pem, KeyInput } from './tls-options'
export type { OriginStats } from './stats'
export { CircuitOpenError, RateLimitError } from './errors'
export type { PolicyOptions, Policies, RetryPolicy, CircuitBreakerPolicy, RateLimitPolicy } from './policies'
export type { AgentEvents, CircuitState, CircuitStateListener, CloseOptions, MetricFamily } from './agent'
export type { DiagnosticsRequest, DiagnosticsSocket } from './diagnostics'
