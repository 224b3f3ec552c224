"""Layer 0: the only place with ctypes, raw syscalls, mmap and kernel struct
layouts. Standard library only (plus :mod:`xdp_socket.errors`).

Everything above this package talks to the kernel through the functions here,
each of which raises :class:`xdp_socket.errors.XdpError` with the errno and the
step that failed.
"""
