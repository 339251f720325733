/**
 * The go_redis probe on the real kernel (root): build test/fixtures/go/goredis, start Debian's redis-server on a free
 * loopback port in a temporary folder (no persistence), run the fixture against it, attach go_context +
 * nethttp_server + go_redis through the Manager, and check each request's redis spans (children of its server span),
 * their metric measurements, the failing command's ERROR status, and the opt-in db.query.text.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync, spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Layer, Result } from "effect"
import { afterAll, beforeAll } from "vitest"
import * as GoRedis from "../../src/instrumentations/GoRedis.ts"
import * as NetHttpServer from "../../src/instrumentations/NetHttpServer.ts"
import * as BpfLive from "../../src/kernel/BpfLive.ts"
import { Manager } from "../../src/manager/Manager.ts"
import * as ManagerM from "../../src/manager/Manager.ts"
import * as TargetEvent from "../../src/manager/TargetEvent.ts"
import * as ProbeTest from "../../src/probe/ProbeTest.ts"
import { CapturedMeasurements, CapturedSpans } from "../../src/probe/ProbeTest.ts"
import type { Measurement, SpanData } from "../../src/probe/Telemetry.ts"
import * as TracingConfig from "../../src/probe/TracingConfig.ts"
import * as GoBinary from "../../src/target/GoBinary.ts"
import { TargetAnalysis } from "../../src/target/GoBinary.ts"
import * as Offsets from "../../src/target/Offsets.ts"
import { pageOut } from "./ColdPages.ts"
import { buildGoRedis } from "./GoRedisFixture.ts"

const PKG = "github.com/redis/go-redis/v9"

/** The shipped table with go-redis cut down to its 9.0 builds: 9.22.0 is then outside it. */
const onlyV90: Offsets.OffsetsTable = (() => {
  const m = Offsets.shipped.modules[PKG]!
  const keep = (v: string) => v.startsWith("v9.0.")
  return {
    ...Offsets.shipped,
    modules: {
      ...Offsets.shipped.modules,
      [PKG]: { ...m, builds: Object.fromEntries(Object.entries(m.builds).filter(([v]) => keep(v))) }
    }
  }
})()

const root = path.resolve(import.meta.dirname, "../..")
const versions = ["1.25.9", "1.26.8", "1.27.3"]
const version = "1.26.8"
/** Older go-redis releases of the supported range, built with Go `version` (the fixture pins 9.22.0). */
const releases = ["9.0.5", "9.7.3"]
const binaries = new Map<string, string>()
let stripped = ""
const procs: Array<ChildProcess> = []
const dirs: Array<string> = []

beforeAll(() => {
  execFileSync("make", ["-s", "-C", path.join(root, "bpf")], { stdio: "ignore" })
  for (const v of versions) binaries.set(v, buildGoRedis(v))
  for (const r of releases) binaries.set(`go-redis ${r}`, buildGoRedis(version, { goRedis: r }))
  stripped = buildGoRedis(version, { stripped: true })
}, 600_000)

afterAll(() => {
  for (const p of procs) p.kill("SIGKILL")
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true })
})

/** A loopback port nothing listens on right now. */
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

/** Spawn `exe` and wait (at most 10 s) for a line of its stdout matching `ready`. */
const spawnUntil = (exe: string, args: ReadonlyArray<string>, ready: RegExp) =>
  Effect.callback<{ readonly pid: number; readonly match: RegExpExecArray }>((resume) => {
    const child = spawn(exe, args, { stdio: ["ignore", "pipe", "ignore"] })
    procs.push(child)
    let out = ""
    const timer = setTimeout(() => resume(Effect.die(new Error(`${exe}: not ready in 10 s: ${out}`))), 10_000)
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString()
      const m = ready.exec(out)
      if (m !== null) {
        clearTimeout(timer)
        resume(Effect.succeed({ pid: child.pid!, match: m }))
      }
    })
    child.on("exit", (code) => {
      clearTimeout(timer)
      resume(Effect.die(new Error(`${exe} exited with ${code}: ${out}`)))
    })
  })

