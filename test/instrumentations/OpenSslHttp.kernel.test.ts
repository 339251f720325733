/**
 * The OpenSSL HTTP probe on the real kernel (root): a Python HTTPS server (http.server + ssl, test/fixtures/tls) and
 * curl, both dynamically linked to /lib/x86_64-linux-gnu/libssl.so.3, on loopback with a certificate the test makes.
 * Each process is analysed (native, with its libssl) and attached through the Manager; then the exact CLIENT spans of
 * curl's pid and SERVER spans of python's pid are checked, including two requests over one keep-alive connection, a
 * server span continuing curl's traceparent header, and a POST answered "100 Continue" before its final status.
 */
import { assert, describe, it } from "@effect/vitest"
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Layer, Schedule } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as OpenSslHttp from "../../src/instrumentations/OpenSslHttp.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import * as TargetEvent from "../../src/manager/TargetEvent.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { CapturedSpans } from "../../src/probe/ProbeTest.ts"
import type { Target } from "../../src/probe/Target.ts"
import type { SpanData } from "../../src/probe/Telemetry.ts"
import * as TracingConfig from "../../src/probe/TracingConfig.ts"
import * as GoBinary from "../../src/target/GoBinary.ts"
import * as NativeBinary from "../../src/target/NativeBinary.ts"
import * as ProcessTarget from "../../src/target/ProcessTarget.ts"

const root = path.resolve(import.meta.dirname, "../..")
const server = path.join(root, "test/fixtures/tls/https_server.py")
const client = path.join(root, "test/fixtures/tls/tls_client.py")
/** Debian's python3 and the one first on PATH (pyenv's here), each once: both link the system libssl.so.3. */
const pythons = [...new Set([
  ...(fs.existsSync("/usr/bin/python3") ? [fs.realpathSync("/usr/bin/python3")] : []),
  execFileSync("python3", ["-c", "import sys; print(sys.executable)"]).toString().trim()
])]
const TRACE = "0af7651916cd43dd8448eb211c80319c"
const PARENT = "b7ad6b7169203331"

let dir = ""
const procs: Array<ChildProcess> = []

beforeAll(() => {
  execFileSync("make", ["-C", path.join(root, "bpf")], { stdio: "ignore" })
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "probescope-openssl-"))
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
    "-addext", "subjectAltName=IP:127.0.0.1",
    "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem")
  ], { stdio: "ignore" })
  fs.writeFileSync(path.join(dir, "body.txt"), "b".repeat(3000))
}, 120_000)

afterAll(() => {
  for (const p of procs) p.kill("SIGKILL")
  if (dir !== "") fs.rmSync(dir, { recursive: true, force: true })
})

/** Start the HTTPS server and wait for its "READY <port>" line. */
const startServer = (python: string = pythons[0]!) =>
  Effect.callback<{ readonly pid: number; readonly port: number }>((resume) => {
    const child = spawn(python, [server, path.join(dir, "cert.pem"), path.join(dir, "key.pem")], {
      stdio: ["ignore", "pipe", "inherit"]
    })
    procs.push(child)
    let out = ""
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString()
      const m = /READY (\d+)/.exec(out)
      if (m !== null) resume(Effect.succeed({ pid: child.pid!, port: Number(m[1]) }))
    })
    child.on("exit", (code) => resume(Effect.die(new Error(`https_server.py exited with ${code}`))))
  })

/**
 * Start curl reading its configuration (URLs, options) from stdin: it has mapped libssl and waits, so the test can
 * attach before any request; `go` hands it the configuration and waits for it to exit.
 */
const startCurl = Effect.sync(() => {
  const child = spawn("curl", ["-K", "-"], { stdio: ["pipe", "ignore", "inherit"] })
  procs.push(child)
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
  const go = (config: string) =>
    Effect.promise(() => {
      child.stdin!.end(config)
      return exited
    })
  return { pid: child.pid!, go }
})

