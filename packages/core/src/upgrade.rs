//! Requests that leave HTTP: an upgrade (`upgrade: websocket`, answered by `101 Switching Protocols`) or a
//! `CONNECT`. What such a request carries ([`Upgrade`]: how it asks, and the receiving end of its writes), and
//! the caller's end of those writes ([`UpgradeWriter`]).
//!
//! Once the server switched, the request's own task keeps the connection (out of the pool for good) and
//! carries its bytes both ways (`tunnel.rs`): what the server sends reaches the handler as
//! `on_response_data` under the request's controller (pause, credit), what the caller writes goes through
//! the writer, each write's completion reported back with `on_upgrade_written`.

use bytes::Bytes;
use tokio::sync::mpsc;

/// How a request asks to leave HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Switch {
    /// `connection: upgrade` with this `upgrade` header value (`websocket`); a `101` switches.
    Protocol(String),
    /// `CONNECT` with this request target, written as given (usually `host:port`); as in undici, any final
    /// response switches, whatever its status.
    Connect(String),
}

/// One write of the caller onto an upgraded connection.
pub enum UpgradeWrite {
    /// Bytes to write, in order; their completion is reported once for the whole write.
    Data(Vec<Bytes>),
    /// No more writes: the caller's direction ends (TCP half-close; TLS sends its close_notify first).
    End,
}

/// The caller's end of an upgraded connection's writes.
#[derive(Clone)]
pub struct UpgradeWriter {
    tx: mpsc::UnboundedSender<UpgradeWrite>,
}

impl UpgradeWriter {
    /// Queues a write; ignored when the connection is gone (its error or end was reported already).
    pub fn send(&self, write: UpgradeWrite) {
        let _ = self.tx.send(write);
    }
}

/// What a request that leaves HTTP carries.
pub struct Upgrade {
    pub(crate) switch: Switch,
    pub(crate) writes: UpgradeWrites,
}

impl Upgrade {
    /// A request asking for `switch`, and the writer its upgraded connection will take writes from. Writes
    /// sent before the switch wait for it; dropping every writer closes the connection.
    pub fn new(switch: Switch) -> (UpgradeWriter, Upgrade) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            UpgradeWriter { tx },
            Upgrade {
                switch,
                writes: UpgradeWrites { rx },
            },
        )
    }

    pub fn switch(&self) -> &Switch {
        &self.switch
    }
}

/// The core's end of the writes.
pub(crate) struct UpgradeWrites {
    pub(crate) rx: mpsc::UnboundedReceiver<UpgradeWrite>,
}
