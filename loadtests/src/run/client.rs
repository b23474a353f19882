//! The HTTP/1.1 client: connections to the target (TLS with the request host as
//! SNI on an https target), kept alive per address and host and capped in number,
//! and one request's exchange.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsConnector;

use super::plan::Planned;
use super::recorder::{ErrorKind, Outcome};
use crate::scenario::RequestKind;

/// `user-agent` of every request.
const AGENT: HeaderValue = HeaderValue::from_static("switchyard-loadtest");

/// Connections are kept per address and, on TLS, per SNI name: a connection for one
/// custom domain cannot carry another's requests.
type Key = (SocketAddr, Option<Arc<str>>);

/// An open connection and the slot it holds under the cap.
#[derive(Debug)]
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    _slot: OwnedSemaphorePermit,
}

/// Idle connections.
#[derive(Debug, Default)]
struct Idle {
    by_key: HashMap<Key, Vec<Conn>>,
}

impl Idle {
    fn take(&mut self, key: &Key) -> Option<Conn> {
        let conns = self.by_key.get_mut(key)?;
        let conn = loop {
            match conns.pop() {
                Some(conn) if conn.sender.is_closed() => {}
                other => break other,
            }
        };
        if conns.is_empty() {
            self.by_key.remove(key);
        }
        conn
    }

    /// Closes one idle connection, freeing its slot: one of the key holding the
    /// most, so a busy host's spare connections go before a quiet host's only one
    /// (the scan only happens when the cap is reached).
    fn evict_one(&mut self) -> bool {
        let Some(key) = self
            .by_key
            .iter()
            .max_by_key(|(_, conns)| conns.len())
            .map(|(key, _)| key.clone())
        else {
            return false;
        };
        let conns = self.by_key.get_mut(&key).expect("key just seen");
        // The oldest: the one most likely to have been closed by the server.
        conns.remove(0);
        if conns.is_empty() {
            self.by_key.remove(&key);
        }
        true
    }
}

/// What a response told.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) outcome: Outcome,
    pub(crate) bytes_in: u64,
}

/// The client shared by every request of a run.
pub(crate) struct Client {
    tls: Option<TlsConnector>,
    slots: Arc<Semaphore>,
    idle: Mutex<Idle>,
    released: Notify,
    opened: AtomicU64,
    body: Bytes,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("tls", &self.tls.is_some())
            .field("opened", &self.opened)
            .finish_non_exhaustive()
    }
}

/// A failure before a response: its kind and message.
type Failure = (ErrorKind, String);

impl Client {
    /// A client holding at most `max_connections`, speaking TLS when `tls` is set,
    /// able to send bodies up to `max_body` bytes.
    pub(crate) fn new(
        tls: Option<Arc<ClientConfig>>,
        max_connections: u32,
        max_body: usize,
    ) -> Self {
        Self {
            tls: tls.map(TlsConnector::from),
            slots: Arc::new(Semaphore::new(max_connections as usize)),
            idle: Mutex::new(Idle::default()),
            released: Notify::new(),
            opened: AtomicU64::new(0),
            body: Bytes::from(vec![b'x'; max_body]),
        }
    }

    /// Connections opened so far.
    pub(crate) fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    fn key(&self, planned: &Planned) -> Key {
        let sni = self.tls.as_ref().map(|_| Arc::from(planned.host.as_str()));
        (planned.addr, sni)
    }

    /// Sends `planned` and reads its response to the end.
    pub(crate) async fn exchange(
        &self,
        planned: &Planned,
        kind: &RequestKind,
    ) -> Result<Answer, Failure> {
        let key = self.key(planned);
        let (conn, was_reused) = self.conn(&key, planned, false).await?;
        match self.send(conn, &key, planned, kind).await {
            // A kept-alive connection the server closed meanwhile: what any client
            // does is try once more on a new one.
            Err(Retry::Stale) if was_reused => {
                let (conn, _) = self.conn(&key, planned, true).await?;
                self.send(conn, &key, planned, kind)
                    .await
                    .map_err(Retry::into_failure)
            }
            other => other.map_err(Retry::into_failure),
        }
    }

