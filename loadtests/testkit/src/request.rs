//! What an [`Upstream`](crate::Upstream) saw of one request.

/// One request as an upstream received it, in plain owned types so tests need no HTTP crate
/// to inspect it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// The method, e.g. `GET`.
    pub method: String,
    /// Path and query as sent on the request line (HTTP/1) or `:path` (HTTP/2), e.g.
    /// `/orders?page=2`; what a proxy forwarded, after any rewriting.
    pub path_and_query: String,
    /// The `Host` header, or for HTTP/2 the `:authority`, which a proxy routes by.
    pub host: Option<String>,
    /// `HTTP/1.1` or `HTTP/2.0`, to tell which protocol a proxy spoke upstream.
    pub version: String,
    /// Every header in arrival order, names lowercase; repeated headers appear repeatedly.
    pub headers: Vec<(String, String)>,
    /// The full request body.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive), if it was sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).next()
    }

    /// Every value of header `name` (case-insensitive), in arrival order.
    pub fn header_values<'r, 'n>(
        &'r self,
        name: &'n str,
    ) -> impl Iterator<Item = &'r str> + use<'r, 'n> {
        self.headers
            .iter()
            .filter(move |(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(path, _)| path)
    }

    /// The query string without the `?`, if there is one.
    pub fn query(&self) -> Option<&str> {
        self.path_and_query.split_once('?').map(|(_, query)| query)
    }
}
