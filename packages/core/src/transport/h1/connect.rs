//! Opening connections: name resolution, TCP (no delay, `connectTimeout`, `localAddress`, happy eyeballs as
//! Node's `autoSelectFamily`) and TLS through tokio-rustls with the agent's rustls configuration, offering
//! only `http/1.1` by ALPN.

use super::conn::Stream;
use crate::error::{CoreError, ErrorKind};
use crate::options::AgentOptions;
use crate::transport::classify::os_code;
use futures_util::stream::{FuturesUnordered, StreamExt};
use rustls::pki_types::ServerName;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

/// Where a connection goes: `https` or not, and the authority's host (brackets stripped) and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

impl Target {
    /// The target of an absolute `http:`/`https:` URI.
    pub(crate) fn of(uri: &http::Uri) -> Option<Target> {
        let https = match uri.scheme_str()? {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let authority = uri.authority()?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        Some(Target {
            https,
            host: host.to_string(),
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
        })
    }
}

impl Target {
    /// The host as a URL writes it (an IPv6 address in brackets), as undici's messages name it.
    fn url_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

/// Locks a mutex whose data stays valid even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Makes connections for one agent.
pub(crate) struct Connector {
    tls: TlsConnector,
    /// `servername`: sent as SNI and checked against the certificate instead of the URL's host.
    servername: Option<ServerName<'static>>,
    connect_timeout: Option<Duration>,
    local_address: Option<IpAddr>,
    /// `autoSelectFamilyAttemptTimeout` when `autoSelectFamily` is on.
    attempt_timeout: Option<Duration>,
}

/// A new connection and its addresses.
pub(crate) struct Opened {
    pub stream: Stream,
    pub remote: SocketAddr,
    pub local: Option<SocketAddr>,
}

impl Connector {
    pub(crate) fn new(options: &AgentOptions) -> Result<Connector, CoreError> {
        let tls = crate::transport::tls::client_config(&options.tls, &[b"http/1.1"])?;
        let servername = match &options.tls.servername {
            Some(name) if !name.is_empty() => {
                Some(ServerName::try_from(name.clone()).map_err(|e| {
                    CoreError::new(
                        ErrorKind::InvalidArgument,
                        format!("invalid servername: {e}"),
                    )
                })?)
            }
            _ => None,
        };
        Ok(Connector {
            tls: TlsConnector::from(Arc::new(tls)),
            servername,
            connect_timeout: options.connect_timeout,
            local_address: options.local_address,
            attempt_timeout: options.auto_select_family,
        })
    }

    /// Opens a connection to `target`, within the connect timeout (resolution, TCP and TLS together).
    pub(crate) async fn connect(&self, target: &Target) -> Result<Opened, CoreError> {
        self.connect_to(target, resolve(&target.host, target.port))
            .await
    }

    /// Opens a connection to `target` at the addresses `resolved` yields, all within the connect timeout.
    async fn connect_to(
        &self,
        target: &Target,
        resolved: impl Future<Output = Result<Vec<SocketAddr>, CoreError>>,
    ) -> Result<Opened, CoreError> {
        // The addresses tried so far, once happy eyeballs has more than one to try: undici's timeout message
        // lists them then (Node's `autoSelectFamilyAttemptedAddresses`), else names the host.
        let attempted = Mutex::new(None);
        let work = async {
            let mut addresses = resolved.await?;
            if self.attempt_timeout.is_some() && addresses.len() > 1 {
                addresses = interleave_families(addresses);
                *lock(&attempted) = Some(Vec::new());
            }
            let tried = |address| {
                if let Some(list) = lock(&attempted).as_mut() {
                    list.push(address);
                }
                self.tcp(address)
            };
            let (tcp, remote) = first_connected(&addresses, self.attempt_timeout, tried).await?;
            self.secure(target, tcp, remote).await
        };
        let Some(limit) = self.connect_timeout else {
            return work.await;
        };
        match tokio::time::timeout(limit, work).await {
            Ok(outcome) => outcome,
            Err(_) => {
                let tried = match lock(&attempted).as_deref() {
                    Some(list) => {
                        let list: Vec<String> = list
                            .iter()
                            .map(|a| format!("{}:{}", a.ip(), a.port()))
                            .collect();
                        format!("attempted addresses: {}", list.join(", "))
                    }
                    None => format!("attempted address: {}:{}", target.url_host(), target.port),
                };
                Err(CoreError::new(
                    ErrorKind::ConnectTimeout,
                    format!(
                        "Connect Timeout Error ({tried}, timeout: {}ms)",
                        limit.as_millis()
                    ),
                ))
            }
        }
    }

