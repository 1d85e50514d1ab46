//! A real SMTP server for the tests: Debian's `python3-aiosmtpd` run as a child process
//! (`/usr/bin/python3 -m aiosmtpd -n -l 127.0.0.1:PORT -c st_smtp_sink.Handler DIR TOKEN`)
//! with a small handler module this harness writes next to the mail directory.
//!
//! Storage: one file per accepted message in `dir`, named `0000000001.eml`,
//! `0000000002.eml`, … in arrival order (written as a dot-file, then renamed, so a reader
//! never sees half a message). Each file is one line of JSON with the envelope,
//! `{"mail_from": "...", "rcpt_tos": ["..."]}`, then the message's bytes exactly as the
//! client sent them after DATA (dot-unstuffed, CRLF line ends).
//!
//! The handler also plays a picky server: a recipient whose local part starts with
//! `reject` gets `550 5.1.1` (permanent), one starting with `defer` gets `451 4.3.0`
//! (transient). Its EHLO reply carries a `X-ST-SINK <token>` line, which is how `start`
//! knows the port is answered by this very process and not by another test's server.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3";

const HANDLER: &str = r#"# SMTP sink of SupportTracker's tests (written by tests/src/smtp.rs).
import json
import os


class Handler:
    def __init__(self, mail_dir, token):
        self.mail_dir = mail_dir
        self.token = token
        self.seq = sum(1 for n in os.listdir(mail_dir) if n.endswith(".eml"))

    @classmethod
    def from_cli(cls, parser, *args):
        if len(args) != 2:
            parser.error("usage: -c st_smtp_sink.Handler MAIL_DIR TOKEN")
        return cls(*args)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return responses[:1] + ["250-X-ST-SINK " + self.token] + responses[1:]

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 <%s>: Recipient address rejected: mailbox unavailable" % address
        if local.startswith("defer"):
            return "451 4.3.0 <%s>: Temporary failure, try again later" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.seq += 1
        name = "%010d.eml" % self.seq
        content = envelope.original_content
        if content is None:
            content = envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        head = json.dumps({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos})
        tmp = os.path.join(self.mail_dir, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(head.encode("utf-8") + b"\n")
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.mail_dir, name))
        return "250 2.0.0 OK queued as " + name
"#;

