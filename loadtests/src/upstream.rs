//! `loadtest upstream`: the fast demo and test upstream that plays an app server behind
//! the gateway.
//!
//! It answers every request, whatever the method and path, with a JSON document describing
//! what arrived, so one response through the gateway shows which upstream was chosen and
//! which headers the gateway added. It speaks HTTP/1.1 with keep-alive and cleartext
//! HTTP/2 with prior knowledge (h2c), detected per connection.
//!
//! ```text
//! loadtest upstream --listen 127.0.0.1:8081 --name shard-a
//! curl -s -H 'x-tenant-id: t-1' 'http://127.0.0.1:8081/orders?status=503&delay_ms=20'
//! ```
//!
//! # The echo
//!
//! ```json
//! {
//!   "upstream": "shard-a",
//!   "method": "GET",
//!   "path": "/orders",
//!   "query": "page=2",
//!   "version": "HTTP/1.1",
//!   "host": "10.0.0.5:8081",
//!   "tenant": { "id": "t-1", "slug": "acme", "target": "shard-a", "region": "eu-west" },
//!   "request_id": "01HZX3M6Q2",
//!   "forwarded": { "for": "203.0.113.7", "proto": "https", "host": "acme.app.example.test" },
//!   "body_bytes": 0
//! }
//! ```
//!
//! `tenant` comes from `x-tenant-id`, `x-tenant-slug`, `x-tenant-target` and
//! `x-tenant-region`, `request_id` from `x-request-id`, `forwarded` from
//! `x-forwarded-for`, `-proto` and `-host`; `host` is the `Host` header (HTTP/1) or
//! `:authority` (HTTP/2); `query` is the query string without `?`. A header that did not
//! arrive is `null`; one that arrived more than once shows all its values joined with
//! `, `, so a gateway that duplicates a tenant header is caught. Bytes that are not UTF-8
//! show as U+FFFD.
//!
//! # Response headers
//!
//! | header | value |
//! | --- | --- |
//! | `x-upstream` | the upstream's `--name` |
//! | `x-seen-tenant-id` | every `x-tenant-id` value the request carried |
//! | `x-seen-tenant-slug` | every `x-tenant-slug` value |
//! | `x-seen-tenant-target` | every `x-tenant-target` value |
//! | `x-seen-tenant-region` | every `x-tenant-region` value |
//! | `x-seen-request-id` | every `x-request-id` value |
//! | `content-type` | `application/json` (`text/plain; charset=utf-8` on refusals) |
//! | `cache-control` | `public, max-age=SECS` when the request asked with `cache=SECS` |
//!
//! A `x-seen-*` header is absent when its request header was, and on every answer to
//! `mirror=0`: benchmarks ask for that so each proxy gets the same response headers back,
//! whatever it added to the request. The mirrors are named
//! `x-seen-*` rather than repeating the request headers' names so they can never be
//! mistaken for headers the gateway itself sets on responses (it sets `x-request-id`).
//! Refusals (400, 413) carry `x-upstream` and the mirrors too, so a test can tell the
//! upstream's 400 from the gateway's.
//!
//! # Query parameters
//!
//! | parameter | range | effect |
//! | --- | --- | --- |
//! | `delay_ms=N` | 0 to 60000 | waits N milliseconds before answering |
//! | `status=NNN` | 200 to 599 | answers with this status, still with the echo |
//! | `bytes=N` | 0 to 67108864 | pads the body with trailing spaces to exactly N bytes |
//! | `cache=SECS` | 0 to 31536000 | adds `Cache-Control: public, max-age=SECS` |
//! | `mirror=0` | 0 or 1 | leaves out the `x-seen-*` headers (refusals keep them) |
//!
//! Values are decimal digits; the last occurrence wins; unknown parameters are ignored
//! (cache busters welcome). A value outside its range is refused with a 400 whose
//! one-line text body names the parameter, the range and the value; it is never clamped.
//! Informational statuses (1xx) are refused because they cannot end a response (hyper
//! would send a 500 in their place). A padded body stays valid JSON; the echo itself is
//! never cut, so `bytes` below its size changes nothing. 204, 205 and 304 answers have no
//! body, as HTTP requires.
//!
//! # Request bodies
//!
//! Read and discarded as they stream in, never buffered; their size is echoed as
//! `body_bytes`. A body over 64 MiB ([`MAX_REQUEST_BODY`]) gets 413, refused at once when
//! its `content-length` says so.
//!
//! # Shutdown
//!
//! When the shutdown future passed to [`serve`] completes (for the binary: SIGTERM or
//! Ctrl-C) the listener closes, idle connections close, HTTP/2 connections get a GOAWAY,
//! and requests in flight get the [`Config::grace`] to finish (default 5 s); then
//! [`serve`] returns. Requests still running after the grace are cut off and counted in
//! [`Served::cut_off`]; the binary exits 0 either way, since it stopped as asked.
//!
//! # Cost per request
//!
//! The echo borrows from the request; the response allocates its body (once, sized for
//! the padding), its header map and, with `cache`, the `cache-control` value. Mirrored
//! header values share the request's bytes.

mod answer;
mod behaviour;
mod config;
mod echo;
mod error;
mod signal;

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io::Write as _;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

pub use answer::MAX_REQUEST_BODY;
pub use behaviour::{MAX_CACHE_SECS, MAX_DELAY_MS, MAX_PAD_BYTES, QUERY_HELP};
pub use config::{Config, DEFAULT_GRACE, MAX_NAME_LEN, UpstreamName};
pub use error::UpstreamError;

use signal::Termination;

