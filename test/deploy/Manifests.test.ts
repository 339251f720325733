/**
 * deploy/ as an operator applies it, checked without a cluster: every YAML parses, the probescope DaemonSet asks for
 * exactly the privileges the agent needs (and its ConfigMap is a config file the CLI's own schema accepts), the
 * collectors form the agent -> gateway pipeline with k8s_attributes, memory_limiter and batch, the RBAC is read-only,
 * and the systemd unit and the container image agree with the DaemonSet on capabilities and command line.
 */
import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect } from "effect"
import * as Yaml from "yaml"
import * as ConfigFile from "../../src/cli/ConfigFile.ts"
import {
  agent,
  type ConfigMap,
  containerEnv,
  containerfile,
  deployDir,
  deployFiles,
  entrypoint,
  type K8sObject,
  objectOf,
  objectsOf,
  root,
  unitSection,
  type Workload,
  yamlDocuments
} from "./deploy.ts"

/** What the agent needs and nothing more (docs/deploy.md says why each). */
const CAPABILITIES = ["BPF", "DAC_READ_SEARCH", "PERFMON", "SYS_PTRACE"]
/** docs/benchmarks.md: the agent's RSS attached to ten processes under 10k spans/s, the most any #12 run measured. */
const MEASURED_RSS_MIB = 111
/** PROBESCOPE_SHUTDOWN_TIMEOUT's bound plus the 2 s after which the agent exits 4 by itself (docs/cli.md). */
const STOP_BOUND_SECONDS = 5 + 2

const sorted = (xs: ReadonlyArray<string>) => [...xs].sort()

/** A Kubernetes quantity in MiB (memory) or cores (cpu). */
const mebibytes = (q: string): number => {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi)$/.exec(q)
  assert.isNotNull(m, `memory quantity ${q}`)
  return Number(m![1]) * { Ki: 1 / 1024, Mi: 1, Gi: 1024 }[m![2] as "Ki" | "Mi" | "Gi"]
}
const cores = (q: string): number => (q.endsWith("m") ? Number(q.slice(0, -1)) / 1000 : Number(q))

/** The collector version the tests build (test/collector/builder-config.yaml), e.g. "0.161.0". */
const collectorRelease = (): string => {
  const builder = Yaml.parse(fs.readFileSync(path.join(root, "test/collector/builder-config.yaml"), "utf8")) as {
    receivers: Array<{ gomod: string }>
  }
  const otlp = builder.receivers.find((r) => r.gomod.includes("/otlpreceiver "))!
  return otlp.gomod.split(" v")[1]!
}

interface Pipeline {
  readonly receivers: Array<string>
  readonly processors: Array<string>
  readonly exporters: Array<string>
}

interface Rule {
  readonly apiGroups: Array<string>
  readonly resources: Array<string>
  readonly verbs: Array<string>
}

interface Binding extends K8sObject {
  readonly roleRef: { readonly name: string }
  readonly subjects: Array<{ readonly name: string; readonly namespace: string }>
}

interface CollectorConfig {
  readonly receivers: Record<string, { protocols?: Record<string, { endpoint: string }> }>
  readonly processors: Record<string, Record<string, unknown>>
  readonly exporters: Record<string, { endpoint?: string }>
  readonly extensions?: Record<string, unknown>
  readonly service: {
    readonly extensions?: ReadonlyArray<string>
    readonly pipelines: Record<string, Pipeline>
  }
}

const collectorConfig = (name: string): CollectorConfig => {
  const cm = objectOf<ConfigMap>("collector", "ConfigMap", name)
  return Yaml.parse(cm.data["config.yaml"]!) as CollectorConfig
}

