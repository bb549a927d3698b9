//! SO_MAX_PACING_RATE: the kernel's cap on how fast a socket sends.
//!
//! TCP paces a socket on its own (an earliest departure time per packet)
//! once this option is set, without the fq qdisc, since Linux 4.13; the
//! data path is untouched, so `sendfile`/`splice` keep moving the bytes.
//! Neither socket2 nor nix wraps the option, hence these two calls.
//!
//! The kernel takes the rate as a 32-bit value, and as a 64-bit one where
//! `unsigned long` is that wide (since Linux 4.20); `u32::MAX` as a 32-bit
//! value means "no limit". Rates that fit below it are passed as 32 bits,
//! which every kernel reads the same way; larger ones as 64 bits.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use super::fault;

/// Sets SO_MAX_PACING_RATE on `sock` to `bytes_per_sec` (at least 1).
/// Fault injection: `ZCP_FAULT=pacing=ERRNO`.
pub fn set_max_pacing_rate(sock: impl AsFd, bytes_per_sec: u64) -> io::Result<()> {
    fault::check("pacing")?;
    let fd = sock.as_fd().as_raw_fd();
    let rc = match u32::try_from(bytes_per_sec) {
        Ok(rate) if rate < u32::MAX => {
            // SAFETY: `rate` is a live u32 and the length passed is its
            // size; the kernel only reads that many bytes from it.
            unsafe { setsockopt(fd, (&raw const rate).cast(), size_of::<u32>()) }
        }
        _ => {
            // SAFETY: as above, for a live u64 and its size.
            unsafe { setsockopt(fd, (&raw const bytes_per_sec).cast(), size_of::<u64>()) }
        }
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// # Safety
/// `value` must point to `len` readable bytes.
unsafe fn setsockopt(fd: libc::c_int, value: *const libc::c_void, len: usize) -> libc::c_int {
    // SAFETY: the caller guarantees `value` points to `len` readable bytes;
    // `len` is 4 or 8, so the cast to socklen_t cannot truncate.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MAX_PACING_RATE,
            value,
            len as libc::socklen_t,
        )
    }
}

/// The cap in effect on `sock`, as the kernel reports it (u64::MAX or
/// u32::MAX when none is set, depending on the kernel).
pub fn max_pacing_rate(sock: impl AsFd) -> io::Result<u64> {
    let mut value: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: `value` is a live u64 and `len` its size: the kernel writes
    // at most `len` bytes into it and stores how many it wrote in `len`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MAX_PACING_RATE,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // A kernel that answers with 32 bits filled the low half (this is
    // Linux: little- or big-endian, so take the bytes it wrote).
    if len as usize == size_of::<u32>() {
        let bytes = value.to_ne_bytes();
        let mut low = [0u8; 4];
        low.copy_from_slice(&bytes[..4]);
        return Ok(u64::from(u32::from_ne_bytes(low)));
    }
    Ok(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn a_connected_socket_takes_a_pacing_rate_and_reports_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let sock = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        for rate in [100 << 20, 5 << 30] {
            set_max_pacing_rate(&sock, rate).unwrap();
            assert_eq!(max_pacing_rate(&sock).unwrap(), rate);
        }
    }
}
