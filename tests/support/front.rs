//! An HTTP front on 127.0.0.1:0 that relays GET requests to a server on 127.0.0.1, and can
//! misbehave on chosen paths a chosen number of times. It takes both request forms: an
//! origin-form target (`GET /path`) goes to its backend, so tests point a mirror URL at it; an
//! absolute-form target (`GET http://127.0.0.1:PORT/path`) is what a client sends to a forward
//! proxy named by `http_proxy`, so the same front is the proxy of the proxy tests. Any host
//! but 127.0.0.1 is answered 403 and never connected to.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// What the front does instead of relaying a response faithfully.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// Answer with this status and an empty body.
    Status(u16),
    /// Send the head (full Content-Length) and this many body bytes, then close the connection.
    CutAfter(usize),
    /// Send the head and this many body bytes, then say nothing more until the front is dropped.
    StallAfter(usize),
}

/// One request as the front received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The request target exactly as sent: `/path` or `http://host:port/path`.
    pub target: String,
    /// The path part of it.
    pub path: String,
}

type Troubles = Arc<Mutex<HashMap<String, VecDeque<Trouble>>>>;

/// A running front; stopped (and every stalled connection closed) when dropped.
pub struct Front {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    troubles: Troubles,
    stop: Arc<(Mutex<bool>, Condvar)>,
    stopping: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Front {
    /// Relays origin-form requests to `backend` (`http://127.0.0.1:PORT`).
    pub fn start(backend: &str) -> Front {
        let backend = authority(backend).expect("the backend is http://127.0.0.1:PORT");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let troubles: Troubles = Arc::default();
        let stop: Arc<(Mutex<bool>, Condvar)> = Arc::default();
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, troubles, stop, stopping) = (
                seen.clone(),
                troubles.clone(),
                stop.clone(),
                stopping.clone(),
            );
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let conn = Conn {
                        backend: backend.clone(),
                        seen: seen.clone(),
                        troubles: troubles.clone(),
                        stop: stop.clone(),
                    };
                    std::thread::spawn(move || conn.serve(stream));
                }
            })
        };
        Front {
            url: format!("http://{addr}"),
            seen,
            troubles,
            stop,
            stopping,
            addr,
            thread: Some(thread),
        }
    }

    /// The next `times` requests for `path` meet `trouble`; later ones are relayed.
    pub fn trouble(&self, path: &str, trouble: Trouble, times: usize) {
        self.troubles
            .lock()
            .expect("troubles lock")
            .entry(path.to_string())
            .or_default()
            .extend(std::iter::repeat_n(trouble, times));
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }

    /// How many requests for `path` were received.
    pub fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path == path).count()
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let (stopped, changed) = &*self.stop;
        *stopped.lock().expect("stop lock") = true;
        changed.notify_all();
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `127.0.0.1:PORT` from `http://127.0.0.1:PORT[/...]`; `None` for any other host.
fn authority(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    (host == "127.0.0.1" && port.parse::<u16>().is_ok()).then(|| authority.to_string())
}

struct Conn {
    backend: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    troubles: Troubles,
    stop: Arc<(Mutex<bool>, Condvar)>,
}

impl Conn {
    fn serve(self, mut client: TcpStream) {
        let mut reader = BufReader::new(match client.try_clone() {
            Ok(s) => s,
            Err(_) => return,
        });
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                return;
            }
            let mut header = String::new();
            while reader.read_line(&mut header).unwrap_or(0) > 2 {
                header.clear();
            }
            let target = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .to_string();
            let (upstream, path) = if target.starts_with('/') {
                (Some(self.backend.clone()), target.clone())
            } else {
                let path = target
                    .strip_prefix("http://")
                    .and_then(|rest| rest.find('/').map(|i| rest[i..].to_string()))
                    .unwrap_or_else(|| "/".to_string());
                (authority(&target), path)
            };
            self.seen.lock().expect("seen lock").push(Seen {
                target: target.clone(),
                path: path.clone(),
            });
            let Some(upstream) = upstream else {
                let _ = respond(&mut client, 403, b"only 127.0.0.1 is relayed", None);
                return;
            };
            let trouble = self
                .troubles
                .lock()
                .expect("troubles lock")
                .get_mut(&path)
                .and_then(VecDeque::pop_front);
            if let Some(Trouble::Status(status)) = trouble {
                if respond(&mut client, status, b"", None).is_err() {
                    return;
                }
                continue;
            }
            let Some((status, body)) = fetch(&upstream, &path) else {
                let _ = respond(&mut client, 502, b"backend unreachable", None);
                return;
            };
            match trouble {
                Some(Trouble::CutAfter(n)) => {
                    let _ = respond(&mut client, status, &body, Some(n));
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    return;
                }
                Some(Trouble::StallAfter(n)) => {
                    let _ = respond(&mut client, status, &body, Some(n));
                    let (stopped, changed) = &*self.stop;
                    let mut stopped = stopped.lock().expect("stop lock");
                    while !*stopped {
                        stopped = changed.wait(stopped).expect("stop lock");
                    }
                    return;
                }
                _ => {
                    if respond(&mut client, status, &body, None).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Writes a response whose head announces all of `body`, then `limit` bytes of it (or all).
fn respond(
    client: &mut TcpStream,
    status: u16,
    body: &[u8],
    limit: Option<usize>,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes())?;
    client.write_all(&body[..limit.unwrap_or(body.len()).min(body.len())])?;
    client.flush()
}

/// GET `path` from `authority` (127.0.0.1:PORT): the status and the whole body.
fn fetch(authority: &str, path: &str) -> Option<(u16, Vec<u8>)> {
    let mut upstream = TcpStream::connect(authority).ok()?;
    write!(
        upstream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut reader = BufReader::new(upstream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).ok()?;
    let status: u16 = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let mut length = None;
    let mut header = String::new();
    while reader.read_line(&mut header).ok()? > 2 {
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
        header.clear();
    }
    let mut body = vec![0; length?];
    reader.read_exact(&mut body).ok()?;
    Some((status, body))
}