/** Every component a pipeline names is defined, and every pipeline's processors are in `order`. */
const assertPipelines = (config: CollectorConfig, order: ReadonlyArray<string>) => {
  // Every signal the agent exports (the probes emit spans, metrics and log records).
  assert.deepStrictEqual(sorted(Object.keys(config.service.pipelines)), ["logs", "metrics", "traces"])
  for (const [signal, p] of Object.entries(config.service.pipelines)) {
    assert.deepStrictEqual(p.receivers, ["otlp"], signal)
    assert.deepStrictEqual(p.processors, [...order], signal)
    assert.isAtLeast(p.exporters.length, 1, signal)
    for (const r of p.receivers) assert.property(config.receivers, r)
    for (const x of p.processors) assert.property(config.processors, x)
    for (const e of p.exporters) assert.property(config.exporters, e)
  }
  for (const e of config.service.extensions ?? []) assert.property(config.extensions ?? {}, e)
}

describe("deploy/ files", () => {
  it("every YAML document parses, ConfigMaps' embedded files included", () => {
    const yamls = deployFiles().filter((f) => /\.ya?ml$/.test(f))
    assert.includeMembers(yamls, [
      "kubernetes/daemonset.yaml",
      "kubernetes/configmap.yaml",
      "collector/agent.yaml",
      "collector/gateway.yaml",
      "collector/rbac.yaml"
    ])
    for (const file of yamls) {
      for (const doc of yamlDocuments(file)) {
        const o = doc as Partial<ConfigMap>
        if (o.kind !== "ConfigMap") continue
        for (const [key, text] of Object.entries(o.data ?? {})) {
          const inner = Yaml.parseDocument(text)
          assert.deepStrictEqual(inner.errors.map((e) => e.message), [], `${file}: ${key}`)
          assert.isObject(inner.toJS(), `${file}: ${key}`)
        }
      }
    }
  })

  it("each kustomization lists every manifest of its folder, in one namespace", () => {
    for (const folder of ["kubernetes", "collector"]) {
      const listed = (yamlDocuments(`${folder}/kustomization.yaml`)[0] as { resources: Array<string> }).resources
      const present = fs.readdirSync(path.join(deployDir, folder)).filter((f) => /\.yaml$/.test(f))
      assert.deepStrictEqual(sorted(listed), sorted(present.filter((f) => f !== "kustomization.yaml")), folder)
      for (const o of objectsOf(folder)) {
        if (o.kind === "Namespace" || o.kind.startsWith("Cluster")) continue
        assert.strictEqual(o.metadata.namespace, "probescope", `${o.kind} ${o.metadata.name}`)
      }
    }
    // Applied first, so it holds the namespace.
    assert.strictEqual(objectOf<K8sObject>("collector", "Namespace", "probescope").apiVersion, "v1")
  })

  it("images are named without a registry host, collectors at the tests' collector release", () => {
    const release = collectorRelease()
    assert.match(release, /^\d+\.\d+\.\d+$/)
    const images = [
      ...["kubernetes", "collector"].flatMap((f) =>
        objectsOf(f)
          .filter((o) => o.kind === "DaemonSet" || o.kind === "Deployment")
          .flatMap((o) => (o as unknown as Workload).spec.template.spec.containers.map((c) => c.image))
      ),
      ...containerfile().filter(([i]) => i === "FROM").map(([, rest]) => rest.split(/\s+/)[0]!)
    ]
    assert.isAtLeast(images.length, 6)
    for (const image of images) {
      // A registry host is a first component with a dot or a port, or localhost.
      const first = image.split("/")[0]!
      assert.isFalse(image.includes("/") && /[.:]|^localhost$/.test(first), image)
    }
    const collectors = images.filter((i) => i.includes("opentelemetry-collector"))
    assert.strictEqual(collectors.length, 2)
    for (const image of collectors) assert.strictEqual(image.split(":")[1], release, image)
  })
})

