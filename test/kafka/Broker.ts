/**
 * A single-node Apache Kafka broker (KRaft: broker and controller in one process) for the kafka-go tests, on
 * 127.0.0.1 with free ports, in a temporary folder, stopped when the test's scope closes.
 *
 * The broker's jars come from Maven Central through Maven's own default repository: test/fixtures/kafka/pom.xml lists
 * them and `mvn dependency:copy-dependencies` copies them once into test/.cache/kafka/<version>/libs (a lock folder
 * keeps concurrent test files from racing; a marker file says the copy is complete). Java is Debian's (17).
 *
 * Starting: `kafka.tools.StorageTool format` writes the log folder's metadata, then `kafka.Kafka server.properties`
 * runs the node; it is ready when its log says "Kafka Server started" and its port accepts a connection. Both JVMs
 * run with flags for a short-lived test process (serial GC, C1 only): about 9 s from nothing to ready on 2 cores.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { Duration, Effect, Schema, type Scope } from "effect"

/** The Kafka release the tests run (kafka_2.13). */
export const KAFKA_VERSION = "4.3.1"

const repoRoot = path.resolve(import.meta.dirname, "../..")
const pom = path.join(repoRoot, "test", "fixtures", "kafka", "pom.xml")

/** The broker could not be had: its jars, its start or its stop. */
export class BrokerError extends Schema.TaggedError<BrokerError>()("BrokerError", { message: Schema.String }) {}

/** Where the jars are, and how long copying them took when this call did it (undefined: already there). */
export interface Jars {
  readonly libs: string
  readonly downloadMs: number | undefined
}

const COMPLETE = ".complete"

/** How long another test file may hold the jars' lock before it is taken as left by a dead process. */
const STALE_LOCK_MS = 10 * 60_000

const run = (
  file: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd?: string; readonly timeoutMs: number }
) =>
  Effect.callback<string, BrokerError>((resume) => {
    const opts = { cwd: options.cwd, timeout: options.timeoutMs, maxBuffer: 16 << 20 }
    execFile(file, [...args], opts, (err, out, errOut) =>
      resume(
        err === null
          ? Effect.succeed(out)
          : Effect.fail(new BrokerError({ message: `${file} ${args.join(" ")}: ${err.message}\n${out}\n${errOut}` }))
      ))
  })

/** The broker's jars for `version`, copied from Maven's repository the first time (bounded by 10 minutes). */
export const jars = (version = KAFKA_VERSION): Effect.Effect<Jars, BrokerError> =>
  Effect.gen(function*() {
    const base = path.join(repoRoot, "test", ".cache", "kafka", version)
    const libs = path.join(base, "libs")
    const done = () => fs.existsSync(path.join(libs, COMPLETE))
    if (done()) return { libs, downloadMs: undefined }
    fs.mkdirSync(base, { recursive: true })
    const lock = path.join(base, ".lock")
    // mkdir is atomic: the test file that makes the folder copies, the others wait for the marker.
    const take = Effect.try({
      try: () => {
        try {
          fs.mkdirSync(lock)
          return true
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
          if (Date.now() - fs.statSync(lock).mtimeMs > STALE_LOCK_MS) fs.rmSync(lock, { recursive: true, force: true })
          return false
        }
      },
      catch: (e) => new BrokerError({ message: `lock ${lock}: ${String(e)}` })
    })
    const deadline = Date.now() + STALE_LOCK_MS
    let mine = yield* take
    while (!mine && !done()) {
      if (Date.now() > deadline) {
        return yield* new BrokerError({ message: `another test has held ${lock} for over 10 minutes` })
      }
      yield* Effect.sleep("500 millis")
      mine = yield* take
    }
    if (!mine) return { libs, downloadMs: undefined }
    return yield* Effect.gen(function*() {
      if (done()) return { libs, downloadMs: undefined }
      const tmp = `${libs}.${process.pid}.tmp`
      fs.rmSync(tmp, { recursive: true, force: true })
      const started = Date.now()
      yield* run("mvn", [
        "-q",
        "-B",
        "-f",
        pom,
        "dependency:copy-dependencies",
        `-Dkafka.version=${version}`,
        `-DoutputDirectory=${tmp}`,
        "-DincludeScope=runtime"
      ], { timeoutMs: 600_000 })
      const downloadMs = Date.now() - started
      fs.rmSync(libs, { recursive: true, force: true })
      fs.renameSync(tmp, libs)
      fs.writeFileSync(path.join(libs, COMPLETE), `${new Date().toISOString()} ${downloadMs} ms\n`)
      return { libs, downloadMs }
    }).pipe(Effect.ensuring(Effect.sync(() => fs.rmSync(lock, { recursive: true, force: true }))))
  })

