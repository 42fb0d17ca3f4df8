//! The few system calls rustix does not offer, through libc: accounts looked up the way the C
//! library does (NSS, so an LDAP `debian-tor` is found like a local one), signal handlers, and
//! the allocator's knobs. Everything else goes through rustix.

use std::ffi::{CStr, CString};
use std::io;

/// A user account as the host's C library reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// The account named `name`; `None` when there is none.
pub fn user_by_name(name: &str) -> io::Result<Option<Account>> {
    let Ok(name) = CString::new(name) else {
        return Ok(None);
    };
    lookup_user(|pwd, buf, found| {
        // SAFETY: every pointer is valid for the call; getpwnam_r writes only into `pwd`,
        // `buf` (whose length it is given) and `found`.
        unsafe { libc::getpwnam_r(name.as_ptr(), pwd, buf.as_mut_ptr(), buf.len(), found) }
    })
}

/// The account of `uid`; `None` when there is none.
pub fn user_by_uid(uid: u32) -> io::Result<Option<Account>> {
    lookup_user(|pwd, buf, found| {
        // SAFETY: as in user_by_name, for getpwuid_r.
        unsafe { libc::getpwuid_r(uid, pwd, buf.as_mut_ptr(), buf.len(), found) }
    })
}

/// The id of the group named `name`; `None` when there is none.
pub fn group_id(name: &str) -> io::Result<Option<u32>> {
    let Ok(name) = CString::new(name) else {
        return Ok(None);
    };
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: a zeroed `struct group` is a valid value for getgrnam_r to overwrite.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as in user_by_name, for getgrnam_r.
        let err = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        match err {
            0 if found.is_null() => return Ok(None),
            0 => return Ok(Some(grp.gr_gid)),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            err => return Err(io::Error::from_raw_os_error(err)),
        }
    }
}

/// Runs a getpw*_r call with a buffer that grows until the entry fits.
fn lookup_user(
    call: impl Fn(&mut libc::passwd, &mut [libc::c_char], &mut *mut libc::passwd) -> libc::c_int,
) -> io::Result<Option<Account>> {
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: a zeroed `struct passwd` is a valid value for getpw*_r to overwrite.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        match call(&mut pwd, &mut buf, &mut found) {
            0 if found.is_null() => return Ok(None),
            0 => {
                // SAFETY: on success pw_name points at a NUL-terminated string inside `buf`.
                let name = unsafe { CStr::from_ptr(pwd.pw_name) };
                return Ok(Some(Account {
                    name: name.to_string_lossy().into_owned(),
                    uid: pwd.pw_uid,
                    gid: pwd.pw_gid,
                }));
            }
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            err => return Err(io::Error::from_raw_os_error(err)),
        }
    }
}

/// A handler that gets the signal's siginfo (SA_SIGINFO).
pub type InfoHandler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Installs `handler` for each of `signals`, with SA_RESTART (and SA_SIGINFO).
///
/// # Safety
/// `handler` must make only async-signal-safe calls.
pub unsafe fn handle_signals(signals: &[libc::c_int], handler: InfoHandler) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid value; the fields that matter are set below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler as usize;
    action.sa_flags = libc::SA_RESTART | libc::SA_SIGINFO;
    // SAFETY: sa_mask is a valid sigset_t inside `action`.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    for &signal in signals {
        // SAFETY: `action` is fully initialised; the caller vouches for the handler.
        if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Makes a FIFO at `path`, mode 0600, for tests of what must refuse one without blocking.
#[cfg(test)]
pub(crate) fn mkfifo(path: &std::path::Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_bits_truncate(0o600),
        0,
    )
    .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_by_name_and_by_uid_and_a_missing_name_is_none() {
        let root = user_by_name("root").unwrap().expect("root has an account");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(user_by_uid(0).unwrap().map(|a| a.name), Some("root".into()));
        assert_eq!(user_by_name("no-such-user-here").unwrap(), None);
        assert_eq!(user_by_name("nul\0byte").unwrap(), None);
        assert_eq!(group_id("root").unwrap(), Some(0));
        assert_eq!(group_id("no-such-group-here").unwrap(), None);
    }
}
