//! config.txt and cmdline.txt, as text.
//!
//! Differences from upstream PureBoot's files, on purpose: no `gpu_mem=16` (on a Pi 3 it
//! makes the firmware want start_cd.elf, which is not shipped); no `ip=dhcp` (with a modular
//! NIC driver the kernel waits up to two minutes for a device, and pi-init configures the
//! network itself); no `root=/dev/ram0 rootfstype=ramfs` (meaningless with an initramfs) and
//! no `quiet` (pi-init's step lines are the boot log).

use super::model::Model;
use pureboot_contract::boot_query::DISCOVERY;
use pureboot_contract::cmdline_keys as key;
use pureboot_contract::ids::Serial;

/// What config.txt says for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    pub model: Model,
    /// File names inside the folder.
    pub kernel: String,
    pub initramfs: String,
    /// Only when asked for (`--device-tree`): otherwise the firmware picks the board's tree.
    pub device_tree: Option<String>,
    /// The folder holds only mainline-named trees for this model (Debian's `bcm2837-rpi-*`):
    /// `upstream_kernel=1` makes the firmware look for those names.
    pub upstream_kernel: bool,
}

/// config.txt. A node folder (`sections` false) holds one model's lines unconditionally; a
/// discovery folder has one conditional section per model (`[pi3]`, `[pi4]`, `[pi5]`), so
/// each Pi takes its own kernel, initramfs and settings, and ends with `[all]`.
pub fn config_txt(label: &str, models: &[ModelConfig], sections: bool) -> String {
    let mut lines = vec![
        format!("# pureboot: {label}, written by pureboot-image"),
        "arm_64bit=1".into(),
        "enable_uart=1".into(),
    ];
    for m in models {
        if sections {
            lines.push(format!("[{}]", m.model.name()));
        }
        lines.push(format!("kernel={}", m.kernel));
        // "initramfs" takes no '=': `initramfs=` is silently ignored by the firmware.
        lines.push(format!("initramfs {} followkernel", m.initramfs));
        if m.upstream_kernel {
            lines.push("upstream_kernel=1".into());
        }
        if let Some(dtb) = &m.device_tree {
            lines.push(format!("device_tree={dtb}"));
        }
    }
    if sections {
        lines.push("[all]".into());
    }
    lines.join("\n") + "\n"
}

pub struct CmdlineParams<'a> {
    pub consoles: &'a [String],
    pub controller_url: &'a str,
    /// None for the discovery folder: pi-init reads the serial from the device tree.
    pub serial: Option<&'a Serial>,
    pub extra: &'a [String],
}

/// cmdline.txt: one line; the firmware passes it to the kernel as is.
pub fn cmdline_txt(p: &CmdlineParams) -> String {
    let mut words: Vec<String> = p.consoles.iter().map(|c| format!("console={c}")).collect();
    words.push(key::word(key::URL, p.controller_url));
    words.push(match p.serial {
        Some(serial) => key::word(key::SERIAL, serial),
        // Upstream's deploy environment keys discovery on this; pi-init ignores it.
        None => key::word(key::MODE, DISCOVERY),
    });
    words.extend(p.extra.iter().cloned());
    words.join(" ") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(model: Model, kernel: &str, initramfs: &str) -> ModelConfig {
        ModelConfig {
            model,
            kernel: kernel.into(),
            initramfs: initramfs.into(),
            device_tree: None,
            upstream_kernel: false,
        }
    }

    #[test]
    fn node_config_pins_no_device_tree_unless_asked() {
        let text = config_txt(
            "node d83add36 (pi4)",
            &[cfg(Model::Pi4, "kernel8.img", "initramfs.img")],
            false,
        );
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "arm_64bit=1",
                "enable_uart=1",
                "kernel=kernel8.img",
                "initramfs initramfs.img followkernel",
            ]
        );
        let pinned = ModelConfig {
            device_tree: Some("bcm2711-rpi-cm4.dtb".into()),
            ..cfg(Model::Pi4, "kernel8.img", "initramfs.img")
        };
        let text = config_txt("node", &[pinned], false);
        assert!(
            text.ends_with("\ndevice_tree=bcm2711-rpi-cm4.dtb\n"),
            "{text}"
        );
    }

    #[test]
    fn discovery_config_has_a_section_per_model_and_ends_unconditional() {
        let pi3 = ModelConfig {
            upstream_kernel: true,
            ..cfg(Model::Pi3, "kernel8.img", "initramfs-pi3.img")
        };
        let text = config_txt(
            "discovery",
            &[pi3, cfg(Model::Pi5, "kernel8-pi5.img", "initramfs-pi5.img")],
            true,
        );
        let tail: Vec<&str> = text.lines().skip(3).collect();
        assert_eq!(
            tail,
            [
                "[pi3]",
                "kernel=kernel8.img",
                "initramfs initramfs-pi3.img followkernel",
                "upstream_kernel=1",
                "[pi5]",
                "kernel=kernel8-pi5.img",
                "initramfs initramfs-pi5.img followkernel",
                "[all]"
            ]
        );
    }

    #[test]
    fn cmdline_is_one_line_in_order() {
        let serial: Serial = "d83add36".parse().unwrap();
        let consoles = vec!["serial0,115200".to_string(), "tty1".to_string()];
        let extra = vec!["pureboot.log=debug".to_string()];
        let text = cmdline_txt(&CmdlineParams {
            consoles: &consoles,
            controller_url: "http://10.0.0.1:8080",
            serial: Some(&serial),
            extra: &extra,
        });
        assert_eq!(
            text,
            "console=serial0,115200 console=tty1 pureboot.url=http://10.0.0.1:8080 \
             pureboot.serial=d83add36 pureboot.log=debug\n"
        );
        let discovery = cmdline_txt(&CmdlineParams {
            consoles: &consoles[..1],
            controller_url: "http://c",
            serial: None,
            extra: &[],
        });
        assert_eq!(
            discovery,
            "console=serial0,115200 pureboot.url=http://c pureboot.mode=discovery\n"
        );
    }
}
