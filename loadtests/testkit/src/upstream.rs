//! Real HTTP upstreams for proxy tests.
//!
//! An [`Upstream`] is a hyper server on `127.0.0.1:0` speaking HTTP/1.1 and cleartext
//! HTTP/2 (prior knowledge), detected per connection. It runs on its own thread with its
//! own single-threaded tokio runtime, so synchronous tests and `#[tokio::test]`s alike can
//! start one, and blocking in a test never starves it. Every request is recorded before it
//! is answered; what it answers is described in [`crate::reply`].

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::runtime;
use tokio::sync::oneshot;

use crate::error::{Result, TestkitError};
use crate::reply::{Reply, ReplyBody};
use crate::request::RecordedRequest;

/// How long requests in flight get to finish when an upstream shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How often shutdown checks whether the requests in flight are done.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// Describes an upstream before it starts; see [`Upstream::builder`].
#[derive(Debug, Clone)]
#[must_use = "an upstream builder does nothing until `start` is called"]
pub struct UpstreamBuilder {
    /// The name echoed in bodies and in `x-upstream`, so a test sees which upstream answered.
    name: String,
    /// How every request is answered.
    reply: Reply,
    /// A status or header the builder could not parse, reported by `start`.
    invalid: Option<String>,
    /// A fixed port, so a test can bring a "crashed" upstream back at the
    /// same address; 0 (the default) lets the kernel choose.
    port: u16,
}

impl UpstreamBuilder {
    /// Listens on `127.0.0.1:port` instead of a port the kernel picks, e.g.
    /// to restart an upstream where a proxy expects it.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Names the upstream (default `upstream`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Answers every request with `status` and the fixed `body` instead of the echo.
    pub fn respond(mut self, status: u16, body: impl Into<Vec<u8>>) -> Self {
        self = self.status(status);
        self.reply.body = ReplyBody::Fixed(Bytes::from(body.into()));
        self
    }

    /// Answers with `status`, keeping the current body (the echo, unless [`Self::respond`]
    /// replaced it): e.g. a 503 that still says which upstream answered.
    pub fn status(mut self, status: u16) -> Self {
        match StatusCode::from_u16(status) {
            Ok(status) => self.reply.status = status,
            Err(_) => self.invalid = Some(format!("invalid status code {status}")),
        }
        self
    }

    /// Adds a response header to every answer.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => self.reply.headers.push((name, value)),
            _ => self.invalid = Some(format!("invalid response header {name:?}: {value:?}")),
        }
        self
    }

    /// Waits `delay` before answering each request, for timeout tests.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.reply.delay = delay;
        self
    }

    /// Binds a free port on 127.0.0.1 and starts serving on a dedicated thread.
    ///
    /// # Errors
    ///
    /// [`TestkitError::InvalidUpstream`] when a status or header given to the builder is
    /// invalid, [`TestkitError::Io`] when binding, building the runtime or spawning the
    /// thread fails.
    pub fn start(self) -> Result<Upstream> {
        if let Some(reason) = self.invalid {
            return Err(TestkitError::InvalidUpstream {
                name: self.name,
                reason,
            });
        }
        let listener =
            StdTcpListener::bind((Ipv4Addr::LOCALHOST, self.port)).map_err(|source| {
                TestkitError::io(
                    format!("binding an upstream to 127.0.0.1:{}", self.port),
                    source,
                )
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| TestkitError::io("reading the upstream's address", source))?;
        listener.set_nonblocking(true).map_err(|source| {
            TestkitError::io("making the upstream listener non-blocking", source)
        })?;
        let runtime = runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|source| TestkitError::io("building the upstream's tokio runtime", source))?;
        let listener = {
            let _context = runtime.enter();
            TcpListener::from_std(listener).map_err(|source| {
                TestkitError::io("registering the upstream listener with tokio", source)
            })?
        };

        let shared = Arc::new(Shared {
            name: self.name,
            reply: self.reply,
            requests: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
        });
        let (shutdown, shutdown_signal) = oneshot::channel();
        let thread = thread::Builder::new()
            .name(format!("upstream-{}", shared.name))
            .spawn({
                let shared = Arc::clone(&shared);
                move || runtime.block_on(serve(listener, shared, shutdown_signal))
            })
            .map_err(|source| TestkitError::io("spawning the upstream's thread", source))?;
        Ok(Upstream {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }
}

/// A running HTTP upstream.
///
/// Dropping it (or calling [`Upstream::stop`]) stops accepting, lets requests in flight
/// finish (for up to two seconds), closes the connections and joins its thread; the port
/// refuses connections after.
///
/// ```no_run
/// let up = switchyard_testkit::Upstream::builder().name("shard-a").respond(200, "ok").start()?;
/// // … send a request through the proxy to up.url() …
/// assert_eq!(up.request_count(), 1);
/// assert_eq!(up.requests()[0].path(), "/");
/// # Ok::<(), switchyard_testkit::TestkitError>(())
/// ```
#[derive(Debug)]
pub struct Upstream {
    /// Where it listens.
    addr: SocketAddr,
    /// State shared with the server thread: the reply and the recorded requests.
    shared: Arc<Shared>,
    /// Tells the server thread to shut down; `None` once sent.
    shutdown: Option<oneshot::Sender<()>>,
    /// The server thread, joined on stop so nothing outlives the handle.
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// A builder for an echoing upstream named `upstream`.
    pub fn builder() -> UpstreamBuilder {
        UpstreamBuilder {
            name: "upstream".to_owned(),
            reply: Reply::default(),
            invalid: None,
            port: 0,
        }
    }

    /// Starts an echoing upstream called `name`.
    ///
    /// # Errors
    ///
    /// As for [`UpstreamBuilder::start`].
    pub fn echo(name: &str) -> Result<Self> {
        Self::builder().name(name).start()
    }

    /// The name it answers with.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock_requests().clone()
    }

    /// The most recent request, if any arrived.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.lock_requests().last().cloned()
    }

    /// How many requests have arrived, counted before they are answered.
    pub fn request_count(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst)
    }

    /// Stops serving, as an upstream outage would; the port refuses connections
    /// afterwards. Does nothing the second time.
    pub fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // Fails only if the server thread is already gone, which is the goal anyway.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Request handlers run as tokio tasks, whose panics the runtime contains, so the
            // thread itself has nothing to report.
            let _ = thread.join();
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the server thread and the handle share.
#[derive(Debug)]
struct Shared {
    /// The upstream's name.
    name: String,
    /// How it answers.
    reply: Reply,
    /// Every request so far, for [`Upstream::requests`].
    requests: Mutex<Vec<RecordedRequest>>,
    /// How many requests arrived; bumped as each one arrives.
    count: AtomicUsize,
    /// How many requests are being answered; shutdown waits for these, not for idle
    /// keep-alive connections whose client may never come back to close them.
    in_flight: AtomicUsize,
}

