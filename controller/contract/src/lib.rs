//! The contract between pi-init, the controller and pureboot-image: what all three must
//! agree on, written once.
//!
//! - The JSON of the boot API (this file). Field names and meanings follow upstream
//!   PureBoot's Pi API (`PiBootResponse`, the `installed` / `install-failed` callbacks,
//!   `register-pi`). Everything we add is optional, so `pi-init` boots from an
//!   upstream-shaped answer and upstream's scripts still read ours.
//! - [`boot_query`]: the boot request's route and query, built by pi-init, parsed by the
//!   controller.
//! - [`ids`]: serials, MACs, host names (and the default one), image names, machine ids,
//!   each with one parser.
//! - [`layout`]: the export's `base/` and `nodes/` tree, the writable layer and the identity
//!   files.
//! - [`cmdline_keys`]: the kernel command line's `pureboot.*` keys.
//! - [`after_boot`]: what the booted node's agent asks and reports (post-boot steps, "boot
//!   complete").
//! - [`BootAction`]; [`OverlayMode`], with what each mode needs and which one a node gets;
//!   [`OverlayOutcome`], how the overlay step went; [`FailureReport`]: where a failed boot
//!   is reported, and [`InstalledReport::failure`]: how a report tells one.

pub mod after_boot;
pub mod boards;
pub mod boot_query;
pub mod cmdline_keys;
pub mod ids;
pub mod layout;
pub mod names;
pub mod volumes;

pub mod modules_list;

use serde::{Deserialize, Serialize};

/// `GET /api/v1/boot/pi?serial=<8 hex>&mac=<aa:bb:..>` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiBootResponse {
    /// Node state as the controller sees it (`discovered`, `installing`, `active`, ...).
    pub state: String,
    /// What the Pi should do; `None` means the controller has nothing for it.
    #[serde(default)]
    pub action: Option<BootAction>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub nfs_server: Option<String>,
    /// Path of the export root on the server (holds `base/` and `nodes/`).
    #[serde(default)]
    pub nfs_path: Option<String>,
    /// Where to POST [`InstalledReport`] once the new root is ready.
    #[serde(default)]
    pub callback_url: Option<String>,
    #[serde(default)]
    pub image_url: Option<String>,
    #[serde(default)]
    pub target_device: Option<String>,

    // --- pureboot extensions (all optional) ---
    /// Base image under `<nfs_path>/base/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<String>,
    /// `tmpfs` | `image` | `nfs` | `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// 32 lowercase hex, stable per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    /// Extra NFS mount options (comma separated), e.g. `rsize=65536`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs_options: Option<String>,
    /// Where to POST [`InstallFailedReport`]; when absent a failure goes to `callback_url`
    /// as an [`InstalledReport`] with `success: false` (upstream's way): see [`FailureReport`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_url: Option<String>,
    /// Seconds to wait before asking again when `action` is `wait`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u32>,
    /// Where the booted node's agent asks for its post-boot steps and reports them and
    /// "boot complete" ([`after_boot`]); absent: pi-init leaves no agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_url: Option<String>,
    /// Overlay `image`: the persist image's file in `nodes/<serial>/` (its current
    /// generation, see [`layout`]); absent means [`layout::PERSIST_IMAGE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persist_image: Option<String>,
    /// The node's volumes, mounted in order (see [`volumes`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
}

/// One volume of a boot answer: mount `nodes/<serial>/volumes/<image>` at `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub path: String,
    pub image: String,
}

/// How mounting one volume went, as pi-init reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeOutcome {
    pub path: String,
    pub image: String,
    pub mounted: bool,
    /// Why it is not mounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

named_enum! {
    /// `action` values. Unknown strings are kept, so a newer controller never breaks
    /// parsing; pi-init treats them as a failure with a clear message. On the wire it is the
    /// table's name (serde goes through it, below).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum BootAction: "boot action" {
        NfsBoot = "nfs_boot",
        LocalBoot = "local_boot",
        Wait = "wait",
        DeployImage = "deploy_image";
        Other(String)
    }
}

impl Serialize for BootAction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for BootAction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(match name.parse() {
            Ok(BootAction::Other(_)) => BootAction::Other(name),
            Ok(known) => known,
            Err(never) => match never {},
        })
    }
}

