//! The Pi boards pureboot writes TFTP folders for, and what each one's firmware fetches:
//! written once for pureboot-image (which writes the folders) and the controller (which
//! tells which boards an image can boot and which board a node's model is).
//!
//! The names match config.txt's conditional filters (`[pi3]` also matches the 3B+, 3A+ and
//! CM3; `[pi4]` the 400 and CM4; `[pi5]` the 500 and CM5).

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Board {
    Pi3,
    Pi4,
    Pi5,
}

/// A family of device tree files, by name prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtbFamily {
    pub prefix: &'static str,
    /// Mainline (kernel.org) names, as Debian's kernel package ships them. The firmware
    /// looks for the Raspberry Pi kernel's names unless config.txt says `upstream_kernel=1`.
    pub mainline: bool,
}

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

    pub fn from_name(name: &str) -> Option<Board> {
        Board::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The board of a recorded model (the firmware's names: `pi3+`, `cm4`, `pi500` ...):
    /// the Pi 3 family (and the Zero 2, a BCM2710), the Pi 4 family, the Pi 5 family. Older
    /// boards run no 64-bit kernel and cannot netboot this way: none.
    pub fn of_model(model: &str) -> Option<Board> {
        match model {
            "pi3" | "pi3+" | "cm3" | "cm3+" | "pi02" => Some(Board::Pi3),
            "pi4" | "pi400" | "cm4" | "cm4s" => Some(Board::Pi4),
            "pi5" | "pi500" | "cm5" => Some(Board::Pi5),
            _ => None,
        }
    }

    /// GPU firmware read from the serial folder. The Pi 5 has none: its EEPROM bootloader
    /// reads config.txt and starts the kernel itself (but see [`Board::prefix_keeper`]).
    pub fn firmware(self) -> &'static [&'static str] {
        match self {
            Board::Pi3 => &["start.elf", "fixup.dat"],
            Board::Pi4 => &["start4.elf", "fixup4.dat"],
            Board::Pi5 => &[],
        }
    }

    /// The Pi 3's boot ROM asks for `bootcode.bin` at the TFTP root, never under a serial.
    pub fn root_files(self) -> &'static [&'static str] {
        match self {
            Board::Pi3 => &["bootcode.bin"],
            Board::Pi4 | Board::Pi5 => &[],
        }
    }

    /// The Pi 4 and Pi 5 EEPROMs look for `start4.elf` or `start.elf` in the serial folder
    /// (`TFTP_PREFIX`, default the serial in 8 lowercase hex digits) and, finding neither,
    /// clear the prefix and read the TFTP root instead. A Pi 5 runs no start file, so its
    /// folder needs one only to keep the prefix.
    pub fn prefix_keeper(self) -> Option<&'static str> {
        match self {
            Board::Pi5 => Some("start4.elf"),
            Board::Pi3 | Board::Pi4 => None,
        }
    }

    /// The device tree files of the boards this one stands for. The firmware picks the
    /// board's own (3B vs 3B+, 4B vs 400 vs CM4, Pi 5 vs its D0 revision, CM5, 500).
    pub fn dtb_families(self) -> &'static [DtbFamily] {
        const fn f(prefix: &'static str, mainline: bool) -> DtbFamily {
            DtbFamily { prefix, mainline }
        }
        // Debian ships the Pi 3 trees as bcm2837-rpi-3-b.dtb etc.
        const PI3: &[DtbFamily] = &[f("bcm2710-rpi-", false), f("bcm2837-rpi-", true)];
        // Both kernels call the Pi 4 trees bcm2711-rpi-*.
        const PI4: &[DtbFamily] = &[f("bcm2711-rpi-", false)];
        // bcm2712-rpi-5-b, bcm2712d0-rpi-5-b, bcm2712-rpi-500, bcm2712-rpi-cm5-*.
        const PI5: &[DtbFamily] = &[f("bcm2712", false)];
        match self {
            Board::Pi3 => PI3,
            Board::Pi4 => PI4,
            Board::Pi5 => PI5,
        }
    }

    /// The kernels of a Raspberry Pi OS boot partition this board boots, best first: the
    /// Pi 5 has its own (`kernel_2712.img`, 16K pages) and runs `kernel8.img` too.
    pub fn image_kernels(self) -> &'static [&'static str] {
        match self {
            Board::Pi3 | Board::Pi4 => &["kernel8.img"],
            Board::Pi5 => &["kernel_2712.img", "kernel8.img"],
        }
    }

    /// The initramfs preset (`modules_list`) for this board's family.
    pub fn preset(self) -> &'static str {
        match self {
            Board::Pi3 => "rpi3",
            Board::Pi4 => "rpi4",
            Board::Pi5 => "rpi5",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_models_map_to_their_family() {
        for b in Board::ALL {
            assert_eq!(Board::from_name(b.name()), Some(b));
            assert_eq!(Board::of_model(b.name()), Some(b));
        }
        assert_eq!(Board::of_model("pi3+"), Some(Board::Pi3));
        assert_eq!(Board::of_model("cm4"), Some(Board::Pi4));
        assert_eq!(Board::of_model("pi500"), Some(Board::Pi5));
        assert_eq!(Board::of_model("pi2"), None);
        assert_eq!(Board::of_model("unknown"), None);
        assert_eq!(Board::from_name("pi2"), None);
    }
}
