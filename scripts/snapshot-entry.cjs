// The script Node's snapshot builder runs (bundled by scripts/build-snapshot.mjs with the CLI behind
// `probescope-snapshot:main`): it evaluates every module of the CLI while watching what they read, then names the
// function the deserialised process runs (src/cli/main.ts's job in the bundle).
//
// Watched while the modules are evaluated, because a snapshot would carry the answer into every later run:
// environment variables, files (bar package.json files: what a package says of itself belongs to the build),
// the working directory, the process's pid, arguments and paths, the clocks and Math.random, the host (node:os),
// Intl objects used (time zone, locale), and which of Node's unverified modules load (build-snapshot.mjs's list).
// What was read goes to $PROBESCOPE_SNAPSHOT_AUDIT as JSON; build-snapshot.mjs refuses the snapshot when it is not
// empty.
"use strict"
const fs = require("node:fs")
const os = require("node:os")
const v8 = require("node:v8")

const reads = new Set()
let watching = true
/**
 * Records a read made by a module, not by Node itself (its module loader reads variables, its warnings the pid):
 * `depth` is the caller's frame below the watcher's own.
 */
const note = (what, depth = 3) => {
  if (!watching) return
  const caller = (new Error().stack ?? "").split("\n")[depth] ?? ""
  if (/\(node:|at node:/.test(caller)) return
  reads.add(what)
}
const restores = []
/** Redefines `key` on the object or the prototype that has it (performance.now is its prototype's), until restored. */
const replace = (object, key, make) => {
  let owner = object
  while (owner !== null && !Object.prototype.hasOwnProperty.call(owner, key)) owner = Object.getPrototypeOf(owner)
  if (owner === null) return
  const original = Object.getOwnPropertyDescriptor(owner, key)
  Object.defineProperty(owner, key, { ...make(original), configurable: true })
  restores.push(() => Object.defineProperty(owner, key, original))
}
const wrapFunction = (object, key, label, allowed = () => false) =>
  replace(object, key, ({ value }) => ({
    // Its own properties too (process.hrtime.bigint).
    value: Object.assign(function (...args) {
      if (!allowed(args)) note(label(args))
      return value.apply(this, args)
    }, value),
    writable: true
  }))

const env = process.env
process.env = new Proxy(env, {
  get: (target, key) => {
    if (typeof key === "string") note(`process.env.${key}`)
    return target[key]
  },
  has: (target, key) => {
    if (typeof key === "string") note(`process.env.${key}`)
    return key in target
  },
  ownKeys: (target) => {
    note("process.env (every variable)")
    return Reflect.ownKeys(target)
  }
})
restores.push(() => {
  process.env = env
})

const isPackageJson = (args) => typeof args[0] === "string" && args[0].endsWith("/package.json")
for (const f of ["readFileSync", "openSync", "readdirSync", "statSync", "lstatSync", "existsSync", "accessSync",
  "readlinkSync", "realpathSync", "opendirSync"]) {
  wrapFunction(fs, f, (args) => `fs.${f}(${String(args[0])})`, isPackageJson)
}
for (const f of ["hostname", "release", "version", "cpus", "networkInterfaces", "userInfo", "homedir", "tmpdir",
  "totalmem", "freemem", "uptime", "loadavg"]) {
  wrapFunction(os, f, () => `os.${f}()`)
}
wrapFunction(process, "cwd", () => "process.cwd()")
wrapFunction(process, "hrtime", () => "process.hrtime()")
wrapFunction(process, "uptime", () => "process.uptime()")
wrapFunction(Date, "now", () => "Date.now()")
wrapFunction(Math, "random", () => "Math.random()")
wrapFunction(performance, "now", () => "performance.now()")
for (const key of ["pid", "ppid", "argv", "argv0", "execPath", "execArgv", "title"]) {
  replace(process, key, (original) => ({
    get: () => {
      note(`process.${key}`)
      return original.get !== undefined ? original.get.call(process) : original.value
    }
  }))
}
// `new Date()` reads the clock like Date.now(): the constructor is watched through a subclass that notes it.
const RealDate = Date
globalThis.Date = class extends RealDate {
  constructor(...args) {
    if (args.length === 0) note("new Date()")
    super(...args)
  }
}
restores.push(() => {
  globalThis.Date = RealDate
})
// An Intl object holds native state the snapshot cannot keep, and its answers depend on the machine (time zone,
// locale). One made at import is a stand-in that makes the real one on first use, which, while watched, is noted.
for (const name of ["Segmenter", "DateTimeFormat", "NumberFormat", "Collator", "PluralRules", "ListFormat",
  "RelativeTimeFormat", "DisplayNames"]) {
  const Real = Intl[name]
  if (typeof Real !== "function") continue
  const Lazy = function (...args) {
    let real
    const get = () => {
      note(`Intl.${name} used`, 4)
      return real ??= new Real(...args)
    }
    return new Proxy({}, {
      get: (_, key) => {
        const target = get()
        const value = target[key]
        return typeof value === "function" ? value.bind(target) : value
      }
    })
  }
  Intl[name] = Lazy
  restores.push(() => {
    Intl[name] = Real
  })
}
const allowedBuiltins = new Set(["node:module", "node:child_process"])
globalThis.__probescopeSnapshotLoads = (name) => {
  if (!allowedBuiltins.has(name)) note(`${name} loaded`)
}

const { main } = require("probescope-snapshot:main")

watching = false
for (const restore of restores.reverse()) restore()
delete globalThis.__probescopeSnapshotLoads
const audit = process.env.PROBESCOPE_SNAPSHOT_AUDIT
if (audit !== undefined) fs.writeFileSync(audit, JSON.stringify({ reads: [...reads] }))

// As src/cli/main.ts: signals that arrive before the CLI listens are recorded and handed to it (Lifecycle).
v8.startupSnapshot.setDeserializeMainFunction(() => {
  const early = []
  const record = (signal) => void early.push(signal)
  process.on("SIGINT", record)
  process.on("SIGTERM", record)
  main(early, () => {
    process.off("SIGINT", record)
    process.off("SIGTERM", record)
  })
})
