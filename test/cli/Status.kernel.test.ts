/**
 * run's status as an operator sees it: without a terminal no escape code reaches stderr (and nothing live without
 * --status-interval); on a pseudo-terminal (util-linux `script`) the live line is drawn in place; in json logs the
 * status is a structured record. The example backend serves requests meanwhile.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { buildExample } from "../instrumentations/fixtures.ts"
import { buildAll } from "../kernel/fixtures.ts"

buildAll()
const root = path.resolve(import.meta.dirname, "../..")
const main = path.join(root, "src/cli/main.ts")
const backend = path.join(buildExample("1.26.8"), "backend")

const env = {
  ...Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("OTEL_") && !k.startsWith("PROBESCOPE_"))
  ),
  OTEL_TRACES_EXPORTER: "none",
  OTEL_METRICS_EXPORTER: "none",
  OTEL_LOGS_EXPORTER: "none",
  ...(process.env["PROBESCOPE_BPF_DIR"] === undefined ? {} : { PROBESCOPE_BPF_DIR: process.env["PROBESCOPE_BPF_DIR"] })
}

/** The backend on a free port, loaded with a request every 20 ms while `f` runs. */
const withBackend = async <A>(f: (pid: number) => A): Promise<A> => {
  const proc = spawn(backend, ["-addr", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "ignore"] })
  const addr = await new Promise<string>((resolve) => {
    let out = ""
    proc.stdout.on("data", (d: Buffer) => {
      out += d.toString()
      const m = /listening on (\S+)/.exec(out)
      if (m) resolve(m[1]!)
    })
  })
  // spawnSync blocks this thread: the load comes from a curl loop in a process of its own.
  const curl = spawn("sh", ["-c", `while :; do curl -s -o /dev/null http://${addr}/users/1; sleep 0.02; done`])
  try {
    return f(proc.pid!)
  } finally {
    curl.kill()
    proc.kill()
  }
}

/** `run --pid` stopped by SIGINT after `seconds`, its stderr. */
const run = (pid: number, seconds: number, ...args: Array<string>) =>
  spawnSync("timeout", ["-s", "INT", String(seconds), process.execPath, main, "run", "--pid", String(pid), ...args], {
    env,
    encoding: "utf8"
  }).stderr

describe("run's status (kernel)", { timeout: 120_000 }, () => {
  it("off a terminal: no escape code on stderr, and no status lines unless asked", async () => {
    const stderr = await withBackend((pid) => run(pid, 8))
    assert.match(stderr, /probescope: ready: /)
    assert.notInclude(stderr, "\x1b")
    assert.notMatch(stderr, /\d+ targets? · /)
  })

  it("on a terminal: the live line is redrawn in place every second, then erased before the summary", async () => {
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "probescope-tty-")), "typescript")
    await withBackend((pid) => {
      // A terminal wide enough for the whole line (it is cut to the terminal's width, 80 columns by default here).
      const command = `stty cols 400; timeout -s INT 9 ${process.execPath} ${main} run --pid ${pid}`
      spawnSync("script", ["-qec", command, out], { env, encoding: "utf8" })
    })
    const text = fs.readFileSync(out, "utf8")
    const line = new RegExp(
      "\\r\\x1b\\[2Kprobescope: 1 target · " +
        "((nethttp_\\w+|grpc|database_sql|go_redis|kafka_go|otel_trace|go_panic|openssl_http) [\\d.]+/s · ){9}drops kernel 0 consumer 0 · " +
        "export spans off metrics off logs off · queue 0",
      "g"
    )
    const draws = text.match(line) ?? []
    assert.isAtLeast(draws.length, 2)
    // Some second saw requests: the rate is not always 0.
    assert.match(text, /nethttp_server (?!0\.0)[\d.]+\/s/)
    // The line is erased before the summary, whose first line is some probe's (they come in the Manager's order).
    assert.match(text, /\r\x1b\[2Kprobescope: \w+: \d+ records/)
    assert.match(text, /probescope: nethttp_server: \d+ records/)
  })

  it("json logs: each status is a structured record", async () => {
    const stderr = await withBackend((pid) => run(pid, 8, "--log-format", "json", "--status-interval", "1"))
    const records = stderr.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
    const status = records.filter((r) => r.message === "status")
    assert.isAtLeast(status.length, 2)
    assert.deepStrictEqual(Object.keys(status[0]).sort(), [
      "droppedConsumer", "droppedKernel", "exportLogs", "exportMetrics", "exportSpans", "fiber", "level", "message",
      "queue",
      "recordsPerSecond", "targets", "time"
    ])
    assert.strictEqual(status[0].targets, 1)
    assert.deepStrictEqual(Object.keys(status[0].recordsPerSecond).sort(), [
      "database_sql",
      "go_panic",
      "go_redis",
      "grpc",
      "kafka_go",
      "nethttp_client",
      "nethttp_server",
      "openssl_http",
      "otel_trace"
    ])
    assert.isTrue(records.some((r) => r.level === "info" && /^ready: /.test(r.message)))
    assert.notInclude(stderr, "\x1b")
  })
})
