use super::*;
use crate::steps::controller::{HttpError, Reply};
use pureboot_contract::after_boot::PlannedStep;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Mutex;

/// GETs answered from a script; POSTs recorded and answered 200 (or from `post_codes`).
struct FakeHttp {
    gets: Mutex<VecDeque<Result<Reply, HttpError>>>,
    post_codes: Mutex<VecDeque<u16>>,
    posts: Mutex<Vec<(String, serde_json::Value)>>,
}

impl FakeHttp {
    fn new(gets: Vec<Result<Reply, HttpError>>) -> Self {
        FakeHttp {
            gets: Mutex::new(gets.into()),
            post_codes: Mutex::new(VecDeque::new()),
            posts: Mutex::new(Vec::new()),
        }
    }
    fn posts(&self) -> Vec<(String, serde_json::Value)> {
        self.posts.lock().unwrap().clone()
    }
}

impl Http for FakeHttp {
    fn get(&self, _url: &str, _t: Duration) -> Result<Reply, HttpError> {
        self.gets
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Err(HttpError::transient("script ended")))
    }
    fn post_json(&self, url: &str, body: &str, _t: Duration) -> Result<u16, HttpError> {
        self.posts
            .lock()
            .unwrap()
            .push((url.to_string(), serde_json::from_str(body).unwrap()));
        Ok(self.post_codes.lock().unwrap().pop_front().unwrap_or(200))
    }
}

/// Steps "run" by name: `ok*` succeed, others exit 1; systemd says what it is told.
#[derive(Default)]
struct FakeSystem {
    ran: RefCell<Vec<String>>,
    slept: RefCell<Vec<Duration>>,
}

impl System for FakeSystem {
    fn run_step(&self, step: &PlannedStep) -> StepOutcome {
        self.ran.borrow_mut().push(step.name.clone());
        StepOutcome {
            name: step.name.clone(),
            digest: step.digest.clone(),
            exit_code: Some(if step.name.starts_with("ok") { 0 } else { 1 }),
            output: "ran\n".into(),
            duration_ms: 5,
            ..Default::default()
        }
    }
    fn wait_until_started(&self) -> String {
        "running".into()
    }
    fn is_active(&self, target: &str) -> bool {
        target == "multi-user.target"
    }
    fn activated_ms(&self, _target: &str) -> Option<u64> {
        Some(9000)
    }
    fn failed_units(&self) -> Vec<String> {
        vec!["foo.service".into()]
    }
    fn uptime_ms(&self) -> u64 {
        12000
    }
    fn sleep(&self, d: Duration) {
        self.slept.borrow_mut().push(d);
    }
}

fn plan(names: &[&str]) -> String {
    let steps: Vec<PlannedStep> = names
        .iter()
        .map(|n| PlannedStep {
            name: n.to_string(),
            script: "true".into(),
            run: Default::default(),
            timeout_secs: 5,
            env: Default::default(),
            digest: format!("d-{n}"),
        })
        .collect();
    serde_json::to_string(&StepsPlan {
        steps,
        target: "multi-user.target".into(),
    })
    .unwrap()
}

const URL: &str = "http://c:1/api/v1/nodes/b/agent";

#[test]
fn steps_run_in_order_each_reported_then_boot_complete() {
    let http = FakeHttp::new(vec![Ok(Reply::new(200, plan(&["ok-a", "ok-b"])))]);
    let sys = FakeSystem::default();
    let done = run(&http, &sys, URL);
    assert_eq!(*sys.ran.borrow(), ["ok-a", "ok-b"]);
    assert!(done.healthy(), "{done:?}");
    let posts = http.posts();
    let urls: Vec<&str> = posts.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(
        urls,
        [
            &format!("{URL}/step"),
            &format!("{URL}/step"),
            &format!("{URL}/complete")
        ]
    );
    assert_eq!(posts[1].1["name"], "ok-b");
    assert_eq!(posts[1].1["digest"], "d-ok-b");
    let c = &posts[2].1;
    assert_eq!(c["reached"], true);
    assert_eq!(c["target_ms"], 9000);
    assert_eq!(c["uptime_ms"], 12000);
    assert_eq!(c["failed_units"][0], "foo.service");
    assert_eq!(c["steps"].as_array().unwrap().len(), 2);
    assert_eq!(
        posts[0].1["output"], "ran\n",
        "each step's report has its output"
    );
    assert_eq!(
        c["steps"][0]["output"], "",
        "the complete report does not repeat it"
    );
}

