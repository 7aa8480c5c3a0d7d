//! One virtual Pi: QEMU `virt` (cortex-a57, 512 MB, TCG) or `raspi3b` (BCM2837, 4 cores,
//! 1 GB) with Debian's arm64 kernel, an initramfs and a command line, user-mode networking
//! (the guest is 10.0.2.15 by DHCP and sees the namespace's 127.0.0.1 as 10.0.2.2), its
//! serial console captured to a file. A boot is bounded: past its timeout QEMU is killed and
//! the run reports `TimedOut`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::netns::Netns;
use crate::process::Daemon;

/// The host as the guest sees it (QEMU user networking).
pub const HOST_FROM_GUEST: &str = "10.0.2.2";

/// The machine QEMU emulates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Board {
    /// `-M virt`: virtio NIC, PL011 console `ttyAMA0`; no Pi serial, so the serial is given
    /// on the command line (`pureboot.serial=`).
    Virt,
    /// `-M raspi3b` (BCM2837, 4 cores, 1 GB; QEMU fixes both): the NIC is USB (`usb-net`,
    /// CDC ethernet behind dwc2), the console the mini UART, which Debian's kernel calls
    /// `ttyS1` (QEMU's second `-serial`). `dtb` is the board's device tree with
    /// `/serial-number` set as the firmware sets it ([`raspi3b_dtb`]): the serial comes from
    /// there, not the command line.
    Raspi3b { dtb: PathBuf },
}

/// Debian's Pi 3B device tree with `/serial-number` = `00000000<serial>`, as the Pi firmware
/// adds it (fdtput, package device-tree-compiler), written to `out`.
pub fn raspi3b_dtb(modules_root: &Path, serial: &str, out: &Path) -> Result<PathBuf, String> {
    let lib = modules_root.join("usr/lib");
    let src = std::fs::read_dir(&lib)
        .map_err(|e| format!("{}: {e}", lib.display()))?
        .flatten()
        .map(|e| e.path().join("broadcom/bcm2837-rpi-3-b.dtb"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "no linux-image-*/broadcom/bcm2837-rpi-3-b.dtb under {}",
                lib.display()
            )
        })?;
    std::fs::copy(&src, out).map_err(|e| format!("copying {}: {e}", src.display()))?;
    crate::process::run(Command::new("fdtput").args(["-t", "s"]).arg(out).args([
        "/",
        "serial-number",
        &format!("00000000{serial}"),
    ]))
    .map_err(|e| format!("fdtput (device-tree-compiler): {e}"))?;
    Ok(out.to_path_buf())
}

#[derive(Clone, Debug)]
pub struct VirtualPi {
    pub board: Board,
    /// 8 lowercase hex digits: on the command line for `virt`, in the device tree for a Pi.
    pub serial: String,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Parameters after the fixed ones (console, panic, serial).
    pub cmdline: Vec<String>,
    /// Whether `pureboot.serial=` is on the command line: without it the guest is a board
    /// with no serial at all (the virt board has none of its own).
    pub serial_on_cmdline: bool,
    pub netdev: Netdev,
    pub memory_mb: u32,
    /// vCPUs (a Pi 3/4/5 has 4 cores; the tests use 1 so that parallel boots stay cheap).
    pub cpus: u32,
    pub timeout: Duration,
    /// A raw disk image as a virtio disk (`/dev/vda`), written to a throwaway snapshot so
    /// that every boot starts from the same image.
    pub disk: Option<PathBuf>,
    /// Where the board's real-time clock starts (`-rtc base=`), for a board whose clock is
    /// wrong at power-on as a Pi's is (it has none); `None`: the host's time.
    pub rtc_base: Option<String>,
}

/// How the guest's NIC reaches the namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Netdev {
    /// QEMU's user networking: its own DHCP server, the namespace's loopback as 10.0.2.2.
    User,
    /// A tap device of the namespace (its DHCP server is whatever the scenario runs there).
    Tap(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// QEMU exited by itself (poweroff, or a reboot under -no-reboot).
    Exited,
    TimedOut,
}

