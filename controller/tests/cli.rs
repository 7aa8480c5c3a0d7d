//! The binary as the e2e tests drive it: CLI commands on the same config and database
//! while the daemon serves.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use common::cli;

fn ok_json(config: &Path, args: &[&str]) -> Value {
    let out = cli(config, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn write_config(app: &common::TestApp) -> std::path::PathBuf {
    let c = &app.config;
    let path = app.dir.path().join("controller.toml");
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\nworkflows_dir = \"{}\"\nadmin_token = \"{}\"\npublic_url = \"http://10.0.2.2:8080\"\nnfs_server = \"10.0.2.2\"\n[nfs]\nroot_path = \"{}\"\ndefault_base_image = \"debian-arm64\"\n",
        c.database.display(),
        c.workflows_dir.display(),
        common::TOKEN,
        c.nfs.root_path.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn cli_and_daemon_share_the_registry() {
    let app = common::spawn_app();
    let config = write_config(&app);
    let added = ok_json(
        &config,
        &[
            "--json",
            "node",
            "add",
            "D83ADD36",
            "--workflow",
            "pi-diskless-nfs",
            "--hostname",
            "kitchen",
            "--overlay",
            "tmpfs",
            "--mac",
            "dc:a6:32:01:02:03",
        ],
    );
    assert_eq!(added["state"], "pending");
    let (_, r) = app.boot("serial=d83add36&mac=dc:a6:32:01:02:03");
    assert_eq!(
        r["action"], "nfs_boot",
        "the daemon sees the CLI's node: {r}"
    );
    assert_eq!(r["hostname"], "kitchen");

    let shown = ok_json(&config, &["node", "show", "d83add36", "--json"]);
    assert_eq!(shown["state"], "installing");
    let kinds: Vec<&str> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["admin", "state_change", "boot_request"]);

    let listed = cli(&config, &["node", "list"]);
    let table = String::from_utf8_lossy(&listed.stdout);
    assert!(
        table.starts_with("SERIAL")
            && table.contains("d83add36  installing  pi-diskless-nfs  kitchen"),
        "{table}"
    );

    let out = cli(&config, &["node", "assign", "d83add36", "no-such-workflow"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-workflow"));

    let out = cli(&config, &["node", "add", "d83add36"]);
    assert!(!out.status.success(), "a managed node is not re-added");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already registered"));

    // A node that only announced itself is adopted by `node add`.
    app.boot("serial=0000d00d&mac=dc:a6:32:00:d0:0d");
    let adopted = ok_json(
        &config,
        &[
            "--json",
            "node",
            "add",
            "0000d00d",
            "--workflow",
            "pi-k3s-worker",
            "--overlay",
            "none",
        ],
    );
    assert_eq!(
        (adopted["state"].as_str(), adopted["mac"].as_str()),
        (Some("pending"), Some("dc:a6:32:00:d0:0d"))
    );
    // Its boots carry the MAC it announced (a boot is bound to the recorded MAC).
    let (_, r) = app.boot("serial=0000d00d&mac=dc:a6:32:00:d0:0d");
    assert_eq!(
        (r["action"].as_str(), r["overlay_mode"].as_str()),
        (Some("nfs_boot"), Some("none")),
        "{r}"
    );

    let removed = ok_json(&config, &["--json", "node", "rm", "d83add36"]);
    assert_eq!(removed["tree_removed"], true);
    assert_eq!(app.admin_get("/api/v1/nodes/d83add36").0, 404);
}

#[test]
fn image_import_list_rm() {
    let app = common::spawn_app();
    let config = write_config(&app);
    let src = app.dir.path().join("src");
    std::fs::create_dir_all(src.join("sbin")).unwrap();
    std::fs::write(src.join("sbin/init"), "#!/bin/sh\n").unwrap();
    let archive = app.dir.path().join("root.tar");
    tar_dir(&src, &archive);

    let summary = ok_json(
        &config,
        &[
            "--json",
            "image",
            "import",
            archive.to_str().unwrap(),
            "busybox",
        ],
    );
    assert_eq!(summary["name"], "busybox");
    assert!(app.nfs_root().join("base/busybox/sbin/init").is_file());
    let list = ok_json(&config, &["--json", "image", "list"]);
    assert_eq!(list["images"], serde_json::json!(["busybox"]));
    assert_eq!(
        app.admin_get("/api/v1/images").1["images"],
        serde_json::json!(["busybox"])
    );

    // In use by a node: refused.
    ok_json(
        &config,
        &[
            "--json",
            "node",
            "add",
            "0000beef",
            "--base-image",
            "busybox",
        ],
    );
    let out = cli(&config, &["image", "rm", "busybox"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("0000beef"));
    ok_json(&config, &["--json", "node", "rm", "0000beef"]);
    ok_json(&config, &["--json", "image", "rm", "busybox"]);
    assert!(!app.nfs_root().join("base/busybox").exists());

    // The default image: refused while it is the default, naming the key and the nodes that
    // boot it without naming it.
    ok_json(
        &config,
        &[
            "--json",
            "image",
            "import",
            archive.to_str().unwrap(),
            "debian-arm64",
        ],
    );
    ok_json(
        &config,
        &[
            "--json",
            "node",
            "add",
            "0000cafe",
            "--workflow",
            "pi-diskless-nfs",
        ],
    );
    let out = cli(&config, &["image", "rm", "debian-arm64"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("default_base_image") && err.contains("0000cafe"),
        "{err}"
    );
    assert!(app.nfs_root().join("base/debian-arm64/sbin/init").is_file());
}

/// A tar of `files` files of `size` bytes each (distinct content: no hole skipping).
fn sized_archive(dir: &Path, files: usize, size: usize) -> std::path::PathBuf {
    let src = dir.join("sized-src");
    std::fs::create_dir_all(src.join("data")).unwrap();
    for i in 0..files {
        let body: Vec<u8> = (0..size).map(|j| (j * 31 + i * 7 + 1) as u8).collect();
        std::fs::write(src.join(format!("data/f{i}")), body).unwrap();
    }
    let archive = dir.join("sized.tar");
    tar_dir(&src, &archive);
    archive
}

/// `tar -C src -cf archive .`
fn tar_dir(src: &Path, archive: &Path) {
    let status = Command::new("tar")
        .arg("-C")
        .arg(src)
        .arg("-cf")
        .arg(archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "tar -C {} -cf {}",
        src.display(),
        archive.display()
    );
}

fn import(config: &Path, args: &[&str], interval_ms: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pureboot-controller"));
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "off")
        .env_remove("PUREBOOT_PROGRESS_INTERVAL_MS");
    if let Some(ms) = interval_ms {
        cmd.env("PUREBOOT_PROGRESS_INTERVAL_MS", ms);
    }
    let out = cmd.output().expect("binary runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Not on a terminal (the test's pipes), `image import` prints a plain progress line on
/// stderr every interval: entries, MB written, share of the archive, rate, time left.
/// With `--json` it prints nothing but the JSON document.
#[test]
fn image_import_progress_lines_off_a_terminal_and_silence_with_json() {
    let app = common::spawn_app();
    let config = write_config(&app);
    let archive = sized_archive(app.dir.path(), 6, 1 << 20);
    let archive = archive.to_str().unwrap();

    // Interval 0: a line on every update (after each member and each MiB written).
    let out = import(&config, &["image", "import", archive, "one"], Some("0"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 6, "a line per MiB at least: {stderr}");
    let mut last = (0u64, 0.0f64);
    for line in &lines {
        let rest = line
            .strip_prefix("import: ")
            .unwrap_or_else(|| panic!("only progress lines on stderr: {line:?}"));
        let parts: Vec<&str> = rest.split(", ").collect();
        assert!(parts.len() >= 4, "{line}");
        let entries: u64 = parts[0].strip_suffix(" entries").unwrap().parse().unwrap();
        let mb: f64 = parts[1]
            .strip_suffix(" MB written")
            .unwrap()
            .parse()
            .unwrap();
        assert!(parts[2].ends_with("% of archive"), "{line}");
        assert!(parts[3].ends_with(" MB/s"), "{line}");
        if let Some(left) = parts.get(4) {
            assert!(left.ends_with(" left"), "{line}");
        }
        assert!(
            entries >= last.0 && mb >= last.1,
            "counts only grow: {stderr}"
        );
        last = (entries, mb);
    }
    assert!(last.1 >= 6.0, "the last line counts every MB: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("imported "),
        "summary on stdout: {stdout}"
    );

    // The default interval (seconds) prints nothing for an import this short.
    let out = import(&config, &["image", "import", archive, "two"], None);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");

    // --json: the document alone, even with lines asked for on every update.
    let out = import(
        &config,
        &["--json", "image", "import", archive, "three"],
        Some("0"),
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["name"], "three");
    assert_eq!(summary["bytes"], 6 << 20);
}

#[test]
fn workflow_validate_names_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "workflows_dir = \"{}\"\n",
            common::repo_workflows().display()
        ),
    )
    .unwrap();
    let ok = cli(&config, &["workflow", "validate"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        !text.contains("WARNING"),
        "the shipped workflows fit /srv/nfsroot: {text}"
    );

    // A base path nodes will not be told is a warning, not a failure.
    let elsewhere = dir.path().join("elsewhere.yaml");
    std::fs::write(
        &elsewhere,
        "id: e\nname: E\ninstall_method: nfs\nnfs_base_path: /srv/other\n",
    )
    .unwrap();
    let out = cli(
        &config,
        &["workflow", "validate", elsewhere.to_str().unwrap()],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("WARNING") && text.contains("/srv/other") && text.contains("/srv/nfsroot"),
        "{text}"
    );

    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "id: b\nname: B\ninstall_method: nfs\nhostname: \"{{ rack }}\"\n",
    )
    .unwrap();
    let out = cli(&config, &["workflow", "validate", broken.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("broken.yaml") && text.contains("hostname") && text.contains("undefined"),
        "{text}"
    );

    let bad_config = dir.path().join("bad.toml");
    std::fs::write(&bad_config, "[nfs]\npersist_size_mb = \"big\"\n").unwrap();
    let out = cli(&bad_config, &["node", "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nfs.persist_size_mb"));
}

/// `serve` with `config`, and the base URL from the line it prints once it listens.
fn serve(config: &std::path::Path) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pureboot-controller"))
        .arg("--config")
        .arg(config)
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line
        .trim()
        .strip_prefix("pureboot-controller listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_string();
    (child, url)
}

#[test]
fn serve_prints_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let mut c = common::test_config(dir.path());
    c.workflows_dir = common::repo_workflows();
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\nworkflows_dir = \"{}\"\n[nfs]\nroot_path = \"{}\"\n",
            c.database.display(),
            c.workflows_dir.display(),
            c.nfs.root_path.display()
        ),
    )
    .unwrap();
    let (mut child, url) = serve(&config);
    let health: Value = ureq::get(&format!("{url}/healthz"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(health["status"], "ok");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn sighup_reloads_the_workflows_of_a_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let c = common::test_config(dir.path());
    let workflows = dir.path().join("wf");
    std::fs::create_dir(&workflows).unwrap();
    std::fs::write(
        workflows.join("a.yaml"),
        "id: a\nname: A\ninstall_method: nfs\n",
    )
    .unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\nworkflows_dir = \"{}\"\n[nfs]\nroot_path = \"{}\"\n",
            c.database.display(),
            workflows.display(),
            c.nfs.root_path.display()
        ),
    )
    .unwrap();
    let (mut child, url) = serve(&config);
    let count = || -> Value {
        ureq::get(&format!("{url}/healthz"))
            .call()
            .unwrap()
            .into_json::<Value>()
            .unwrap()["workflows"]
            .clone()
    };
    assert_eq!(count(), 1);
    std::fs::write(
        workflows.join("b.yaml"),
        "id: b\nname: B\ninstall_method: nfs\n",
    )
    .unwrap();
    assert_eq!(count(), 1, "nothing changes before the signal");
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count() != 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(count(), 2, "SIGHUP reloaded the workflows");
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP does not stop the daemon"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn client_text_reaches_the_terminal_escaped() {
    let app = common::spawn_app();
    let config = write_config(&app);
    app.add_node(serde_json::json!({"serial": "d83add36", "workflow_id": "pi-diskless-nfs"}));
    let (_, r) = app.boot("serial=d83add36");
    let url = r["failure_url"].as_str().unwrap();
    let path = &url[url.find("/api/").unwrap()..];
    // C1 CSI (U+009B) and DEL pass through JSON unescaped; ESC would be \u001b in JSON.
    let evil = "\u{9b}2J\u{1b}[31mPWNED\u{7f}\n";
    let (status, _) = app.post(path, &serde_json::json!({"error": evil, "step": evil}));
    assert_eq!(status, 200);
    for args in [&["node", "show", "d83add36"][..], &["node", "list"][..]] {
        let out = cli(&config, args);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{args:?}: raw control characters in {text:?}"
        );
    }
    let shown = String::from_utf8(cli(&config, &["node", "show", "d83add36"]).stdout).unwrap();
    assert!(shown.contains("\\u{9b}2J"), "{shown}");
}

#[test]
fn workflow_validate_refuses_templates_over_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("greedy.yaml");
    std::fs::write(
        &file,
        "id: greedy\nname: Greedy\ninstall_method: nfs\nhostname: \"{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}x\"\n",
    )
    .unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "").unwrap();
    let started = std::time::Instant::now();
    let out = cli(&config, &["workflow", "validate", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("greedy.yaml") && text.contains("hostname") && text.contains("too long"),
        "{text}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn sigterm_stops_the_daemon_within_its_grace_whatever_clients_do() {
    let dir = tempfile::tempdir().unwrap();
    let c = common::test_config(dir.path());
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\nworkflows_dir = \"{}\"\n\
             header_timeout_secs = 60\nrequest_timeout_secs = 2\n[nfs]\nroot_path = \"{}\"\n",
            c.database.display(),
            c.workflows_dir.display(),
            c.nfs.root_path.display()
        ),
    )
    .unwrap();
    let (mut child, url) = serve(&config);
    let addr = url.trim_start_matches("http://");
    // A client that never finishes its request, and one that is idle on keep-alive.
    use std::io::Write;
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .unwrap();
    let mut idle = std::net::TcpStream::connect(addr).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > std::time::Duration::from_secs(15) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("SIGTERM did not stop the daemon within 15 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(6),
        "stopped after {:?}",
        started.elapsed()
    );
    drop((slow, idle));
}