/** A redis-server of its own: free loopback port, temporary folder, no RDB or AOF; killed after the suite. */
const startRedis = Effect.gen(function*() {
  const port = yield* freePort
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "probescope-redis-"))
  dirs.push(dir)
  yield* spawnUntil("redis-server", [
    "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir
  ], /Ready to accept connections/)
  return port
})

const startApp = (exe: string, redisPort: number) =>
  Effect.map(
    spawnUntil(exe, ["-addr", "127.0.0.1:0", "-redis", `127.0.0.1:${redisPort}`], /listening on (\S+)/),
    ({ match, pid }) => ({ pid, addr: match[1]! })
  )

const get = (url: string) =>
  Effect.promise(async () => {
    const res = await fetch(url)
    return { status: res.status, body: (await res.text()).trim() }
  })

const agent = (
  config: Partial<GoRedis.Config> = {},
  sampler: TracingConfig.Sampler = TracingConfig.defaultSampler,
  table?: Offsets.OffsetsTable
) =>
  ManagerM.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(NetHttpServer.NetHttpServer.layer, GoRedis.GoRedis.layerWith(config))),
    Layer.provideMerge(Layer.mergeAll(
      BpfLive.layer,
      ProbeTest.layerSink,
      ProbeTest.layerTargets,
      TracingConfig.layer(sampler),
      table === undefined ? GoBinary.layer : Layer.effect(TargetAnalysis, GoBinary.make({ table }))
    ))
  )

/**
 * Entries of `pid` in the kernel's hash maps named `name` (the kernel keeps 15 characters): their keys start with the
 * tgid (little-endian u32). Fails when no such map exists, so a count of 0 cannot be vacuous.
 */
const entriesOf = (pid: number, name: string): number => {
  const maps = JSON.parse(execFileSync("bpftool", ["-j", "map", "show"]).toString()) as Array<
    { readonly id: number; readonly name?: string }
  >
  const found = maps.filter((m) => m.name === name.slice(0, 15))
  assert.isAbove(found.length, 0, `no map ${name}`)
  const tgid = Buffer.alloc(4)
  tgid.writeUInt32LE(pid)
  const want = [...tgid].map((b) => `0x${b.toString(16).padStart(2, "0")}`).join(" ")
  let n = 0
  for (const m of found) {
    const entries = JSON.parse(execFileSync("bpftool", ["-j", "map", "dump", "id", String(m.id)]).toString()) as Array<
      { readonly key: ReadonlyArray<string> }
    >
    n += entries.filter((e) => e.key.slice(0, 4).join(" ") === want).length
  }
  return n
}

/** Redis before 7.2 has no CLIENT SETINFO: go-redis's connection set-up pipeline then fails (and go-redis goes on). */
const setinfoFails = (() => {
  const m = /v=(\d+)\.(\d+)/.exec(execFileSync("redis-server", ["--version"]).toString())
  return m !== null && (Number(m[1]) < 7 || (Number(m[1]) === 7 && Number(m[2]) < 2))
})()

const one = <A>(items: ReadonlyArray<A>, pred: (a: A) => boolean, what: string): A => {
  const found = items.filter(pred)
  assert.strictEqual(found.length, 1, `${what}: ${found.length} found`)
  return found[0]!
}

/**
 * Run `warmUp` before attaching (the pooled connection is then set up already), attach to the app and run `paths` in
 * order; their server spans (in request order) and the redis spans.
 */
