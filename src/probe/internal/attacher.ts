/**
 * The Attacher behind `Probe.instrument`/`Probe.daemon`: checks a target against the manifest, writes the per-target
 * value, and makes the links — per process, or per file and shared by that file's processes (see `Target.selection`).
 *
 * What the links are depends on the manifest:
 * - a Go library: uprobes on the executable (entry past the prologue, one on every RET);
 * - a shared library: on the library file the process maps, a uprobe at each symbol (entry) and a uretprobe
 *   (return). Shared per library file, so every process mapping libssl shares one set of links when selected by
 *   executable; the BPF side filters by the per-pid entry (and by the executable's entry, below);
 * - a tracepoint instrument: the tracepoint programs, attached once while at least one target is attached (counted
 *   like shared links, closed after the last target has gone and the grace has passed); each target only adds its
 *   per-pid entry, which is what the BPF side filters on.
 * With an executable selection every shape also writes the value under the executable's identity
 * (`ps_target_files`), so processes of it the agent has not seen yet are served too.
 *
 * A global manifest's cgroup programs are not per target: `attachCgroups` attaches them once, at load, in the
 * probe's scope.
 */
import * as Fs from "node:fs"
import { Context, Deferred, Duration, Effect, Exit, Scope } from "effect"
import type { BpfError, BpfObject, Link } from "../../kernel/Bpf.ts"
import { pidKey } from "../Binary.ts"
import type { Attacher, Attachment, AttachOptions as FeatureOptions, Loaded } from "../Capabilities.ts"
import type { Applies, FieldSpecs, Manifest, SymbolSpec, TracepointManifest } from "../Manifest.ts"
import * as ManifestM from "../Manifest.ts"
import { ProbeAttachError } from "../ProbeError.ts"
import type { PerTarget } from "../Probe.ts"
import type { Target } from "../Target.ts"

/** What of a probe's options the Attacher uses. */
export interface AttachOptions {
  readonly manifest: Manifest
  readonly perTarget?: PerTarget<unknown, FieldSpecs, unknown> | undefined
}

/**
 * The manifest as loaded: a disabled program is not in the kernel, so its symbol is attached without it, and a
 * symbol left with no program is dropped (a required one then cannot make the probe "missing" a symbol it would not
 * probe anyway, and a return program that is off does not demand RET instructions).
 */
export const withoutPrograms = (given: Manifest, disabled: ReadonlyArray<string>): Manifest => {
  if (disabled.length === 0) return given
  const off = new Set(disabled)
  // A global manifest's cgroup programs that are off are not attached.
  const manifest: Manifest =
    given.library === undefined && !ManifestM.isTracepointInstrument(given) && given.cgroups !== undefined ?
      { ...given, cgroups: given.cgroups.filter((c) => !off.has(c.program)) } :
      given
  if (ManifestM.isTracepointInstrument(manifest)) {
    const kept = manifest.tracepoints.filter((t) => !off.has(t.program))
    return { ...manifest, tracepoints: kept as unknown as TracepointManifest["tracepoints"] }
  }
  if (manifest.symbols === undefined) return manifest
  const symbols = manifest.symbols.flatMap((s): Array<SymbolSpec> => {
    const entry = s.entry !== undefined && !off.has(s.entry) ? s.entry : undefined
    const ret = s.return !== undefined && !off.has(s.return) ? s.return : undefined
    if (entry === undefined && ret === undefined) return []
    return [{
      name: s.name,
      ...(entry === undefined ? {} : { entry }),
      ...(ret === undefined ? {} : { return: ret }),
      ...(s.optional === undefined ? {} : { optional: s.optional })
    }]
  })
  return { ...manifest, symbols } as Manifest
}

/**
 * The cgroup v2 mount point in a /proc/self/mountinfo text (a hybrid host mounts it at /sys/fs/cgroup/unified, a
 * unified one at /sys/fs/cgroup), or undefined when cgroup v2 is not mounted.
 */
