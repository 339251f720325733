/**
 * The tests' real OpenTelemetry Collector: built once from builder-config.yaml with the OpenTelemetry Collector Builder
 * (ocb, `go install`ed from the module proxy into test/.cache/bin) into test/.cache/otelcol-probescope, rebuilt when
 * the manifest changes (the cache is keyed by its hash), and run scoped on loopback with free ports. Every span and
 * metric the collector receives (OTLP over gRPC or HTTP, through the batch processor) goes on over its `otlp_http`
 * exporter to a test receiver (test/receiver), so a test counts exactly what passed through the collector. Log
 * records (which the test receiver does not take) and everything else are also written by the file exporter, one
 * OTLP/JSON request per line: `exported` reads them back as the collector received them.
 *
 *   const collector = yield* Collector.make()            // inside a Scope; the first call may build for minutes
 *   // export to collector.httpEndpoint (http/protobuf, http/json) or collector.grpcEndpoint (grpc)
 *   const spans = yield* collector.receiver.waitFor(3)
 *   yield* collector.stop                                // down: connections refused
 *   yield* collector.blackHole                           // hung: connections accepted, never answered
 *   yield* collector.start                               // back up on the same ports
 *
 * The only requirement is `go` on PATH (a fresh machine builds in about 3–4 minutes on 2 cores, most of it compiling;
 * later runs reuse the cached binary). GOTOOLCHAIN defaults to `local` so the build never fetches another Go behind
 * the caller's back; a GOTOOLCHAIN set in the environment is honoured.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type Server, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { Duration, Effect, Schema, Semaphore } from "effect"
import * as Receiver from "../receiver/Receiver.ts"

const here = dirname(fileURLToPath(import.meta.url))
const cacheDir = join(here, "..", ".cache")

/** The collector release: the builder's version must be the one the manifest's modules are at. */
export const COLLECTOR_RELEASE = "v0.161.0"
/** The ocb manifest. */
export const manifestPath = join(here, "builder-config.yaml")
/** Where the built collector is cached. */
export const binaryPath = join(cacheDir, "otelcol-probescope")
/** Holds the hash of the manifest (and builder release) the cached binary was built from. */
const stampPath = `${binaryPath}.sha256`
const builderDir = join(cacheDir, "bin", `ocb-${COLLECTOR_RELEASE}`)
const builderPath = join(builderDir, "builder")

/** Building, starting or controlling the collector went wrong. */
export class CollectorError extends Schema.TaggedError<CollectorError>()("CollectorError", {
  message: Schema.String
}) {}

const manifestHash = () =>
  createHash("sha256").update(COLLECTOR_RELEASE).update("\0").update(readFileSync(manifestPath)).digest("hex")

/** The environment of both go invocations. */
const goEnv = (): NodeJS.ProcessEnv => ({
  ...process.env,
  GOBIN: builderDir,
  // -buildvcs=false: the build runs inside this git work tree, which CI may own as another user; go would fail
  // trying to stamp VCS data. Replaces (not extends) a caller's GOFLAGS, e.g. a -mod=vendor that cannot apply here.
  GOFLAGS: "-buildvcs=false",
  GOTOOLCHAIN: process.env.GOTOOLCHAIN ?? "local",
  // No C compiler needed: a clean machine may have only go.
  CGO_ENABLED: "0",
  // The generated module lives under test/.cache; a go.work somewhere above must not capture it.
  GOWORK: "off"
})

const run = (file: string, args: ReadonlyArray<string>, cwd: string, what: string) =>
  Effect.callback<void, CollectorError>((resume) => {
    execFile(
      file,
      args,
      // TMPDIR: the builder leaves an empty temporary directory behind on every run; keep it in our work directory.
      { cwd, env: { ...goEnv(), TMPDIR: cwd }, timeout: 40 * 60_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          const output = `${stdout}${stderr}`.slice(-8000)
          resume(Effect.fail(new CollectorError({ message: `${what} failed: ${error.message}\n${output}` })))
          return
        }
        resume(Effect.void)
      }
    )
  })

/**
 * Builds the collector unless the cached binary was built from this manifest; returns the binary's path. Takes
 * minutes the first time: call it in `beforeAll` (or a layer) with a generous timeout, not inside a test's budget.
 */