const run = (
  exe: string,
  paths: ReadonlyArray<string>,
  redisSpans: number,
  warmUp: ReadonlyArray<string> = [],
  cold = false
) =>
  Effect.gen(function*() {
    const redisPort = yield* startRedis
    const app = yield* startApp(exe, redisPort)
    for (const p of warmUp) assert.strictEqual((yield* get(`http://${app.addr}${p}`)).status, 200, p)
    const manager = yield* Manager
    yield* manager.handle(
      TargetEvent.TargetEvent.Started({ target: yield* (yield* TargetAnalysis).analyzePid(app.pid) })
    )
    assert.deepStrictEqual((yield* manager.targets).map((t) => [...t.probes].sort()), [
      ["go_context", "go_redis", "nethttp_server"]
    ])
    const replies = []
    for (const p of paths) {
      // The app's read-only data (command names, redis.Nil and its text, error types) paged out (ColdPages.ts).
      if (cold) assert.isAbove(pageOut(app.pid), 0)
      replies.push(yield* get(`http://${app.addr}${p}`))
    }
    const spans = yield* (yield* CapturedSpans).take(paths.length + redisSpans).pipe(Effect.timeout("15 seconds"))
    const servers = spans.filter((s) => s.probe === "nethttp_server").sort((a, b) =>
      a.startMonoNs < b.startMonoNs ? -1 : 1
    )
    assert.strictEqual(servers.length, paths.length)
    const redis = spans.filter((s) => s.probe === "go_redis")
    for (const s of redis) {
      assert.strictEqual(s.kind, "client")
      assert.strictEqual(s.pid, app.pid)
      assert.strictEqual(s.traceFlags, 1)
      assert.isTrue(s.startMonoNs < s.endMonoNs)
    }
    const stats = yield* manager.stats
    for (const s of stats) assert.strictEqual(s.decodeErrors, 0, `${s.probe} decode errors`)
    return { app, redisPort, replies, servers, redis }
  })

/** The redis span that is the only child of `parent` named `name`, checked to lie within its parent. */
const childOf = (spans: ReadonlyArray<SpanData>, parent: SpanData, name: string): SpanData => {
  const s = one(spans, (s) => s.parentSpanId === parent.spanId && s.name === name, `${name} under ${parent.name}`)
  assert.strictEqual(s.traceId, parent.traceId)
  assert.strictEqual(s.parentIsRemote, false)
  assert.isTrue(parent.startMonoNs <= s.startMonoNs && s.endMonoNs <= parent.endMonoNs, `${name} within parent`)
  return s
}

/**
 * SET (the connection's set-up inside it), GET, INCR, a pipeline, a refused command and a missing key on `goVersion`,
 * each span checked exactly, and a measurement per span. `cold`: the app's read-only data paged out before each.
 */