export const cgroup2Mount = (mountinfo: string): string | undefined => {
  for (const line of mountinfo.split("\n")) {
    // "<id> <parent> <maj:min> <root> <mount point> <options> [optional fields] - <fs type> <source> <super options>"
    const [left, right] = line.split(" - ")
    if (left === undefined || right === undefined || right.split(" ")[0] !== "cgroup2") continue
    const fields = left.split(" ")
    if (fields[3] !== "/") continue // a bind mount of a sub-cgroup is not the hierarchy's root
    const mount = fields[4]
    if (mount !== undefined) return mount.replace(/\\040/g, " ")
  }
  return undefined
}

/** The cgroup v2 mount point of this host (from /proc/self/mountinfo), or undefined. */
export const cgroup2Root = (): string | undefined => {
  try {
    return cgroup2Mount(Fs.readFileSync("/proc/self/mountinfo", "utf8"))
  } catch {
    return undefined
  }
}

/**
 * Where the cgroup v2 hierarchy is mounted, for cgroup programs given no directory: read from /proc/self/mountinfo by
 * default; a test provides its own (e.g. none, to see the load fail).
 */
export const Cgroup2Root = Context.Reference<() => string | undefined>("probescope/probe/Cgroup2Root", {
  defaultValue: () => cgroup2Root
})

/**
 * Attach a global manifest's cgroup programs to `cgroup` (a cgroup v2 directory), in the current scope: closing it
 * detaches them. A manifest with none attaches nothing.
 */
export const attachCgroups = (
  manifest: Manifest,
  object: BpfObject,
  cgroup: string
): Effect.Effect<ReadonlyArray<Link>, BpfError, Scope.Scope> =>
  manifest.library !== undefined || ManifestM.isTracepointInstrument(manifest) ?
    Effect.succeed([]) :
    Effect.forEach(manifest.cgroups ?? [], (c) => object.attachCgroup({ program: c.program, cgroup }))

/**
 * How long a file's shared links outlive its last process (`PROBESCOPE_LINK_GRACE_MS` through the agent; default
 * 10 s): a restarted service finds them in place and is traced as soon as its per-pid entry is written.
 */
export const LinkGrace = Context.Reference<Duration.Duration>("probescope/probe/LinkGrace", {
  defaultValue: () => Duration.seconds(10)
})

/** One link to make: a program on offsets of one file (one uprobe_multi link where the kernel has them). */
interface UprobePlan {
  readonly program: string
  readonly binary: string
  readonly offsets: ReadonlyArray<number>
  readonly retprobe: boolean
}

/**
 * Every program of the probe with the offsets it goes on in one target. Go: entry past the prologue, a probe on
 * every RET. A shared library: the symbol's file offset in the library, as a uprobe (entry) or a uretprobe (return).
 */
const uprobePlan = (manifest: Manifest, target: Target, app: Applies): ReadonlyArray<UprobePlan> => {
  const plans = new Map<string, { program: string; binary: string; offsets: Array<number>; retprobe: boolean }>()
  const add = (program: string, binary: string, offsets: ReadonlyArray<number>, retprobe: boolean) => {
    if (offsets.length === 0) return
    const key = `${program}\0${retprobe}`
    const plan = plans.get(key)
    if (plan === undefined) plans.set(key, { program, binary, offsets: [...offsets], retprobe })
    else plan.offsets.push(...offsets)
  }
  const library = ManifestM.isSharedObject(manifest.library) ?
    ManifestM.findLibrary(target, manifest.library.sharedObject) :
    undefined
  for (const symbol of app.symbols) {
    const spec = manifest.symbols!.find((s) => s.name === symbol)!
    if (library !== undefined) {
      const found = library.symbol(symbol)
      if (found._tag === "None" || found.value.fileOffset === undefined) continue
      if (spec.entry !== undefined) add(spec.entry, library.path, [found.value.fileOffset], false)
      if (spec.return !== undefined) add(spec.return, library.path, [found.value.fileOffset], true)
      continue
    }
    const fn = target.function(symbol)
    if (fn._tag === "None") continue
    if (spec.entry !== undefined) add(spec.entry, target.exe, [fn.value.entryOffset], false)
    if (spec.return !== undefined) add(spec.return, target.exe, fn.value.returnOffsets, false)
  }
  return [...plans.values()]
}