#[derive(Debug)]
pub struct BootRun {
    pub serial: String,
    pub console: String,
    pub console_path: PathBuf,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

/// A guest that is running; [`Running::wait`] bounds and collects it.
pub struct Running {
    pi: VirtualPi,
    qemu: Daemon,
    console_path: PathBuf,
    started: Instant,
}

impl VirtualPi {
    pub fn new(serial: &str, kernel: &Path, initrd: &Path) -> VirtualPi {
        VirtualPi {
            board: Board::Virt,
            serial: serial.to_string(),
            kernel: kernel.to_path_buf(),
            initrd: initrd.to_path_buf(),
            cmdline: Vec::new(),
            serial_on_cmdline: true,
            netdev: Netdev::User,
            memory_mb: 512,
            cpus: 1,
            timeout: Duration::from_secs(120),
            disk: None,
            rtc_base: None,
        }
    }

    pub fn arg(mut self, param: impl Into<String>) -> Self {
        self.cmdline.push(param.into());
        self
    }

    /// The board's clock starts at `base` (QEMU's `-rtc base=`, e.g. `2001-01-01`).
    pub fn rtc_base(mut self, base: &str) -> Self {
        self.rtc_base = Some(base.into());
        self
    }

    /// A board with no serial anywhere: `pureboot.serial=` is left off the command line.
    pub fn without_serial(mut self) -> Self {
        self.serial_on_cmdline = false;
        self
    }

    pub fn netdev(mut self, n: Netdev) -> Self {
        self.netdev = n;
        self
    }

    pub fn memory(mut self, mb: u32) -> Self {
        self.memory_mb = mb;
        self
    }

    pub fn cpus(mut self, n: u32) -> Self {
        self.cpus = n.max(1);
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// `image` as the virt board's `/dev/vda` (not on the raspi3b board).
    pub fn disk(mut self, image: &Path) -> Self {
        self.disk = Some(image.to_path_buf());
        self
    }

    pub fn board(mut self, board: Board) -> Self {
        self.board = board;
        self
    }

    /// A MAC unique per serial (QEMU's 52:54:00 prefix + the serial's low 24 bits).
    pub fn mac(&self) -> String {
        let s = &self.serial;
        format!("52:54:00:{}:{}:{}", &s[2..4], &s[4..6], &s[6..8])
    }

    pub fn kernel_cmdline(&self) -> String {
        let mut parts: Vec<String> = match self.board {
            Board::Virt => vec!["console=ttyAMA0".into()],
            // The mini UART at 0x3f215040 from the first line on.
            Board::Raspi3b { .. } => vec![
                "earlycon=uart8250,mmio32,0x3f215040".into(),
                "console=ttyS1,115200".into(),
            ],
        };
        parts.extend([
            // A dying PID 1 must end the run (with -no-reboot) rather than hang until timeout.
            "panic=-1".to_string(),
            // The kernel rate-limits /dev/kmsg writers to 10 lines per 5 s by default and
            // pi-init's timing lines go there: the tests must see every one of them.
            "printk.devkmsg=on".to_string(),
        ]);
        if self.board == Board::Virt && self.serial_on_cmdline {
            parts.push(format!("pureboot.serial={}", self.serial));
        }
        parts.extend(self.cmdline.iter().cloned());
        parts.join(" ")
    }

    pub fn qemu_args(&self) -> Vec<String> {
        match &self.board {
            Board::Virt => self.virt_args(),
            Board::Raspi3b { dtb } => self.raspi3b_args(dtb),
        }
    }

    fn raspi3b_args(&self, dtb: &Path) -> Vec<String> {
        [
            "-M",
            "raspi3b",
            "-display",
            "none",
            "-monitor",
            "none",
            // The PL011 (first) is the Bluetooth UART on a 3B; the console is the mini UART.
            "-serial",
            "null",
            "-serial",
            "stdio",
            "-no-reboot",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-dtb".into(),
            dtb.display().to_string(),
            "-initrd".into(),
            self.initrd.display().to_string(),
            "-append".into(),
            self.kernel_cmdline(),
            "-netdev".into(),
            self.netdev_arg(),
            "-device".into(),
            format!("usb-net,netdev=n0,mac={}", self.mac()),
        ])
        .collect()
    }

    fn netdev_arg(&self) -> String {
        match &self.netdev {
            Netdev::User => "user,id=n0".into(),
            Netdev::Tap(ifname) => format!("tap,id=n0,ifname={ifname},script=no,downscript=no"),
        }
    }

