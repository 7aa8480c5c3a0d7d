//! The boards pureboot-image writes folders for (`--model pi3|pi4|pi5`), from the model a
//! node records, and which of them a base image can boot: its boot partition holds the
//! board's kernel, a device tree of its family and its GPU firmware. The names are those
//! pureboot-image's `Model` (image/src/tftp/model.rs) looks for, which refuses a board
//! missing one; both must change together.

use std::path::Path;

use pureboot_contract::layout::BOOT_FIRMWARE_DIR;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Board {
    Pi3,
    Pi4,
    Pi5,
}

/// Every kernel name a board may boot from an image's boot partition.
pub const KERNELS: [&str; 2] = ["kernel8.img", "kernel_2712.img"];

impl Board {
    pub const ALL: [Board; 3] = [Board::Pi3, Board::Pi4, Board::Pi5];

    /// pureboot-image's `--model` name.
    pub fn name(self) -> &'static str {
        match self {
            Board::Pi3 => "pi3",
            Board::Pi4 => "pi4",
            Board::Pi5 => "pi5",
        }
    }

    /// The board of a node's recorded model (one of `domain::node::PI_MODELS`): the Pi 3
    /// family (and the Zero 2, a BCM2710), the Pi 4 family, the Pi 5 family. Older boards
    /// run no 64-bit kernel and cannot netboot this way: none.
    pub fn of_model(model: &str) -> Option<Board> {
        match model {
            "pi3" | "pi3+" | "cm3" | "cm3+" | "pi02" => Some(Board::Pi3),
            "pi4" | "pi400" | "cm4" | "cm4s" => Some(Board::Pi4),
            "pi5" | "pi500" | "cm5" => Some(Board::Pi5),
            _ => None,
        }
    }

    /// The kernels of the boot partition this board runs (the Pi 5 has its own and runs
    /// kernel8.img too).
    fn kernels(self) -> &'static [&'static str] {
        match self {
            Board::Pi3 | Board::Pi4 => &KERNELS[..1],
            Board::Pi5 => &KERNELS,
        }
    }

    /// Name prefixes of its device trees (Raspberry Pi's and mainline's names).
    fn device_trees(self) -> &'static [&'static str] {
        match self {
            Board::Pi3 => &["bcm2710-rpi-", "bcm2837-rpi-"],
            Board::Pi4 => &["bcm2711-rpi-"],
            Board::Pi5 => &["bcm2712"],
        }
    }

    /// The GPU firmware its folder needs (the Pi 5 runs none).
    fn firmware(self) -> &'static [&'static str] {
        match self {
            Board::Pi3 => &["start.elf", "fixup.dat", "bootcode.bin"],
            Board::Pi4 => &["start4.elf", "fixup4.dat"],
            Board::Pi5 => &[],
        }
    }
}

/// The boards the base image at `image` can boot (none for an image with no boot
/// partition, e.g. one imported from a tarball).
pub fn bootable(image: &Path) -> Vec<Board> {
    let boot = image.join(BOOT_FIRMWARE_DIR);
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let trees: Vec<String> = [names(&boot), names(&boot.join("broadcom"))]
        .concat()
        .into_iter()
        .filter(|n| n.ends_with(".dtb"))
        .collect();
    Board::ALL
        .into_iter()
        .filter(|b| b.kernels().iter().any(|k| boot.join(k).is_file()))
        .filter(|b| b.firmware().iter().all(|f| boot.join(f).is_file()))
        .filter(|b| {
            trees
                .iter()
                .any(|t| b.device_trees().iter().any(|p| t.starts_with(p)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_is_a_board_and_an_image_boots_the_boards_it_has_all_files_for() {
        assert_eq!(Board::of_model("pi3+"), Some(Board::Pi3));
        assert_eq!(Board::of_model("cm4"), Some(Board::Pi4));
        assert_eq!(Board::of_model("pi500"), Some(Board::Pi5));
        assert_eq!(Board::of_model("pi2"), None);
        assert_eq!(Board::of_model("unknown"), None);

        let tmp = tempfile::tempdir().unwrap();
        let boot = tmp.path().join(BOOT_FIRMWARE_DIR);
        assert_eq!(bootable(tmp.path()), []);
        std::fs::create_dir_all(boot.join("broadcom")).unwrap();
        let touch = |p: &str| std::fs::write(boot.join(p), p).unwrap();
        for f in [
            "kernel8.img",
            "start4.elf",
            "fixup4.dat",
            "broadcom/bcm2711-rpi-4-b.dtb",
        ] {
            touch(f);
        }
        assert_eq!(bootable(tmp.path()), [Board::Pi4]);
        // The Pi 5 runs kernel8.img too, but not without its device tree.
        touch("bcm2712-rpi-5-b.dtb");
        assert_eq!(bootable(tmp.path()), [Board::Pi4, Board::Pi5]);
        // The Pi 3 needs its firmware as well as its tree.
        touch("bcm2837-rpi-3-b.dtb");
        touch("start.elf");
        assert_eq!(bootable(tmp.path()), [Board::Pi4, Board::Pi5]);
        touch("fixup.dat");
        touch("bootcode.bin");
        assert_eq!(bootable(tmp.path()), Board::ALL);
    }
}