/** Start the Python TLS client (test/fixtures/tls/tls_client.py); it waits for a line on stdin, which `go` sends. */
const startPythonClient = (mode: "split" | "raw", port: number) =>
  Effect.sync(() => {
    const child = spawn(pythons[0]!, [client, mode, String(port)], { stdio: ["pipe", "ignore", "inherit"] })
    procs.push(child)
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
    return { pid: child.pid!, go: Effect.promise(() => (child.stdin!.end("go\n"), exited)) }
  })

/** Until the dynamic loader has mapped libssl into the process (spawn returns right after exec). */
const libsslMapped = (pid: number) =>
  Effect.sync(() => fs.readFileSync(`/proc/${pid}/maps`, "utf8").includes("/libssl.so.3")).pipe(
    Effect.repeat({ until: (mapped) => mapped, schedule: Schedule.spaced("10 millis") }),
    Effect.timeout("10 seconds")
  )

const analyse = (pid: number) =>
  Effect.andThen(
    libsslMapped(pid),
    ProcessTarget.analyzeProcess(pid, { libraries: new Set(["libssl.so.3"]) })
  ) as Effect.Effect<Target, unknown, any>

const attach = (pid: number) =>
  Effect.gen(function*() {
    const manager = yield* Manager
    yield* manager.handle(TargetEvent.TargetEvent.Started({ target: yield* analyse(pid) }))
  })

const agentWith = (sampler: TracingConfig.Sampler) => ManagerM.layer.pipe(
  Layer.provideMerge(OpenSslHttp.OpenSslHttp.layer),
  Layer.provideMerge(Layer.mergeAll(
    BpfLive.layer,
    ProbeTest.layerSink,
    ProbeTest.layerTargets,
    TracingConfig.layer(sampler),
    GoBinary.layer,
    NativeBinary.layer
  ))
)

const agent = agentWith(TracingConfig.defaultSampler)

/** Run curl once, attached, with a configuration; detached when it has exited. */
const curlRun = (config: string) =>
  Effect.gen(function*() {
    const curl = yield* startCurl
    yield* attach(curl.pid)
    assert.strictEqual(yield* curl.go(config), 0)
    yield* (yield* Manager).handle(TargetEvent.TargetEvent.Exited({ pid: curl.pid }))
    return curl.pid
  })

const one = (spans: ReadonlyArray<SpanData>, pred: (s: SpanData) => boolean, what: string): SpanData => {
  const found = spans.filter(pred)
  assert.strictEqual(found.length, 1, `${what}: ${found.length} spans`)
  return found[0]!
}

/** What a span says, without its ids and times (checked separately). */
const shape = (s: SpanData) => ({
  pid: s.pid,
  probe: s.probe,
  name: s.name,
  kind: s.kind,
  attributes: s.attributes,
  status: s.status,
  traceFlags: s.traceFlags
})