/// Body of `POST /api/v1/nodes/{id}/installed`. Upstream reads `success` and `mode`, and
/// takes `{"success": false, "error": …}` there as a failed boot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstalledReport {
    pub success: bool,
    #[serde(default)]
    pub mode: String,
    /// Why the boot failed, with `success: false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The pi-init step that failed, with `success: false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// `4.2`, `4.1`, `4.0` or `3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs_version: Option<String>,
    /// The overlay mode actually used (after any fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Milliseconds from pi-init's start to the callback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
    /// The overlay step's outcome, typed: what the controller reads (pureboot; absent from
    /// upstream's reports and from pi-init before it, see [`InstalledReport::overlay_outcome`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<OverlayOutcome>,
    /// Human-readable notes of what did not go as asked (e.g. overlay nfs -> tmpfs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub degradations: Vec<String>,
    /// Per-step durations, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepTiming>,
    /// What pi-init did about the answer's `agent_url`: `installed`, or why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Each volume of the answer, mounted or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeOutcome>,
}

/// What the failure text of a report says when it gives none.
pub const NO_ERROR_GIVEN: &str = "reported success: false (no error given)";

impl InstalledReport {
    /// The failure this report tells, as an [`InstallFailedReport`]: upstream reports a
    /// failed boot on the installed route as `{"success": false, "error": …}`, so both
    /// routes read the same way. `None` for a boot that worked.
    pub fn failure(&self) -> Option<InstallFailedReport> {
        (!self.success).then(|| InstallFailedReport {
            error: self.error.clone().unwrap_or_else(|| NO_ERROR_GIVEN.into()),
            step: self.step.clone(),
            serial: self.serial.clone(),
            mac: self.mac.clone(),
        })
    }

    /// How the overlay step went: the typed [`InstalledReport::overlay`] where the report
    /// has it. A pi-init from before that field said it in text only, which is read here
    /// and nowhere else: `overlay_mode` is the mode used, and a fallback away from a mode is
    /// a degradation note starting `overlay <mode>` ([`OverlayOutcome::note_prefix`]). Such a
    /// report does not say what was wanted: `wanted` is the mode the caller asked for, whose
    /// notes are looked for. `None` when the report says nothing of the overlay (upstream's).
    pub fn overlay_outcome(&self, wanted: OverlayMode) -> Option<OverlayOutcome> {
        if let Some(o) = &self.overlay {
            return Some(o.clone());
        }
        let prefix = OverlayOutcome::note_prefix(wanted);
        let notes: Vec<&str> = self
            .degradations
            .iter()
            .map(String::as_str)
            .filter(|d| d.starts_with(&prefix))
            .collect();
        let used = self.overlay_mode.as_deref().map(str::parse::<OverlayMode>);
        let used = match used {
            Some(Ok(m)) => Some(m),
            // A name this contract does not know: not the wanted one.
            Some(Err(_)) => Some(OverlayMode::Tmpfs).filter(|m| *m != wanted),
            None => None,
        };
        let fallback = (!notes.is_empty()).then(|| notes.join("; "));
        match (used, fallback) {
            (None, None) => None,
            (used, fallback) => Some(OverlayOutcome {
                wanted,
                // Notes without a used mode: pi-init fell back (to tmpfs, its only fallback).
                used: used.unwrap_or(OverlayMode::Tmpfs),
                fallback,
            }),
        }
    }
}

/// The overlay step's outcome, as pi-init reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayOutcome {
    /// The mode asked for (the answer's `overlay_mode`, else the command line's).
    pub wanted: OverlayMode,
    /// The mode the root was assembled with.
    pub used: OverlayMode,
    /// Why `used` is not `wanted`, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

impl OverlayOutcome {
    /// Whether the wanted mode was used as asked.
    pub fn as_wanted(&self) -> bool {
        self.used == self.wanted && self.fallback.is_none()
    }

