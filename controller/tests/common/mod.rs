//! `spawn_app()`: the real server on 127.0.0.1 port 0 with a temporary database and NFS
//! root, run on its own runtime thread so tests can use a blocking HTTP client.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pureboot_controller::app::App;
use pureboot_controller::config::Config;
use pureboot_controller::service::Services;
use serde_json::Value;

pub const TOKEN: &str = "test-Zq7vN4kP9xR2mW8t";

pub struct TestApp {
    pub base: String,
    /// The management API's own listener, when `admin_listen` is set.
    pub admin_base: Option<String>,
    pub dir: tempfile::TempDir,
    pub services: Arc<Services>,
    pub config: Config,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The path of a boot answer's callback URL (`failure`: of its failure URL).
pub fn report_path(answer: &Value, failure: bool) -> String {
    let key = if failure {
        "failure_url"
    } else {
        "callback_url"
    };
    let url = answer[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {answer}"));
    url[url.find("/api/").expect("an API path")..].to_string()
}

/// The controller's binary with `--config <config>` and `args`, run to its end.
pub fn cli(config: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pureboot-controller"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("binary runs")
}

/// A tool on PATH or in the sbin directories (PATH may lack them).
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.exists())
}

pub fn repo_workflows() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows")
}

pub fn test_config(dir: &Path) -> Config {
    let mut c = Config {
        listen: "127.0.0.1:0".into(),
        public_url: Some("http://10.0.2.2:8080".into()),
        nfs_server: "10.0.2.2".into(),
        database: pureboot_controller::store::test_support::database(dir, "registry.db"),
        workflows_dir: repo_workflows(),
        admin_token: Some(TOKEN.into()),
        body_limit_bytes: 4096,
        ..Config::default()
    };
    c.nfs.root_path = dir.join("nfsroot");
    c.nfs.default_base_image = "debian-arm64".into();
    c
}

pub fn spawn_app() -> TestApp {
    spawn_app_with(|_| {})
}

pub fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    adjust(&mut config);
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let cfg = config.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = App::build(cfg).await.expect("app builds");
            tx.send((app.local_addr(), app.admin_addr(), app.services()))
                .unwrap();
            app.run_until(async move {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
        });
    });
    let (addr, admin, services) = rx.recv().expect("server started");
    TestApp {
        base: format!("http://{addr}"),
        admin_base: admin.map(|a| format!("http://{a}")),
        dir,
        services,
        config,
        shutdown: Some(stop_tx),
        thread: Some(thread),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// (status, JSON body) whatever the status; a non-JSON body fails the test.
fn finish(result: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text:?}"));
    (status, body)
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        finish(ureq::get(&self.url(path)).call())
    }

    pub fn admin_get(&self, path: &str) -> (u16, Value) {
        finish(
            ureq::get(&self.url(path))
                .set("Authorization", &format!("Bearer {TOKEN}"))
                .call(),
        )
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        finish(ureq::post(&self.url(path)).send_json(body.clone()))
    }

    pub fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        finish(
            ureq::post(&self.url(path))
                .set("Content-Type", "application/json")
                .send_string(body),
        )
    }

    pub fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let req =
            ureq::request(method, &self.url(path)).set("Authorization", &format!("Bearer {TOKEN}"));
        finish(match body {
            Some(b) => req.send_json(b.clone()),
            None => req.call(),
        })
    }

    pub fn boot(&self, query: &str) -> (u16, Value) {
        self.get(&format!("/api/v1/boot/pi?{query}"))
    }

    pub fn add_node(&self, body: Value) -> Value {
        let (status, node) = self.admin("POST", "/api/v1/nodes", Some(&body));
        assert_eq!(status, 201, "{node}");
        node
    }

    pub fn node(&self, id: &str) -> Value {
        let (status, node) = self.admin_get(&format!("/api/v1/nodes/{id}"));
        assert_eq!(status, 200, "{node}");
        node
    }

    pub fn event_kinds(&self, id: &str) -> Vec<String> {
        self.node(id)["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn nfs_root(&self) -> PathBuf {
        self.config.nfs.root_path.clone()
    }
}

/// A TCP connection from a chosen loopback source address (bind before connect): another
/// machine on the boot network as the server sees it (all of 127.0.0.0/8 is this host).
pub fn connect_from(local: &str, to: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0);
    let sin = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let from = sin(local.parse().unwrap(), 0);
    let SocketAddr::V4(to) = to else {
        panic!("IPv4 only")
    };
    let dest = sin(*to.ip(), to.port());
    unsafe {
        assert_eq!(
            libc::bind(fd, &from as *const _ as *const libc::sockaddr, len),
            0
        );
        assert_eq!(
            libc::connect(fd, &dest as *const _ as *const libc::sockaddr, len),
            0
        );
        TcpStream::from_raw_fd(fd)
    }
}

/// An answer read off a raw connection: status, header block, JSON body.
pub struct Answer {
    pub status: u16,
    pub headers: String,
    pub body: Value,
}

impl TestApp {
    /// The admin CLI on this app's database and export; fails the test if it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let c = &self.config;
        let config = self.dir.path().join("controller.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\nworkflows_dir = \"{}\"\n\
                 public_url = \"http://10.0.2.2:8080\"\nsecrets_file = \"{}\"\n\
                 [nfs]\nroot_path = \"{}\"\npersist_size_mb = 16\n",
                c.database.display(),
                c.workflows_dir.display(),
                c.secrets_path().display(),
                c.nfs.root_path.display()
            ),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pureboot-controller"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The value of the `/metrics` line that starts with `name` (labels included).
    pub fn metric(&self, name: &str) -> String {
        let text = ureq::get(&self.url("/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_string()
    }

    /// The operators' status page (`GET /status` with the admin token), as HTML.
    pub fn status_page(&self) -> String {
        ureq::get(&self.url("/status"))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
    }

    pub fn addr(&self) -> SocketAddr {
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    /// One request from the source address `local`; bounded by 10 s.
    pub fn request_from(
        &self,
        local: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Answer {
        let mut s = connect_from(local, self.addr());
        let text = body.map(Value::to_string).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let status = out[9..12].parse().unwrap();
        let (headers, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        let body =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
        Answer {
            status,
            headers: headers.to_string(),
            body,
        }
    }

    /// A boot request (`GET /api/v1/boot/pi?{query}`) from `local`.
    pub fn boot_from(&self, local: &str, query: &str) -> (u16, Value) {
        let a = self.request_from(local, "GET", &format!("/api/v1/boot/pi?{query}"), None);
        (a.status, a.body)
    }
}

/// A POST from another address of this host (127.0.0.2 reaches the server's 127.0.0.1
/// listener): another machine on the boot network.
pub fn post_from(app: &TestApp, local: &str, path: &str, body: &Value) -> (u16, Value) {
    let a = app.request_from(local, "POST", path, Some(body));
    (a.status, a.body)
}
