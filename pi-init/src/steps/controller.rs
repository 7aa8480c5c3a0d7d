//! Talking to the controller: ask what to boot (`GET /api/v1/boot/pi`), with timeouts,
//! bounded retries with backoff and `wait` polling; post the callbacks (never fatal).
//! HTTP goes through [`Http`] so the retry and polling logic is tested without a network.

use crate::decide::serial::BoardSerial;
use pureboot_contract::boot_query::{self, BootQuery};
use pureboot_contract::ids::Mac;
use pureboot_contract::{BootAction, PiBootResponse};
use std::time::Duration;

/// A request that got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub message: String,
    /// Asking again cannot help (a URL that cannot be parsed, a scheme pi-init does not
    /// speak); otherwise transient (no route, refused, timed out, a broken answer).
    pub permanent: bool,
}

impl HttpError {
    pub fn transient(message: impl Into<String>) -> Self {
        HttpError {
            message: message.into(),
            permanent: false,
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        HttpError {
            message: message.into(),
            permanent: true,
        }
    }
}

/// An HTTP answer to a GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// `Retry-After` in seconds, where a busy server (429, 503) names when to come back.
    pub retry_after: Option<u32>,
    /// The server's clock (its `Date` header), in seconds since the Unix epoch.
    pub date: Option<u64>,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Reply {
            status,
            body: body.into(),
            retry_after: None,
            date: None,
        }
    }
}

pub trait Http: Sync {
    /// GET `url`; any HTTP answer, or why there was none.
    fn get(&self, url: &str, timeout: Duration) -> Result<Reply, HttpError>;
    /// POST a JSON body; the status of any HTTP answer, or why there was none.
    fn post_json(&self, url: &str, body: &str, timeout: Duration) -> Result<u16, HttpError>;
}

/// Plain HTTP through ureq.
pub struct Ureq;

impl Ureq {
    fn agent(timeout: Duration) -> ureq::Agent {
        ureq::AgentBuilder::new()
            .timeout_connect(timeout)
            .timeout_read(timeout)
            .timeout_write(timeout)
            .build()
    }
}

/// The server's clock from an answer's `Date` header.
fn date_of(r: &ureq::Response) -> Option<u64> {
    r.header("Date")
        .and_then(crate::decide::clock::parse_http_date)
}

/// Which transport errors no retry can mend. The message leaves out the URL ureq puts
/// first: every caller names the URL itself.
fn from_ureq(url: &str, e: ureq::Error) -> HttpError {
    use ureq::ErrorKind::*;
    let permanent = matches!(
        e.kind(),
        InvalidUrl | UnknownScheme | InsecureRequestHttpsOnly
    );
    let text = e.to_string();
    HttpError {
        message: text
            .strip_prefix(url)
            .and_then(|t| t.strip_prefix(": "))
            .map_or(text.clone(), String::from),
        permanent,
    }
}

impl Http for Ureq {
    fn get(&self, url: &str, timeout: Duration) -> Result<Reply, HttpError> {
        match Self::agent(timeout).get(url).call() {
            Ok(r) => {
                let date = date_of(&r);
                Ok(Reply {
                    date,
                    ..Reply::new(
                        r.status(),
                        r.into_string()
                            .map_err(|e| HttpError::transient(e.to_string()))?,
                    )
                })
            }
            Err(ureq::Error::Status(code, r)) => {
                let retry_after = r.header("Retry-After").and_then(|v| v.trim().parse().ok());
                let date = date_of(&r);
                Ok(Reply {
                    retry_after,
                    date,
                    ..Reply::new(code, r.into_string().unwrap_or_default())
                })
            }
            Err(e) => Err(from_ureq(url, e)),
        }
    }

    fn post_json(&self, url: &str, body: &str, timeout: Duration) -> Result<u16, HttpError> {
        let req = Self::agent(timeout)
            .post(url)
            .set("Content-Type", "application/json");
        match req.send_string(body) {
            Ok(r) => Ok(r.status()),
            Err(ureq::Error::Status(code, _)) => Ok(code),
            Err(e) => Err(from_ureq(url, e)),
        }
    }
}

