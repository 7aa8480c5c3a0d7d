//! Starting a program for the post-boot agent without `std::process` (its spawn machinery
//! and environment map cost PID 1's binary ~20 KB): fork, then in the child only
//! async-signal-safe calls on values prepared before the fork, then execve.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::unistd::{ForkResult, Pid};

/// A program and its environment, as the kernel takes them (prepared before the fork: the
/// child must not allocate).
pub struct Program {
    argv: Vec<CString>,
    envp: Vec<CString>,
}

impl Program {
    /// `argv[0]` is the path; `env` as `NAME=value` entries. A NUL inside any is EINVAL.
    pub fn new<'a>(
        argv: impl IntoIterator<Item = &'a str>,
        env: impl IntoIterator<Item = String>,
    ) -> Result<Program, Errno> {
        let c = |s: &str| CString::new(s).map_err(|_| Errno::EINVAL);
        Ok(Program {
            argv: argv.into_iter().map(c).collect::<Result<_, _>>()?,
            envp: env
                .into_iter()
                .map(|e| CString::new(e).map_err(|_| Errno::EINVAL))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Starts `p` in a process group of its own (its pid is the group's id), stdin from
/// /dev/null, stdout and stderr on `out`. The child exits 127 if execve fails.
pub fn spawn_in_group(p: &Program, out: &OwnedFd) -> Result<Pid, Errno> {
    let argv: Vec<*const libc::c_char> = p
        .argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = p
        .envp
        .iter()
        .map(|e| e.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let path: &CStr = p.argv.first().ok_or(Errno::EINVAL)?;
    let out = out.as_raw_fd();
    // SAFETY: after fork the child calls only async-signal-safe functions (setpgid, open,
    // dup2, execve, _exit) on pointers prepared above, so a lock another thread held at the
    // fork cannot be taken in it; the parent goes on as before.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => unsafe {
            // SAFETY: see above; every pointer outlives these calls (the child never
            // returns from this block).
            libc::setpgid(0, 0);
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
            if null >= 0 {
                libc::dup2(null, 0);
            }
            libc::dup2(out, 1);
            libc::dup2(out, 2);
            libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127)
        },
    }
}