describe("deploy/kubernetes: the probescope DaemonSet", () => {
  it("shares the host's PID namespace and nothing else of the host", () => {
    const { pod } = agent()
    assert.isTrue(pod.hostPID)
    assert.notStrictEqual(pod.hostNetwork, true)
    assert.notStrictEqual(pod.hostIPC, true)
    assert.isFalse(pod.automountServiceAccountToken)
    assert.strictEqual(pod.containers.length, 1)
  })

  it("holds exactly CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH, unprivileged", () => {
    const sc = agent().container.securityContext!
    assert.deepStrictEqual(sorted(sc.capabilities!.add!), CAPABILITIES)
    assert.deepStrictEqual(sc.capabilities!.drop, ["ALL"])
    assert.notStrictEqual(sc.privileged, true)
    assert.isFalse(sc.allowPrivilegeEscalation)
    assert.isTrue(sc.readOnlyRootFilesystem)
    // Added capabilities reach the effective set of uid 0 only.
    assert.strictEqual(sc.runAsUser, 0)
  })

  it("mounts /sys/kernel/btf, /etc/machine-id and its config, read-only, and no other host path", () => {
    const { pod, container } = agent()
    const mounts = container.volumeMounts!
    for (const m of mounts) assert.isTrue(m.readOnly, m.mountPath)
    const volumes = new Map(pod.volumes!.map((v) => [v.name, v]))
    const hostPaths = mounts.flatMap((m) => {
      const hp = volumes.get(m.name)?.hostPath
      return hp === undefined ? [] : [[hp.path, m.mountPath]]
    })
    assert.deepStrictEqual(hostPaths, [["/sys/kernel/btf", "/sys/kernel/btf"], ["/etc/machine-id", "/etc/machine-id"]])
    const config = mounts.find((m) => volumes.get(m.name)?.configMap?.name === "probescope-config")
    assert.strictEqual(config?.mountPath, "/etc/probescope")
  })

  it("requests and limits CPU and memory, from the measured footprint", () => {
    const r = agent().container.resources!
    for (const kind of ["requests", "limits"] as const) {
      assert.property(r[kind], "cpu", kind)
      assert.property(r[kind], "memory", kind)
    }
    // Headroom over the measure: more distinct executables analysed, an export queue that fills while the collector
    // is away (up to 16 MiB of encoded spans per exporter).
    assert.isAtLeast(mebibytes(r.requests!.memory!), MEASURED_RSS_MIB * 1.5)
    assert.isAtLeast(mebibytes(r.limits!.memory!), mebibytes(r.requests!.memory!) * 1.5)
    assert.isAbove(cores(r.requests!.cpu!), 0.03, "the request covers the spans, not only the idle 0.5 ms/s")
    assert.isAtLeast(cores(r.limits!.cpu!), cores(r.requests!.cpu!))
  })

  it.effect("its ConfigMap is a config file the CLI accepts; the endpoint comes from the node's IP", () =>
    Effect.gen(function*() {
      const { configText, container, pod } = agent()
      const config = yield* ConfigFile.decode("configmap.yaml", Yaml.parse(configText))
      assert.isTrue(config.probes?.builtins)
      assert.isTrue(config.selection?.allGo)
      assert.strictEqual(config.export?.protocol, "grpc")
      // A file value would win over the variable, which is the only place the node's IP can come from.
      assert.isUndefined(config.export?.endpoint)
      assert.notProperty(ConfigFile.overrides(config), "OTEL_EXPORTER_OTLP_ENDPOINT")

      const env = containerEnv(container.env!, { "status.hostIP": "10.0.0.7", "spec.nodeName": "node-a" })
      assert.strictEqual(env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://10.0.0.7:4317")
      assert.strictEqual(env["OTEL_RESOURCE_ATTRIBUTES"], "host.name=node-a,k8s.node.name=node-a")
      // The stop bound, and the kubelet's grace after SIGTERM longer than it.
      assert.strictEqual(env["PROBESCOPE_SHUTDOWN_TIMEOUT"], "5000")
      assert.isAbove(pod.terminationGracePeriodSeconds!, STOP_BOUND_SECONDS)
      // The collector agent listens on that port of the node, over the protocol the file chose.
      const collector = objectOf<Workload>("collector", "DaemonSet", "otel-agent").spec.template.spec.containers[0]!
      assert.deepStrictEqual(collector.ports?.map((p) => [p.containerPort, p.hostPort]), [[4317, 4317]])
      assert.property(collectorConfig("otel-agent").receivers["otlp"]!.protocols!, "grpc")
    }))

  it("runs the image's entrypoint, with no probe the CLI cannot answer", () => {
    const { container } = agent()
    assert.deepStrictEqual([...container.command!, ...(container.args ?? [])], [...entrypoint()])
    assert.deepStrictEqual(container.command, [
      "/usr/local/bin/probescope",
      "run",
      "--config",
      "/etc/probescope/config.yaml"
    ])
    assert.isUndefined(container.livenessProbe)
  })
})

describe("deploy/collector: agent -> gateway", () => {
  it("the node-local agent: OTLP in, memory_limiter -> k8s_attributes -> batch, OTLP to the gateway", () => {
    const config = collectorConfig("otel-agent")
    assertPipelines(config, ["memory_limiter", "k8s_attributes", "batch"])
    const gateway = objectOf<K8sObject & { spec: { ports: Array<{ port: number }> } }>(
      "collector",
      "Service",
      "otel-gateway"
    )
    const exporter = config.exporters[config.service.pipelines["traces"]!.exporters[0]!]!
    assert.strictEqual(exporter.endpoint, `otel-gateway.probescope.svc.cluster.local:${gateway.spec.ports[0]!.port}`)
  })

  it("k8s_attributes associates by container.id and k8s.pod.uid, never the connection, for its node only", () => {
    const k8s = collectorConfig("otel-agent").processors["k8s_attributes"] as {
      filter: { node_from_env_var: string }
      extract: { metadata: Array<string> }
      pod_association: Array<{ sources: Array<{ from: string; name?: string }> }>
    }
    const sources = k8s.pod_association.map((a) => a.sources.map((s) => `${s.from}:${s.name ?? ""}`))
    assert.deepStrictEqual(sources, [["resource_attribute:container.id"], ["resource_attribute:k8s.pod.uid"]])
    // container.id is only usable for association when a container attribute is extracted.
    assert.include(k8s.extract.metadata, "k8s.container.name")
    assert.includeMembers(k8s.extract.metadata, ["k8s.pod.name", "k8s.namespace.name", "k8s.deployment.name"])
    const pod = objectOf<Workload>("collector", "DaemonSet", "otel-agent").spec.template.spec
    const env = pod.containers[0]!.env!.find((e) => e.name === k8s.filter.node_from_env_var)
    assert.strictEqual(env?.valueFrom?.fieldRef?.fieldPath, "spec.nodeName")
  })

  it("the gateway: OTLP in, memory_limiter -> batch, out", () => {
    assertPipelines(collectorConfig("otel-gateway"), ["memory_limiter", "batch"])
    const deployment = objectOf<Workload & { spec: { replicas: number } }>("collector", "Deployment", "otel-gateway")
    assert.isAtLeast(deployment.spec.replicas, 2)
  })

  it("RBAC: the agent's service account reads pods, namespaces and replicasets, and writes nothing", () => {
    const role = objectOf<K8sObject & { rules: Array<Rule> }>("collector", "ClusterRole", "probescope-otel-agent")
    const granted = role.rules.flatMap((r) =>
      r.apiGroups.flatMap((g) => r.resources.map((res) => `${g === "" ? "core" : g}/${res}:${sorted(r.verbs)}`))
    )
    assert.deepStrictEqual(sorted(granted), [
      "apps/replicasets:get,list,watch",
      "core/namespaces:get,list,watch",
      "core/pods:get,list,watch"
    ])
    const binding = objectOf<Binding>("collector", "ClusterRoleBinding", "probescope-otel-agent")
    assert.strictEqual(binding.roleRef.name, role.metadata.name)
    const pod = objectOf<Workload>("collector", "DaemonSet", "otel-agent").spec.template.spec
    assert.deepStrictEqual(binding.subjects.map((s) => [s.name, s.namespace]), [[pod.serviceAccountName, "probescope"]])
    objectOf<K8sObject>("collector", "ServiceAccount", pod.serviceAccountName!)
    // Only the enriching collector talks to the API server.
    const gateway = objectOf<Workload>("collector", "Deployment", "otel-gateway").spec.template.spec
    assert.isFalse(gateway.automountServiceAccountToken)
  })
})

describe("deploy/systemd and deploy/container agree with the DaemonSet", () => {
  const service = () => unitSection("systemd/probescope.service", "Service")
  const one = (key: string) => {
    const values = service().get(key)
    assert.strictEqual(values?.length, 1, key)
    return values![0]!
  }

  it("the unit's capability lines are the DaemonSet's capabilities", () => {
    const daemonSet = agent().container.securityContext!.capabilities!.add!.map((c) => `CAP_${c}`)
    for (const key of ["AmbientCapabilities", "CapabilityBoundingSet"]) {
      assert.deepStrictEqual(sorted(one(key).split(/\s+/)), sorted(daemonSet), key)
    }
  })

  it("the unit is confined, runs the same command line, and stops within the agent's bound", () => {
    assert.strictEqual(one("NoNewPrivileges"), "yes")
    assert.strictEqual(one("ProtectSystem"), "strict")
    assert.includeMembers(one("ReadOnlyPaths").split(/\s+/), ["/sys/kernel/btf", "/etc/probescope"])
    assert.strictEqual(one("Restart"), "on-failure")
    const exec = one("ExecStart").split(/\s+/)
    assert.strictEqual(path.basename(exec[0]!), "probescope")
    assert.deepStrictEqual(exec.slice(1), entrypoint().slice(1))
    const env = Object.fromEntries(service().get("Environment")!.map((e) => e.split(/=(.*)/s).slice(0, 2)))
    assert.strictEqual(env["PROBESCOPE_SHUTDOWN_TIMEOUT"], "5000")
    assert.strictEqual(new URL(env["OTEL_EXPORTER_OTLP_ENDPOINT"]!).port, "4317")
    const stop = /^(\d+)s$/.exec(one("TimeoutStopSec"))
    assert.isAbove(Number(stop![1]), STOP_BOUND_SECONDS)
    // 3 is a clean stop that lost telemetry (docs/cli.md), not a failed unit.
    assert.deepStrictEqual(one("SuccessExitStatus").split(/\s+/), ["3"])
  })

  it("the Containerfile builds on Debian 12 with libbpf1, libelf1, zlib1g and Node >= 22.19 from npm", () => {
    const lines = containerfile()
    const from = lines.filter(([i]) => i === "FROM").map(([, rest]) => rest.split(/\s+/)[0]!)
    assert.deepStrictEqual(from.map((f) => f.split(":")[0]), ["debian", "pack", "debian"])
    for (const image of from.filter((f) => f.startsWith("debian"))) assert.match(image, /^debian:12(-slim)?$/)
    const runs = lines.filter(([i]) => i === "RUN").map(([, rest]) => rest).join("\n")
    for (const pkg of ["libbpf1", "libelf1", "zlib1g"]) assert.match(runs, new RegExp(`install .*\\b${pkg}\\b`))
    const node = /\bnode@(\d+)\.(\d+)\.(\d+)/.exec(runs)
    assert.isNotNull(node)
    assert.isTrue(Number(node![1]) > 22 || (Number(node![1]) === 22 && Number(node![2]) >= 19), node![0])
    // The same Node the repository pins for itself.
    const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as {
      devDependencies: Record<string, string>
    }
    assert.strictEqual(node![0], `node@${pkg.devDependencies["node"]}`)
    assert.deepStrictEqual([...entrypoint()], [
      "/usr/local/bin/probescope",
      "run",
      "--config",
      "/etc/probescope/config.yaml"
    ])
    const ignored = fs.readFileSync(path.join(deployDir, "container/.containerignore"), "utf8").split("\n")
    assert.includeMembers(ignored, ["**/node_modules", "dist", "bpf/out", "native/build", "test/.cache", ".git"])
  })
})
