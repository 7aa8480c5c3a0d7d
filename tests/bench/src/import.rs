//! Base image import: a generated tarball of a few hundred MB (a root-like mix of many
//! small files, some large ones, directories and symlinks), imported by
//! `pureboot-controller image import` (the CLI users run) and extracted by GNU tar in the
//! same run, alternately. The import ends with syncfs, so tar is timed both bare and
//! followed by `sync -f` (the same durability).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pureboot_harness::controller::{Controller, Settings};
use pureboot_harness::env::TestEnv;
use pureboot_harness::lab::TINY;
use pureboot_harness::process;
use pureboot_harness::workdir::WorkDir;

use crate::stats::{cell, median, range};

/// xorshift64*: deterministic, incompressible-enough file contents without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let x = self.next().to_le_bytes();
            chunk.copy_from_slice(&x[..chunk.len()]);
        }
    }
}

/// Writes the source tree: ~60% of `total` bytes in 1–64 KiB files over 200 directories,
/// the rest in 1–16 MiB files, plus a symlink per directory. Returns the file count.
fn generate_tree(root: &Path, total: u64) -> Result<usize, String> {
    let io = |e: std::io::Error| format!("{}: {e}", root.display());
    let mut rng = Rng(0x5eed_b007);
    let mut buf = vec![0u8; 16 << 20];
    let (mut written, mut files) = (0u64, 0usize);
    let dirs: Vec<_> = (0..200)
        .map(|i| root.join(format!("usr/lib/pkg{:03}/sub{}", i / 4, i % 4)))
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).map_err(io)?;
        std::os::unix::fs::symlink("../sub0", d.join("link")).map_err(io)?;
    }
    while written < total {
        let small = written < total * 6 / 10;
        let len = if small {
            1024 + rng.below(63 * 1024)
        } else {
            (1 << 20) + rng.below(15 << 20)
        } as usize;
        let dir = &dirs[rng.below(dirs.len() as u64) as usize];
        rng.fill(&mut buf[..len]);
        let mut f = std::fs::File::create(dir.join(format!("f{files}"))).map_err(io)?;
        f.write_all(&buf[..len]).map_err(io)?;
        written += len as u64;
        files += 1;
    }
    Ok(files)
}

fn timed(cmd: &mut Command) -> Result<Duration, String> {
    let t0 = Instant::now();
    process::run(cmd)?;
    Ok(t0.elapsed())
}

/// Flushes earlier runs' dirty pages so their writeback does not land in the next timing.
fn settle() -> Result<(), String> {
    process::run(&mut Command::new("sync")).map(drop)
}

pub fn run(env: &'static TestEnv, mb: u64, reps: usize) -> Result<String, String> {
    let dir = WorkDir::new("bench-import").map_err(|e| e.to_string())?;
    let src = dir.join("src");
    let files = generate_tree(&src, mb << 20)?;
    let tar = dir.join("image.tar");
    process::run(
        Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(&src)
            .arg("."),
    )?;
    std::fs::remove_dir_all(&src).map_err(|e| e.to_string())?;
    let size = std::fs::metadata(&tar).map_err(|e| e.to_string())?.len();
    let mbytes = size as f64 / 1e6;

    let ctl = Controller::new(
        &env.binary("pureboot-controller")?,
        dir.path(),
        &Settings {
            nfs_root: dir.join("nfs"),
            database: dir.join("controller.db"),
            workflows_dir: env.repo.join("workflows"),
            auto_register: true,
            default_base_image: TINY.into(),
        },
    )?;
    let (mut imp, mut gnu, mut gnu_sync) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..reps {
        settle()?;
        let t = timed(
            Command::new(env.binary("pureboot-controller")?)
                .arg("--config")
                .arg(dir.join("controller.toml"))
                .args(["image", "import"])
                .arg(&tar)
                .arg(format!("bench{i}")),
        )?;
        imp.push(mbytes / t.as_secs_f64());
        ctl.cli(&["image", "rm", &format!("bench{i}")])?;

        settle()?;
        let dest = dir.join(&format!("gnu{i}"));
        std::fs::create_dir_all(&dest).map_err(|e| e.to_string())?;
        let t = timed(
            Command::new("tar")
                .arg("-xf")
                .arg(&tar)
                .arg("-C")
                .arg(&dest),
        )?;
        let t_sync = t + timed(Command::new("sync").arg("-f").arg(&dest))?;
        gnu.push(mbytes / t.as_secs_f64());
        gnu_sync.push(mbytes / t_sync.as_secs_f64());
        std::fs::remove_dir_all(&dest).map_err(|e| e.to_string())?;
        eprintln!(
            "bench: import rep {i}: pureboot {:.0} MB/s, GNU tar {:.0} MB/s ({:.0} with sync -f)",
            imp[i], gnu[i], gnu_sync[i]
        );
    }
    let ratio = |v: &[f64]| median(&imp).zip(median(v)).map(|(a, b)| a / b);
    let mut s = format!(
        "## 4. Base image import ({mbytes:.0} MB uncompressed tar, {files} files + 200 dirs + 200 symlinks, \
         tarball in page cache; {reps} runs each, alternating; MB/s median (min–max))\n\n\
         | | MB/s | pureboot / this |\n|---|---|---|\n"
    );
    s += &format!(
        "| `pureboot-controller image import` (ends with syncfs) | **{}** ({}) | |\n",
        cell(median(&imp), 0),
        range(&imp, 0)
    );
    s += &format!(
        "| GNU tar -xf | {} ({}) | {} |\n",
        cell(median(&gnu), 0),
        range(&gnu, 0),
        cell(ratio(&gnu), 2)
    );
    s += &format!(
        "| GNU tar -xf, then sync -f (same durability) | {} ({}) | {} |\n",
        cell(median(&gnu_sync), 0),
        range(&gnu_sync, 0),
        cell(ratio(&gnu_sync), 2)
    );
    Ok(s)
}
