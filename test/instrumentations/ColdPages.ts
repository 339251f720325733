/**
 * Pages a uprobe cannot read, made on purpose: `pageOut(pid)` reclaims the pages of a process's read-only file
 * mappings of its executable (.rodata: type descriptors, itabs, type names, string constants), as memory pressure
 * would, through process_madvise(MADV_PAGEOUT) from outside (Linux 5.10; root, for another process's file pages). The
 * program finds them again on its next touch; a BPF read before that fails. A page another process maps too is kept:
 * run one process per binary. MADV_PAGEOUT never loses data (a relocated RELRO page, anonymous, is not reclaimed
 * without swap), unlike MADV_DONTNEED. Python's ctypes makes the call: Node has no binding for it. The database/sql
 * tests do not use it: their file keeps earlier processes of one binary running (their pages are shared), so the
 * dbsql fixture drops its own pages (`-cold`) right before each query instead.
 */
import { execFileSync } from "node:child_process"

const SCRIPT = `
import ctypes, os, struct, sys
pid = int(sys.argv[1])
exe = os.readlink(f"/proc/{pid}/exe")
libc = ctypes.CDLL(None, use_errno=True)
fd = os.pidfd_open(pid)
total = 0
for line in open(f"/proc/{pid}/maps"):
    f = line.split()
    if len(f) >= 6 and f[1] == "r--p" and f[5] == exe:
        lo, hi = (int(x, 16) for x in f[0].split("-"))
        iov = ctypes.create_string_buffer(struct.pack("QQ", lo, hi - lo))
        n = libc.syscall(440, fd, iov, 1, 21, 0)  # process_madvise(pidfd, iovec, 1, MADV_PAGEOUT, 0)
        if n < 0:
            sys.exit(f"process_madvise: errno {ctypes.get_errno()}")
        total += n
print(total)
`

/** Pages out process `pid`'s read-only mappings of its executable; the bytes advised. */
export const pageOut = (pid: number): number =>
  Number(execFileSync("python3", ["-c", SCRIPT, String(pid)], { encoding: "utf8" }).trim())
