//! A tiny HTTP/1.1 file server on 127.0.0.1:0 for offline tests, with injectable faults: a path
//! can answer with a status, have its connection dropped a number of times before it is
//! served, or behave as a hostile mirror would (an endless or oversized body, a body dripped
//! one byte a second, a redirect anywhere).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// What the server does instead of serving a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection without answering, this many times.
    Drop(u32),
    /// Answer with this HTTP status, every time.
    Status(u16),
    /// Answer only once [`Server::release`] is called for the path.
    Hold,
    /// Answer 200 with a body that never ends (no Content-Length), until the client leaves.
    Endless,
    /// Serve the file with this many bytes appended; announce the true length in
    /// Content-Length when `announce`, otherwise send none and close after the body.
    Oversized { extra: usize, announce: bool },
    /// Announce the file's length, then send it one byte a second.
    Drip,
    /// Announce this Content-Length, send the file as it is (shorter), then close: only a
    /// client that believes the announcement stops before reading.
    Announce(u64),
    /// Answer 302 with this Location.
    Redirect(String),
}

/// The faults by path, and a condition signalled when one is released.
type Faults = Arc<(Mutex<HashMap<String, Fault>>, Condvar)>;

/// A running server; stopped when dropped.
pub struct Server {
    pub url: String,
    faults: Faults,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves the files under `root`.
    pub fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let faults: Faults = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (root, faults, requests, stop) = (
                root.to_path_buf(),
                faults.clone(),
                requests.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (root, faults, requests) = (root.clone(), faults.clone(), requests.clone());
                    std::thread::spawn(move || serve(stream, &root, &faults, &requests));
                }
            })
        };
        Server {
            url: format!("http://{addr}"),
            faults,
            requests,
            stop,
            addr,
            thread: Some(thread),
        }
    }

    /// Makes requests for `path` (e.g. `/dists/x/InRelease`) fail as `fault` says.
    pub fn fault(&self, path: &str, fault: Fault) {
        self.faults
            .0
            .lock()
            .expect("faults lock")
            .insert(path.to_string(), fault);
    }

    /// Lets held requests for `path` be answered, now and later.
    pub fn release(&self, path: &str) {
        let (faults, released) = &*self.faults;
        faults.lock().expect("faults lock").remove(path);
        released.notify_all();
    }

    /// Waits until `path` has been requested, at most `limit`; whether it was.
    pub fn wait_for_request(&self, path: &str, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let (faults, arrived) = &*self.faults;
        let mut guard = faults.lock().expect("faults lock");
        loop {
            if self.requests().iter().any(|p| p == path) {
                return true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = arrived.wait_timeout(guard, left).expect("faults lock").0;
        }
    }

    /// The paths requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("requests lock").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Answer anything still held, so no serving thread waits forever.
        let (faults, released) = &*self.faults;
        faults
            .lock()
            .expect("faults lock")
            .retain(|_, f| *f != Fault::Hold);
        released.notify_all();
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    mut stream: TcpStream,
    root: &Path,
    faults: &(Mutex<HashMap<String, Fault>>, Condvar),
    requests: &Mutex<Vec<String>>,
) {
    loop {
        let mut reader = BufReader::new(match stream.try_clone() {
            Ok(s) => s,
            Err(_) => return,
        });
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut header = String::new();
        while reader.read_line(&mut header).unwrap_or(0) > 2 {
            header.clear();
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        requests.lock().expect("requests lock").push(path.clone());
        let fault = {
            let (faults, released) = faults;
            let mut faults = faults.lock().expect("faults lock");
            // Wakes a test waiting for this request (held ones wait again just below).
            released.notify_all();
            while faults.get(&path) == Some(&Fault::Hold) {
                faults = released.wait(faults).expect("faults lock");
            }
            match faults.get(&path).cloned() {
                Some(Fault::Drop(n)) if n > 0 => {
                    faults.insert(path.clone(), Fault::Drop(n - 1));
                    Some(Fault::Drop(n))
                }
                other => other,
            }
        };
        let file = || read_confined(root, &path).unwrap_or_default();
        let response = match fault {
            Some(Fault::Drop(n)) if n > 0 => return,
            Some(Fault::Status(status)) => (status, Vec::new()),
            Some(Fault::Endless) => return endless(stream),
            Some(Fault::Oversized { extra, announce }) => {
                let mut body = file();
                body.resize(body.len() + extra, b'X');
                if announce {
                    (200, body)
                } else {
                    return unannounced(stream, &body);
                }
            }
            Some(Fault::Drip) => return drip(stream, &file()),
            Some(Fault::Announce(length)) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nContent-Type: application/octet-stream\r\n\r\n"
                );
                let _ = stream
                    .write_all(head.as_bytes())
                    .and_then(|()| stream.write_all(&file()));
                return;
            }
            Some(Fault::Redirect(location)) => {
                let head = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
                );
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                continue;
            }
            _ => match read_confined(root, &path) {
                Some(body) => (200, body),
                None => (404, b"not found".to_vec()),
            },
        };
        let head = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
            response.0,
            response.1.len()
        );
        if stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(&response.1))
            .is_err()
        {
            return;
        }
    }
}

/// 200, no length, and bytes until the client closes the connection.
fn endless(mut stream: TcpStream) {
    let head =
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/octet-stream\r\n\r\n";
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let chunk = vec![b'A'; 64 << 10];
    while stream.write_all(&chunk).is_ok() {}
}

/// 200, no length, `body`, then the connection closes.
fn unannounced(mut stream: TcpStream, body: &[u8]) {
    let head =
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/octet-stream\r\n\r\n";
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body));
}

/// 200 with `body`'s length, then one byte a second until the client leaves.
fn drip(mut stream: TcpStream, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
        body.len()
    );
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    for byte in body {
        // The pace is the behaviour under test, not a synchronisation.
        std::thread::sleep(std::time::Duration::from_secs(1));
        if stream.write_all(&[*byte]).is_err() {
            return;
        }
    }
}

fn read_confined(root: &Path, path: &str) -> Option<Vec<u8>> {
    let relative: PathBuf = path
        .trim_start_matches('/')
        .split('/')
        .filter(|part| !part.is_empty() && *part != "." && *part != "..")
        .collect();
    fs_err::read(root.join(relative)).ok()
}