/// `serve` with `config` (TOML text; `None`: no file): its exit status and stderr, or
/// `None` if it started (then it is stopped).
fn serve_refused(dir: &Path, config: Option<&str>) -> Option<String> {
    let path = dir.join("controller.toml");
    let _ = std::fs::remove_file(&path);
    if let Some(text) = config {
        std::fs::write(&path, text).unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_pureboot-controller"))
        .arg("--config")
        .arg(&path)
        .arg("serve")
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            assert!(!out.status.success());
            return Some(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    None
}

#[test]
fn serve_refuses_a_config_that_would_fail_later_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = format!(
        "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\nworkflows_dir = \"{}\"\n",
        d.join("r.db").display(),
        common::repo_workflows().display()
    );
    let nfs = format!("[nfs]\nroot_path = \"{}\"\n", d.join("nfs").display());
    let err = serve_refused(d, None).expect("no config file: refused");
    assert!(
        err.contains("controller.toml") && err.contains("not found"),
        "{err}"
    );
    assert!(
        !d.join("pureboot.db").exists(),
        "no database made in the working directory"
    );
    let cases = [
        (
            format!("{base}{nfs}persist_size_mb = 0\n"),
            "nfs.persist_size_mb",
        ),
        (
            format!("{base}{nfs}default_base_image = \"../../etc\"\n"),
            "nfs.default_base_image",
        ),
        (
            format!("{base}{nfs}").replace("127.0.0.1:0", "0.0.0.0:0"),
            "public_url",
        ),
        (
            format!("public_url = \"http://\"\n{base}{nfs}"),
            "public_url",
        ),
        (format!("admin_token = \"\"\n{base}{nfs}"), "admin_token"),
        (format!("{base}{nfs}root_path = \n"), "line 6, column 13"),
    ];
    for (text, needle) in &cases {
        let err = serve_refused(d, Some(text)).unwrap_or_else(|| panic!("{text}: started"));
        assert!(
            err.contains(needle) && err.contains("controller.toml"),
            "{needle}: {err}"
        );
    }
    // A database written by a newer controller.
    let ok = format!("{base}{nfs}");
    assert!(
        serve_refused(d, Some(&ok)).is_none(),
        "the good config serves"
    );
    let db = rusqlite::Connection::open(d.join("r.db")).unwrap();
    db.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (999, 'later')",
        [],
    )
    .unwrap();
    drop(db);
    let err = serve_refused(d, Some(&ok)).expect("newer schema: refused");
    assert!(err.contains("999") && err.contains("r.db"), "{err}");
}

