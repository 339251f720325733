/**
 * A redis-server of its own (Debian's package) for the tests and the demo: a free loopback port, a temporary folder,
 * no persistence (no RDB, no AOF); stopped and its folder removed when the scope closes. Never the system service.
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { Effect } from "effect"
import { spawnProc } from "../e2e/harness.ts"

/** A port free on 127.0.0.1 now (the kernel picks it; closed again before it is handed out). */
export const freePort = Effect.promise(() =>
  new Promise<number>((resolve, reject) => {
    const s = net.createServer()
    s.on("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })
)

/** Starts redis-server and waits (10 s at most) until it accepts connections; its port. */
export const start = Effect.gen(function*() {
  const port = yield* freePort
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "probescope-redis-"))),
    (d) => Effect.sync(() => fs.rmSync(d, { recursive: true, force: true }))
  )
  const proc = yield* spawnProc("redis-server", [
    "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir
  ])
  yield* proc.line("stdout", /Ready to accept connections/, "10 seconds")
  return port
})