/** A free TCP port on 127.0.0.1 (closed again before the broker binds it). */
const freePort = Effect.promise(() =>
  new Promise<number>((resolve, reject) => {
    const s = net.createServer()
    s.on("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })
)

const accepts = (port: number) =>
  Effect.promise(() =>
    new Promise<boolean>((resolve) => {
      const c = net.connect({ host: "127.0.0.1", port })
      c.once("connect", () => (c.destroy(), resolve(true)))
      c.once("error", () => resolve(false))
    })
  )

/** A running broker. */
export interface Broker {
  /** "127.0.0.1:<port>", the bootstrap address clients take. */
  readonly bootstrap: string
  readonly port: number
  readonly controllerPort: number
  /** Milliseconds from formatting the storage to the broker accepting connections. */
  readonly startMs: number
  /** How long the jars took to copy, when this start copied them. */
  readonly downloadMs: number | undefined
  /** The broker's output so far. */
  readonly log: () => string
}

/** JVM flags for a short-lived single-node broker: small heap, no C2, serial GC, no perf data file. */
const JVM = ["-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData", "-Xshare:auto"]

const LOG4J = [
  "rootLogger.level=INFO",
  "rootLogger.appenderRef.out.ref=OUT",
  "appender.out.type=Console",
  "appender.out.name=OUT",
  "appender.out.layout.type=PatternLayout",
  "appender.out.layout.pattern=[%d] %p %m (%c)%n"
].join("\n")

/** Stops a child: SIGTERM (the broker's controlled shutdown), SIGKILL after `grace`. */
const stop = (child: ChildProcess, grace: Duration.Input) =>
  Effect.promise(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const gone = new Promise((resolve) => child.once("exit", resolve))
    child.kill("SIGTERM")
    const timer = setTimeout(() => child.kill("SIGKILL"), Duration.toMillis(Duration.fromInputUnsafe(grace)))
    await gone
    clearTimeout(timer)
  })

/**
 * Starts a broker in a fresh temporary folder: auto-created topics off (the tests create theirs), one partition per
 * topic and for the consumer offsets, no initial rebalance delay. Fails with the broker's output when it is not
 * ready within `startTimeout` (default 90 s); stopped and its folder removed when the scope closes.
 */
export const start = (options: { readonly startTimeout?: Duration.Input; readonly version?: string } = {}) =>
  Effect.gen(function*() {
    const version = options.version ?? KAFKA_VERSION
    const { downloadMs, libs } = yield* jars(version)
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "probescope-kafka-"))),
      (d) => Effect.sync(() => fs.rmSync(d, { recursive: true, force: true }))
    )
    const port = yield* freePort
    let controllerPort = yield* freePort
    while (controllerPort === port) controllerPort = yield* freePort
    const props = path.join(dir, "server.properties")
    fs.writeFileSync(
      props,
      [
        "process.roles=broker,controller",
        "node.id=1",
        `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
        `advertised.listeners=PLAINTEXT://127.0.0.1:${port}`,
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
        `log.dirs=${path.join(dir, "data")}`,
        "num.partitions=1",
        "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        ""
      ].join("\n")
    )
    const log4j = path.join(dir, "log4j2.properties")
    fs.writeFileSync(log4j, LOG4J)
    const java = (main: string, args: ReadonlyArray<string>) => [
      ...JVM,
      `-Dlog4j2.configurationFile=${log4j}`,
      "-cp",
      path.join(libs, "*"),
      main,
      ...args
    ]
    const started = Date.now()
    // A cluster id is a UUID in Kafka's base64 form (22 characters, URL alphabet).
    const clusterId = crypto.randomBytes(16).toString("base64url")
    // `--cluster-id=<id>` in one word: an id may start with "-" (base64url), which the tool's parser would take
    // for an option given as `-t <id>` (one format in 64 failed so).
    yield* run("java", java("kafka.tools.StorageTool", ["format", `--cluster-id=${clusterId}`, "--config", props]), {
      cwd: dir,
      timeoutMs: 60_000
    })
    let out = ""
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const c = spawn("java", java("kafka.Kafka", [props]), { cwd: dir, stdio: ["ignore", "pipe", "pipe"] })
        c.stdout!.on("data", (b: Buffer) => void (out += b.toString()))
        c.stderr!.on("data", (b: Buffer) => void (out += b.toString()))
        return c
      }),
      (c) => stop(c, "10 seconds")
    )
    const timeout = Duration.fromInputUnsafe(options.startTimeout ?? "90 seconds")
    const readyBy = started + Duration.toMillis(timeout)
    while (!(out.includes("Kafka Server started") && (yield* accepts(port)))) {
      if (child.exitCode !== null || child.signalCode !== null) {
        return yield* new BrokerError({
          message: `the Kafka broker exited (${child.exitCode ?? child.signalCode}); its output:\n${out.slice(-8000)}`
        })
      }
      if (Date.now() > readyBy) {
        return yield* new BrokerError({
          message: `the Kafka broker did not start within ${Duration.format(timeout)} (port ${port}, folder ${dir});` +
            ` its output:\n${out.slice(-8000)}`
        })
      }
      yield* Effect.sleep("100 millis")
    }
    const broker: Broker = {
      bootstrap: `127.0.0.1:${port}`,
      port,
      controllerPort,
      startMs: Date.now() - started,
      downloadMs,
      log: () => out
    }
    return broker
  }) satisfies Effect.Effect<Broker, BrokerError, Scope.Scope>
