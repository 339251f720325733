/**
 * Readers for the files under deploy/, shared by the manifest tests and the entrypoint test: every YAML document by
 * kind and name, the systemd unit's [Service] keys, the Containerfile's instructions. They parse; the tests judge.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import * as Yaml from "yaml"

export const root = path.resolve(import.meta.dirname, "../..")
export const deployDir = path.join(root, "deploy")

/** Every file under deploy/ (symlinks as themselves), relative to deploy/. */
export const deployFiles = (dir = deployDir): ReadonlyArray<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    return e.isDirectory() ? deployFiles(p) : [path.relative(deployDir, p)]
  })

/** Parses every document of a YAML file; a syntax error or a warning is thrown, with the file's name. */
export const yamlDocuments = (file: string): ReadonlyArray<unknown> => {
  const text = fs.readFileSync(path.join(deployDir, file), "utf8")
  return Yaml.parseAllDocuments(text).map((doc) => {
    const problems = [...doc.errors, ...doc.warnings]
    if (problems.length > 0) throw new Error(`${file}: ${problems.map((p) => p.message).join("; ")}`)
    return doc.toJS() as unknown
  })
}

/** The fields of a Kubernetes object the tests read; everything else stays `any`-free through `unknown`. */
export interface K8sObject {
  readonly apiVersion: string
  readonly kind: string
  readonly metadata: { readonly name: string; readonly namespace?: string }
  readonly [key: string]: unknown
}

/** Every Kubernetes object of a folder's kustomization, in the order it lists its resources. */
export const objectsOf = (folder: string): ReadonlyArray<K8sObject & { readonly file: string }> => {
  const [kustomization] = yamlDocuments(path.join(folder, "kustomization.yaml")) as [{ resources: Array<string> }]
  return kustomization.resources.flatMap((file) =>
    yamlDocuments(path.join(folder, file)).map((o) => ({ ...(o as K8sObject), file }))
  )
}

/** The one object of that kind and name in the folder; throws when there is none or several. */
export const objectOf = <A = K8sObject>(folder: string, kind: string, name: string): A => {
  const found = objectsOf(folder).filter((o) => o.kind === kind && o.metadata.name === name)
  if (found.length !== 1) throw new Error(`${folder}: ${found.length} ${kind} named ${name}`)
  return found[0] as A
}

export interface EnvVar {
  readonly name: string
  readonly value?: string
  readonly valueFrom?: { readonly fieldRef?: { readonly fieldPath: string } }
}

export interface Container {
  readonly name: string
  readonly image: string
  readonly command?: ReadonlyArray<string>
  readonly args?: ReadonlyArray<string>
  readonly env?: ReadonlyArray<EnvVar>
  readonly ports?: ReadonlyArray<{ readonly containerPort: number; readonly hostPort?: number }>
  readonly resources?: {
    readonly requests?: Readonly<Record<string, string>>
    readonly limits?: Readonly<Record<string, string>>
  }
  readonly securityContext?: {
    readonly privileged?: boolean
    readonly allowPrivilegeEscalation?: boolean
    readonly readOnlyRootFilesystem?: boolean
    readonly runAsUser?: number
    readonly capabilities?: { readonly add?: ReadonlyArray<string>; readonly drop?: ReadonlyArray<string> }
  }
  readonly volumeMounts?: ReadonlyArray<
    { readonly name: string; readonly mountPath: string; readonly readOnly?: boolean }
  >
  readonly livenessProbe?: unknown
}

export interface PodSpec {
  readonly hostPID?: boolean
  readonly hostNetwork?: boolean
  readonly hostIPC?: boolean
  readonly serviceAccountName?: string
  readonly automountServiceAccountToken?: boolean
  readonly terminationGracePeriodSeconds?: number
  readonly containers: ReadonlyArray<Container>
  readonly volumes?: ReadonlyArray<{
    readonly name: string
    readonly hostPath?: { readonly path: string; readonly type?: string }
    readonly configMap?: { readonly name: string }
  }>
}

export interface Workload extends K8sObject {
  readonly spec: { readonly template: { readonly spec: PodSpec } }
}

export interface ConfigMap extends K8sObject {
  readonly data: Readonly<Record<string, string>>
}

/** The probescope DaemonSet, its container, and the config file its ConfigMap holds. */
export const agent = () => {
  const daemonSet = objectOf<Workload>("kubernetes", "DaemonSet", "probescope")
  const pod = daemonSet.spec.template.spec
  const configMap = objectOf<ConfigMap>("kubernetes", "ConfigMap", "probescope-config")
  return { daemonSet, pod, container: pod.containers[0]!, configMap, configText: configMap.data["config.yaml"]! }
}

/**
 * A container's environment as the kubelet makes it: `fieldRef`s from `fields`, `$(NAME)` replaced by a variable
 * defined earlier in the list (a later or unknown one stays as written, as Kubernetes does).
 */
export const containerEnv = (
  env: ReadonlyArray<EnvVar>,
  fields: Readonly<Record<string, string>>
): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const v of env) {
    const field = v.valueFrom?.fieldRef?.fieldPath
    if (field !== undefined) {
      if (fields[field] === undefined) throw new Error(`no test value for the field ${field} (${v.name})`)
      out[v.name] = fields[field]!
    } else {
      out[v.name] = (v.value ?? "").replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name: string) => out[name] ?? m)
    }
  }
  return out
}

/** The keys of one section of a systemd unit; a repeated key keeps every value, in order. */
export const unitSection = (file: string, section: string): ReadonlyMap<string, ReadonlyArray<string>> => {
  const out = new Map<string, Array<string>>()
  let current = ""
  for (const raw of fs.readFileSync(path.join(deployDir, file), "utf8").split("\n")) {
    const line = raw.trim()
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue
    const header = /^\[(.+)\]$/.exec(line)
    if (header !== null) {
      current = header[1]!
      continue
    }
    if (current !== section) continue
    const eq = line.indexOf("=")
    const key = line.slice(0, eq)
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)])
  }
  return out
}

/** A Containerfile's instructions (continuation lines joined), as [INSTRUCTION, rest]. */
export const containerfile = (file = "container/Containerfile"): ReadonlyArray<readonly [string, string]> =>
  fs.readFileSync(path.join(deployDir, file), "utf8")
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => {
      const m = /^(\S+)\s+(.*)$/.exec(l)
      return [m![1]!.toUpperCase(), m![2]!] as const
    })

/** The image's ENTRYPOINT (exec form only: a shell form would not get the signals the agent stops on). */
export const entrypoint = (): ReadonlyArray<string> => {
  const lines = containerfile().filter(([i]) => i === "ENTRYPOINT")
  if (lines.length !== 1) throw new Error(`${lines.length} ENTRYPOINT lines`)
  return JSON.parse(lines[0]![1]) as Array<string>
}