impl Shared {
    /// The recorded requests; a panic elsewhere never hides them.
    fn lock_requests(&self) -> std::sync::MutexGuard<'_, Vec<RecordedRequest>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What woke the accept loop.
enum Event {
    /// A connection arrived (or accepting failed).
    Accepted(std::io::Result<(tokio::net::TcpStream, SocketAddr)>),
    /// The handle asked for shutdown, or was dropped.
    Shutdown,
}

/// Accepts and serves connections until `shutdown` fires, then drains them gracefully.
async fn serve(listener: TcpListener, shared: Arc<Shared>, mut shutdown: oneshot::Receiver<()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let event = poll_fn(|cx| {
            if Pin::new(&mut shutdown).poll(cx).is_ready() {
                return Poll::Ready(Event::Shutdown);
            }
            listener.poll_accept(cx).map(Event::Accepted)
        })
        .await;
        let stream = match event {
            Event::Shutdown => break,
            Event::Accepted(Ok((stream, _peer))) => stream,
            // Per-connection failures (the client reset first) or too many open files;
            // keep serving, without spinning on the latter.
            Event::Accepted(Err(_)) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        let service = service_fn(move |request| {
            let shared = Arc::clone(&shared);
            async move { Ok::<_, Infallible>(answer(request, &shared).await) }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            // A client hanging up mid-request is the client's business.
            let _ = connection.await;
        });
    }
    drop(listener);
    // The first poll of `drained` tells every connection to finish: idle HTTP/1 connections
    // close at once, HTTP/2 ones get a GOAWAY. A client that is not being polled (a test
    // blocked in this handle's `Drop`) never completes the HTTP/2 close, so once no request
    // is in flight the remaining connections are simply dropped with the runtime.
    let mut drained = pin!(graceful.shutdown());
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    loop {
        if tokio::time::timeout(DRAIN_POLL, drained.as_mut())
            .await
            .is_ok()
            || shared.in_flight.load(Ordering::SeqCst) == 0
            || tokio::time::Instant::now() >= deadline
        {
            break;
        }
    }
}

/// Counts a request as in flight while it lives, including when hyper drops it early.
struct InFlight<'s>(&'s AtomicUsize);

impl<'s> InFlight<'s> {
    /// Counts one more request in `counter`.
    fn enter(counter: &'s AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Records `request`, then answers it as the upstream's reply says.
async fn answer(request: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let _in_flight = InFlight::enter(&shared.in_flight);
    shared.count.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    // A body cut short still gets recorded, with what arrived.
    let body = body
        .collect()
        .await
        .map(|collected| collected.to_bytes().to_vec())
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect::<Vec<_>>();
    let host = parts
        .headers
        .get(hyper::header::HOST)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .or_else(|| parts.uri.authority().map(ToString::to_string));
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), ToString::to_string),
        host,
        version: format!("{:?}", parts.version),
        headers,
        body,
    };
    let response = shared.reply.render(&shared.name, &recorded);
    shared.lock_requests().push(recorded);
    if !shared.reply.delay.is_zero() {
        tokio::time::sleep(shared.reply.delay).await;
    }
    response
}
