//! The HTTP/1.1 side of `secvec serve`: every connection on its own thread, with a deadline on
//! everything a client sends, so a slow or stalled client holds its own connection and nothing
//! else. Complete requests queue for one handler (`serve`'s batching loop).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secvec_llm::wire::{ErrorBody, ErrorDetail};

pub struct Limits {
    /// How long a connection may wait, idle, for its next request before it is closed.
    pub idle: Duration,
    /// How long a client may take to send one request, headers and body.
    pub request: Duration,
    pub max_header_bytes: u64,
    pub max_body_bytes: u64,
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            idle: Duration::from_secs(60),
            request: Duration::from_secs(60),
            max_header_bytes: 64 << 10,
            max_body_bytes: 16 << 20,
            max_connections: 256,
        }
    }
}

pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn json(body: String) -> Response {
        Response {
            status: 200,
            content_type: "application/json",
            body,
        }
    }

    /// Prometheus' text exposition format.
    pub fn text(body: String) -> Response {
        Response {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body,
        }
    }

    /// An error in the OpenAI protocol's shape.
    pub fn error(status: u16, message: &str) -> Response {
        let body = serde_json::to_string(&ErrorBody {
            error: ErrorDetail {
                message: message.to_string(),
                kind: "invalid_request_error".into(),
                code: None,
            },
        })
        .expect("errors serialise");
        Response {
            status,
            content_type: "application/json",
            body,
        }
    }
}

/// A complete request and where its answer goes.
pub type Job = (Request, Sender<Response>);

/// Accepts connections on `listener` for as long as it lasts, each read and written on its own
/// thread; each complete request goes to `jobs`.
pub fn accept(listener: TcpListener, limits: Limits, jobs: Sender<Job>) {
    let limits = Arc::new(limits);
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            // Out of file descriptors, most likely: let connections close before the next.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if stream.set_write_timeout(Some(limits.request)).is_err() {
            continue;
        }
        if open.fetch_add(1, Ordering::SeqCst) >= limits.max_connections {
            open.fetch_sub(1, Ordering::SeqCst);
            let busy = Response::error(503, "the server has too many connections open; try again");
            let _ = write_response(&stream, &busy, false, false);
            continue;
        }
        let (limits, jobs, open) = (limits.clone(), jobs.clone(), open.clone());
        std::thread::spawn(move || {
            connection(&stream, &limits, &jobs);
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Reads from the connection until `until`, however the client trickles its bytes.
struct Deadline<'a> {
    stream: &'a TcpStream,
    until: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        match self.stream.read(buf) {
            // An expired socket timeout reads as WouldBlock on Unix.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::ErrorKind::TimedOut.into()),
            other => other,
        }
    }
}

/// Why a request cannot be read; the connection is closed after the answer.
struct Refused(u16, String);

struct Head {
    method: String,
    path: String,
    length: u64,
    keep_alive: bool,
    expect_continue: bool,
}

fn connection(stream: &TcpStream, limits: &Limits, jobs: &Sender<Job>) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(Deadline {
        stream,
        until: Instant::now(),
    });
    loop {
        reader.get_mut().until = Instant::now() + limits.idle;
        // A client that closes, or says nothing for `idle`, is done.
        if !reader.fill_buf().is_ok_and(|b| !b.is_empty()) {
            return;
        }
        reader.get_mut().until = Instant::now() + limits.request;
        let (request, keep_alive, head_only) = match read_request(&mut reader, stream, limits) {
            Ok(read) => read,
            Err(Refused(status, message)) => {
                let _ = write_response(stream, &Response::error(status, &message), false, false);
                // Closing with bytes unread would reset the connection, and the client could lose
                // the answer: say we are done, then read what is in flight for a moment.
                let _ = stream.shutdown(Shutdown::Write);
                reader.get_mut().until = Instant::now() + Duration::from_secs(1);
                let _ = io::copy(&mut reader.by_ref().take(1 << 20), &mut io::sink());
                return;
            }
        };
        let (reply, answer) = channel();
        if jobs.send((request, reply)).is_err() {
            return;
        }
        let Ok(response) = answer.recv() else { return };
        if write_response(stream, &response, keep_alive, head_only).is_err() || !keep_alive {
            return;
        }
    }
}

