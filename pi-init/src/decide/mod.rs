//! Pure decisions: text and files in, typed values out, tested on the host. Nothing here
//! mounts, sends or loads; the steps carry the decisions out.
//!
//! The clock against the controller's ([`clock`]), the kernel command line ([`cmdline`], its `ip=` in [`ip_param`]), the board's serial
//! ([`serial`]), the NFS mount options ([`nfs_options`]) and what to boot from the
//! controller's answer and the command line ([`plan`]), the image files and volumes it names
//! ([`volumes`]), the network hand-over's files ([`handover`]).

pub mod clock;
pub mod cmdline;
pub mod handover;
pub mod ip_param;
pub mod nfs_options;
pub mod plan;
pub mod serial;
pub mod volumes;
