//! One request in, one response out: read and count the body, honour the query
//! parameters, and answer with the echo (or a 4xx saying what was refused).
//!
//! Every response, refusals included, carries `x-upstream` and the mirrored headers, so a
//! test going through the gateway can tell an upstream's 400 from the gateway's own.

use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};

use super::behaviour::Behaviour;
use super::config::UpstreamName;
use super::echo::{self, Echo};

/// The largest request body the upstream reads, in bytes: 64 MiB, past any plan's body
/// limit worth testing. Larger bodies get 413.
pub const MAX_REQUEST_BODY: u64 = 64 * 1024 * 1024;

/// Room reserved for an unpadded echo, enough for the usual request so the body is
/// allocated once.
const ECHO_CAPACITY: usize = 512;

/// Headers on a response: `x-upstream`, content type, cache control, five mirrored ones.
const RESPONSE_HEADERS: usize = 8;

/// Why a request body was not read to its end.
enum BodyProblem {
    /// It was longer than [`MAX_REQUEST_BODY`].
    TooLarge,
    /// The client stopped sending it, or sent it malformed.
    Broken(hyper::Error),
}

/// Answers `request` as the upstream called `name`.
pub(crate) async fn answer(
    request: Request<Incoming>,
    name: &UpstreamName,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    // Read the body before anything else, refusals included, so an HTTP/1 connection can
    // carry on with its next request.
    let body_bytes = match discard(body).await {
        Ok(bytes) => bytes,
        Err(BodyProblem::TooLarge) => {
            let message = format!(
                "request body is larger than this upstream's limit of {MAX_REQUEST_BODY} bytes"
            );
            return refuse(
                name,
                &parts.headers,
                StatusCode::PAYLOAD_TOO_LARGE,
                &message,
            );
        }
        Err(BodyProblem::Broken(err)) => {
            let message = format!("request body could not be read: {err}");
            return refuse(name, &parts.headers, StatusCode::BAD_REQUEST, &message);
        }
    };
    let behaviour = match Behaviour::from_query(parts.uri.query()) {
        Ok(behaviour) => behaviour,
        Err(err) => {
            let message = format!("bad query parameter: {err}");
            return refuse(name, &parts.headers, StatusCode::BAD_REQUEST, &message);
        }
    };
    if !behaviour.delay.is_zero() {
        tokio::time::sleep(behaviour.delay).await;
    }
    echo(name, &parts, body_bytes, &behaviour)
}

/// Reads `body` to its end, keeping nothing, and says how many bytes it held.
async fn discard(mut body: Incoming) -> Result<u64, BodyProblem> {
    if body.is_end_stream() {
        return Ok(0);
    }
    // A declared length over the limit is refused before any of it is read.
    if body.size_hint().lower() > MAX_REQUEST_BODY {
        return Err(BodyProblem::TooLarge);
    }
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyProblem::Broken)?;
        if let Some(data) = frame.data_ref() {
            total += data.len() as u64;
            if total > MAX_REQUEST_BODY {
                return Err(BodyProblem::TooLarge);
            }
        }
    }
    Ok(total)
}

/// The echo response: status, headers and (padded) JSON body as `behaviour` asks.
fn echo(
    name: &UpstreamName,
    parts: &Parts,
    body_bytes: u64,
    behaviour: &Behaviour,
) -> Response<Full<Bytes>> {
    let status = behaviour.status;
    // These statuses must not carry content (RFC 9110 §15.3.5, §15.3.6, §15.4.5).
    let has_body = !matches!(
        status,
        StatusCode::NO_CONTENT | StatusCode::RESET_CONTENT | StatusCode::NOT_MODIFIED
    );
    let body = if has_body {
        let mut body = Vec::with_capacity(behaviour.pad_to.max(ECHO_CAPACITY));
        if let Err(err) = Echo::new(name.as_str(), parts, body_bytes).write(&mut body) {
            let message = format!("could not write the echo: {err}");
            return refuse(
                name,
                &parts.headers,
                StatusCode::INTERNAL_SERVER_ERROR,
                &message,
            );
        }
        // Trailing whitespace keeps the padded body a valid JSON document.
        if body.len() < behaviour.pad_to {
            body.resize(behaviour.pad_to, b' ');
        }
        Bytes::from(body)
    } else {
        Bytes::new()
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.reserve(RESPONSE_HEADERS);
    headers.insert(echo::UPSTREAM.clone(), name.header().clone());
    if behaviour.mirror {
        echo::mirror(&parts.headers, headers);
    }
    if has_body {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if let Some(secs) = behaviour.max_age {
        // Digits and ASCII text always make a valid header value.
        if let Ok(value) = HeaderValue::try_from(format!("public, max-age={secs}")) {
            headers.insert(CACHE_CONTROL, value);
        }
    }
    response
}

/// A plain-text refusal with `status`, saying why in one line.
fn refuse(
    name: &UpstreamName,
    request: &HeaderMap,
    status: StatusCode,
    message: &str,
) -> Response<Full<Bytes>> {
    let mut body = String::with_capacity(message.len() + 1);
    body.push_str(message);
    body.push('\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    stamp(name, request, headers);
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Adds the headers every response carries: `x-upstream` and the mirrored ones.
fn stamp(name: &UpstreamName, request: &HeaderMap, response: &mut HeaderMap) {
    response.reserve(RESPONSE_HEADERS);
    response.insert(echo::UPSTREAM.clone(), name.header().clone());
    echo::mirror(request, response);
}
