//! A tiny HTTP/1.1 file server on 127.0.0.1:0 for offline tests, with injectable faults: a path
//! can answer with a status, or have its connection dropped a number of times before it is
//! served.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// What the server does instead of serving a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection without answering, this many times.
    Drop(u32),
    /// Answer with this HTTP status, every time.
    Status(u16),
    /// Answer only once [`Server::release`] is called for the path.
    Hold,
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
            while faults.get(&path) == Some(&Fault::Hold) {
                faults = released.wait(faults).expect("faults lock");
            }
            match faults.get(&path).copied() {
                Some(Fault::Drop(n)) if n > 0 => {
                    faults.insert(path.clone(), Fault::Drop(n - 1));
                    Some(Fault::Drop(n))
                }
                other => other,
            }
        };
        let response = match fault {
            Some(Fault::Drop(n)) if n > 0 => return,
            Some(Fault::Status(status)) => (status, Vec::new()),
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

fn read_confined(root: &Path, path: &str) -> Option<Vec<u8>> {
    let relative: PathBuf = path
        .trim_start_matches('/')
        .split('/')
        .filter(|part| !part.is_empty() && *part != "." && *part != "..")
        .collect();
    std::fs::read(root.join(relative)).ok()
}
