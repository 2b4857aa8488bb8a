//! The few HTTP/1.1 exchanges `ringmq ctl` makes with the admin API: one
//! request per connection (`Connection: close`), its response read to the
//! end of the stream. Building the request and parsing the response are
//! pure (`request_bytes`, `parse_response`); `exchange` does the I/O with a
//! blocking socket and timeouts. A CLI making one or two calls needs no
//! HTTP client crate.

use crate::limits;
use base64::Engine;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// Where and as whom to ask.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub username: String,
    pub password: String,
}

/// A response: status code and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The bytes of one request. `body` is JSON when given.
pub fn request_bytes(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Vec<u8> {
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", endpoint.username, endpoint.password));
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {token}\r\n\
         Accept: application/json\r\nUser-Agent: ringmq-ctl/{}\r\nConnection: close\r\n",
        endpoint.addr,
        env!("CARGO_PKG_VERSION")
    );
    let body = body.unwrap_or_default();
    if !body.is_empty() || method != "GET" {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Parses a whole response (everything up to the end of the stream): the
/// status line, the headers, and a body framed by `Content-Length`, by
/// chunked transfer coding, or by the end of the stream.
pub fn parse_response(bytes: &[u8]) -> Result<HttpResponse, String> {
    let end = find(bytes, b"\r\n\r\n").ok_or("the response ended inside its headers")?;
    let head = std::str::from_utf8(&bytes[..end]).map_err(|_| "the response head is not UTF-8")?;
    let rest = &bytes[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next(), parts.next());
    if !version.is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(format!("not an HTTP/1 response: {status_line:?}"));
    }
    let status = code
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (100..=999).contains(c))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or_else(|| format!("the body ended after {} of {n} bytes", rest.len()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse { status, body })
}

/// The body of a chunked transfer coding (RFC 9112 §7.1), trailers ignored.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let eol = find(rest, b"\r\n").ok_or("a chunk size line is cut short")?;
        let line = std::str::from_utf8(&rest[..eol]).map_err(|_| "bad chunk size line")?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or("a chunk is cut short")?;
        body.extend_from_slice(chunk);
        rest = rest
            .get(size..)
            .and_then(|r| r.strip_prefix(b"\r\n"))
            .ok_or("a chunk does not end with CRLF")?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends one request and reads its response, each step bounded by
/// `limits::CTL_HTTP_TIMEOUT` and the response by
/// `limits::CTL_RESPONSE_MAX_BYTES`.
pub fn exchange(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<HttpResponse, String> {
    let addr = endpoint.addr;
    let cannot =
        |e: std::io::Error| format!("cannot reach the admin API at {addr} (api.bind): {e}");
    let mut stream = TcpStream::connect_timeout(&addr, limits::CTL_HTTP_TIMEOUT).map_err(cannot)?;
    stream
        .set_read_timeout(Some(limits::CTL_HTTP_TIMEOUT))
        .map_err(cannot)?;
    stream
        .set_write_timeout(Some(limits::CTL_HTTP_TIMEOUT))
        .map_err(cannot)?;
    stream
        .write_all(&request_bytes(endpoint, method, path, body))
        .map_err(cannot)?;
    let mut response = Vec::new();
    let cap = limits::CTL_RESPONSE_MAX_BYTES as u64;
    (&mut stream)
        .take(cap + 1)
        .read_to_end(&mut response)
        .map_err(|e| format!("reading the admin API's answer from {addr}: {e}"))?;
    if response.len() as u64 > cap {
        return Err(format!(
            "the admin API's answer from {addr} is over {cap} bytes; not read"
        ));
    }
    parse_response(&response).map_err(|e| format!("the answer from {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint {
        Endpoint {
            addr: "127.0.0.1:18083".parse().unwrap(),
            username: "admin".into(),
            password: "pw:x".into(),
        }
    }

    #[test]
    fn requests_carry_basic_auth_and_close() {
        let get =
            String::from_utf8(request_bytes(&endpoint(), "GET", "/api/v5/nodes", None)).unwrap();
        assert!(get.starts_with("GET /api/v5/nodes HTTP/1.1\r\nHost: 127.0.0.1:18083\r\n"));
        // base64("admin:pw:x")
        assert!(
            get.contains("Authorization: Basic YWRtaW46cHc6eA==\r\n"),
            "{get}"
        );
        assert!(get.contains("Connection: close\r\n"));
        assert!(!get.contains("Content-Length"));
        assert!(get.ends_with("\r\n\r\n"));
        let put = request_bytes(&endpoint(), "PUT", "/x", Some(br#"{"a":1}"#));
        let put = String::from_utf8(put).unwrap();
        assert!(put.contains("Content-Length: 7\r\n"));
        assert!(put.ends_with("\r\n\r\n{\"a\":1}"));
        let empty = String::from_utf8(request_bytes(&endpoint(), "PUT", "/x", None)).unwrap();
        assert!(empty.contains("Content-Length: 0\r\n"));
    }

    #[test]
    fn bodies_by_length_by_chunks_or_to_the_end() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"[]"[..]));
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"abcde"[..]));
        let r = parse_response(b"HTTP/1.0 503 Service Unavailable\r\n\r\nbusy").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (503, &b"busy"[..]));
    }

    #[test]
    fn broken_responses_say_what_is_wrong() {
        for (bytes, says) in [
            (&b""[..], "inside its headers"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc",
                "ended after 3 of 9",
            ),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1"),
            (b"HTTP/1.1 abc OK\r\n\r\n", "bad status line"),
            (b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n", "bad header"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                "Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
                "cut short",
            ),
        ] {
            let e = parse_response(bytes).unwrap_err();
            assert!(e.contains(says), "{e:?} should say {says:?}");
        }
    }
}
