//! What each Pi model's firmware fetches over TFTP.

/// Pi models we write folders for. The names match config.txt's conditional filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Model {
    Pi3,
    Pi4,
    Pi5,
}

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::Pi3 => "pi3",
            Model::Pi4 => "pi4",
            Model::Pi5 => "pi5",
        }
    }

    /// GPU firmware read from the serial folder. The Pi 5 has none: its EEPROM bootloader
    /// reads config.txt and starts the kernel itself.
    pub fn firmware(self) -> &'static [&'static str] {
        match self {
            Model::Pi3 => &["start.elf", "fixup.dat"],
            Model::Pi4 => &["start4.elf", "fixup4.dat"],
            Model::Pi5 => &[],
        }
    }

    /// Device tree names, preferred first: the Raspberry Pi kernel's name, then mainline's
    /// (Debian ships `bcm2837-rpi-3-b.dtb` for the Pi 3).
    pub fn device_trees(self) -> &'static [&'static str] {
        match self {
            Model::Pi3 => &["bcm2710-rpi-3-b.dtb", "bcm2837-rpi-3-b.dtb"],
            Model::Pi4 => &["bcm2711-rpi-4-b.dtb"],
            Model::Pi5 => &["bcm2712-rpi-5-b.dtb"],
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
