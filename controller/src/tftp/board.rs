//! Which boards a base image can boot: its boot partition holds the board's kernel, a
//! device tree of its family and its GPU firmware, as the contract's board table
//! (`pureboot_contract::boards`, which pureboot-image writes the folders from) names them.

use std::path::Path;

pub use pureboot_contract::boards::Board;
use pureboot_contract::layout::BOOT_FIRMWARE_DIR;

/// Every file `board`'s folder is built from, from an image's boot partition: its start
/// files in the folder and at the TFTP root.
fn firmware(board: Board) -> impl Iterator<Item = &'static str> {
    board.firmware().iter().chain(board.root_files()).copied()
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
        .filter(|b| b.image_kernels().iter().any(|k| boot.join(k).is_file()))
        .filter(|b| firmware(*b).all(|f| boot.join(f).is_file()))
        .filter(|b| {
            trees
                .iter()
                .any(|t| b.dtb_families().iter().any(|f| t.starts_with(f.prefix)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_boots_the_boards_it_has_all_files_for() {
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