/// Panics unless `/usr/bin/python3` can import aiosmtpd (checked once per process).
fn require_aiosmtpd() {
    static OK: OnceLock<bool> = OnceLock::new();
    let ok = *OK.get_or_init(|| {
        Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(
        ok,
        "python3-aiosmtpd is missing: run `make test` (scripts/setup.sh installs it)"
    );
}

/// A running SMTP server on 127.0.0.1 that keeps every message it accepts (see the module
/// documentation for how). Killed on drop; its files are removed then unless the test is
/// failing (they are kept for a look, and their place printed).
pub struct SmtpServer {
    pub port: u16,
    /// Where the messages are, one file each.
    pub dir: PathBuf,
    /// The parent of `dir`: the handler module and the server's stderr log.
    base: PathBuf,
    token: String,
    child: Option<Child>,
}

impl SmtpServer {
    /// Starts a server on a free port and waits (up to 10 s) until it answers.
    pub fn start() -> SmtpServer {
        require_aiosmtpd();
        let mut server = Self::prepare(0);
        let mut last_error = String::new();
        // A port found free may be taken by someone else before the server binds it.
        for _ in 0..5 {
            server.port = free_port();
            match server.spawn(Duration::from_secs(10)) {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("the SMTP server did not start: {last_error}");
    }

    /// Starts a server on `port` (to bring one back after an outage), with a new, empty
    /// directory, waiting up to 10 s for the port to be free and the server to answer.
    pub fn start_on(port: u16) -> SmtpServer {
        require_aiosmtpd();
        let mut server = Self::prepare(port);
        server.spawn_retrying();
        server
    }

    /// Starts this server again on the same port, keeping its directory and its messages
    /// (after `stop`).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn_retrying();
    }

    /// Kills the server (connections are refused from then on) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `smtp://127.0.0.1:PORT` (plain text: `SmtpSettings::parse` defaults to no TLS for
    /// 127.0.0.1).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, in arrival order.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut names: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "eml")
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        names.sort();
        names.iter().map(|p| ReceivedMail::read(p)).collect()
    }

    /// Waits until at least `n` messages arrived and returns them all; panics with what
    /// arrived after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            if Instant::now() >= deadline {
                let summary: Vec<String> = messages
                    .iter()
                    .map(|m| format!("{:?} to {:?}", m.subject(), m.rcpt_tos))
                    .collect();
                panic!(
                    "expected {n} message(s) within {timeout:?}, got {}: {summary:?}",
                    messages.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn prepare(port: u16) -> SmtpServer {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let base = std::env::temp_dir().join(format!("st-smtp-{token}"));
        let dir = base.join("mail");
        std::fs::create_dir_all(&dir).expect("create the SMTP server's directory");
        std::fs::write(base.join("st_smtp_sink.py"), HANDLER).expect("write the SMTP handler");
        SmtpServer {
            port,
            dir,
            base,
            token,
            child: None,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.base.join("stderr.log")
    }

    /// Spawns on `self.port` until it works or 10 s pass (the port may still be held).
    fn spawn_retrying(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.spawn(left.max(Duration::from_millis(500))) {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => {
                    panic!("the SMTP server did not start on port {}: {e}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// One attempt: start the process on `self.port` and wait until it answers EHLO with
    /// our token. On failure the process is gone and the error carries its stderr.
    fn spawn(&mut self, timeout: Duration) -> Result<(), String> {
        let log = std::fs::File::create(self.log_path()).expect("the SMTP server's log");
        let mut child = Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["-c", "st_smtp_sink.Handler"])
            .arg(&self.dir)
            .arg(&self.token)
            .env("PYTHONPATH", &self.base)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot run {PYTHON}: {e}"))?;
        let deadline = Instant::now() + timeout;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("it exited ({status}): {}", self.stderr()));
            }
            if probe(addr, &self.token) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no answer on {addr} within {timeout:?}: {}",
                    self.stderr()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn stderr(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        if text.trim().is_empty() {
            "(nothing on stderr)".to_owned()
        } else {
            text
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("SMTP server files kept in {}", self.base.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

/// A port nobody listens on at the moment (bound to port 0, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Whether `addr` answers EHLO with our token.
fn probe(addr: SocketAddr, token: &str) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return false,
    };
    let mut reader = BufReader::new(stream);
    let Some(greeting) = reply(&mut reader) else {
        return false;
    };
    if !greeting.last().is_some_and(|l| l.starts_with("220")) {
        return false;
    }
    if writer.write_all(b"EHLO probe.test\r\n").is_err() {
        return false;
    }
    let ours = reply(&mut reader)
        .is_some_and(|lines| lines.iter().any(|l| l == &format!("250-X-ST-SINK {token}")));
    let _ = writer.write_all(b"QUIT\r\n");
    ours
}

/// One SMTP reply's lines (the last has a space after the code, the others a dash).
fn reply(reader: &mut BufReader<TcpStream>) -> Option<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let done = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line.trim_end().to_owned());
        if done {
            return Some(lines);
        }
    }
}

/// A message the test server accepted: its bytes and its envelope.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// The message as sent after DATA (headers and body, CRLF line ends).
    pub raw: Vec<u8>,
    /// The envelope sender (`MAIL FROM`), without angle brackets.
    pub mail_from: String,
    /// The envelope recipients (`RCPT TO`) the server accepted.
    pub rcpt_tos: Vec<String>,
}

#[derive(serde::Deserialize)]
struct EnvelopeLine {
    mail_from: String,
    rcpt_tos: Vec<String>,
}

impl ReceivedMail {
    fn read(path: &Path) -> ReceivedMail {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let newline = bytes
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or_else(|| panic!("{} has no envelope line", path.display()));
        let envelope: EnvelopeLine = serde_json::from_slice(&bytes[..newline])
            .unwrap_or_else(|e| panic!("the envelope line of {}: {e}", path.display()));
        ReceivedMail {
            raw: bytes[newline + 1..].to_vec(),
            mail_from: envelope.mail_from,
            rcpt_tos: envelope.rcpt_tos,
        }
    }

    /// The parsed message (panics if mail-parser cannot read it).
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.raw)
            .expect("a message mail-parser can read")
    }

    /// The decoded subject.
    pub fn subject(&self) -> Option<String> {
        self.parsed().subject().map(str::to_owned)
    }

    /// The Message-ID without its angle brackets.
    pub fn message_id(&self) -> Option<String> {
        self.parsed().message_id().map(str::to_owned)
    }

    /// The decoded `text/plain` body (not one converted from HTML).
    pub fn text(&self) -> Option<String> {
        self.body_of_subtype("plain")
    }

    /// The decoded `text/html` body (not one converted from text).
    pub fn html(&self) -> Option<String> {
        self.body_of_subtype("html")
    }

    fn body_of_subtype(&self, subtype: &str) -> Option<String> {
        use mail_parser::MimeHeaders;
        let message = self.parsed();
        let parts: Vec<_> = if subtype == "html" {
            message.html_bodies().collect()
        } else {
            message.text_bodies().collect()
        };
        parts
            .into_iter()
            .find(|p| {
                p.content_type().map_or(subtype == "plain", |ct| {
                    ct.ctype().eq_ignore_ascii_case("text")
                        && ct
                            .subtype()
                            .is_some_and(|s| s.eq_ignore_ascii_case(subtype))
                })
            })
            .and_then(|p| p.text_contents().map(str::to_owned))
    }

    /// The attachments: (file name, content type `type/subtype`, decoded bytes).
    pub fn attachments(&self) -> Vec<(String, String, Vec<u8>)> {
        use mail_parser::MimeHeaders;
        let message = self.parsed();
        message
            .attachments()
            .map(|part| {
                let content_type =
                    part.content_type()
                        .map_or_else(String::new, |ct| match ct.subtype() {
                            Some(sub) => format!("{}/{}", ct.ctype(), sub),
                            None => ct.ctype().to_owned(),
                        });
                (
                    part.attachment_name().unwrap_or_default().to_owned(),
                    content_type,
                    part.contents().to_vec(),
                )
            })
            .collect()
    }

    /// A header's decoded text (the raw value, trimmed, for structured headers such as
    /// addresses), or `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let message = self.parsed();
        let value = message.header(name)?;
        match value.as_text() {
            Some(text) => Some(text.to_owned()),
            None => message.header_raw(name).map(|raw| raw.trim().to_owned()),
        }
    }
}
