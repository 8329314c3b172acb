//! One moto server per test (so tests never share state and need no reset): started on
//! a free port, waited for (bounded), killed on drop (also when the test panics). moto
//! missing is a test failure naming the install script, never a silent skip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::{Credentials, SharedCredentialsProvider};

/// How long a fresh moto server may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Moto {
    child: Child,
    pub port: u16,
}

fn moto_server() -> PathBuf {
    let venv = std::env::var_os("MOTO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/stevedore/moto-venv")
        });
    let bin = venv.join("bin/moto_server");
    assert!(
        bin.exists(),
        "the AWS emulator tests need moto, not found at {}: run ./scripts/moto.sh (or set MOTO_VENV)",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

impl Moto {
    /// Starts a server. A port taken between choosing and binding it (another test's
    /// server) makes moto exit: a new port is tried, at most three times.
    pub fn start() -> Moto {
        let bin = moto_server();
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut moto = Moto { child, port };
            match moto.wait_ready() {
                Ok(()) => return moto,
                Err(e) => last = e,
            }
        }
        panic!("moto_server did not start: {last}");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited during start-up: {status}"));
            }
            let ok = |r: String| r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200");
            if self.request("GET", "/moto-api/").is_ok_and(ok) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("no answer within {START_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A raw HTTP/1.0 request to the server (control API), returning the response text.
    pub fn request(&self, method: &str, path: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SDK configuration pointing at this server: fixed region, dummy static
    /// credentials (no IMDS or profile lookups), the given retry policy.
    pub async fn sdk_config(&self, max_attempts: u32) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "testing", "testing", None, None, "moto",
            )))
            .retry_config(stevedore::cloud::aws::retry_config(
                max_attempts,
                Duration::from_millis(5),
            ))
            .timeout_config(stevedore::cloud::aws::timeout_config())
            .load()
            .await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
