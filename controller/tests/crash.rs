//! Crash safety of the real binary: SIGKILL in the middle of a base image import and during
//! a storm of boot requests and callbacks. After the kill the database passes SQLite's
//! integrity check, no half-imported image is listed, a re-import works, and every event
//! whose request got a 2xx is in the log.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pureboot_controller::store::test_support;
use serde_json::{json, Value};

const TOKEN: &str = "crash-Zq7vN4kP9xR2mW8t";

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    /// The `database` setting: a file in `dir`, or a PostgreSQL database (test_support).
    database: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("controller.toml");
        let database = test_support::database(dir.path(), "registry.db");
        let workflows = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\nworkflows_dir = \"{}\"\n\
                 admin_token = \"{TOKEN}\"\nnfs_server = \"10.0.2.2\"\n\
                 node_requests_per_minute = 0\n\
                 [nfs]\nroot_path = \"{}\"\ndefault_base_image = \"tiny\"\n",
                database.display(),
                workflows.display(),
                dir.path().join("nfsroot").display()
            ),
        )
        .unwrap();
        Setup {
            dir,
            config,
            database,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pureboot-controller"));
        c.arg("--config").arg(&self.config).args(args);
        c
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("binary runs")
    }

    /// The daemon and its base URL (read from the line it prints once listening).
    fn serve(&self) -> (Child, String) {
        let mut child = self
            .command(&["serve"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("pureboot-controller listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        (child, base)
    }

    fn base_dir(&self) -> PathBuf {
        self.dir.path().join("nfsroot/base")
    }

    /// SQLite's `PRAGMA integrity_check` of the registry; PostgreSQL's own crash recovery
    /// is not ours to check: there, whether the registry opens and reads (the store's
    /// schema check).
    fn integrity_check(&self) -> String {
        if test_support::postgres_server().is_some() {
            let store = pureboot_controller::store::Store::open(&self.database).unwrap();
            return match store.schema_version() {
                Ok(_) => "ok".into(),
                Err(e) => e.to_string(),
            };
        }
        let db = rusqlite::Connection::open(&self.database).unwrap();
        db.query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap()
    }

    fn images(&self) -> Vec<String> {
        let out = self.cli(&["--json", "image", "list"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_str().unwrap().to_string())
            .collect()
    }
}

/// `files` members of `size` bytes each (content names the file), plus their directories.
fn write_tarball(out: impl Write, files: usize, size: usize) -> std::io::Result<()> {
    let header = |kind, mode, size| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    };
    let mut tar = tar::Builder::new(out);
    for d in 0..files.div_ceil(100) {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut h, format!("d{d}/"), std::io::empty())?;
    }
    for i in 0..files {
        let mut data = format!("file {i}\n").into_bytes();
        data.resize(size, b'x');
        let mut h = header(tar::EntryType::Regular, 0o644, size as u64);
        tar.append_data(&mut h, format!("d{}/f{i}", i / 100), &data[..])?;
    }
    tar.finish()
}

fn staging_dirs(base: &Path) -> Vec<String> {
    std::fs::read_dir(base)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                // The name's lock file (`.import-<name>.lock`) stays; it is not an image.
                .filter(|n| n.starts_with(".import-") && !n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn sigkill_mid_import_leaves_no_half_image_and_a_reimport_works() {
    let setup = Setup::new();
    const FILES: usize = 3000;
    const SIZE: usize = 32 * 1024; // ~100 MB of tar
                                   // The archive comes through a FIFO: the test decides exactly when the import is "in the
                                   // middle" (half the members written) and kills it there.
    let fifo = setup.dir.path().join("root.tar");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let mut import = setup
        .command(&["image", "import", fifo.to_str().unwrap(), "tiny"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    // Feed members until the writer blocks behind the importer; stop (broken pipe) once it
    // is killed.
    let feeder = std::thread::spawn(move || {
        let _ = write_tarball(writer, FILES, SIZE);
    });
    let base = setup.base_dir();
    let deadline = Instant::now() + Duration::from_secs(60);
    let written = loop {
        let n = staging_dirs(&base)
            .first()
            .map(|s| count_files(&base.join(s)))
            .unwrap_or(0);
        if n >= FILES / 2 {
            break n;
        }
        assert!(Instant::now() < deadline, "import stalled at {n} files");
        if let Some(status) = import.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut import.stderr.take().unwrap(), &mut err).unwrap();
            panic!("import ended early ({status}): {err}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    import.kill().unwrap(); // SIGKILL
    let status = import.wait().unwrap();
    assert!(!status.success());
    feeder.join().unwrap();
    std::fs::remove_file(&fifo).unwrap();
    eprintln!("killed the import after {written} of {FILES} files");

    let left = staging_dirs(&base);
    assert_eq!(
        left.len(),
        1,
        "the killed import left its staging directory: {left:?}"
    );
    assert!(!base.join("tiny").exists(), "no half image under its name");
    assert_eq!(setup.images(), Vec::<String>::new(), "nothing listed");
    assert_eq!(setup.integrity_check(), "ok");

    // The same name imports cleanly afterwards, and the leftover is cleared.
    let archive = setup.dir.path().join("root-full.tar");
    write_tarball(std::fs::File::create(&archive).unwrap(), 300, 4096).unwrap();
    let out = setup.cli(&["image", "import", archive.to_str().unwrap(), "tiny"]);
    assert!(
        out.status.success(),
        "re-import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(setup.images(), ["tiny"]);
    assert_eq!(count_files(&base.join("tiny")), 300);
    assert_eq!(
        std::fs::read_to_string(base.join("tiny/d2/f299")).unwrap()[..9].to_string(),
        "file 299\n"
    );
    assert_eq!(
        staging_dirs(&base),
        Vec::<String>::new(),
        "leftover removed"
    );
}

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// One client of the storm: boots and installed reports for its own serials until
/// `stop` or the first transport error (the kill). Returns the acknowledged (2xx) requests
/// per serial as (boot requests, installed reports).
fn storm_client(
    base: String,
    serials: Vec<String>,
    stop: Arc<AtomicBool>,
) -> Vec<(String, u64, u64)> {
    let mut acked: Vec<(String, u64, u64)> = serials.iter().map(|s| (s.clone(), 0, 0)).collect();
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    'storm: while !stop.load(Ordering::Relaxed) {
        for (serial, boots, reports) in acked.iter_mut() {
            let callback = match agent
                .get(&format!("{base}/api/v1/boot/pi?serial={serial}"))
                .call()
            {
                Ok(r) if r.status() == 200 => {
                    *boots += 1;
                    let answer: Value = r.into_json().unwrap();
                    let url = answer["callback_url"].as_str().unwrap().to_string();
                    url[url.find("/api/").unwrap()..].to_string()
                }
                Ok(r) => panic!("boot {serial}: {}", r.status()),
                Err(ureq::Error::Status(s, r)) => {
                    panic!("boot {serial}: {s} {}", r.into_string().unwrap_or_default())
                }
                Err(_) => break 'storm,
            };
            let report = json!({"success": true, "mode": "nfs_boot"});
            match agent.post(&format!("{base}{callback}")).send_json(report) {
                Ok(r) if (200..300).contains(&r.status()) => *reports += 1,
                Ok(_) | Err(ureq::Error::Status(..)) => {} // e.g. 409: no acknowledged event
                Err(_) => break 'storm,
            }
        }
    }
    acked
}

fn count_kind(base: &str, serial: &str, kind: &str) -> u64 {
    let events: Value = ureq::get(&format!("{base}/api/v1/nodes/{serial}/events?limit=10000"))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .count() as u64
}

#[test]
fn sigkill_during_a_callback_storm_loses_no_acknowledged_event() {
    let setup = Setup::new();
    let (mut server, base) = setup.serve();
    let serials_of =
        |c: usize| -> Vec<String> { (0..5).map(|i| format!("c0de{c:02x}{i:02x}")).collect() };
    for c in 0..6 {
        for serial in serials_of(c) {
            let resp = ureq::post(&format!("{base}/api/v1/nodes"))
                .set("Authorization", &format!("Bearer {TOKEN}"))
                .send_json(
                    json!({"serial": serial, "workflow_id": "pi-diskless-nfs", "overlay_mode": "tmpfs"}),
                );
            assert_eq!(resp.map(|r| r.status()).ok(), Some(201), "add {serial}");
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|c| {
            let serials = serials_of(c);
            let (base, stop) = (base.clone(), stop.clone());
            std::thread::spawn(move || storm_client(base, serials, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2000));
    server.kill().unwrap(); // SIGKILL, mid-storm
    server.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<(String, u64, u64)> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();

    assert_eq!(setup.integrity_check(), "ok", "database after SIGKILL");
    let (mut server, base) = setup.serve();
    let (mut total_boots, mut total_reports) = (0, 0);
    for (serial, boots, reports) in &acked {
        let logged_boots = count_kind(&base, serial, "boot_request");
        let logged_reports = count_kind(&base, serial, "installed");
        assert!(
            logged_boots >= *boots,
            "{serial}: {boots} boots acknowledged, {logged_boots} logged"
        );
        assert!(
            logged_reports >= *reports,
            "{serial}: {reports} reports acknowledged, {logged_reports} logged"
        );
        // At most the one request in flight at the kill was logged without an answer.
        assert!(
            logged_boots <= boots + 1,
            "{serial}: {logged_boots} logged for {boots}"
        );
        total_boots += boots;
        total_reports += reports;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    eprintln!("storm: {total_boots} boots and {total_reports} installed reports acknowledged before SIGKILL, all logged");
    assert!(
        total_boots >= 30,
        "the storm was too small to mean anything: {total_boots}"
    );
}