/** The key of a tracepoint instrument's links among the shared ones. */
const TRACEPOINTS = "tracepoints"

/** The map of per-target values keyed by the executable file (bpf/include/probescope/targets.h). */
const FILE_MAP = "ps_target_files"

/**
 * The `struct ps_file_key` of a `Target.file` ("device:inode" as stat reports them): the kernel's `s_dev` encoding
 * (major << 20 | minor) from the C library's dev_t, then the inode; undefined when `file` is not of that form.
 */
export const fileKey = (file: string | undefined): Uint8Array | undefined => {
  const m = file === undefined ? null : /^(\d+):(\d+)$/.exec(file)
  if (m === null) return undefined
  const dev = BigInt(m[1]!)
  const major = ((dev & 0xfff00n) >> 8n) | ((dev & 0xfffff00000000000n) >> 32n)
  const minor = (dev & 0xffn) | ((dev & 0xffffff00000n) >> 12n)
  const key = new Uint8Array(16)
  const view = new DataView(key.buffer)
  view.setBigUint64(0, (major << 20n) | minor, true)
  view.setBigUint64(8, BigInt(m[2]!), true)
  return key
}

/** Links shared by several targets: those of one file (executable or library), or a probe's tracepoints. */
interface SharedLinks {
  readonly scope: Scope.Closeable
  readonly links: Deferred.Deferred<ReadonlyArray<Link>, BpfError>
  readonly users: Set<number>
  /** Bumped whenever the last user leaves: a pending close only acts if no user came and went since. */
  generation: number
  /** Its maker was interrupted before the links were made: whoever waited for them makes them afresh. */
  abandoned: boolean
}