export const build: Effect.Effect<string, CollectorError> = Effect.suspend(() => {
  const hash = manifestHash()
  if (existsSync(binaryPath) && existsSync(stampPath) && readFileSync(stampPath, "utf8").trim() === hash) {
    return Effect.succeed(binaryPath)
  }
  return Effect.gen(function*() {
    const started = Date.now()
    mkdirSync(builderDir, { recursive: true })
    if (!existsSync(builderPath)) {
      yield* run(
        "go",
        ["install", `go.opentelemetry.io/collector/cmd/builder@${COLLECTOR_RELEASE}`],
        cacheDir,
        "go install of the collector builder"
      )
    }
    // A private work directory (the manifest's output_path is relative to it): concurrent builds never share files,
    // and the binary is renamed into place only when complete.
    const work = join(cacheDir, `otelcol-build.${process.pid}`)
    rmSync(work, { recursive: true, force: true })
    mkdirSync(work, { recursive: true })
    yield* run(builderPath, ["--config", manifestPath], work, "ocb build of test/collector/builder-config.yaml").pipe(
      Effect.ensuring(Effect.sync(() => {
        const built = join(work, "otelcol-build", "otelcol-probescope")
        if (existsSync(built)) renameSync(built, binaryPath)
        rmSync(work, { recursive: true, force: true })
      }))
    )
    writeFileSync(stampPath, `${hash}\n`)
    const seconds = (Date.now() - started) / 1000
    process.stderr.write(`[collector] built ${binaryPath} (${COLLECTOR_RELEASE}) in ${seconds} s\n`)
    return binaryPath
  })
})

/** What the collector on the fixture's ports is doing. */
export type CollectorState = "up" | "down" | "black-hole"

/** A running collector fixture. */
export interface Collector {
  readonly grpcPort: number
  readonly httpPort: number
  /** `http://127.0.0.1:<grpc>`: OTEL_EXPORTER_OTLP_ENDPOINT for the grpc protocol. */
  readonly grpcEndpoint: string
  /** `http://127.0.0.1:<http>`: OTEL_EXPORTER_OTLP_ENDPOINT for http/protobuf and http/json. */
  readonly httpEndpoint: string
  /** Where the collector forwards everything: count what passed through here. */
  readonly receiver: Receiver.Receiver
  /** The collector's `--version`, e.g. "otelcol-probescope version 0.161.0-probescope". */
  readonly version: string
  /** The generated collector config (JSON, which the collector reads as YAML). */
  readonly configPath: string
  /** The file exporter's output: one OTLP/JSON line per batch the collector exported. */
  readonly exportFile: string
  /**
   * Every request in `exportFile` so far, parsed (`{ resourceSpans }`, `{ resourceMetrics }` or `{ resourceLogs }`),
   * in the order the collector wrote them. The file exporter writes on an interval (about a second): poll.
   */
  readonly exported: Effect.Effect<ReadonlyArray<ExportedRequest>>
  readonly state: Effect.Effect<CollectorState>
  /** The collector's log output (all runs so far). */
  readonly logs: Effect.Effect<string>
  /** Takes the collector down (graceful SIGTERM, SIGKILL after 5 s): its ports refuse connections until `start`. */
  readonly stop: Effect.Effect<void>
  /** Brings the collector back on the same ports (from down or black hole) and waits until it is ready. */
  readonly start: Effect.Effect<void, CollectorError>
  /**
   * Stops the collector and listens on both its ports with servers that accept every connection and never answer
   * (nor close): a hung collector, to test timeouts and shutdown deadlines. `start` ends it.
   */
  readonly blackHole: Effect.Effect<void, CollectorError>
}

/** One line of the file exporter: an OTLP/JSON export request of one signal, as the collector holds it. */
export interface ExportedRequest {
  readonly resourceSpans?: ReadonlyArray<unknown>
  readonly resourceMetrics?: ReadonlyArray<unknown>
  readonly resourceLogs?: ReadonlyArray<unknown>
}

/** The complete lines of the file exporter's output (a line still being written is left for the next read). */
const readExported = (file: string): ReadonlyArray<ExportedRequest> => {
  if (!existsSync(file)) return []
  const text = readFileSync(file, "utf8")
  const complete = text.slice(0, text.lastIndexOf("\n") + 1)
  return complete.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line) as ExportedRequest)
}

export interface CollectorOptions {
  /** Forward to this receiver instead of starting one for the scope. */
  readonly receiver?: Receiver.Receiver
  /** The batch processor's timeout (default 50 ms: tests should not wait the default 200 ms per hop). */
  readonly batchTimeout?: Duration.Input
  /** The debug exporter's verbosity (default "basic": one log line per batch, in `logs`). */
  readonly debugVerbosity?: "basic" | "normal" | "detailed"
  /** How long to wait for the collector's ready line (default 30 s). */
  readonly readyTimeout?: Duration.Input
}