/// One request, and whether the connection stays open after it and answers without a body.
fn read_request(
    reader: &mut BufReader<Deadline<'_>>,
    stream: &TcpStream,
    limits: &Limits,
) -> Result<(Request, bool, bool), Refused> {
    let head = read_head(reader, limits)?;
    if head.length > limits.max_body_bytes {
        return Err(Refused(
            413,
            format!("the body is over {} bytes", limits.max_body_bytes),
        ));
    }
    if head.expect_continue {
        let mut w = stream;
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|e| Refused(400, format!("writing 100 Continue: {e}")))?;
    }
    // The body grows as its bytes arrive, not as its declared length says.
    let mut body = Vec::new();
    reader
        .by_ref()
        .take(head.length)
        .read_to_end(&mut body)
        .map_err(|e| timed_out(e, limits))?;
    if (body.len() as u64) < head.length {
        return Err(Refused(
            400,
            format!(
                "the connection closed after {} of the {} body bytes its Content-Length declared",
                body.len(),
                head.length
            ),
        ));
    }
    let head_only = head.method == "HEAD";
    Ok((
        Request {
            method: head.method,
            path: head.path,
            body,
        },
        head.keep_alive,
        head_only,
    ))
}

fn timed_out(e: io::Error, limits: &Limits) -> Refused {
    if e.kind() == io::ErrorKind::TimedOut {
        Refused(
            408,
            format!("the request did not arrive within {} s", limits.request.as_secs_f64()),
        )
    } else {
        Refused(400, format!("reading the request: {e}"))
    }
}

fn read_head(reader: &mut BufReader<Deadline<'_>>, limits: &Limits) -> Result<Head, Refused> {
    let mut budget = limits.max_header_bytes;
    let mut line = || -> Result<String, Refused> {
        let mut bytes = Vec::new();
        reader
            .by_ref()
            .take(budget)
            .read_until(b'\n', &mut bytes)
            .map_err(|e| timed_out(e, limits))?;
        budget -= bytes.len() as u64;
        if bytes.last() != Some(&b'\n') {
            return Err(if budget == 0 {
                Refused(
                    431,
                    format!("the request's head is over {} bytes", limits.max_header_bytes),
                )
            } else {
                Refused(400, "the connection closed inside the request's head".into())
            });
        }
        let text = String::from_utf8(bytes).map_err(|_| Refused(400, "the request's head is not UTF-8".into()))?;
        Ok(text.trim_end_matches(['\r', '\n']).to_string())
    };
    let request_line = line()?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(path), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refused(400, format!("malformed request line {request_line:?}")));
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        other => return Err(Refused(505, format!("{other} is not served; use HTTP/1.1"))),
    };
    let mut head = Head {
        method: method.to_string(),
        path: path.to_string(),
        length: 0,
        keep_alive: http11,
        expect_continue: false,
    };
    let mut length: Option<u64> = None;
    loop {
        let header = line()?;
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(Refused(400, format!("malformed header {header:?}")));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                let n = value
                    .parse::<u64>()
                    .map_err(|_| Refused(400, format!("Content-Length {value:?} is not a length")))?;
                // Two lengths that disagree are how requests get smuggled.
                if length.is_some_and(|l| l != n) {
                    return Err(Refused(400, "two different Content-Length headers".into()));
                }
                length = Some(n);
            }
            "transfer-encoding" => {
                return Err(Refused(
                    501,
                    "request bodies with a Transfer-Encoding are not supported; send Content-Length".into(),
                ))
            }
            "connection" => {
                let value = value.to_ascii_lowercase();
                if value.contains("close") {
                    head.keep_alive = false;
                } else if value.contains("keep-alive") {
                    head.keep_alive = true;
                }
            }
            "expect" => head.expect_continue = value.eq_ignore_ascii_case("100-continue"),
            _ => {}
        }
    }
    head.length = length.unwrap_or(0);
    Ok(head)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

fn write_response(mut stream: &TcpStream, r: &Response, keep_alive: bool, head_only: bool) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    if !head_only {
        out.push_str(&r.body);
    }
    stream.write_all(out.as_bytes())?;
    stream.flush()
}