const everyCommand = (goVersion: string, cold: boolean) =>
  Effect.gen(function*() {
    const paths = ["/set?k=a&v=1", "/get?k=a", "/incr?k=n", "/pipeline?k=p", "/wrongtype?k=w", "/get?k=missing"]
    const { redis, redisPort, replies, servers } = yield* run(binaries.get(goVersion)!, paths, 9, [], cold)
    assert.deepStrictEqual(replies.map((r) => [r.status, r.body]), [
      [200, "ok"],
      [200, "1"],
      [200, "1"],
      [200, "2"],
      [500, "WRONGTYPE Operation against a key holding the wrong kind of value"],
      [200, "(nil)"]
    ])
    const addr = `127.0.0.1:${redisPort}`
    const base = {
      "db.system.name": "redis",
      "db.namespace": "0",
      "server.address": "127.0.0.1",
      "server.port": redisPort
    }
    const ok = { code: "unset" } as const
    const expect = (span: SpanData, op: string, attributes: object = {}, status: SpanData["status"] = ok) => {
      assert.strictEqual(span.name, `${op} ${addr}`)
      assert.deepStrictEqual(span.attributes, { ...base, "db.operation.name": op, ...attributes })
      assert.deepStrictEqual(span.status, status)
    }

    // The first command opens the connection: go-redis sends HELLO and a CLIENT SETINFO pipeline inside it.
    const set = childOf(redis, servers[0]!, `SET ${addr}`)
    expect(set, "SET")
    expect(childOf(redis, set, `HELLO ${addr}`), "HELLO")
    const setinfo = childOf(redis, set, `PIPELINE ${addr}`)
    if (setinfoFails) {
      expect(setinfo, "PIPELINE", {
        "db.operation.batch.size": 2,
        "db.response.status_code": "ERR",
        "error.type": "ERR"
      }, { code: "error", message: "ERR unknown subcommand 'setinfo'. Try CLIENT HELP." })
    } else {
      expect(setinfo, "PIPELINE", { "db.operation.batch.size": 2 })
    }
    expect(childOf(redis, servers[1]!, `GET ${addr}`), "GET")
    expect(childOf(redis, servers[2]!, `INCR ${addr}`), "INCR")
    expect(childOf(redis, servers[3]!, `PIPELINE ${addr}`), "PIPELINE", { "db.operation.batch.size": 3 })
    expect(childOf(redis, servers[4]!, `SET ${addr}`), "SET")
    const message = "WRONGTYPE Operation against a key holding the wrong kind of value"
    expect(childOf(redis, servers[4]!, `LPUSH ${addr}`), "LPUSH", {
      "db.response.status_code": "WRONGTYPE",
      "error.type": "WRONGTYPE"
    }, { code: "error", message })
    // A missing key is redis.Nil: a reply, not a failure.
    expect(childOf(redis, servers[5]!, `GET ${addr}`), "GET")

    // One measurement per span, with the metric's attributes only, its value the span's duration.
    const measurements = (yield* (yield* CapturedMeasurements).all).filter((m) => m.probe === "go_redis")
    assert.strictEqual(measurements.length, redis.length)
    const key = (m: Measurement | SpanData) => {
      const a = m.attributes
      return [a["db.operation.name"], a["error.type"] ?? ""].join(" ")
    }
    assert.deepStrictEqual(measurements.map(key).sort(), redis.map(key).sort())
    for (const m of measurements) {
      assert.strictEqual(m.instrument.name, "db.client.operation.duration")
      assert.strictEqual(m.pid, redis[0]!.pid)
      const { "db.namespace": _, ...keep } = base
      const error = m.attributes["error.type"] === undefined ? {} : { "error.type": m.attributes["error.type"] }
      const op = m.attributes["db.operation.name"]
      assert.deepStrictEqual(m.attributes, { ...keep, "db.operation.name": op, ...error })
      assert.isTrue(m.value > 0 && m.value < 5, `duration ${m.value} s`)
    }
    const lpush = one(measurements, (m) => m.attributes["db.operation.name"] === "LPUSH", "LPUSH measurement")
    const lpushSpan = one(redis, (s) => s.attributes["db.operation.name"] === "LPUSH", "LPUSH span")
    assert.strictEqual(lpush.value, Number(lpushSpan.endMonoNs - lpushSpan.startMonoNs) / 1e9)
    // Every operation ended: nothing in flight, no nesting depth left for any goroutine.
    assert.strictEqual(entriesOf(lpushSpan.pid, "go_redis_inflight"), 0, "in-flight operations")
    assert.strictEqual(entriesOf(lpushSpan.pid, "go_redis_depth"), 0, "nesting depths")
  }).pipe(Effect.provide(agent()))

describe.each(versions)("go_redis on Go %s against redis-server", (goVersion) => {
  it.live("a span per command and per pipeline, children of the request's span; ERROR for a refused command", () =>
    everyCommand(goVersion, false), 60_000)

  it.live("the same with the app's read-only data paged out before each request (read from the process)", () =>
    everyCommand(goVersion, true), 60_000)
})