/**
 * The collector runs under this shell so that it never outlives the test runner: when the shell's stdin closes
 * (our `stop`, or the runner dying) it sends the collector SIGTERM. Background jobs of a non-interactive shell read
 * /dev/null, so the watcher reads the saved stdin (fd 3) explicitly.
 */
const WATCHDOG = `exec 3<&0
"$0" "$@" </dev/null &
c=$!
{ cat >/dev/null; kill -TERM $c 2>/dev/null; } <&3 &
wait $c`

const READY = "Everything is ready"

/** Two distinct free loopback ports, asked of the kernel together so they differ. */
const freePorts = Effect.callback<readonly [number, number], CollectorError>((resume) => {
  const servers = [createServer(), createServer()]
  let listening = 0
  const fail = (e: Error) => resume(Effect.fail(new CollectorError({ message: `no free port: ${e.message}` })))
  for (const s of servers) {
    s.once("error", fail)
    s.listen(0, "127.0.0.1", () => {
      if (++listening < servers.length) return
      const ports = servers.map((x) => (x.address() as { port: number }).port)
      let closed = 0
      const done = () => ++closed === servers.length && resume(Effect.succeed([ports[0]!, ports[1]!] as const))
      for (const x of servers) x.close(done)
    })
  }
})

const stopChild = (child: ChildProcess) =>
  Effect.callback<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    const timer = setTimeout(() => {
      // The shell leads its own process group (detached), so this reaches the collector and the watcher too.
      try {
        process.kill(-child.pid!, "SIGKILL")
      } catch {
        child.kill("SIGKILL")
      }
    }, 5000)
    child.once("exit", () => {
      clearTimeout(timer)
      resume(Effect.void)
    })
    child.stdin?.end()
  })

/** A server that accepts connections on `port` and never answers; `close` also drops the held connections. */
const blackHoleServer = (port: number) =>
  Effect.callback<{ readonly close: () => Promise<void> }, CollectorError>((resume) => {
    const sockets = new Set<Socket>()
    const server: Server = createServer((socket) => {
      sockets.add(socket)
      // A client giving up resets the connection: nothing to report.
      socket.on("error", () => {})
      socket.on("close", () => sockets.delete(socket))
    })
    server.once("error", (e) =>
      resume(Effect.fail(new CollectorError({ message: `black hole on port ${port}: ${e.message}` }))))
    server.listen(port, "127.0.0.1", () =>
      resume(Effect.succeed({
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy()
            server.close(() => done())
          })
      })))
  })

