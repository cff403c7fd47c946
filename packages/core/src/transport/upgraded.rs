//! A connection that left HTTP, from whichever path it came: the engine's own connection, or hyper's upgraded
//! one (proxied connections). Either way a plain byte stream, behind one pointer.

use tokio::io::{AsyncRead, AsyncWrite};

/// What an upgraded connection is to the code that carries its bytes (`tunnel.rs`).
pub(crate) trait UpgradedIo: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> UpgradedIo for T {}

pub(crate) type Upgraded = Box<dyn UpgradedIo>;
