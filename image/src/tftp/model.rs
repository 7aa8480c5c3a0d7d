//! What each Pi model's firmware fetches over TFTP.

/// Pi models we write folders for. The names match config.txt's conditional filters
/// (`[pi3]` also matches the 3B+, 3A+ and CM3; `[pi4]` the 400 and CM4; `[pi5]` the 500 and
/// CM5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Model {
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

impl Model {
    pub const ALL: [Model; 3] = [Model::Pi3, Model::Pi4, Model::Pi5];

    pub fn name(self) -> &'static str {
        match self {
            Model::Pi3 => "pi3",
            Model::Pi4 => "pi4",
            Model::Pi5 => "pi5",
        }
    }

    pub fn from_name(name: &str) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.name() == name)
    }

    /// GPU firmware read from the serial folder. The Pi 5 has none: its EEPROM bootloader
    /// reads config.txt and starts the kernel itself (but see [`Model::prefix_keeper`]).
    pub fn firmware(self) -> &'static [&'static str] {
        match self {
            Model::Pi3 => &["start.elf", "fixup.dat"],
            Model::Pi4 => &["start4.elf", "fixup4.dat"],
            Model::Pi5 => &[],
        }
    }

    /// The Pi 4 and Pi 5 EEPROMs look for `start4.elf` or `start.elf` in the serial folder
    /// (`TFTP_PREFIX`, default the serial in 8 lowercase hex digits) and, finding neither,
    /// clear the prefix and read the TFTP root instead. A Pi 5 runs no start file, so its
    /// folder needs one only to keep the prefix.
    pub fn prefix_keeper(self) -> Option<&'static str> {
        match self {
            Model::Pi5 => Some("start4.elf"),
            Model::Pi3 | Model::Pi4 => None,
        }
    }

    /// The device tree files of the boards this model stands for. The firmware picks the
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
            Model::Pi3 => PI3,
            Model::Pi4 => PI4,
            Model::Pi5 => PI5,
        }
    }

    /// The kernels of a Raspberry Pi OS boot partition this model boots, best first: the
    /// Pi 5 has its own (`kernel_2712.img`, 16K pages) and runs `kernel8.img` too.
    pub fn image_kernels(self) -> &'static [&'static str] {
        match self {
            Model::Pi3 | Model::Pi4 => &["kernel8.img"],
            Model::Pi5 => &["kernel_2712.img", "kernel8.img"],
        }
    }

    /// The initramfs preset for this model's boards.
    pub fn preset(self) -> &'static str {
        match self {
            Model::Pi3 => "rpi3",
            Model::Pi4 => "rpi4",
            Model::Pi5 => "rpi5",
        }
    }

    /// The Pi 3's boot ROM asks for `bootcode.bin` at the TFTP root, never under a serial.
    pub fn root_files(self) -> &'static [&'static str] {
        match self {
            Model::Pi3 => &["bootcode.bin"],
            Model::Pi4 | Model::Pi5 => &[],
        }
    }
}