/** Builds (if needed) and starts a collector, forwarding to a receiver, for the current scope. */
export const make = Effect.fnUntraced(function*(options: CollectorOptions = {}) {
  const binary = yield* build
  const receiver = options.receiver ?? (yield* Receiver.make())
  const [grpcPort, httpPort] = yield* freePorts
  // PROBESCOPE_TEST_KEEP_EXPORT=DIR keeps what the collector received (its file export) in DIR, one file per
  // collector, to read or quote after a run.
  const keep = process.env["PROBESCOPE_TEST_KEEP_EXPORT"]
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), "probescope-otelcol-"))),
    (d) =>
      Effect.sync(() => {
        if (keep !== undefined && keep !== "" && existsSync(join(d, "export.jsonl"))) {
          mkdirSync(keep, { recursive: true })
          renameSync(join(d, "export.jsonl"), join(keep, `${d.slice(d.lastIndexOf("/") + 1)}.jsonl`))
        }
        rmSync(d, { recursive: true, force: true })
      })
  )
  const configPath = join(dir, "config.yaml")
  const exportFile = join(dir, "export.jsonl")
  const pipeline = { receivers: ["otlp"], processors: ["batch"], exporters: ["otlp_http", "debug", "file"] }
  const config = {
    receivers: {
      otlp: {
        protocols: { grpc: { endpoint: `127.0.0.1:${grpcPort}` }, http: { endpoint: `127.0.0.1:${httpPort}` } }
      }
    },
    processors: { batch: { timeout: `${Duration.toMillis(options.batchTimeout ?? 50)}ms` } },
    exporters: {
      // Quick retries: a test that restarts the receiver should not wait the default 5 s backoff.
      otlp_http: {
        endpoint: receiver.httpEndpoint,
        retry_on_failure: { enabled: true, initial_interval: "50ms", max_interval: "500ms" }
      },
      debug: { verbosity: options.debugVerbosity ?? "basic" },
      file: { path: exportFile }
    },
    service: {
      // No self-metrics: their default Prometheus listener on :8888 would clash between collectors.
      telemetry: { metrics: { level: "none" } },
      // Logs go to the file only: the test receiver serves no /v1/logs, and a refused forward would be retried.
      pipelines: {
        traces: pipeline,
        metrics: pipeline,
        logs: { receivers: ["otlp"], processors: ["batch"], exporters: ["debug", "file"] }
      }
    }
  }
  // JSON is YAML: no YAML writer needed.
  writeFileSync(configPath, JSON.stringify(config, null, 2))

  const version = yield* Effect.callback<string, CollectorError>((resume) => {
    execFile(binary, ["--version"], (error, stdout) =>
      resume(
        error
          ? Effect.fail(new CollectorError({ message: `${binary} --version: ${error.message}` }))
          : Effect.succeed(stdout.trim())
      ))
  })

  let logs = ""
  let current:
    | { readonly _tag: "up"; readonly child: ChildProcess }
    | { readonly _tag: "down" }
    | { readonly _tag: "black-hole"; readonly servers: ReadonlyArray<{ readonly close: () => Promise<void> }> } = {
      _tag: "down"
    }

  /** Spawns the collector and waits for its ready line; fails (with its log) if it exits first. */
  const spawnReady = Effect.callback<ChildProcess, CollectorError>((resume) => {
    const child = spawn("/bin/sh", ["-c", WATCHDOG, binary, "--config", configPath], {
      stdio: ["pipe", "pipe", "pipe"],
      detached: true
    })
    let ready = false
    let own = ""
    const onData = (d: Buffer) => {
      const text = d.toString()
      logs += text
      own += text
      if (!ready && own.includes(READY)) {
        ready = true
        resume(Effect.succeed(child))
      }
    }
    child.stdout.on("data", onData)
    child.stderr.on("data", onData)
    child.once("exit", (code, signal) => {
      // A collector that dies on its own is down: `state` must not keep saying "up".
      if (current._tag === "up" && current.child === child) current = { _tag: "down" }
      if (!ready) {
        const message = `collector exited (${code ?? signal}) before ready:\n${own}`
        resume(Effect.fail(new CollectorError({ message })))
      }
    })
    // Interrupted (e.g. by the ready timeout) before ready: do not leave it running.
    return Effect.sync(() => {
      if (!ready) child.stdin.end()
    })
  }).pipe(
    Effect.timeoutOrElse({
      duration: options.readyTimeout ?? Duration.seconds(30),
      orElse: () => Effect.fail(new CollectorError({ message: `collector not ready in time:\n${logs.slice(-4000)}` }))
    })
  )

  const takeDown = Effect.gen(function*() {
    const was = current
    current = { _tag: "down" }
    if (was._tag === "up") yield* stopChild(was.child)
    if (was._tag === "black-hole") yield* Effect.promise(() => Promise.all(was.servers.map((s) => s.close())))
  })

  // One transition at a time: a start racing a stop would leave a process nobody tracks.
  const lock = yield* Semaphore.make(1)
  const start = Semaphore.withPermit(
    lock,
    Effect.gen(function*() {
      if (current._tag === "up") return
      yield* takeDown
      current = { _tag: "up", child: yield* spawnReady }
    })
  )
  const stop = Semaphore.withPermit(lock, takeDown)
  const blackHole = Semaphore.withPermit(
    lock,
    Effect.gen(function*() {
      yield* takeDown
      const servers = yield* Effect.all([blackHoleServer(grpcPort), blackHoleServer(httpPort)])
      current = { _tag: "black-hole", servers }
    })
  )

  yield* Effect.acquireRelease(start, () => stop)

  const collector: Collector = {
    grpcPort,
    httpPort,
    grpcEndpoint: `http://127.0.0.1:${grpcPort}`,
    httpEndpoint: `http://127.0.0.1:${httpPort}`,
    receiver,
    version,
    configPath,
    exportFile,
    exported: Effect.sync(() => readExported(exportFile)),
    state: Effect.sync(() => current._tag),
    logs: Effect.sync(() => logs),
    stop,
    start,
    blackHole
  }
  return collector
})