#[test]
fn a_second_daemon_on_the_same_database_is_refused() {
    if pureboot_controller::store::test_support::sqlite_only(
        "the serve lock (PostgreSQL is for several)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let c = common::test_config(dir.path());
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\nworkflows_dir = \"{}\"\n[nfs]\nroot_path = \"{}\"\n",
            c.database.display(),
            c.workflows_dir.display(),
            c.nfs.root_path.display()
        ),
    )
    .unwrap();
    let (mut first, _) = serve(&config);
    let out = cli(&config, &["serve"]);
    assert!(!out.status.success(), "second daemon started");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use by another") && err.contains("registry.db"),
        "{err}"
    );
    // The CLI still works beside the daemon.
    assert!(cli(&config, &["node", "list"]).status.success());
    first.kill().unwrap();
    first.wait().unwrap();
}

/// Every verb and option says what it is for in --help; completions and the man page come
/// from the same definitions, and need no config file.
#[test]
fn help_completions_and_man_page() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pureboot-controller"))
            .args(["--config", "/nonexistent/controller.toml"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    for verb in [
        &["--help"][..],
        &["node", "--help"],
        &["image", "--help"],
        &["workflow", "--help"],
        &["overlay", "--help"],
        &["node", "add", "--help"],
        &["node", "list", "--help"],
        &["image", "import", "--help"],
    ] {
        let help = run(verb);
        // In the Commands, Arguments and Options blocks clap prints a name, padding and the
        // description; a bare name means none was written.
        let mut in_block = false;
        for line in help.lines() {
            let t = line.trim();
            if ["Commands:", "Arguments:", "Options:"].contains(&t) {
                in_block = true;
                continue;
            }
            if t.is_empty() {
                in_block = false;
            }
            if in_block {
                assert!(
                    t.split_once("  ")
                        .is_some_and(|(_, d)| !d.trim().is_empty()),
                    "{verb:?}: {t:?} has no description:\n{help}"
                );
            }
        }
    }
    let bash = run(&["completions", "bash"]);
    assert!(
        bash.contains("pureboot__controller") && bash.contains("overlay"),
        "{bash}"
    );
    let man = run(&["manpage"]);
    assert!(
        man.contains(".TH pureboot-controller 1") && man.contains("completions"),
        "{man}"
    );
}