/// `{base}/api/v1/boot/pi?serial=<8 hex>&mac=<aa:bb:..>`, plus `&full_serial=` when the
/// board reports more than the 8 digits (so the controller can tell two Pi 5s apart
/// whose low 32 bits collide): the contract's [`BootQuery`], which the controller parses.
/// The boot request's URL. `kernel`: the running kernel's release, so the controller can
/// answer a root that holds its modules (the TFTP folder and the answer are read apart).
pub fn boot_url(
    base: &str,
    serial: &BoardSerial,
    mac: Option<Mac>,
    kernel: Option<&str>,
) -> String {
    let mut query = BootQuery::new(serial.short.clone(), mac, serial.full.clone());
    query.kernel = kernel
        .and_then(pureboot_contract::boot_query::kernel_release)
        .map(String::from);
    format!(
        "{}{}?{}",
        base.trim_end_matches('/'),
        boot_query::PATH,
        query.to_query_string()
    )
}

#[derive(Debug, Clone)]
pub struct AskPolicy {
    pub timeout: Duration,
    /// Failed requests in a row before the controller counts as unreachable.
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Poll interval on `wait` when the answer names none.
    pub wait: Duration,
}

impl AskPolicy {
    pub fn new(timeout: Duration, wait: Duration) -> Self {
        AskPolicy {
            timeout,
            attempts: 5,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(4),
            wait,
        }
    }
}

// One value per boot: boxing the answer would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The controller's answer (never `wait`: that is polled here).
    Answer(PiBootResponse),
    /// No usable answer; the reason names the URL and the last error.
    Unreachable(String),
}

/// Whether an HTTP error answer is final: a 4xx says the request itself is wrong (unknown
/// node, bad query, forbidden), so asking again would get the same. A busy or rate-limited
/// server (408, 429) and every 5xx are transient: another machine flooding the controller
/// must not make a Pi give up its boot.
fn is_final(status: u16) -> bool {
    (400..=499).contains(&status) && !matches!(status, 408 | 429)
}

/// Ask until there is an answer other than `wait`, or the controllers count as unreachable:
/// `attempts` transient errors, busy answers (408, 429, 5xx) or unreadable bodies in a row
/// (backing off between them, at least as long as a `Retry-After` asks), or at once on a
/// permanent error or another 4xx (asking again would get the same: the controllers share
/// one registry).
///
/// `urls` are the boot URLs of several controllers of one registry: each transient failure
/// moves to the next (in turn, within the same `attempts`); a `wait` stays with the one that
/// answered. Every answer's `Date` goes to `clock` (the controller's clock, for a board
/// without one).
pub fn ask(
    http: &dyn Http,
    sleep: &mut dyn FnMut(Duration),
    clock: &mut dyn FnMut(u64),
    urls: &[String],
    p: &AskPolicy,
) -> Outcome {
    if urls.is_empty() {
        return Outcome::Unreachable("no controller to ask".into());
    }
    let mut at = 0;
    let mut failures = 0;
    let mut backoff = p.first_backoff;
    loop {
        let url = urls[at].as_str();
        let mut pause = backoff;
        let reply = http.get(url, p.timeout);
        if let Some(date) = reply.as_ref().ok().and_then(|r| r.date) {
            clock(date);
        }
        let err = match reply {
            Ok(Reply {
                status: 200..=299,
                body,
                ..
            }) => match serde_json::from_str::<PiBootResponse>(&body) {
                Ok(r) if r.action == Some(BootAction::Wait) => {
                    // Never a tight loop, whatever the answer says.
                    let delay = r
                        .retry_after
                        .map_or(p.wait, |s| Duration::from_secs(s.into()))
                        .max(Duration::from_secs(1));
                    log::info!(
                        "controller says wait (state {}{}); asking again in {} s",
                        r.state,
                        r.message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default(),
                        delay.as_secs()
                    );
                    crate::steps::watchdog::progress();
                    sleep(delay);
                    failures = 0;
                    backoff = p.first_backoff;
                    continue;
                }
                Ok(r) => return Outcome::Answer(r),
                Err(e) => format!("unreadable answer: {e}"),
            },
            Ok(Reply { status, body, .. }) if is_final(status) => {
                return Outcome::Unreachable(format!(
                    "GET {url}: HTTP {status}: {}",
                    error_text(&body)
                ))
            }
            Ok(Reply {
                status,
                body,
                retry_after,
                ..
            }) => {
                // A named pause is kept, within the policy's longest backoff.
                if let Some(s) = retry_after {
                    pause = pause.max(Duration::from_secs(s.into()).min(p.max_backoff));
                }
                format!("HTTP {status}: {}", error_text(&body))
            }
            Err(e) if e.permanent => {
                return Outcome::Unreachable(format!("GET {url}: {}", e.message))
            }
            Err(e) => e.message,
        };
        failures += 1;
        if failures >= p.attempts {
            return Outcome::Unreachable(format!("GET {url}: {err} ({failures} attempts)"));
        }
        at = (at + 1) % urls.len();
        log::warn!(
            "controller: GET {url}: {err}; asking {} in {} ms",
            if urls.len() == 1 { "again" } else { &urls[at] },
            pause.as_millis()
        );
        sleep(pause);
        backoff = (backoff * 2).min(p.max_backoff);
    }
}