/// How often a shutdown checks whether the requests in flight are done.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// How long the accept loop rests after an accept error such as too many open files,
/// so it does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// What a server did, reported once it has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Served {
    /// Connections accepted over the server's life.
    pub connections: u64,
    /// Requests still unanswered when the shutdown grace ran out; 0 after a clean drain.
    pub cut_off: usize,
}

/// Binds `addr` for [`serve`]; must run inside a tokio runtime.
///
/// # Errors
///
/// [`UpstreamError::Bind`], naming `addr`, when the address cannot be bound.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, UpstreamError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| UpstreamError::Bind { addr, source })
}

/// Serves connections from `listener` until `shutdown` completes, then drains them (see
/// the module docs) and reports.
///
/// This is exactly what the binary runs; tests pass a future of their own as `shutdown`.
/// Connections are served on the current tokio runtime's worker threads.
pub async fn serve<F>(listener: TcpListener, config: Config, shutdown: F) -> Served
where
    F: Future<Output = ()>,
{
    let Config { name, grace } = config;
    let shared = Arc::new(Shared {
        name,
        in_flight: AtomicUsize::new(0),
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No header-read timeout: hyper's also runs while a keep-alive connection is idle, so
    // it would close the gateway's pooled connections after 30 s (racing its reuse of
    // them), and it costs a timer allocation per request.
    builder.http1().header_read_timeout(None);
    let graceful = GracefulShutdown::new();
    let mut connections = 0;
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = poll_fn(|cx| {
            if shutdown.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            listener.poll_accept(cx).map(Some)
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok((stream, _peer))) => stream,
            // The client reset before we accepted, or the process is out of descriptors:
            // keep serving either way.
            Some(Err(_)) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        connections += 1;
        let connection = builder.serve_connection(io(stream), {
            let shared = Arc::clone(&shared);
            service_fn(move |request| {
                // Counted as soon as hyper hands the request over, before it is polled.
                let request_in_flight = InFlight::enter(&shared);
                async move {
                    let response = answer::answer(request, &request_in_flight.0.name).await;
                    drop(request_in_flight);
                    Ok::<_, Infallible>(response)
                }
            })
        });
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            // A client hanging up mid-request is the client's business.
            let _ = connection.await;
        });
    }
    drop(listener);
    let cut_off = drain(graceful, &shared.in_flight, grace).await;
    Served {
        connections,
        cut_off,
    }
}

/// Runs the upstream as the binary does: a tokio runtime with `threads` workers, `listen`
/// bound, one line `listening on IP:PORT` on stdout (the bound address, useful with port
/// 0), then [`serve`] until SIGTERM or SIGINT, with a line on stderr when one arrives.
///
/// # Errors
///
/// [`UpstreamError::Bind`] when `listen` cannot be bound, [`UpstreamError::Startup`] when
/// the runtime or the signal handlers cannot be set up.
pub fn run(
    listen: SocketAddr,
    threads: NonZeroUsize,
    config: Config,
) -> Result<Served, UpstreamError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.get())
        .thread_name("upstream")
        .enable_io()
        .enable_time()
        .build()
        .map_err(UpstreamError::startup("building the tokio runtime"))?;
    runtime.block_on(async move {
        let listener = bind(listen).await?;
        let addr = listener
            .local_addr()
            .map_err(UpstreamError::startup("reading the bound address"))?;
        // Before the announcement, so a script may signal as soon as it reads it.
        let termination = Termination::register()?;
        // A reader that has gone away is no reason to stop serving.
        let _ = writeln!(std::io::stdout().lock(), "listening on {addr}");
        let grace = config.grace;
        let shutdown = async move {
            let signal = termination.received().await;
            eprintln!(
                "loadtest upstream: {signal} received, finishing requests in flight (grace {}s)",
                grace.as_secs_f64()
            );
        };
        // Spawned so the accept loop runs on a worker, not on this thread: `--threads 1`
        // then means one thread doing the work.
        match tokio::spawn(serve(listener, config, shutdown)).await {
            Ok(served) => Ok(served),
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    })
}

/// A connection's socket as hyper wants it, with Nagle's algorithm off: answers go out
/// as soon as they are written instead of waiting for the client's ACK.
fn io(stream: TcpStream) -> TokioIo<TcpStream> {
    // Failing leaves the socket usable, only slower.
    let _ = stream.set_nodelay(true);
    TokioIo::new(stream)
}

/// Tells every connection to finish and waits until they have, until no request is in
/// flight, or until `grace` has passed; returns how many requests were still in flight.
///
/// Waiting for requests rather than connections matters for HTTP/2: closing one takes a
/// round trip with the client, and a client that is not reading would hold shutdown up.
async fn drain(graceful: GracefulShutdown, in_flight: &AtomicUsize, grace: Duration) -> usize {
    let deadline = Instant::now() + grace;
    let mut closed = pin!(graceful.shutdown());
    loop {
        if tokio::time::timeout(DRAIN_POLL, closed.as_mut())
            .await
            .is_ok()
        {
            return 0;
        }
        let running = in_flight.load(Ordering::Acquire);
        if running == 0 || Instant::now() >= deadline {
            return running;
        }
    }
}

/// What the accept loop shares with every request.
#[derive(Debug)]
struct Shared {
    /// The upstream's name, for the echo and `x-upstream`.
    name: UpstreamName,
    /// Requests being answered; shutdown waits for these, not for idle connections.
    in_flight: AtomicUsize,
}

/// Counts one request as in flight for as long as it lives, including when hyper drops
/// it early because the client went away; holds the shared state the request needs.
struct InFlight(Arc<Shared>);

impl InFlight {
    /// Counts one more request in flight.
    fn enter(shared: &Arc<Shared>) -> Self {
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(shared))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