export const makeAttacher = (
  name: string,
  options: AttachOptions,
  loaded: Loaded,
  config: unknown,
  disablePrograms: ReadonlyArray<string>,
  probeScope: Scope.Scope,
  grace: Duration.Duration
): Attacher => {
  const { object } = loaded
  const manifest = withoutPrograms(options.manifest, disablePrograms)
  const perTarget = options.perTarget
  const targetMap = perTarget?.map ?? "ps_targets"
  /**
   * A tracepoint program the object could not load (the kernel lacks its tracepoint: the kernel binding leaves such
   * tp_btf programs out rather than fail the load) makes the probe not apply anywhere. An object listing no
   * programs at all (a fake kernel's undefined object) says nothing either way.
   */
  const unloaded = ManifestM.isTracepointInstrument(manifest) && object.programs.length > 0 ?
    manifest.tracepoints.find((t) => !object.programs.includes(t.program)) :
    undefined
  const applicability = (target: Target): ManifestM.Applicability => {
    const app = ManifestM.check(name, manifest, target)
    if (app._tag !== "Applies" || unloaded === undefined) return app
    return {
      _tag: "NotApplicable",
      probe: name,
      reason: `tracepoint ${unloaded.category}:${unloaded.name} is not in this kernel (program ${unloaded.program} ` +
        "could not be loaded)"
    }
  }
  const shared = new Map<string, SharedLinks>()

  // Each link's kernel work runs on a thread of its own: made and closed concurrently (a parallel scope), their
  // waits overlap instead of adding up — one grace period per detach rather than one per link.
  const attachLinks = (plans: ReadonlyArray<UprobePlan>, pid: number | undefined) =>
    Effect.gen(function*() {
      const links = yield* Scope.fork(yield* Scope.Scope, "parallel")
      return yield* Effect.forEach(
        plans,
        ({ program, binary, offsets, retprobe }) =>
          object.attachUprobe({
            program,
            binary,
            offsets,
            ...(pid === undefined ? {} : { pid }),
            ...(retprobe ? { retprobe } : {})
          }),
        { concurrency: "unbounded" }
      ).pipe(Scope.provide(links))
    })

  /** The tracepoint instrument's programs, each attached once (by name: tp_btf and raw_tp need no tracefs). */
  const attachTracepoints = Effect.gen(function*() {
    const links = yield* Scope.fork(yield* Scope.Scope, "parallel")
    const tracepoints = ManifestM.isTracepointInstrument(manifest) ? manifest.tracepoints : []
    return yield* Effect.forEach(tracepoints, (tp) => object.attachTracepoint(tp), { concurrency: "unbounded" })
      .pipe(Scope.provide(links))
  })

  /** Close shared links once nobody used them for the grace; forked so no target's detach waits for it. */
  const release = (key: string, entry: SharedLinks) =>
    Effect.suspend(() => {
      entry.generation++
      const generation = entry.generation
      const close = Effect.suspend(() => {
        if (entry.users.size > 0 || entry.generation !== generation || shared.get(key) !== entry) return Effect.void
        shared.delete(key)
        return Scope.close(entry.scope, Exit.void)
      }).pipe(Effect.uninterruptible)
      return Effect.forkIn(Duration.isZero(grace) ? close : Effect.andThen(Effect.sleep(grace), close), probeScope)
    })

  /**
   * Links shared under `key` (a file's identity, or the tracepoints), made by the first target that needs them
   * (`make` runs in their own scope); this target counts as a user until its scope closes.
   */
  const useShared = (
    key: string,
    pid: number,
    make: Effect.Effect<ReadonlyArray<Link>, BpfError, Scope.Scope>
  ): Effect.Effect<ReadonlyArray<Link>, BpfError, Scope.Scope> =>
    Effect.gen(function*() {
      let entry = shared.get(key)
      if (entry === undefined) {
        const made: SharedLinks = {
          scope: yield* Scope.fork(probeScope, "parallel"),
          links: Deferred.makeUnsafe<ReadonlyArray<Link>, BpfError>(),
          users: new Set(),
          generation: 0,
          abandoned: false
        }
        // Another target of the same file may have got here while the scope was forked: use the first.
        entry = shared.get(key)
        if (entry === undefined) {
          entry = made
          shared.set(key, made)
          const exit = yield* make.pipe(
            Scope.provide(made.scope),
            Effect.exit,
            // The maker's attach is interrupted when its process exits mid-attach (a short-lived process): the entry
            // must not stay behind with links that never come, or every later process of the file would wait on it
            // until it too exits — nothing of the file would ever be attached.
            Effect.onInterrupt(() =>
              Effect.suspend(() => {
                made.abandoned = true
                if (shared.get(key) === made) shared.delete(key)
                return Effect.andThen(Scope.close(made.scope, Exit.void), Deferred.interrupt(made.links))
              })
            )
          )
          if (Exit.isFailure(exit)) {
            shared.delete(key)
            yield* Scope.close(made.scope, exit)
          }
          yield* Deferred.done(made.links, exit)
        } else {
          yield* Scope.close(made.scope, Exit.void)
        }
      }
      const current = entry
      const links = yield* Effect.exit(Deferred.await(current.links))
      if (current.abandoned) return yield* useShared(key, pid, make)
      current.users.add(pid)
      yield* Effect.addFinalizer(() =>
        Effect.suspend(() => {
          current.users.delete(pid)
          return current.users.size === 0 ? release(key, current) : Effect.void
        })
      )
      return yield* links
    })

  /**
   * With file-wide links on the executable, the per-target value also goes under the file's identity
   * (`ps_target_files`, see bpf/include/probescope/targets.h), for as long as the links live: a process of the file
   * is then served before the agent has seen it start. Objects built without that map (older headers) keep the
   * per-pid entries only.
   */
  const fileEntry = (target: Target, value: Uint8Array | undefined) => {
    const key = value === undefined || !object.maps.includes(FILE_MAP) ? undefined : fileKey(target.file)
    return key === undefined ? Effect.void : Effect.asVoid(Effect.acquireRelease(
      object.update(FILE_MAP, key, value!),
      () => Effect.ignore(object.delete(FILE_MAP, key))
    ))
  }

  /**
   * The links of one target: shared or per process, on the executable, on a library, or the tracepoints. When every
   * process of the executable is wanted, the per-target value also goes under the executable's identity for as long
   * as one of its processes is a target (and the grace): a process of it that the agent has not seen yet — a short
   * `curl` — is served from its first call. The library's and the tracepoints' links are keyed apart from that.
   */
  const links = (target: Target, app: Applies, value: Uint8Array | undefined, variant: string) => {
    const wide = target.selection === "executable"
    // Links made without some features' symbols are not the ones made with them: keyed apart.
    const executable = `${target.file ?? target.exe}${variant}`
    const byExecutable = wide ?
      useShared(`executable ${executable}`, target.pid, Effect.as(fileEntry(target, value), [])) :
      Effect.succeed([])
    if (app.tracepoints !== undefined) {
      return Effect.andThen(byExecutable, useShared(TRACEPOINTS, target.pid, attachTracepoints))
    }
    const plans = uprobePlan(manifest, target, app)
    if (app.library !== undefined) {
      return wide ?
        Effect.andThen(
          byExecutable,
          useShared(`library ${app.library.file}${variant}`, target.pid, attachLinks(plans, undefined))
        ) :
        attachLinks(plans, target.pid)
    }
    return wide ?
      useShared(executable, target.pid, Effect.andThen(fileEntry(target, value), attachLinks(plans, undefined))) :
      attachLinks(plans, target.pid)
  }

  const acquire = (target: Target, app: Applies, variant: string) =>
    Effect.gen(function*() {
      let value: Uint8Array | undefined
      if (perTarget !== undefined) {
        const key = pidKey(target.pid)
        value = perTarget.layout.encode(perTarget.value({ target, offsets: app.offsets as never, config }))
        yield* Effect.acquireRelease(
          object.update(targetMap, key, value),
          () => Effect.ignore(object.delete(targetMap, key))
        )
      }
      return yield* links(target, app, value, variant)
    })

  return {
    applicability,
    attach: Effect.fnUntraced(function*(target: Target, options?: FeatureOptions) {
      const found = applicability(target)
      if (found._tag !== "Applies") {
        return yield* new ProbeAttachError({
          probe: name,
          pid: target.pid,
          reason: "NotApplicable",
          message: found._tag === "Global" ?
            `probe ${name} is global and is not attached per process` :
            `probe ${name} does not apply to pid ${target.pid}: ${found.reason}`
        })
      }
      // Symbols of a feature no probe attached here uses are left out.
      const features = options?.features
      const unused = features === undefined ? [] : found.symbols.filter((symbol) => {
        const feature = manifest.symbols?.find((s) => s.name === symbol)?.feature
        return feature !== undefined && !features.has(feature)
      })
      const app: Applies = unused.length === 0 ? found : {
        ...found,
        symbols: found.symbols.filter((s) => !unused.includes(s))
      }
      const variant = unused.length === 0 ? "" : ` without ${unused.join(", ")}`
      const scope = yield* Scope.Scope
      const child = yield* Scope.fork(scope, "sequential")
      const links = yield* acquire(target, app, variant).pipe(
        Scope.provide(child),
        Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : Scope.close(child, exit)),
        Effect.mapError((e) =>
          new ProbeAttachError({
            probe: name,
            pid: target.pid,
            reason: e._tag,
            message: `probe ${name}: attach to pid ${target.pid} failed: ${e.message}`
          })
        )
      )
      const attachment: Attachment = {
        probe: name,
        pid: target.pid,
        symbols: app.symbols,
        missingOptional: app.missingOptional,
        links
      }
      return attachment
    })
  }
}