#[test]
fn the_first_failed_step_ends_the_run_and_the_boot_is_not_healthy() {
    let http = FakeHttp::new(vec![Ok(Reply::new(200, plan(&["ok-a", "bad", "ok-c"])))]);
    let sys = FakeSystem::default();
    let done = run(&http, &sys, URL);
    assert_eq!(*sys.ran.borrow(), ["ok-a", "bad"]);
    assert!(!done.healthy());
    assert_eq!(http.posts().len(), 3, "two steps and the complete report");
}

#[test]
fn a_busy_controller_is_asked_again_a_refusing_one_is_not() {
    let http = FakeHttp::new(vec![
        Ok(Reply::new(503, "busy")),
        Err(HttpError::transient("connection refused")),
        Ok(Reply::new(200, plan(&[]))),
    ]);
    let sys = FakeSystem::default();
    let done = run(&http, &sys, URL);
    assert_eq!(
        *sys.slept.borrow(),
        [Duration::from_secs(1), Duration::from_secs(2)]
    );
    assert!(done.healthy(), "no steps, target reached: {done:?}");

    let http = FakeHttp::new(vec![Ok(Reply::new(403, "another address"))]);
    let sys = FakeSystem::default();
    let done = run(&http, &sys, URL);
    assert!(sys.slept.borrow().is_empty());
    let e = done.error.as_deref().unwrap();
    assert!(e.contains("HTTP 403") && e.contains(URL), "{e}");
    // Boot complete is still told (with the error): the controller sees the node came up.
    assert_eq!(http.posts().len(), 1);
}

#[test]
fn a_report_is_sent_again_until_taken_and_not_after_a_refusal() {
    let http = FakeHttp::new(vec![Ok(Reply::new(200, plan(&["ok-a"])))]);
    http.post_codes.lock().unwrap().extend([502, 200, 409]);
    let sys = FakeSystem::default();
    run(&http, &sys, URL);
    let urls: Vec<String> = http.posts().into_iter().map(|(u, _)| u).collect();
    assert_eq!(
        urls,
        [
            format!("{URL}/step"),
            format!("{URL}/step"),
            format!("{URL}/complete")
        ]
    );
}

#[test]
fn a_report_pi_init_left_is_delivered_first_and_removed() {
    let dir = crate::support::testutil::TempDir::new();
    let file = dir.path().join("callback-pending");
    let url = "http://c/api/v1/nodes/n1/installed";
    let body = serde_json::json!({"success": true, "overlay": "tmpfs"});
    std::fs::write(&file, format!("{url}\n{body}")).unwrap();
    let http = FakeHttp::new(vec![]);
    // The controller is still down for the first two tries.
    http.post_codes.lock().unwrap().extend([503, 503]);
    let sys = FakeSystem::default();
    deliver_pending(&http, &sys, &file);
    let posts = http.posts();
    assert_eq!(posts.len(), 3, "{posts:?}");
    assert!(posts.iter().all(|p| (p.0.as_str(), &p.1) == (url, &body)));
    assert_eq!(sys.slept.borrow().len(), 2, "waited between tries");
    assert!(!file.exists(), "delivered once");

    // Nothing left: nothing sent. Something else there: dropped, not sent.
    deliver_pending(&http, &sys, &file);
    std::fs::write(&file, "not a report").unwrap();
    deliver_pending(&http, &sys, &file);
    assert_eq!(http.posts().len(), 3);
    assert!(!file.exists());
}