/// The `error` of an ApiError body, else the body itself (shortened).
fn error_text(body: &str) -> String {
    match serde_json::from_str::<pureboot_contract::ApiError>(body) {
        Ok(e) => match e.detail {
            Some(d) => format!("{}: {d}", e.error),
            None => e.error,
        },
        Err(_) => body.chars().take(200).collect(),
    }
}

/// POST a callback once with a short timeout. Failure is logged, never fatal: upstream's
/// callback demands authentication a Pi does not have (401).
pub fn post_callback(http: &dyn Http, url: &str, body: &impl serde::Serialize) -> bool {
    let body = match serde_json::to_string(body) {
        Ok(b) => b,
        Err(e) => {
            log::warn!("callback {url}: cannot encode: {e}");
            return false;
        }
    };
    match http.post_json(url, &body, Duration::from_secs(2)) {
        Ok(code @ 200..=299) => {
            log::info!("callback {url}: HTTP {code}");
            true
        }
        Ok(code) => {
            log::warn!("callback {url}: HTTP {code}; booting anyway");
            false
        }
        Err(e) => {
            log::warn!("callback {url}: {}; booting anyway", e.message);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// idna_adapter 1.0 (Cargo.toml): ASCII host names still resolve; a Unicode one is a
    /// clear, permanent error instead of 120 KB of ICU tables in PID 1.
    #[test]
    fn a_transport_error_is_said_without_the_url_the_caller_names() {
        // Nothing listens on port 1 of the loopback: refused at once.
        let url = "http://127.0.0.1:1/api/v1/boot/pi";
        let e = Ureq.get(url, Duration::from_secs(2)).unwrap_err();
        assert!(!e.permanent, "{}", e.message);
        assert!(!e.message.contains(url), "{}", e.message);
        assert!(e.message.contains("refused"), "{}", e.message);
    }

    #[test]
    fn ascii_host_names_work_and_unicode_ones_are_refused() {
        let short = Duration::from_millis(300);
        let e = Ureq.get("http://localhost:1/api", short).unwrap_err();
        assert!(
            !e.permanent,
            "a refused connection is worth a retry: {}",
            e.message
        );
        let e = Ureq
            .get("http://contrôleur.example:1/api", short)
            .unwrap_err();
        assert!(e.permanent, "{}", e.message);
    }

    /// Answers GETs from a script (an `Err` starting with `permanent:` is a permanent
    /// error); records POSTs.
    struct ScriptedHttp {
        answers: Mutex<VecDeque<Result<Reply, HttpError>>>,
        gets: Mutex<u32>,
        urls: Mutex<Vec<String>>,
        posts: Mutex<Vec<(String, String)>>,
    }

    impl ScriptedHttp {
        fn new(answers: Vec<Result<(u16, &str), &str>>) -> Self {
            let error = |e: &str| match e.strip_prefix("permanent:") {
                Some(m) => HttpError::permanent(m),
                None => HttpError::transient(e),
            };
            Self::replies(
                answers
                    .into_iter()
                    .map(|a| a.map(|(c, b)| Reply::new(c, b)).map_err(error))
                    .collect(),
            )
        }

        /// Answers GETs with these replies, headers and all.
        fn replies(replies: Vec<Result<Reply, HttpError>>) -> Self {
            ScriptedHttp {
                answers: Mutex::new(replies.into()),
                gets: Mutex::new(0),
                urls: Mutex::new(Vec::new()),
                posts: Mutex::new(Vec::new()),
            }
        }
    }

    impl Http for ScriptedHttp {
        fn get(&self, url: &str, _t: Duration) -> Result<Reply, HttpError> {
            *self.gets.lock().unwrap() += 1;
            self.urls.lock().unwrap().push(url.into());
            self.answers
                .lock()
                .unwrap()
                .pop_front()
                .expect("more GETs than scripted")
        }
        fn post_json(&self, url: &str, body: &str, _t: Duration) -> Result<u16, HttpError> {
            self.posts.lock().unwrap().push((url.into(), body.into()));
            Ok(401)
        }
    }

    const NFS: &str =
        r#"{"state":"installing","action":"nfs_boot","nfs_server":"10.0.2.2","nfs_path":"/srv"}"#;

    fn run(http: &ScriptedHttp) -> (Outcome, Vec<Duration>) {
        let mut slept = Vec::new();
        let p = AskPolicy::new(Duration::from_secs(1), Duration::from_secs(10));
        let out = ask(
            http,
            &mut |d| slept.push(d),
            &mut |_| {},
            &["http://c/api/v1/boot/pi?serial=x&mac=y".to_string()],
            &p,
        );
        (out, slept)
    }

    #[test]
    fn a_failing_controller_hands_over_to_the_next_and_a_wait_stays_with_the_one_that_answered() {
        let wait = r#"{"state":"discovered","action":"wait","retry_after":1}"#;
        let http = ScriptedHttp::new(vec![
            Err("connection refused"),
            Ok((503, "restarting")),
            Ok((200, wait)),
            Ok((200, NFS)),
        ]);
        let urls = ["http://a/boot".to_string(), "http://b/boot".to_string()];
        let p = AskPolicy::new(Duration::from_secs(1), Duration::from_secs(10));
        let out = ask(&http, &mut |_| {}, &mut |_| {}, &urls, &p);
        assert!(matches!(out, Outcome::Answer(_)), "{out:?}");
        let asked = http.urls.lock().unwrap().clone();
        assert_eq!(
            asked,
            [
                "http://a/boot",
                "http://b/boot",
                "http://a/boot",
                "http://a/boot"
            ]
        );

        // Both down: the one budget counts every failure, whichever controller it was.
        let http = ScriptedHttp::new(vec![Err("refused"); 5]);
        let out = ask(&http, &mut |_| {}, &mut |_| {}, &urls, &p);
        assert!(
            matches!(&out, Outcome::Unreachable(why) if why.contains("(5 attempts)")),
            "{out:?}"
        );
        // A final answer from one is final: the controllers share one registry.
        let http = ScriptedHttp::new(vec![Ok((403, "{\"error\":\"forbidden\"}"))]);
        let out = ask(&http, &mut |_| {}, &mut |_| {}, &urls, &p);
        assert!(matches!(out, Outcome::Unreachable(_)), "{out:?}");
        assert_eq!(*http.gets.lock().unwrap(), 1);
    }

    fn serial(text: &str) -> BoardSerial {
        crate::steps::serial::read(std::path::Path::new("/nonexistent"), Some(text)).unwrap()
    }

    fn mac(text: &str) -> Mac {
        Mac::parse(text).unwrap()
    }

    #[test]
    fn url_shape() {
        assert_eq!(
            boot_url(
                "http://10.0.2.2:8080/",
                &serial("d83add36"),
                Some(mac("52:54:00:12:34:56")),
                None
            ),
            "http://10.0.2.2:8080/api/v1/boot/pi?serial=d83add36&mac=52:54:00:12:34:56"
        );
        assert_eq!(
            boot_url(
                "http://c",
                &serial("10000000d83add36"),
                Some(mac("AA:BB:CC:00:11:22")),
                Some("6.1.0-31-arm64")
            ),
            "http://c/api/v1/boot/pi?serial=d83add36&mac=aa:bb:cc:00:11:22&full_serial=10000000d83add36&kernel=6.1.0-31-arm64"
        );
        // A release that is no release name is left out, never sent.
        let url = boot_url("http://c", &serial("d83add36"), None, Some("../x"));
        assert_eq!(url, "http://c/api/v1/boot/pi?serial=d83add36");
    }

    #[test]
    fn transient_errors_back_off_then_answer() {
        let http = ScriptedHttp::new(vec![
            Err("connection refused"),
            Ok((503, "busy")),
            Ok((200, NFS)),
        ]);
        let (out, slept) = run(&http);
        match out {
            Outcome::Answer(r) => assert_eq!(r.nfs_path.as_deref(), Some("/srv")),
            o => panic!("{o:?}"),
        }
        assert_eq!(
            slept,
            [Duration::from_millis(500), Duration::from_millis(1000)]
        );
    }

    #[test]
    fn a_busy_or_rate_limited_controller_is_asked_again_after_its_retry_after() {
        let busy = |status, retry_after| {
            Ok(Reply {
                retry_after,
                ..Reply::new(status, r#"{"error":"too many requests"}"#)
            })
        };
        let http = ScriptedHttp::replies(vec![
            busy(429, Some(3)),
            busy(503, None),
            busy(429, Some(3600)),
            busy(408, None),
            Ok(Reply::new(200, NFS)),
        ]);
        let (out, slept) = run(&http);
        assert!(matches!(out, Outcome::Answer(_)), "{out:?}");
        let ms: Vec<u128> = slept.iter().map(|d| d.as_millis()).collect();
        assert_eq!(
            ms,
            [3000, 1000, 4000, 4000],
            "Retry-After when longer than the backoff, never past the policy's longest"
        );
        for (status, is) in [
            (400, true),
            (403, true),
            (404, true),
            (408, false),
            (429, false),
        ] {
            assert_eq!(is_final(status), is, "{status}");
        }
        assert!(!is_final(500) && !is_final(503));
    }

    #[test]
    fn wait_polls_with_retry_after_or_the_default() {
        let http = ScriptedHttp::new(vec![
            Ok((
                200,
                r#"{"state":"discovered","action":"wait","retry_after":3}"#,
            )),
            Ok((200, r#"{"state":"discovered","action":"wait"}"#)),
            Ok((
                200,
                r#"{"state":"discovered","action":"wait","retry_after":0}"#,
            )),
            Ok((200, NFS)),
        ]);
        let (out, slept) = run(&http);
        assert!(matches!(out, Outcome::Answer(_)));
        let s: Vec<u64> = slept.iter().map(Duration::as_secs).collect();
        assert_eq!(
            s,
            [3, 10, 1],
            "retry_after, the default, and never below 1 s"
        );
    }

    #[test]
    fn bounded_retries_then_unreachable() {
        let http = ScriptedHttp::new(vec![Err("timed out"); 5]);
        let (out, slept) = run(&http);
        match out {
            Outcome::Unreachable(e) => {
                assert!(e.contains("timed out") && e.contains("5 attempts"), "{e}")
            }
            o => panic!("{o:?}"),
        }
        let ms: Vec<u128> = slept.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [500, 1000, 2000, 4000], "exponential, capped");
        assert_eq!(*http.gets.lock().unwrap(), 5);
    }

    #[test]
    fn a_permanent_error_is_not_retried() {
        let http = ScriptedHttp::new(vec![Err("permanent:Bad URL: notaurl")]);
        let (out, slept) = run(&http);
        assert!(
            matches!(out, Outcome::Unreachable(ref e) if e.contains("Bad URL")),
            "{out:?}"
        );
        assert!(slept.is_empty(), "no backoff: {slept:?}");
        assert_eq!(*http.gets.lock().unwrap(), 1);
        // The real client says which errors are permanent.
        let e = Ureq.get("notaurl", Duration::from_millis(200)).unwrap_err();
        assert!(e.permanent, "{e:?}");
        let e = Ureq
            .get("ftp://10.0.2.2/x", Duration::from_millis(200))
            .unwrap_err();
        assert!(e.permanent, "{e:?}");
    }

    #[test]
    fn client_error_is_final_and_readable() {
        let http = ScriptedHttp::new(vec![Ok((
            404,
            r#"{"error":"unknown node","detail":"d83add36"}"#,
        ))]);
        let (out, slept) = run(&http);
        assert_eq!(
            out,
            Outcome::Unreachable(
                "GET http://c/api/v1/boot/pi?serial=x&mac=y: HTTP 404: unknown node: d83add36"
                    .into()
            )
        );
        assert!(slept.is_empty());
        // A garbage 200 body counts as a failed attempt, not as an answer.
        let http = ScriptedHttp::new(vec![Ok((200, "<html>")), Ok((200, NFS))]);
        assert!(matches!(run(&http).0, Outcome::Answer(_)));
    }

    #[test]
    fn callback_failure_is_not_fatal() {
        let http = ScriptedHttp::new(vec![]);
        let ok = post_callback(
            &http,
            "http://c/installed",
            &serde_json::json!({"success": true}),
        );
        assert!(!ok, "401 is reported as not delivered");
        assert_eq!(http.posts.lock().unwrap()[0].1, r#"{"success":true}"#);
    }

    /// The real client against a one-shot HTTP server on loopback.
    #[test]
    fn ureq_round_trip_on_loopback() {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for i in 0..3 {
                let (mut s, _) = listener.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut head = String::new();
                let mut len = 0;
                loop {
                    let mut l = String::new();
                    r.read_line(&mut l).unwrap();
                    if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if l == "\r\n" {
                        break;
                    }
                    head += &l;
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                seen.push((
                    head.lines().next().unwrap().to_string(),
                    String::from_utf8(body).unwrap(),
                ));
                let (status, extra, reply) = match i {
                    2 => ("429 Too Many Requests", "Retry-After: 7\r\n", "{}"),
                    _ => ("200 OK", "Date: Thu, 03 Dec 2026 09:33:23 GMT\r\n", NFS),
                };
                write!(
                    s,
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                )
                .unwrap();
            }
            seen
        });
        let base = format!("http://{addr}");
        let reply = Ureq
            .get(
                &boot_url(
                    &base,
                    &serial("d83add36"),
                    Some(mac("aa:bb:cc:00:11:22")),
                    None,
                ),
                Duration::from_secs(2),
            )
            .unwrap();
        assert_eq!(
            (reply.status, reply.retry_after, reply.date),
            (200, None, Some(1_796_290_403))
        );
        assert!(reply.body.contains("nfs_boot"));
        assert!(post_callback(
            &Ureq,
            &format!("{base}/api/v1/nodes/x/installed"),
            &serde_json::json!({"a": 1})
        ));
        let busy = Ureq
            .get(&format!("{base}/busy"), Duration::from_secs(2))
            .unwrap();
        assert_eq!((busy.status, busy.retry_after), (429, Some(7)));
        let seen = server.join().unwrap();
        assert_eq!(
            seen[0].0,
            "GET /api/v1/boot/pi?serial=d83add36&mac=aa:bb:cc:00:11:22 HTTP/1.1"
        );
        assert_eq!(
            seen[1],
            (
                "POST /api/v1/nodes/x/installed HTTP/1.1".into(),
                r#"{"a":1}"#.into()
            )
        );
        // Nothing listening: a transient transport error, quickly.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = Ureq
            .get(&format!("http://{dead}/"), Duration::from_millis(500))
            .unwrap_err();
        assert!(!e.permanent, "{e:?}");
    }
}