describe(`go_redis on Go ${version}: config`, () => {
  it.live("queryText: db.query.text is the command and its arguments, each cut at 32 bytes, at most maxQueryText", () =>
    Effect.gen(function*() {
      const long = "v".repeat(40)
      const paths = ["/incr?k=counter", `/set?k=key&v=${long}`, "/pipeline?k=p"]
      // INCR opens the connection (HELLO, SETINFO pipeline); the other two are one span each.
      const { redis, servers } = yield* run(binaries.get(version)!, paths, 5)
      const text = (parent: SpanData, op: string) =>
        one(redis, (s) => s.parentSpanId === parent.spanId && s.attributes["db.operation.name"] === op, op)
          .attributes["db.query.text"]
      assert.strictEqual(text(servers[0]!, "INCR"), "INCR counter")
      const incr = one(redis, (s) => s.attributes["db.operation.name"] === "INCR", "INCR")
      assert.strictEqual(one(redis, (s) => s.parentSpanId === incr.spanId && s.name.startsWith("HELLO"), "HELLO")
        .attributes["db.query.text"], "HELLO 2")
      assert.strictEqual(text(servers[1]!, "SET"), `SET key ${"v".repeat(32)}...`.slice(0, 40))
      // A pipeline has no single query text.
      assert.isUndefined(text(servers[2]!, "PIPELINE"))
    }).pipe(Effect.provide(agent({ queryText: true, maxQueryText: 40 }))), 60_000)

  it.live("by default no db.query.text at all", () =>
    Effect.gen(function*() {
      const { redis } = yield* run(binaries.get(version)!, ["/set?k=secret&v=hunter2"], 3)
      for (const s of redis) assert.notProperty(s.attributes, "db.query.text")
    }).pipe(Effect.provide(agent())), 60_000)
})

describe(`go_redis on Go ${version}: sampling`, () => {
  it.live("sampler always_off: no record at all, and nothing left in flight (nested set-up commands included)", () =>
    Effect.gen(function*() {
      const redisPort = yield* startRedis
      const app = yield* startApp(binaries.get(version)!, redisPort)
      const manager = yield* Manager
      yield* manager.handle(
        TargetEvent.TargetEvent.Started({ target: yield* (yield* TargetAnalysis).analyzePid(app.pid) })
      )
      for (const p of ["/set?k=a&v=1", "/pipeline?k=p", "/wrongtype?k=w"]) yield* get(`http://${app.addr}${p}`)
      // A sampled request afterwards would be recorded: here, with nothing sampled, the probe records nothing.
      yield* Effect.sleep("500 millis")
      const stats = yield* manager.stats
      assert.strictEqual(stats.find((s) => s.probe === "go_redis")!.records, 0)
      assert.deepStrictEqual(yield* (yield* CapturedSpans).all, [])
      assert.strictEqual(entriesOf(app.pid, "go_redis_inflight"), 0, "in-flight operations")
      assert.strictEqual(entriesOf(app.pid, "go_redis_depth"), 0, "nesting depths")
    }).pipe(Effect.provide(agent({}, { root: "always_off", ratio: 1, parentBased: true }))), 60_000)
})

describe.each(releases)("go_redis with go-redis %s (Go 1.26.8)", (release) => {
  it.live("commands, a pipeline and a refused command on a connection set up before attaching", () =>
    Effect.gen(function*() {
      const { redis, redisPort, servers } = yield* run(
        binaries.get(`go-redis ${release}`)!,
        ["/wrongtype?k=w", "/pipeline?k=p"],
        3,
        ["/set?k=warm&v=1"]
      )
      const addr = `127.0.0.1:${redisPort}`
      const attributes = (op: string, more: object = {}) => ({
        "db.system.name": "redis",
        "db.operation.name": op,
        "db.namespace": "0",
        "server.address": "127.0.0.1",
        "server.port": redisPort,
        ...more
      })
      const set = childOf(redis, servers[0]!, `SET ${addr}`)
      assert.deepStrictEqual([set.attributes, set.status], [attributes("SET"), { code: "unset" }])
      const lpush = childOf(redis, servers[0]!, `LPUSH ${addr}`)
      assert.deepStrictEqual([lpush.attributes, lpush.status], [
        attributes("LPUSH", { "db.response.status_code": "WRONGTYPE", "error.type": "WRONGTYPE" }),
        { code: "error", message: "WRONGTYPE Operation against a key holding the wrong kind of value" }
      ])
      const pipeline = childOf(redis, servers[1]!, `PIPELINE ${addr}`)
      assert.deepStrictEqual([pipeline.attributes, pipeline.status], [
        attributes("PIPELINE", { "db.operation.batch.size": 3 }),
        { code: "unset" }
      ])
    }).pipe(Effect.provide(agent())), 60_000)
})