    /// How a degradation note about `mode` starts (`overlay image unavailable (…)`): the
    /// text older pi-inits reported a fallback in, before [`InstalledReport::overlay`].
    pub fn note_prefix(mode: OverlayMode) -> String {
        format!("overlay {mode}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTiming {
    pub step: String,
    pub ms: u64,
}

/// Body of `POST /api/v1/nodes/{id}/install-failed`. Upstream reads `error`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallFailedReport {
    pub error: String,
    /// The pi-init step that failed (`network`, `controller`, `nfs-mount`, `overlay`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// Body of `POST /api/v1/nodes/register-pi`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterPiRequest {
    pub serial: String,
    pub mac: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub ip_address: Option<String>,
}

/// Every error answer of the controller: `{"error": "...", "detail": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

named_enum! {
    /// Where a node's writable layer lives (see the README's overlay modes). On the wire it
    /// is the lowercase name; `overlay_mode` stays a string in [`PiBootResponse`] so an
    /// unknown mode from a newer controller is reported by pi-init rather than failing the
    /// whole answer.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum OverlayMode: "overlay mode" {
        /// Upper and work on a tmpfs on the Pi; writes are lost at reboot.
        #[default]
        Tmpfs = "tmpfs",
        /// Upper and work inside `nodes/<serial8>/persist.img`, loop-mounted by the Pi.
        Image = "image",
        /// Upper and work on NFS (`nodes/<serial8>/{upper,work}`), where kernel and server allow.
        Nfs = "nfs",
        /// No writable layer: a read-only overlay of the node files over the base.
        None = "none",
    }
}

impl OverlayMode {
    /// The mode a node boots with: its own setting, else its workflow's, else `tmpfs`.
    pub fn resolve(node: Option<OverlayMode>, workflow: Option<OverlayMode>) -> OverlayMode {
        node.or(workflow).unwrap_or_default()
    }

    /// Whether the node writes to the export (so the export is mounted read-write): the
    /// `image` file and the `nfs` upper live there.
    pub fn writes_export(self) -> bool {
        matches!(self, OverlayMode::Image | OverlayMode::Nfs)
    }

    /// Whether the mode needs the disk modules (loop, ext4) of the initramfs.
    pub fn needs_disk_modules(self) -> bool {
        self == OverlayMode::Image
    }
}

/// Where a failed boot is reported, and so in which shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReport {
    /// `POST` an [`InstallFailedReport`] to this URL (the answer's `failure_url`).
    InstallFailed(String),
    /// `POST` an [`InstalledReport`] with `success: false` to the callback URL: upstream
    /// PureBoot has no install-failed route and reads failures there.
    Callback(String),
}

impl FailureReport {
    /// The answer's explicit `failure_url`, else its `callback_url`.
    pub fn choose(failure_url: Option<&str>, callback_url: Option<&str>) -> Option<FailureReport> {
        match (failure_url, callback_url) {
            (Some(f), _) => Some(FailureReport::InstallFailed(f.to_string())),
            (None, Some(c)) => Some(FailureReport::Callback(c.to_string())),
            (None, None) => None,
        }
    }

    pub fn url(&self) -> &str {
        match self {
            FailureReport::InstallFailed(u) | FailureReport::Callback(u) => u,
        }
    }
}