    /// A connection for `key`: an idle one, else a new one in a free slot, else a
    /// new one in the slot of an idle connection of another key (closed for it),
    /// else the first of those to come once a request ends.
    async fn conn(
        &self,
        key: &Key,
        planned: &Planned,
        fresh: bool,
    ) -> Result<(Conn, bool), Failure> {
        loop {
            // Listen for releases before looking, so one that comes in between is
            // not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !(fresh || planned.new_connection)
                && let Some(conn) = self.idle.lock().expect("idle pool lock").take(key)
            {
                return Ok((conn, true));
            }
            if let Ok(slot) = self.slots.clone().try_acquire_owned() {
                return Ok((self.connect(slot, key, planned).await?, false));
            }
            if self.idle.lock().expect("idle pool lock").evict_one() {
                continue;
            }
            // Every connection is busy: wait for one to be released to the pool or
            // closed, then look again.
            tokio::select! {
                () = released => {}
                slot = self.slots.clone().acquire_owned() => {
                    let slot = slot.expect("the semaphore is never closed");
                    return Ok((self.connect(slot, key, planned).await?, false));
                }
            }
        }
    }

    async fn connect(
        &self,
        slot: OwnedSemaphorePermit,
        key: &Key,
        planned: &Planned,
    ) -> Result<Conn, Failure> {
        let tcp = TcpStream::connect(key.0).await.map_err(|err| {
            (
                ErrorKind::Connect,
                format!("connecting to {}: {err}", key.0),
            )
        })?;
        // Small requests must not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        self.opened.fetch_add(1, Ordering::Relaxed);
        let protocol =
            |err: hyper::Error| (ErrorKind::Protocol, format!("HTTP/1.1 handshake: {err}"));
        let sender = match &self.tls {
            None => {
                let (sender, conn) = http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(protocol)?;
                tokio::spawn(conn);
                sender
            }
            Some(tls) => {
                let name = ServerName::try_from(planned.host.clone())
                    .map_err(|err| (ErrorKind::Tls, format!("SNI {}: {err}", planned.host)))?;
                let stream = tls.connect(name, tcp).await.map_err(|err| {
                    (
                        ErrorKind::Tls,
                        format!("TLS handshake for {}: {err}", planned.host),
                    )
                })?;
                let (sender, conn) = http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(protocol)?;
                tokio::spawn(conn);
                sender
            }
        };
        Ok(Conn {
            sender,
            _slot: slot,
        })
    }

    async fn send(
        &self,
        mut conn: Conn,
        key: &Key,
        planned: &Planned,
        kind: &RequestKind,
    ) -> Result<Answer, Retry> {
        let mut builder = Request::builder()
            .method(kind.method.clone())
            .uri(planned.path.as_str())
            .header(HOST, planned.host.as_str())
            .header(USER_AGENT, AGENT);
        for (name, value) in &kind.headers {
            builder = builder.header(name, value);
        }
        if planned.new_connection {
            builder = builder.header(CONNECTION, HeaderValue::from_static("close"));
        }
        let body = Full::new(self.body.slice(..planned.body_len.min(self.body.len())));
        let request = builder.body(body).map_err(|err| {
            Retry::Failed((ErrorKind::Protocol, format!("building the request: {err}")))
        })?;
        if conn.sender.ready().await.is_err() {
            return Err(Retry::Stale);
        }
        let response = conn.sender.send_request(request).await.map_err(|err| {
            // Canceled: the request was never written, so sending it again is safe.
            // Anything else may have reached the server and is an error.
            if err.is_canceled() {
                Retry::Stale
            } else {
                Retry::Failed((ErrorKind::Protocol, format!("sending the request: {err}")))
            }
        })?;
        let status = response.status().as_u16();
        let cache_hit = response
            .headers()
            .get("x-cache")
            .is_some_and(|value| value.as_bytes() == b"HIT" || value.as_bytes() == b"STALE");
        let closes = response
            .headers()
            .get(CONNECTION)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"));
        let mut body = response.into_body();
        let mut bytes_in = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|err| {
                Retry::Failed((
                    ErrorKind::Protocol,
                    format!("reading the response body: {err}"),
                ))
            })?;
            if let Some(data) = frame.data_ref() {
                bytes_in += data.len() as u64;
            }
        }
        if !planned.new_connection && !closes {
            self.release(key.clone(), conn);
        }
        Ok(Answer {
            outcome: Outcome::Response { status, cache_hit },
            bytes_in,
        })
    }

    /// Keeps a connection for the next request of its key, and wakes a request
    /// waiting for a connection.
    fn release(&self, key: Key, conn: Conn) {
        self.idle
            .lock()
            .expect("idle pool lock")
            .by_key
            .entry(key)
            .or_default()
            .push(conn);
        self.released.notify_one();
    }
}

/// How sending on a connection failed.
#[derive(Debug)]
enum Retry {
    /// The connection was closed before the request went out: try a new one.
    Stale,
    /// The request failed.
    Failed(Failure),
}

impl Retry {
    fn into_failure(self) -> Failure {
        match self {
            Self::Stale => (
                ErrorKind::Protocol,
                "the connection closed before the response".to_owned(),
            ),
            Self::Failed(failure) => failure,
        }
    }
}