    /// The connection a new TCP stream makes: the stream itself for `http:`, TLS over it for `https:`.
    async fn secure(
        &self,
        target: &Target,
        tcp: TcpStream,
        remote: SocketAddr,
    ) -> Result<Opened, CoreError> {
        let local = tcp.local_addr().ok();
        if !target.https {
            return Ok(Opened {
                stream: Stream::Tcp(tcp),
                remote,
                local,
            });
        }
        let name = match &self.servername {
            Some(name) => name.clone(),
            None => ServerName::try_from(target.host.clone()).map_err(|e| {
                CoreError::new(ErrorKind::InvalidArgument, format!("invalid host: {e}"))
            })?,
        };
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| crate::transport::classify::connect(&e))?;
        Ok(Opened {
            stream: Stream::Tls(Box::new(tls)),
            remote,
            local,
        })
    }

    async fn tcp(&self, address: SocketAddr) -> Result<TcpStream, CoreError> {
        let socket = if address.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| connect_error(&e, address))?;
        if let Some(local) = self.local_address {
            socket
                .bind(SocketAddr::new(local, 0))
                .map_err(|e| connect_error(&e, address))?;
        }
        let stream = socket
            .connect(address)
            .await
            .map_err(|e| connect_error(&e, address))?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// Node's order for `autoSelectFamily`: each address once, the two families alternating, starting with the
/// family of the first address.
fn interleave_families(addresses: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let first_is_v6 = addresses.first().is_some_and(SocketAddr::is_ipv6);
    let (mut preferred, mut other) = (Vec::new(), Vec::new());
    for address in addresses {
        let family = if address.is_ipv6() == first_is_v6 {
            &mut preferred
        } else {
            &mut other
        };
        if !family.contains(&address) {
            family.push(address);
        }
    }
    let mut interleaved = Vec::with_capacity(preferred.len() + other.len());
    let mut rest = other.into_iter();
    for address in preferred {
        interleaved.push(address);
        interleaved.extend(rest.next());
    }
    interleaved.extend(rest);
    interleaved
}

/// Connects to the first of `addresses` that answers (happy eyeballs, RFC 8305 as Node paces it). The next
/// address is tried as soon as an attempt fails, or once the latest attempt has not connected within
/// `attempt_timeout`; attempts already started keep going, the first to connect wins and the others are
/// dropped (their sockets closed). Without `attempt_timeout`, one address after another, each until it
/// fails. When every attempt fails, the first failure is the error (the `code` of Node's AggregateError).
async fn first_connected<S, F, Fut>(
    addresses: &[SocketAddr],
    attempt_timeout: Option<Duration>,
    attempt: F,
) -> Result<(S, SocketAddr), CoreError>
where
    F: Fn(SocketAddr) -> Fut,
    Fut: Future<Output = Result<S, CoreError>>,
{
    let mut running = FuturesUnordered::new();
    let mut waiting = addresses.iter().copied();
    // Starts the next address, if any is left; returns when the one after it is due.
    let mut start_next = |running: &mut FuturesUnordered<_>| {
        let address = waiting.next()?;
        let attempt = attempt(address);
        running.push(async move { (attempt.await, address) });
        let due = tokio::time::Instant::now() + attempt_timeout?;
        (waiting.len() > 0).then_some(due)
    };
    let mut next_due = start_next(&mut running);
    let mut first_error = None;
    while !running.is_empty() {
        let stagger = async {
            match next_due {
                Some(due) => tokio::time::sleep_until(due).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some((result, address)) = running.next() => match result {
                Ok(stream) => return Ok((stream, address)),
                Err(error) => {
                    first_error.get_or_insert(error);
                    next_due = start_next(&mut running);
                }
            },
            () = stagger => next_due = start_next(&mut running),
        }
    }
    Err(first_error
        .unwrap_or_else(|| CoreError::new(ErrorKind::Socket, "no address to connect to")))
}

/// The host's addresses, as `getaddrinfo` gives them (an IP literal is used as is).
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, CoreError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| not_found(host))?
        .collect();
    if found.is_empty() {
        return Err(not_found(host));
    }
    Ok(found)
}

fn not_found(host: &str) -> CoreError {
    CoreError::new(
        ErrorKind::Os("ENOTFOUND"),
        format!("getaddrinfo ENOTFOUND {host}"),
    )
}

fn connect_error(error: &std::io::Error, address: SocketAddr) -> CoreError {
    match os_code(error) {
        Some(code) => CoreError::new(ErrorKind::Os(code), format!("connect {code} {address}")),
        None => CoreError::new(ErrorKind::Socket, format!("connect {address}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    use tokio::time::Instant;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn targets_default_their_port_and_strip_ipv6_brackets() {
        let t = Target::of(&"https://a.test/x".parse().unwrap()).unwrap();
        assert_eq!((t.https, t.host.as_str(), t.port), (true, "a.test", 443));
        let t = Target::of(&"http://[::1]:8080/".parse().unwrap()).unwrap();
        assert_eq!((t.https, t.host.as_str(), t.port), (false, "::1", 8080));
        assert!(Target::of(&"ftp://a.test/".parse().unwrap()).is_none());
    }

    #[test]
    fn families_alternate_from_the_first_addresss_family_each_address_once() {
        let resolved = [
            "[::1]:80",
            "[::2]:80",
            "[::3]:80",
            "10.0.0.1:80",
            "[::1]:80",
            "10.0.0.2:80",
        ];
        let order = interleave_families(resolved.iter().map(|a| addr(a)).collect());
        let expected = [
            "[::1]:80",
            "10.0.0.1:80",
            "[::2]:80",
            "10.0.0.2:80",
            "[::3]:80",
        ];
        assert_eq!(order, expected.iter().map(|a| addr(a)).collect::<Vec<_>>());
        let resolved = ["10.0.0.1:80", "10.0.0.2:80", "[::1]:80"];
        let order = interleave_families(resolved.iter().map(|a| addr(a)).collect());
        let expected = ["10.0.0.1:80", "[::1]:80", "10.0.0.2:80"];
        assert_eq!(order, expected.iter().map(|a| addr(a)).collect::<Vec<_>>());
    }

    /// Sets its flag when dropped: tells whether an attempt was abandoned.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// How each scripted address behaves when tried.
    #[derive(Clone, Copy)]
    enum Script {
        Hangs,
        Fails,
        ConnectsAfter(Duration),
    }

    /// Runs [`first_connected`] over scripted addresses; returns its outcome, when each address was tried
    /// (ms after the start) and whether each hanging attempt was dropped.
    async fn race(
        script: &[(&str, Script)],
        attempt_timeout: Option<Duration>,
    ) -> (Result<SocketAddr, String>, Vec<(SocketAddr, u128)>, bool) {
        let began = Instant::now();
        let tried = Arc::new(Mutex::new(Vec::new()));
        let dropped = Arc::new(AtomicBool::new(false));
        let addresses: Vec<SocketAddr> = script.iter().map(|(a, _)| addr(a)).collect();
        let outcome = first_connected(&addresses, attempt_timeout, |address| {
            let behaviour = script.iter().find(|(a, _)| addr(a) == address).unwrap().1;
            tried
                .lock()
                .unwrap()
                .push((address, began.elapsed().as_millis()));
            let flag = DropFlag(Arc::clone(&dropped));
            async move {
                let _flag = flag;
                match behaviour {
                    Script::Hangs => std::future::pending().await,
                    Script::Fails => Err(CoreError::new(
                        ErrorKind::Os("ECONNREFUSED"),
                        format!("connect ECONNREFUSED {address}"),
                    )),
                    Script::ConnectsAfter(wait) => {
                        tokio::time::sleep(wait).await;
                        Ok(address)
                    }
                }
            }
        })
        .await;
        let tried = tried.lock().unwrap().clone();
        let outcome = outcome
            .map(|(connected, _)| connected)
            .map_err(|e| e.message);
        (outcome, tried, dropped.load(Ordering::SeqCst))
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[tokio::test]
    async fn an_address_that_never_answers_is_passed_over_after_the_attempt_timeout() {
        let script = [
            ("[::1]:1", Script::Hangs),
            ("127.0.0.1:1", Script::ConnectsAfter(MS(0))),
        ];
        let (outcome, tried, dropped) =
            tokio::time::timeout(Duration::from_secs(5), race(&script, Some(MS(100))))
                .await
                .expect("the second address is tried without waiting for the first");
        assert_eq!(outcome, Ok(addr("127.0.0.1:1")));
        assert_eq!(tried.len(), 2);
        assert!(
            tried[1].1 >= 100,
            "the second attempt waited its turn: {tried:?}"
        );
        assert!(dropped, "the attempt still waiting was abandoned");
    }

    #[tokio::test]
    async fn a_failed_attempt_moves_on_at_once() {
        let script = [
            ("[::1]:1", Script::Fails),
            ("127.0.0.1:1", Script::Fails),
            ("[::2]:1", Script::ConnectsAfter(MS(0))),
        ];
        let (outcome, tried, _) = race(&script, Some(MS(5_000))).await;
        assert_eq!(outcome, Ok(addr("[::2]:1")));
        assert!(tried.iter().all(|(_, at)| *at < 1_000), "{tried:?}");
    }

    #[tokio::test]
    async fn an_earlier_attempt_that_connects_first_wins() {
        let script = [
            ("[::1]:1", Script::ConnectsAfter(MS(150))),
            ("127.0.0.1:1", Script::ConnectsAfter(MS(2_000))),
        ];
        let (outcome, tried, _) = race(&script, Some(MS(50))).await;
        assert_eq!(outcome, Ok(addr("[::1]:1")));
        assert_eq!(
            tried.len(),
            2,
            "the second was started meanwhile: {tried:?}"
        );
    }

    #[tokio::test]
    async fn when_every_attempt_fails_the_first_failure_is_the_error() {
        let script = [("[::1]:1", Script::Fails), ("127.0.0.1:1", Script::Fails)];
        let (outcome, tried, _) = race(&script, Some(MS(100))).await;
        assert_eq!(outcome, Err("connect ECONNREFUSED [::1]:1".to_string()));
        assert_eq!(tried.len(), 2);
    }

    #[tokio::test]
    async fn without_auto_select_family_each_address_is_tried_until_it_fails() {
        let script = [
            ("[::1]:1", Script::ConnectsAfter(MS(300))),
            ("127.0.0.1:1", Script::ConnectsAfter(MS(0))),
        ];
        let (outcome, tried, _) = race(&script, None).await;
        assert_eq!(outcome, Ok(addr("[::1]:1")));
        assert_eq!(tried.len(), 1);
    }

    /// A listener on 127.0.0.1 that never accepts, its backlog full: further connection attempts get no
    /// answer (their SYNs are dropped), as with a blackholed address. Returns the listener and the fillers.
    async fn unanswering_address() -> (SocketAddr, tokio::net::TcpListener, Vec<TcpStream>) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(addr("127.0.0.1:0")).unwrap();
        let listener = socket.listen(0).unwrap();
        let address = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..4 {
            match tokio::time::timeout(MS(200), TcpStream::connect(address)).await {
                Ok(Ok(stream)) => fillers.push(stream),
                _ => break,
            }
        }
        (address, listener, fillers)
    }

    #[tokio::test]
    async fn the_connector_reaches_the_next_address_when_the_first_never_answers() {
        let (silent, _listener, _fillers) = unanswering_address().await;
        assert!(
            tokio::time::timeout(MS(300), TcpStream::connect(silent))
                .await
                .is_err(),
            "the test's silent address must not answer"
        );
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_address = live.local_addr().unwrap();
        let options = AgentOptions {
            auto_select_family: Some(MS(100)),
            ..AgentOptions::default()
        };
        let connector = Connector::new(&options).unwrap();
        let target = Target::of(&"http://a.test/".parse().unwrap()).unwrap();
        let began = Instant::now();
        let opened = connector
            .connect_to(&target, async { Ok(vec![silent, live_address]) })
            .await
            .expect("the second address answers");
        assert_eq!(opened.remote, live_address);
        assert!(
            began.elapsed() < MS(2_000),
            "well before the 10 s connect timeout"
        );
    }

    #[tokio::test]
    async fn the_connect_timeout_covers_the_whole_race_and_names_the_addresses_tried() {
        let (silent, _listener, _fillers) = unanswering_address().await;
        let (other, _listener2, _fillers2) = unanswering_address().await;
        let options = AgentOptions {
            auto_select_family: Some(MS(100)),
            connect_timeout: Some(MS(400)),
            ..AgentOptions::default()
        };
        let connector = Connector::new(&options).unwrap();
        let target = Target::of(&"http://a.test:81/".parse().unwrap()).unwrap();
        let began = Instant::now();
        let resolved = async { Ok(vec![silent, other]) };
        let error = connector.connect_to(&target, resolved).await.err().unwrap();
        let took = began.elapsed();
        assert!(matches!(error.kind, ErrorKind::ConnectTimeout));
        assert!(
            took >= MS(400) && took < MS(700),
            "one timeout for both: {took:?}"
        );
        assert_eq!(
            error.message,
            format!(
                "Connect Timeout Error (attempted addresses: {silent}, {other}, timeout: 400ms)"
            )
        );
        // One address (or happy eyeballs off): the host is named, as undici names it.
        let options = AgentOptions {
            connect_timeout: Some(MS(200)),
            ..AgentOptions::default()
        };
        let connector = Connector::new(&options).unwrap();
        let target = Target::of(&"http://[::1]:81/".parse().unwrap()).unwrap();
        let error = connector
            .connect_to(&target, async { Ok(vec![silent]) })
            .await
            .err()
            .unwrap();
        assert_eq!(
            error.message,
            "Connect Timeout Error (attempted address: [::1]:81, timeout: 200ms)"
        );
    }
}
