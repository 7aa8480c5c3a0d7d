//! `modules.alias`: other names a module answers to (`crypto-crc32c`, `fs-ext4`,
//! `platform:bcmgenet`, device patterns with wildcards). The table and its matching are
//! the contract's: pi-init matches the initramfs's own table with the same code.

pub use pureboot_contract::modules_list::Aliases;