    fn virt_args(&self) -> Vec<String> {
        [
            "-M",
            "virt",
            "-cpu",
            "cortex-a57",
            "-nographic",
            "-no-reboot",
            "-monitor",
            "none",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            "-smp".into(),
            self.cpus.to_string(),
            "-m".into(),
            self.memory_mb.to_string(),
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-initrd".into(),
            self.initrd.display().to_string(),
            "-append".into(),
            self.kernel_cmdline(),
            "-netdev".into(),
            self.netdev_arg(),
            "-device".into(),
            // romfile= (empty): the guest boots its kernel directly and never runs the NIC's
            // iPXE option ROM, so QEMU must not look for efi-virtio.rom (package ipxe-qemu,
            // only a Recommends of qemu-system-arm, absent where set-up skips Recommends).
            format!("virtio-net-pci,netdev=n0,mac={},romfile=", self.mac()),
        ])
        .chain(self.disk.iter().flat_map(|d| {
            [
                "-drive".into(),
                format!("file={},if=none,id=d0,format=raw,snapshot=on", d.display()),
                "-device".into(),
                "virtio-blk-pci,drive=d0".into(),
            ]
        }))
        .chain(
            self.rtc_base
                .iter()
                .flat_map(|b| ["-rtc".into(), format!("base={b}")]),
        )
        .collect()
    }

    /// Starts QEMU in `ns`; the console goes to `console_path`.
    pub fn start(&self, ns: &Netns, console_path: &Path) -> Result<Running, String> {
        let mut cmd: Command = ns.command("qemu-system-aarch64");
        cmd.args(self.qemu_args());
        let qemu = Daemon::spawn(&format!("qemu {}", self.serial), cmd, console_path)
            .map_err(|e| e.to_string())?;
        Ok(Running {
            pi: self.clone(),
            qemu,
            console_path: console_path.to_path_buf(),
            started: Instant::now(),
        })
    }

    pub fn boot(&self, ns: &Netns, console_path: &Path) -> Result<BootRun, String> {
        Ok(self.start(ns, console_path)?.wait())
    }
}

impl Running {
    pub fn serial(&self) -> &str {
        &self.pi.serial
    }