describe(`go_redis on a stripped build (Go ${version}, go-redis 9.22.0): offsets from the shipped table`, () => {
  it.live("no symbols, no DWARF: instrumented all the same, with the offsets the DWARF build has", () =>
    Effect.gen(function*() {
      const { redis, redisPort, servers } = yield* run(stripped, ["/wrongtype?k=w", "/pipeline?k=p"], 3,
        ["/set?k=warm&v=1"])
      const addr = `127.0.0.1:${redisPort}`
      // Server address and port come from Options.Addr, the namespace from Options.DB: table offsets at work.
      const attributes = (op: string, more: object = {}) => ({
        "db.system.name": "redis",
        "db.operation.name": op,
        "db.namespace": "0",
        "server.address": "127.0.0.1",
        "server.port": redisPort,
        ...more
      })
      assert.deepStrictEqual([childOf(redis, servers[0]!, `SET ${addr}`).attributes], [attributes("SET")])
      const lpush = childOf(redis, servers[0]!, `LPUSH ${addr}`)
      assert.deepStrictEqual([lpush.attributes, lpush.status], [
        attributes("LPUSH", { "db.response.status_code": "WRONGTYPE", "error.type": "WRONGTYPE" }),
        { code: "error", message: "WRONGTYPE Operation against a key holding the wrong kind of value" }
      ])
      const pipeline = childOf(redis, servers[1]!, `PIPELINE ${addr}`)
      assert.deepStrictEqual(pipeline.attributes, attributes("PIPELINE", { "db.operation.batch.size": 3 }))

      // The same program with DWARF resolves the very same offsets.
      const redisPort2 = yield* startRedis
      const withDwarf = yield* startApp(binaries.get(version)!, redisPort2)
      const strippedApp = yield* startApp(stripped, redisPort2)
      const analysis = yield* TargetAnalysis
      const manager = yield* Manager
      const offsets = (pid: number) =>
        Effect.map(analysis.analyzePid(pid), (t) => {
          assert.strictEqual(t.binary.hasDwarf, pid === withDwarf.pid)
          const a = manager.inspect(t).find((i) => i.probe === "go_redis")!.applicability
          assert.strictEqual(a._tag, "Applies")
          return a._tag === "Applies" ? a.offsets : undefined
        })
      const fromTable = yield* offsets(strippedApp.pid)
      assert.deepStrictEqual(fromTable, yield* offsets(withDwarf.pid))
      assert.isNumber(fromTable?.["optAddr"])
    }).pipe(Effect.provide(agent())), 90_000)

  it.live("a go-redis release the table does not cover is still refused, with the reason", () =>
    Effect.gen(function*() {
      const redisPort = yield* startRedis
      const app = yield* startApp(stripped, redisPort)
      const manager = yield* Manager
      const target = yield* (yield* TargetAnalysis).analyzePid(app.pid)
      // What the table says, typed: the module, its version, the lines it covers.
      const why = target.binary.fieldOffset(`${PKG}.baseClient`, "opt")
      assert.isTrue(Result.isFailure(why))
      assert.strictEqual(Result.isFailure(why) ? why.failure.message : "",
        `${PKG} v9.22.0 is not covered by the offsets table (covered: 9.0)`)
      assert.deepStrictEqual(manager.inspect(target).find((i) => i.probe === "go_redis")!.applicability, {
        _tag: "NotApplicable",
        probe: "go_redis",
        reason: `no offset for ${PKG}.baseClient.opt (Go ${version}, ${PKG} v9.22.0)`
      })
    }).pipe(Effect.provide(agent({}, TracingConfig.defaultSampler, onlyV90))), 60_000)
})