impl PiBootResponse {
    /// Where a failed boot from this answer is reported.
    pub fn failure_report(&self) -> Option<FailureReport> {
        FailureReport::choose(self.failure_url.as_deref(), self.callback_url.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_shaped_answer_parses() {
        // As upstream's server answers a pending node: only its own fields.
        let json = r#"{"state":"installing","action":"nfs_boot","message":"Booting from NFS",
            "nfs_server":"10.0.2.2","nfs_path":"/srv/nfsroot",
            "callback_url":"http://10.0.2.2:8080/api/v1/nodes/5f0c/installed",
            "image_url":null,"target_device":null}"#;
        let r: PiBootResponse = serde_json::from_str(json).unwrap();
        assert_eq!(r.action, Some(BootAction::NfsBoot));
        assert_eq!(r.nfs_path.as_deref(), Some("/srv/nfsroot"));
        assert_eq!(r.base_image, None);
        // No failure_url: failures go to the callback, upstream's way.
        assert_eq!(
            r.failure_report(),
            Some(FailureReport::Callback(
                "http://10.0.2.2:8080/api/v1/nodes/5f0c/installed".into()
            ))
        );
        let ours = PiBootResponse {
            failure_url: Some("http://c/api/v1/nodes/x/install-failed".into()),
            ..r
        };
        assert_eq!(
            ours.failure_report(),
            Some(FailureReport::InstallFailed(
                "http://c/api/v1/nodes/x/install-failed".into()
            ))
        );
    }

    #[test]
    fn minimal_and_unknown_actions() {
        let r: PiBootResponse = serde_json::from_str(r#"{"state":"discovered"}"#).unwrap();
        assert_eq!(r.action, None);
        let r: PiBootResponse =
            serde_json::from_str(r#"{"state":"x","action":"reflash_bios"}"#).unwrap();
        assert_eq!(r.action, Some(BootAction::Other("reflash_bios".into())));
        let r: PiBootResponse = serde_json::from_str(r#"{"state":"x","action":null}"#).unwrap();
        assert_eq!(r.action, None);
        assert!(serde_json::from_str::<PiBootResponse>(r#"{"action":"wait"}"#).is_err());
    }

    #[test]
    fn extensions_are_omitted_when_absent() {
        let r = PiBootResponse {
            state: "active".into(),
            ..Default::default()
        };
        let s = serde_json::to_string(&r).unwrap();
        assert!(!s.contains("overlay_mode"), "{s}");
        assert!(
            s.contains("\"callback_url\":null"),
            "upstream fields always present: {s}"
        );
        let back: PiBootResponse = serde_json::from_str(&s).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn images_and_volumes_on_the_wire() {
        // An older controller's answer names no image: generation 0, persist.img.
        let old: PiBootResponse = serde_json::from_str(r#"{"state":"installing"}"#).unwrap();
        assert_eq!((old.persist_image, old.volumes.len()), (None, 0));
        let ours = PiBootResponse {
            state: "installing".into(),
            persist_image: Some("persist.2.img".into()),
            volumes: vec![Volume {
                path: "/var/lib/rancher".into(),
                image: "var-lib-rancher.1.img".into(),
            }],
            ..Default::default()
        };
        let s = serde_json::to_string(&ours).unwrap();
        assert!(
            s.contains(r#""persist_image":"persist.2.img","volumes":[{"path":"/var/lib/rancher","image":"var-lib-rancher.1.img"}]"#),
            "{s}"
        );
        assert_eq!(serde_json::from_str::<PiBootResponse>(&s).unwrap(), ours);
        let report = InstalledReport {
            success: true,
            volumes: vec![VolumeOutcome {
                path: "/data".into(),
                image: "data.1.img".into(),
                mounted: false,
                error: Some("EINVAL".into()),
            }],
            ..Default::default()
        };
        let s = serde_json::to_string(&report).unwrap();
        assert!(s.contains(r#""mounted":false,"error":"EINVAL""#), "{s}");
        assert_eq!(serde_json::from_str::<InstalledReport>(&s).unwrap(), report);
    }

    #[test]
    fn reports_round_trip() {
        let rep = InstalledReport {
            success: true,
            mode: "nfs_boot".into(),
            nfs_version: Some("3".into()),
            degradations: vec!["overlay nfs refused: EINVAL; using tmpfs".into()],
            ..Default::default()
        };
        let s = serde_json::to_string(&rep).unwrap();
        assert!(s.starts_with(r#"{"success":true,"mode":"nfs_boot""#), "{s}");
        assert_eq!(serde_json::from_str::<InstalledReport>(&s).unwrap(), rep);
        let f: InstallFailedReport = serde_json::from_str(r#"{"error":"boom"}"#).unwrap();
        assert_eq!(f.error, "boom");
        // Upstream's failure shape on the callback.
        let f: InstalledReport =
            serde_json::from_str(r#"{"success":false,"error":"boom"}"#).unwrap();
        assert!(!f.success);
        assert_eq!(f.error.as_deref(), Some("boom"));
    }

    #[test]
    fn boot_actions_are_their_table_names_on_the_wire() {
        for a in BootAction::ALL {
            let json = serde_json::to_value(&a).unwrap();
            assert_eq!(json, a.as_str());
            assert_eq!(serde_json::from_value::<BootAction>(json).unwrap(), a);
            assert_eq!(a.name(), Some(a.as_str()));
        }
        let other = BootAction::Other("reflash_bios".into());
        assert_eq!(serde_json::to_value(&other).unwrap(), "reflash_bios");
        assert_eq!(other.name(), None);
        assert_eq!(
            "deploy_image".parse::<BootAction>(),
            Ok(BootAction::DeployImage)
        );
    }

    #[test]
    fn failures_read_the_same_by_either_route() {
        let r: InstalledReport =
            serde_json::from_str(r#"{"success":false,"error":"boom","step":"nfs-mount"}"#).unwrap();
        let f = r.failure().unwrap();
        assert_eq!(
            (f.error.as_str(), f.step.as_deref()),
            ("boom", Some("nfs-mount"))
        );
        let r: InstalledReport = serde_json::from_str(r#"{"success":false}"#).unwrap();
        assert_eq!(r.failure().unwrap().error, NO_ERROR_GIVEN);
        let ok: InstalledReport = serde_json::from_str(r#"{"success":true}"#).unwrap();
        assert_eq!(ok.failure(), None);
    }

    #[test]
    fn overlay_outcomes_typed_and_from_older_pi_inits() {
        use OverlayMode::{Image, Tmpfs};
        let typed = InstalledReport {
            success: true,
            overlay_mode: Some("tmpfs".into()),
            overlay: Some(OverlayOutcome {
                wanted: Image,
                used: Tmpfs,
                fallback: Some("mount: EINVAL".into()),
            }),
            ..Default::default()
        };
        let s = serde_json::to_string(&typed).unwrap();
        assert!(
            s.contains(r#""overlay":{"wanted":"image","used":"tmpfs","fallback":"mount: EINVAL"}"#),
            "{s}"
        );
        assert_eq!(typed.overlay_outcome(Image), typed.overlay);
        assert!(!typed.overlay.unwrap().as_wanted());

        // An older pi-init: the used mode and a note, as text.
        let old = |used: Option<&str>, notes: &[&str]| InstalledReport {
            success: true,
            overlay_mode: used.map(Into::into),
            degradations: notes.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        };
        let note = "overlay image unavailable (EINVAL); using tmpfs, writes will not persist";
        assert_eq!(OverlayOutcome::note_prefix(Image), "overlay image");
        let table = [
            (Some("tmpfs"), vec![note], Some((Tmpfs, Some(note)))),
            (Some("tmpfs"), vec![], Some((Tmpfs, None))),
            (None, vec![note], Some((Tmpfs, Some(note)))),
            (Some("image"), vec![], Some((Image, None))),
            (
                Some("image"),
                vec!["overlay nfs refused; using tmpfs"],
                Some((Image, None)),
            ),
            (None, vec![], None),
        ];
        for (used, notes, want) in table {
            let got = old(used, &notes).overlay_outcome(Image);
            let want = want.map(|(used, fallback)| OverlayOutcome {
                wanted: Image,
                used,
                fallback: fallback.map(Into::into),
            });
            assert_eq!(got, want, "{used:?} {notes:?}");
        }
    }

    #[test]
    fn overlay_precedence_is_node_then_workflow_then_tmpfs() {
        use OverlayMode::{Image, Nfs, Tmpfs};
        assert_eq!(OverlayMode::resolve(Some(Nfs), Some(Image)), Nfs);
        assert_eq!(OverlayMode::resolve(None, Some(Image)), Image);
        assert_eq!(OverlayMode::resolve(None, None), Tmpfs);
    }

    #[test]
    fn overlay_modes_say_what_they_need() {
        use OverlayMode::*;
        let table = [
            (Tmpfs, false, false),
            (Image, true, true),
            (Nfs, true, false),
            (None, false, false),
        ];
        for (m, writes, disk) in table {
            assert_eq!(m.writes_export(), writes, "{m}");
            assert_eq!(m.needs_disk_modules(), disk, "{m}");
            assert_eq!(m.as_str().parse::<OverlayMode>().unwrap(), m);
            // The wire (serde) names are the table's names.
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
        assert_eq!(OverlayMode::ALL.len(), table.len());
        let e = "zram".parse::<OverlayMode>().unwrap_err().to_string();
        assert_eq!(
            e,
            r#"unknown overlay mode "zram" (expected tmpfs, image, nfs or none)"#
        );
    }
}
