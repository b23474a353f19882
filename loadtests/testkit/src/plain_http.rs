//! A blocking HTTP/1.0 client for tests and examples that poll a server
//! many times and want nothing between them and the socket: one request
//! per connection, no chunked answers, every step bounded by a timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long connecting, writing and reading may each take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends one request to `addr` with the `headers` given (`Host` among them
/// if it matters) and a body, if any, as `application/json`. Returns the
/// status (0 when the connection or the exchange failed) and the body.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, TIMEOUT) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    let mut head = format!("{method} {path} HTTP/1.0\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("host: {addr}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    // Some servers keep even an HTTP/1.0 connection open; the answer is
    // read up to its Content-Length anyway.
    head.push_str("connection: close\r\n\r\n");
    head.push_str(body.unwrap_or(""));
    if stream.write_all(head.as_bytes()).is_err() {
        return (0, String::new());
    }
    let response = read_response(&mut stream);
    if response.is_empty() {
        return (0, String::new());
    }
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

/// The response on `stream`: up to the end of its body as its
/// Content-Length gives it, else up to the end of the connection.
fn read_response(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
            let length = head.lines().find_map(|l| {
                l.strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            if length.is_some_and(|n| bytes.len() >= end + 4 + n) {
                break;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
