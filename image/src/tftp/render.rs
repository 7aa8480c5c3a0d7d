//! config.txt and cmdline.txt, as text.
//!
//! Differences from upstream PureBoot's files, on purpose: no `gpu_mem=16` (on a Pi 3 it
//! makes the firmware want start_cd.elf, which is not shipped); no `ip=dhcp` (with a modular
//! NIC driver the kernel waits up to two minutes for a device, and pi-init configures the
//! network itself); no `root=/dev/ram0 rootfstype=ramfs` (meaningless with an initramfs) and
//! no `quiet` (pi-init's step lines are the boot log).

use super::model::Model;
use super::Serial;

pub const KERNEL: &str = "kernel8.img";
pub const INITRAMFS: &str = "initramfs.img";

/// config.txt. One model: its device tree. Several (a discovery folder): one conditional
/// section per model, so each Pi picks its own.
pub fn config_txt(label: &str, device_trees: &[(Model, &str)]) -> String {
    let mut lines = vec![
        format!("# pureboot: {label}, written by pureboot-image"),
        "arm_64bit=1".into(),
        format!("kernel={KERNEL}"),
        // "initramfs" takes no '=': `initramfs=` is silently ignored by the firmware.
        format!("initramfs {INITRAMFS} followkernel"),
        "enable_uart=1".into(),
    ];
    match device_trees {
        [(_, dtb)] => lines.push(format!("device_tree={dtb}")),
        several => {
            for (model, dtb) in several {
                lines.push(format!("[{}]", model.name()));
                lines.push(format!("device_tree={dtb}"));
            }
            lines.push("[all]".into());
        }
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
    words.push(format!("pureboot.url={}", p.controller_url));
    match p.serial {
        Some(serial) => words.push(format!("pureboot.serial={serial}")),
        // Upstream's deploy environment keys discovery on this; pi-init ignores it.
        None => words.push("pureboot.mode=discovery".into()),
    }
    words.extend(p.extra.iter().cloned());
    words.join(" ") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_model_config() {
        let text = config_txt(
            "node d83add36 (pi4)",
            &[(Model::Pi4, "bcm2711-rpi-4-b.dtb")],
        );
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "arm_64bit=1",
                "kernel=kernel8.img",
                "initramfs initramfs.img followkernel",
                "enable_uart=1",
                "device_tree=bcm2711-rpi-4-b.dtb"
            ]
        );
    }

    #[test]
    fn discovery_config_has_a_section_per_model_and_ends_unconditional() {
        let text = config_txt(
            "discovery",
            &[
                (Model::Pi3, "bcm2710-rpi-3-b.dtb"),
                (Model::Pi5, "bcm2712-rpi-5-b.dtb"),
            ],
        );
        let tail: Vec<&str> = text.lines().skip(5).collect();
        assert_eq!(
            tail,
            [
                "[pi3]",
                "device_tree=bcm2710-rpi-3-b.dtb",
                "[pi5]",
                "device_tree=bcm2712-rpi-5-b.dtb",
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
