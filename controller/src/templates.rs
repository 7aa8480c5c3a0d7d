//! One minijinja environment for every workflow string. Undefined names are errors (unless
//! the template gives a `default`), so a workflow never silently renders an empty server.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};

use crate::domain::workflow::Workflow;

/// Names visible to templates: controller settings, node fields, then the workflow's
/// rendered `variables`.
pub type Vars = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("workflow {workflow}: field {field}: {message}")]
pub struct RenderError {
    pub workflow: String,
    pub field: String,
    pub message: String,
}

/// Instructions one field's render may run: a loop over a few thousand items is fine, a
/// runaway (`range(100000)` nested) stops in milliseconds instead of holding a boot.
pub const RENDER_FUEL: u64 = 200_000;
/// Largest rendered value of one field, bytes.
pub const MAX_RENDERED_BYTES: usize = 64 * 1024;

/// How a render over the limits starts its message (see [`RenderError::over_limits`]).
pub const OVER_LIMITS: &str = "over the render limits";

pub struct Templates {
    env: Environment<'static>,
}

/// A writer that refuses to grow past `limit` bytes: a render stops at the limit instead
/// of building the whole string.
struct Bounded {
    buf: Vec<u8>,
    limit: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            return Err(std::io::Error::other("output limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl RenderError {
    /// The render ran out of fuel or output room (as opposed to, say, an undefined name
    /// a node's own values may define).
    pub fn over_limits(&self) -> bool {
        self.message.starts_with(OVER_LIMITS)
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    pub fn new() -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Values are shell snippets, hostnames and paths, not HTML.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_keep_trailing_newline(true);
        env.set_fuel(Some(RENDER_FUEL));
        env.set_recursion_limit(100);
        Templates { env }
    }

    /// Renders one string; the error message carries minijinja's reason (e.g. which name
    /// is undefined).
    /// Bounded: [`RENDER_FUEL`] instructions and [`MAX_RENDERED_BYTES`] of output.
    pub fn render_str(&self, source: &str, vars: &Vars) -> Result<String, String> {
        let tmpl = self.env.template_from_str(source).map_err(describe)?;
        let mut out = Bounded {
            buf: Vec::new(),
            limit: MAX_RENDERED_BYTES,
        };
        match tmpl.render_captured_to(vars, &mut out) {
            Ok(_) => String::from_utf8(out.buf).map_err(|_| "rendered invalid UTF-8".into()),
            Err(e) if e.kind() == minijinja::ErrorKind::WriteFailure => Err(format!(
                "{OVER_LIMITS}: output over {MAX_RENDERED_BYTES} bytes"
            )),
            Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => Err(format!(
                "{OVER_LIMITS}: template runs too long (over {RENDER_FUEL} instructions)"
            )),
            Err(e) => Err(describe(e)),
        }
    }

    /// Syntax check of one template (a group's hostname or variable, when it is set).
    pub fn check_str(&self, source: &str) -> Result<(), String> {
        self.env
            .template_from_str(source)
            .map(|_| ())
            .map_err(describe)
    }

    /// Syntax check of every string field (at load), as `(field path, reason)`.
    pub fn check_workflow(&self, wf: &Workflow) -> Result<(), (String, String)> {
        let mut value = serde_json::to_value(wf).expect("workflow serialises");
        walk_strings(&mut value, String::new(), &mut |path, s| {
            self.env
                .template_from_str(s)
                .map(|_| ())
                .map_err(|e| (path.to_string(), describe(e)))
        })
    }

    /// The workflow with every string field rendered for one node. `variables` are
    /// rendered first (against `base`) and then join the context of the other fields.
    pub fn render_workflow(&self, wf: &Workflow, base: &Vars) -> Result<Workflow, RenderError> {
        self.render_workflow_over(wf, base, &Vars::new())
    }

    /// [`Templates::render_workflow`] with `overrides` (a node's groups' variables, already
    /// rendered) joining the context over the workflow's own variables. The result's
    /// `variables` are the workflow's own, rendered.
    pub fn render_workflow_over(
        &self,
        wf: &Workflow,
        base: &Vars,
        overrides: &Vars,
    ) -> Result<Workflow, RenderError> {
        let err = |field: String, message: String| RenderError {
            workflow: wf.id.clone(),
            field,
            message,
        };
        let mut vars = base.clone();
        let mut rendered_vars = BTreeMap::new();
        for (name, source) in &wf.variables {
            let value = self
                .render_str(source, base)
                .map_err(|m| err(format!("variables.{name}"), m))?;
            rendered_vars.insert(name.clone(), value.clone());
            vars.insert(name.clone(), value);
        }
        vars.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut value = serde_json::to_value(wf).expect("workflow serialises");
        if let Some(obj) = value.as_object_mut() {
            obj.remove("variables");
        }
        walk_strings(&mut value, String::new(), &mut |path, s| {
            if path == "id" {
                return Ok(());
            }
            *s = self
                .render_str(s, &vars)
                .map_err(|m| (path.to_string(), m))?;
            Ok(())
        })
        .map_err(|(field, message)| err(field, message))?;
        let mut out: Workflow = serde_json::from_value(value).map_err(|e| {
            err(
                "-".into(),
                format!("rendered value no longer fits the field: {e}"),
            )
        })?;
        out.variables = rendered_vars;
        Ok(out)
    }
}

/// Template contexts of made-up nodes (`workflow validate`, start, reload), so undefined
/// names and templates over the limits show before any node boots with them. Two nodes:
/// the first has only what every node has, so a name a fresh node lacks (`mac`, `ip`, …)
/// shows as undefined; the second has every value a real node can have, each as long as a
/// real one may be, so a template that only blows up when `mac` or `model` is set (behind
/// `is defined` or `default`) is caught here instead of at each boot of such a node.
pub fn sample_vars(config: &crate::config::Config) -> [Vars; 2] {
    let s = config.public_url();
    let minimal: Vars = [
        ("nfs_server", config.nfs_server.clone()),
        (
            "nfs_path",
            config.nfs.announced_path().display().to_string(),
        ),
        ("public_url", s.clone()),
        ("controller_url", s),
        ("default_base_image", config.nfs.default_base_image.clone()),
        ("node_id", "00000000-0000-4000-8000-000000000000".into()),
        ("serial", "00000000".into()),
        ("hostname", "pi-00000000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut full = minimal.clone();
    for (k, v) in SAMPLE_OPTIONAL {
        full.insert(k.to_string(), v.to_string());
    }
    [minimal, full]
}

/// The node values a real node may have or lack, at their longest: a full serial has 16
/// digits, an address may be IPv6 text, a model up to 64 characters.
pub const SAMPLE_OPTIONAL: &[(&str, &str)] = &[
    ("full_serial", "10000000d83add36"),
    ("mac", "dc:a6:32:01:23:45"),
    ("ip", "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"),
    (
        "model",
        "Raspberry Pi Compute Module 4 Rev 1.1 with an unusually long nam",
    ),
];

fn describe(e: minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// Visits every string leaf with its dotted path (`post_boot[0].script`).
fn walk_strings<E>(
    value: &mut serde_json::Value,
    path: String,
    f: &mut dyn FnMut(&str, &mut String) -> Result<(), E>,
) -> Result<(), E> {
    match value {
        serde_json::Value::String(s) => f(&path, s),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk_strings(item, format!("{path}[{i}]"), f)?;
            }
            Ok(())
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk_strings(v, child, f)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn runaway_templates_stop_at_the_limits() {
        let t = Templates::new();
        let start = std::time::Instant::now();
        let err = t
            .render_str(
                "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}x",
                &vars(&[]),
            )
            .unwrap_err();
        assert!(
            err.contains("too long") && err.starts_with(OVER_LIMITS),
            "{err}"
        );
        let err = t
            .render_str(
                "{% for a in range(100000) %}{{ 'y' * 1000 }}{% endfor %}",
                &vars(&[]),
            )
            .unwrap_err();
        assert!(err.contains("output over"), "{err}");
        let err = t.render_str("{{ 'y' * 100000 }}", &vars(&[])).unwrap_err();
        assert!(err.contains("output over"), "{err}");
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(
            t.render_str("{% for i in range(50) %}{{ i }}{% endfor %}", &vars(&[]))
                .unwrap()
                .len(),
            90
        );
    }

    #[test]
    fn defaults_and_undefined() {
        let t = Templates::new();
        assert_eq!(
            t.render_str("{{ nfs_server | default('192.168.1.10') }}", &vars(&[]))
                .unwrap(),
            "192.168.1.10"
        );
        assert_eq!(
            t.render_str(
                "{{ nfs_server | default('192.168.1.10') }}",
                &vars(&[("nfs_server", "10.0.2.2")])
            )
            .unwrap(),
            "10.0.2.2"
        );
        let err = t.render_str("{{ k3s_token }}", &vars(&[])).unwrap_err();
        assert!(err.contains("undefined"), "{err}");
        assert_eq!(
            t.render_str("a<b & 'c'", &vars(&[])).unwrap(),
            "a<b & 'c'",
            "no HTML escaping"
        );
    }
}