describe("OpenSSL HTTP probe: curl and a Python HTTPS server over loopback", () => {
  it.live.each(pythons)("CLIENT spans for curl, SERVER spans for %s: keep-alive, traceparent, 100-continue", (python) =>
    Effect.gen(function*() {
      const srv = yield* startServer(python)
      const base = `https://127.0.0.1:${srv.port}`
      yield* attach(srv.pid)
      const manager = yield* Manager

      // One request carrying a traceparent; two over one keep-alive connection; a 404; a POST; a POST whose body
      // waits for "100 Continue" (an interim answer: the exchange ends at the final one).
      const runs = [
        `insecure\nsilent\nheader = "traceparent: 00-${TRACE}-${PARENT}-01"\nurl = "${base}/hello"\noutput = "/dev/null"\n`,
        `insecure\nsilent\nurl = "${base}/items?id=7"\noutput = "/dev/null"\nurl = "${base}/fail"\noutput = "/dev/null"\n`,
        `insecure\nsilent\nurl = "${base}/missing"\noutput = "/dev/null"\n`,
        `insecure\nsilent\ndata = "name=probe"\nurl = "${base}/echo"\noutput = "/dev/null"\n`,
        `insecure\nsilent\nheader = "Expect: 100-continue"\ndata-binary = "@${path.join(dir, "body.txt")}"\n` +
        `url = "${base}/echo?big=1"\noutput = "/dev/null"\n`
      ]
      const curls: Array<number> = []
      for (const config of runs) curls.push(yield* curlRun(config))
      const spans = yield* (yield* CapturedSpans).take(12).pipe(Effect.timeout("15 seconds"))
      // Nothing more comes (e.g. a span per TLS record, or one per side twice).
      yield* Effect.sleep("300 millis")
      assert.deepStrictEqual(yield* (yield* CapturedSpans).all, spans)

      const client = (pid: number, url: string) =>
        one(spans, (s) => s.pid === pid && s.kind === "client" && s.attributes["url.full"] === `${base}${url}`, url)
      const served = (p: string, query?: string) =>
        one(spans, (s) =>
          s.pid === srv.pid && s.kind === "server" && s.attributes["url.path"] === p &&
          s.attributes["url.query"] === query, `${p}?${query}`)
      const clientAttrs = (url: string, status: number) => ({
        "http.request.method": url.startsWith("/echo") ? "POST" : "GET",
        "server.address": "127.0.0.1",
        "server.port": srv.port,
        "url.full": `${base}${url}`,
        "http.response.status_code": status,
        "network.protocol.version": "1.1",
        ...(status >= 400 ? { "error.type": String(status) } : {})
      })
      const serverAttrs = (p: string, status: number, query?: string) => ({
        "http.request.method": p === "/echo" ? "POST" : "GET",
        "server.address": "127.0.0.1",
        "server.port": srv.port,
        "url.path": p,
        ...(query === undefined ? {} : { "url.query": query }),
        "url.scheme": "https",
        "user_agent.original": execFileSync("curl", ["--version"]).toString().split(" ").slice(0, 2).join("/"),
        "http.response.status_code": status,
        "network.protocol.version": "1.1",
        ...(status >= 500 ? { "error.type": String(status) } : {})
      })
      const error = (status: number) => ({ code: "error" as const, message: `HTTP ${status}` })
      const unset = { code: "unset" as const }

      const expected: Array<[SpanData, SpanData, ReturnType<typeof shape>, ReturnType<typeof shape>]> = [
        [client(curls[0]!, "/hello"), served("/hello"), {
          pid: curls[0]!, probe: "openssl_http", name: "GET", kind: "client", attributes: clientAttrs("/hello", 200),
          status: unset, traceFlags: 1
        }, {
          pid: srv.pid, probe: "openssl_http", name: "GET", kind: "server", attributes: serverAttrs("/hello", 200),
          status: unset, traceFlags: 1
        }],
        [client(curls[1]!, "/items?id=7"), served("/items", "id=7"), {
          pid: curls[1]!, probe: "openssl_http", name: "GET", kind: "client",
          attributes: clientAttrs("/items?id=7", 200), status: unset, traceFlags: 1
        }, {
          pid: srv.pid, probe: "openssl_http", name: "GET", kind: "server",
          attributes: serverAttrs("/items", 200, "id=7"), status: unset, traceFlags: 1
        }],
        [client(curls[1]!, "/fail"), served("/fail"), {
          pid: curls[1]!, probe: "openssl_http", name: "GET", kind: "client", attributes: clientAttrs("/fail", 500),
          status: error(500), traceFlags: 1
        }, {
          pid: srv.pid, probe: "openssl_http", name: "GET", kind: "server", attributes: serverAttrs("/fail", 500),
          status: error(500), traceFlags: 1
        }],
        [client(curls[2]!, "/missing"), served("/missing"), {
          pid: curls[2]!, probe: "openssl_http", name: "GET", kind: "client",
          attributes: clientAttrs("/missing", 404), status: error(404), traceFlags: 1
        }, {
          pid: srv.pid, probe: "openssl_http", name: "GET", kind: "server", attributes: serverAttrs("/missing", 404),
          status: unset, traceFlags: 1
        }],
        [client(curls[3]!, "/echo"), served("/echo"), {
          pid: curls[3]!, probe: "openssl_http", name: "POST", kind: "client", attributes: clientAttrs("/echo", 201),
          status: unset, traceFlags: 1
        }, {
          pid: srv.pid, probe: "openssl_http", name: "POST", kind: "server", attributes: serverAttrs("/echo", 201),
          status: unset, traceFlags: 1
        }],
        [client(curls[4]!, "/echo?big=1"), served("/echo", "big=1"), {
          pid: curls[4]!, probe: "openssl_http", name: "POST", kind: "client",
          attributes: clientAttrs("/echo?big=1", 201), status: unset, traceFlags: 1
        }, {
          pid: srv.pid, probe: "openssl_http", name: "POST", kind: "server",
          attributes: serverAttrs("/echo", 201, "big=1"), status: unset, traceFlags: 1
        }]
      ]
      for (const [c, s, cShape, sShape] of expected) {
        assert.deepStrictEqual(shape(c), cShape)
        assert.deepStrictEqual(shape(s), sShape)
        // The server's handling lies inside the client's exchange: request written -> read -> answered -> read back.
        assert.isTrue(c.startMonoNs <= s.startMonoNs && s.startMonoNs < s.endMonoNs && s.endMonoNs <= c.endMonoNs)
        // curl sends no traceparent of its own: client spans are roots.
        assert.strictEqual(c.parentSpanId, undefined)
      }
      // The server continues the trace of the traceparent curl was told to send; the others are roots.
      const hello = served("/hello")
      assert.deepStrictEqual([hello.traceId, hello.parentSpanId, hello.parentIsRemote], [TRACE, PARENT, true])
      for (const [p, q] of [["/items", "id=7"], ["/fail"], ["/missing"], ["/echo"], ["/echo", "big=1"]]) {
        assert.strictEqual(served(p!, q).parentSpanId, undefined)
      }

      const stats = (yield* manager.stats).find((s) => s.probe === "openssl_http")!
      assert.deepStrictEqual([stats.records, stats.decodeErrors, stats.skipped], [12, 0, 0])
    }).pipe(Effect.provide(agent), Effect.scoped), 60_000)

  it.live("a request head written in three pieces is joined; TLS traffic that is not HTTP gives no span", () =>
    Effect.gen(function*() {
      const srv = yield* startServer()
      yield* attach(srv.pid)
      const manager = yield* Manager
      const clients: Array<number> = []
      for (const mode of ["split", "raw"] as const) {
        const c = yield* startPythonClient(mode, srv.port)
        yield* attach(c.pid)
        assert.strictEqual(yield* c.go, 0)
        yield* manager.handle(TargetEvent.TargetEvent.Exited({ pid: c.pid }))
        clients.push(c.pid)
      }
      const spans = yield* (yield* CapturedSpans).take(2).pipe(Effect.timeout("15 seconds"))
      yield* Effect.sleep("500 millis")
      assert.deepStrictEqual(yield* (yield* CapturedSpans).all, spans)
      const common = {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "server.port": srv.port,
        "http.response.status_code": 200,
        "network.protocol.version": "1.1"
      }
      const byKind = (kind: string) => one(spans, (s) => s.kind === kind, kind)
      assert.deepStrictEqual([byKind("client").pid, byKind("client").attributes], [
        clients[0]!,
        { ...common, "url.full": `https://127.0.0.1:${srv.port}/hello` }
      ])
      assert.deepStrictEqual([byKind("server").pid, byKind("server").attributes], [
        srv.pid,
        { ...common, "url.path": "/hello", "url.scheme": "https", "user_agent.original": "split-client/1" }
      ])
    }).pipe(Effect.provide(agent), Effect.scoped), 60_000)

  it.live("an interim answer and the final one in one read; an answer not recognised does not stick the connection", () =>
    Effect.gen(function*() {
      const srv = yield* startServer()
      const base = `https://127.0.0.1:${srv.port}`
      yield* attach(srv.pid)
      // One keep-alive connection: 103 + 200 in one write; the same with a 103 head too long to look past (no span:
      // the exchange is given up when the next request comes); then a plain request.
      const url = (p: string) => `url = "${base}${p}"\noutput = "/dev/null"\n`
      const curl = yield* curlRun(`insecure\nsilent\n${url("/early-hints")}${url("/long-hints")}${url("/hello")}`)
      const spans = yield* (yield* CapturedSpans).take(4).pipe(Effect.timeout("15 seconds"))
      yield* Effect.sleep("500 millis")
      assert.deepStrictEqual(yield* (yield* CapturedSpans).all, spans)
      const seen = spans.map((s) => [
        s.pid,
        s.kind,
        s.attributes["url.full"] ?? s.attributes["url.path"],
        s.attributes["http.response.status_code"]
      ])
      assert.sameDeepMembers(seen, [
        [curl, "client", `${base}/early-hints`, 200],
        [srv.pid, "server", "/early-hints", 200],
        [curl, "client", `${base}/hello`, 200],
        [srv.pid, "server", "/hello", 200]
      ])
    }).pipe(Effect.provide(agent), Effect.scoped), 60_000)

  it.live("sampling is decided in BPF: with always_off roots, only the server span of a sampled traceparent is recorded", () =>
    Effect.gen(function*() {
      const srv = yield* startServer()
      const base = `https://127.0.0.1:${srv.port}`
      yield* attach(srv.pid)
      const traceparent = (flags: string) => `header = "traceparent: 00-${TRACE}-${PARENT}-${flags}"\n`
      yield* curlRun(`insecure\nsilent\n${traceparent("01")}url = "${base}/hello"\noutput = "/dev/null"\n`)
      yield* curlRun(`insecure\nsilent\n${traceparent("00")}url = "${base}/items"\noutput = "/dev/null"\n`)
      yield* curlRun(`insecure\nsilent\nurl = "${base}/missing"\noutput = "/dev/null"\n`)
      const spans = yield* (yield* CapturedSpans).take(1).pipe(Effect.timeout("15 seconds"))
      yield* Effect.sleep("500 millis")
      assert.deepStrictEqual(yield* (yield* CapturedSpans).all, spans)
      assert.deepStrictEqual(
        spans.map((s) => [s.pid, s.kind, s.attributes["url.path"], s.traceId, s.parentSpanId, s.traceFlags]),
        [[srv.pid, "server", "/hello", TRACE, PARENT, 1]]
      )
      // Unsampled exchanges cost no record: nothing was submitted for them.
      const stats = (yield* (yield* Manager).stats).find((s) => s.probe === "openssl_http")!
      assert.deepStrictEqual([stats.records, stats.kernelSubmitted, stats.kernelDropped], [1, 1n, 0n])
    }).pipe(
      Effect.provide(agentWith({ root: "always_off", ratio: 1, parentBased: true })),
      Effect.scoped
    ), 60_000)

  it.live("a process without libssl is not applicable, with the reason", () =>
    Effect.gen(function*() {
      const child = spawn("sleep", ["30"], { stdio: "ignore" })
      procs.push(child)
      yield* Effect.sleep("100 millis")
      const target = yield* ProcessTarget.analyzeProcess(child.pid!, { libraries: new Set(["libssl.so.3"]) })
      const manager = yield* Manager
      assert.deepStrictEqual(manager.inspect(target as Target), [{
        probe: "openssl_http",
        kind: "instrument",
        applicability: {
          _tag: "NotApplicable",
          probe: "openssl_http",
          reason: "shared library libssl.so.3 is not mapped by the process"
        }
      }])
      child.kill("SIGKILL")
    }).pipe(Effect.provide(agent), Effect.scoped), 30_000)
})