    /// The console so far, while the guest runs (lossy, as [`Running::wait`] reads it).
    pub fn console(&self) -> String {
        std::fs::read(&self.console_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Pulls the plug: QEMU killed with SIGKILL, the guest's caches lost with it.
    pub fn power_cut(mut self) -> BootRun {
        self.qemu.kill();
        self.run(Outcome::Exited)
    }

    /// Waits for QEMU to exit, at most the guest's timeout; kills it past that.
    pub fn wait(mut self) -> BootRun {
        let left = self.pi.timeout.saturating_sub(self.started.elapsed());
        let outcome = match self.qemu.wait_timeout(left) {
            Some(_) => Outcome::Exited,
            None => {
                self.qemu.stop(Duration::from_millis(500));
                Outcome::TimedOut
            }
        };
        self.run(outcome)
    }

    fn run(&self, outcome: Outcome) -> BootRun {
        BootRun {
            serial: self.pi.serial.clone(),
            // Lossy: a UART may put a stray non-UTF-8 byte on the line (the raspi3b mini UART
            // does at start), which must not cost the whole console.
            console: self.console(),
            console_path: self.console_path.clone(),
            outcome,
            elapsed: self.started.elapsed(),
        }
    }
}

impl BootRun {
    /// The console framed for a failure message.
    pub fn dump(&self) -> String {
        format!(
            "----- console of {} ({:?} after {:.1} s, {}) -----\n{}\n----- end of console -----",
            self.serial,
            self.outcome,
            self.elapsed.as_secs_f64(),
            self.console_path.display(),
            self.console.replace('\r', "")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_and_qemu_arguments() {
        let pi = VirtualPi::new("d83add36", Path::new("/k"), Path::new("/i.cpio.gz"))
            .arg("pureboot.url=http://10.0.2.2:8080");
        assert_eq!(pi.mac(), "52:54:00:3a:dd:36");
        assert_eq!(
            pi.kernel_cmdline(),
            "console=ttyAMA0 panic=-1 printk.devkmsg=on pureboot.serial=d83add36 \
             pureboot.url=http://10.0.2.2:8080"
        );
        let args = pi.qemu_args();
        let after = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
        assert_eq!(after("-M"), "virt");
        assert_eq!(after("-cpu"), "cortex-a57");
        assert_eq!(after("-m"), "512");
        assert_eq!(after("-initrd"), "/i.cpio.gz");
        assert_eq!(
            after("-device"),
            "virtio-net-pci,netdev=n0,mac=52:54:00:3a:dd:36,romfile="
        );
        assert!(args.contains(&"-no-reboot".to_string()));
        assert!(!args.contains(&"-drive".to_string()));
        let args = pi.disk(Path::new("/r.img")).qemu_args();
        let drive = args.iter().position(|a| a == "-drive").unwrap();
        assert_eq!(
            args[drive + 1..drive + 4],
            [
                "file=/r.img,if=none,id=d0,format=raw,snapshot=on",
                "-device",
                "virtio-blk-pci,drive=d0"
            ]
        );
    }

    /// QEMU accepts the harness's exact arguments on this machine: started paused (`-S`) it
    /// has realized every device (a missing option ROM fails here, at once) and keeps running.
    #[test]
    fn qemu_starts_with_the_harness_arguments() {
        let env = crate::require!("qemu start", crate::env::TestEnv::get());
        let dir = crate::workdir::WorkDir::new("qemu-start").unwrap();
        let initrd = dir.join("empty.cpio");
        std::fs::write(&initrd, b"").unwrap();
        let pi = VirtualPi::new("d83add36", &env.kernel().image, &initrd);
        let mut cmd = Command::new("qemu-system-aarch64");
        cmd.args(pi.qemu_args()).arg("-S");
        let log = dir.join("qemu.log");
        let mut qemu = Daemon::spawn("qemu (paused)", cmd, &log).unwrap();
        let exited = qemu.wait_timeout(Duration::from_millis(1500));
        let out = qemu.log_tail(20);
        qemu.stop(Duration::from_millis(200));
        assert!(
            exited.is_none(),
            "qemu-system-aarch64 exited ({exited:?}) with the harness's arguments:\n{out}"
        );
    }

    #[test]
    fn a_board_without_a_serial_on_a_tap() {
        let pi = VirtualPi::new("d83add36", Path::new("/k"), Path::new("/i"))
            .without_serial()
            .netdev(Netdev::Tap("tap0".into()));
        assert!(!pi.kernel_cmdline().contains("pureboot.serial"));
        let args = pi.qemu_args();
        assert!(args.contains(&"tap,id=n0,ifname=tap0,script=no,downscript=no".to_string()));
    }

    #[test]
    fn raspi3b_takes_the_serial_from_the_device_tree_and_its_console_on_the_mini_uart() {
        let pi = VirtualPi::new("d83add36", Path::new("/k"), Path::new("/i.cpio.gz"))
            .board(Board::Raspi3b {
                dtb: "/d.dtb".into(),
            })
            .arg("pureboot.url=http://10.0.2.2:8080");
        assert_eq!(
            pi.kernel_cmdline(),
            "earlycon=uart8250,mmio32,0x3f215040 console=ttyS1,115200 panic=-1 \
             printk.devkmsg=on pureboot.url=http://10.0.2.2:8080"
        );
        let args = pi.qemu_args();
        let after = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
        assert_eq!(after("-M"), "raspi3b");
        assert_eq!(after("-dtb"), "/d.dtb");
        assert_eq!(after("-device"), "usb-net,netdev=n0,mac=52:54:00:3a:dd:36");
        let serials: Vec<&String> = args
            .iter()
            .enumerate()
            .filter(|(i, _)| *i > 0 && args[i - 1] == "-serial")
            .map(|(_, a)| a)
            .collect();
        assert_eq!(serials, ["null", "stdio"]);
        assert!(!args.contains(&"-smp".to_string()) && !args.contains(&"-m".to_string()));
        assert!(args.contains(&"-no-reboot".to_string()));
    }

    #[test]
    fn macs_differ_per_serial() {
        let a = VirtualPi::new("00000001", Path::new("/k"), Path::new("/i"));
        let b = VirtualPi::new("00000002", Path::new("/k"), Path::new("/i"));
        assert_ne!(a.mac(), b.mac());
    }
}
