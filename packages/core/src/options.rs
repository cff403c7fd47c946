//! Options of an [`crate::Agent`], named and defaulted as undici's `Agent` options.

use std::time::Duration;

/// Connection and timeout settings shared by every request of one agent.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// undici `connectTimeout` / `connect.timeout` (default 10 s). `None` disables it.
    pub connect_timeout: Option<Duration>,
    /// undici `headersTimeout` (default 300 s): time to wait for the response head. `None` disables it.
    pub headers_timeout: Option<Duration>,
    /// undici `bodyTimeout` (default 300 s): longest idle time between body chunks. `None` disables it.
    pub body_timeout: Option<Duration>,
    /// undici `keepAliveTimeout` (default 4 s): how long an idle connection is kept for reuse.
    pub keep_alive_timeout: Duration,
    /// undici `maxResponseSize` (default: unlimited).
    pub max_response_size: Option<u64>,
    /// undici `maxHeaderSize` (default 16 KiB): total bytes of response header names and values.
    pub max_header_size: usize,
    /// undici `allowH2` (default false): offer HTTP/2 through ALPN on TLS connections.
    pub allow_h2: bool,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            connect_timeout: Some(Duration::from_secs(10)),
            headers_timeout: Some(Duration::from_secs(300)),
            body_timeout: Some(Duration::from_secs(300)),
            keep_alive_timeout: Duration::from_secs(4),
            max_response_size: None,
            max_header_size: 16 * 1024,
            allow_h2: false,
        }
    }
}
