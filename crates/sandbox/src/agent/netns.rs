//! A listening socket inside a sandbox's network namespace, made by an agent that may not
//! enter that namespace itself.
//!
//! Entering a network namespace takes `CAP_SYS_ADMIN` in the user namespace that owns it. As
//! root the agent has it; unprivileged, bubblewrap made the namespace inside a user namespace of
//! its own, which only a single-threaded process can join, and the agent is multi-threaded. So a
//! forked child (single-threaded from birth) joins the user namespace, then the network
//! namespace, binds the socket there and hands its descriptor back over a Unix socket pair
//! (`SCM_RIGHTS`). A socket stays in the namespace it was created in, wherever its descriptor
//! goes. The child makes only system calls: it is the fork of a multi-threaded process.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;

/// How long the child waits for the namespace's loopback to come up (bubblewrap brings it up
/// right after reporting the namespace), in 5 ms steps.
const LOOPBACK_WAIT_STEPS: u32 = 1000;

/// Bind a TCP listener on `127.0.0.1:port` inside the network namespace `net`, joining the user
/// namespace `userns` first when given (the one that owns `net`, for an unprivileged agent).
pub fn listen_in(
    net: &OwnedFd,
    userns: Option<&OwnedFd>,
    port: u16,
) -> io::Result<std::net::TcpListener> {
    let mut pair = [0 as RawFd; 2];
    // SAFETY: socketpair fills two descriptors that we then own.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just created and are owned by nobody else.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
    // Already there (the namespace is this process's own): nothing to join.
    let here = std::fs::metadata("/proc/self/ns/net")?.ino();
    let target = std::fs::File::from(net.try_clone()?).metadata()?.ino();
    let net_fd = (userns.is_some() || here != target).then(|| net.as_raw_fd());
    let user_fd = userns.map(|u| u.as_raw_fd());
    // SAFETY: the child only makes system calls (see `child`) and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: in the forked child; `child` never returns.
        unsafe { child(theirs.as_raw_fd(), user_fd, net_fd, port) }
    }
    drop(theirs);
    let received = receive(&ours);
    let mut status = 0;
    // SAFETY: `pid` is our own child, not yet reaped.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
    let fd = received?;
    let l = std::net::TcpListener::from(fd);
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Read the child's answer: the listener's descriptor, or the errno that stopped it.
fn receive(sock: &OwnedFd) -> io::Result<OwnedFd> {
    let mut errno: i32 = 0;
    let mut iov = libc::iovec {
        iov_base: (&mut errno as *mut i32).cast(),
        iov_len: size_of::<i32>(),
    };
    let mut control = [0u64; 8];
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<[u64; 8]>() as _;
    let n = loop {
        // SAFETY: `msg` describes buffers valid for the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break n;
        }
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CMSG_FIRSTHDR reads the header recvmsg filled in.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    // SAFETY: a non-null header points into `control`, filled by the kernel.
    if !cmsg.is_null()
        && unsafe {
            (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS
        }
    {
        // SAFETY: an SCM_RIGHTS message carries at least one descriptor, now ours.
        let fd = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>()) };
        // SAFETY: the kernel installed this descriptor for us; nobody else owns it.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    if n == size_of::<i32>() as isize && errno != 0 {
        return Err(io::Error::from_raw_os_error(errno));
    }
    Err(io::Error::other(
        "the helper entering the sandbox's network namespace ended without an answer",
    ))
}

/// In the forked child: join the namespaces, bind, send the descriptor (or the errno), exit.
///
/// # Safety
/// Only in a freshly forked child; makes system calls only and never returns.
unsafe fn child(sock: RawFd, userns: Option<RawFd>, net: Option<RawFd>, port: u16) -> ! {
    let errno = || unsafe { *libc::__errno_location() };
    let fail = |e: i32| -> ! {
        let mut e = e;
        let iov = libc::iovec {
            iov_base: (&mut e as *mut i32).cast(),
            iov_len: size_of::<i32>(),
        };
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_iov = &iov as *const _ as *mut _;
        msg.msg_iovlen = 1;
        unsafe {
            libc::sendmsg(sock, &msg, 0);
            libc::_exit(1)
        }
    };
    unsafe {
        if let Some(u) = userns
            && libc::setns(u, libc::CLONE_NEWUSER) != 0
        {
            fail(errno());
        }
        if let Some(n) = net
            && libc::setns(n, libc::CLONE_NEWNET) != 0
        {
            fail(errno());
        }
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            fail(errno());
        }
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as _,
        );
        let mut addr: libc::sockaddr_in = zeroed();
        addr.sin_family = libc::AF_INET as _;
        addr.sin_port = port.to_be();
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let mut steps = 0;
        while libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as _,
        ) != 0
        {
            let e = errno();
            steps += 1;
            if e != libc::EADDRNOTAVAIL || steps > LOOPBACK_WAIT_STEPS {
                fail(e);
            }
            let pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: 5_000_000,
            };
            libc::nanosleep(&pause, std::ptr::null_mut());
        }
        if libc::listen(fd, 1024) != 0 {
            fail(errno());
        }
        let mut zero: i32 = 0;
        let iov = libc::iovec {
            iov_base: (&mut zero as *mut i32).cast(),
            iov_len: size_of::<i32>(),
        };
        let mut control = [0u64; 8];
        let mut msg: libc::msghdr = zeroed();
        msg.msg_iov = &iov as *const _ as *mut _;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        if libc::sendmsg(sock, &msg, 0) < 0 {
            libc::_exit(1);
        }
        libc::_exit(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With no namespace to join (our own network namespace), the listener still comes back
    /// through the socket pair, bound where asked.
    #[test]
    fn a_listener_made_by_the_child_reaches_the_parent() {
        let own = OwnedFd::from(std::fs::File::open("/proc/self/ns/net").unwrap());
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let l = listen_in(&own, None, port).unwrap();
        assert_eq!(l.local_addr().unwrap().port(), port);
        let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        l.set_nonblocking(false).unwrap();
        let (s, _) = l.accept().unwrap();
        assert_eq!(s.peer_addr().unwrap(), c.local_addr().unwrap());
    }

    /// A failure in the child comes back as its errno.
    #[test]
    fn the_childs_error_comes_back() {
        let own = OwnedFd::from(std::fs::File::open("/proc/self/ns/net").unwrap());
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = listen_in(&own, None, port).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
    }
}
