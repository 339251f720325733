import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Detected from "../../src/telemetry/internal/detected.ts"
import * as ProcessResources from "../../src/telemetry/ProcessResources.ts"

const version = ProcessResources.version

describe("ProcessResources", () => {
  it.effect("a registered process gets process, runtime and distro attributes; service.name from the exe", () =>
    Effect.gen(function*() {
      const r = ProcessResources.make({ serviceName: undefined, attributes: {} })
      yield* r.register(1234, { exe: "/srv/bin/users-api", goVersion: "1.24.3" })
      assert.deepStrictEqual(r.resourceFor(1234).attributes, {
        "process.pid": 1234,
        "process.executable.path": "/srv/bin/users-api",
        "process.executable.name": "users-api",
        "process.runtime.name": "go",
        "process.runtime.version": "1.24.3",
        "telemetry.distro.name": "probescope",
        "telemetry.distro.version": version,
        "service.name": "users-api"
      })
      assert.strictEqual(version, "0.1.0")
    }))

  it.effect("OTEL_SERVICE_NAME beats OTEL_RESOURCE_ATTRIBUTES' service.name; a process's own name beats both", () =>
    Effect.gen(function*() {
      const r = ProcessResources.make({
        serviceName: "agent-wide",
        attributes: { "service.name": "from-attrs", "deployment.environment.name": "prod" }
      })
      yield* r.register(1, { exe: "/a", goVersion: "1.26.0" })
      yield* r.register(2, { exe: "/b", goVersion: "1.26.0", serviceName: "own", attributes: { team: "x" } })
      assert.strictEqual(r.attributesFor(1)["service.name"], "agent-wide")
      assert.strictEqual(r.attributesFor(1)["deployment.environment.name"], "prod")
      assert.strictEqual(r.attributesFor(2)["service.name"], "own")
      assert.strictEqual(r.attributesFor(2)["team"], "x")
      const attrsOnly = ProcessResources.make({ serviceName: undefined, attributes: { "service.name": "from-attrs" } })
      yield* attrsOnly.register(3, { exe: "/c", goVersion: "1.26.0" })
      assert.strictEqual(attrsOnly.attributesFor(3)["service.name"], "from-attrs")
    }))

  it.effect("the resource object is stable per pid (exporters group by identity) until re-registered", () =>
    Effect.gen(function*() {
      const r = ProcessResources.make({ serviceName: undefined, attributes: {} })
      yield* r.register(7, { exe: "/x", goVersion: "1.26.0" })
      const first = r.resourceFor(7)
      assert.strictEqual(r.resourceFor(7), first)
      yield* r.register(7, { exe: "/y", goVersion: "1.26.0" })
      assert.notStrictEqual(r.resourceFor(7), first)
      assert.strictEqual(r.attributesFor(7)["process.executable.name"], "y")
    }))

  it.effect("an unknown pid gets a minimal resource with unknown_service", () =>
    Effect.gen(function*() {
      const r = ProcessResources.make({ serviceName: undefined, attributes: {} })
      yield* r.register(9, { exe: "/x", goVersion: "1.26.0" })
      yield* r.unregister(9)
      assert.deepStrictEqual(r.attributesFor(9), {
        "process.pid": 9,
        "telemetry.distro.name": "probescope",
        "telemetry.distro.version": version,
        "service.name": "unknown_service"
      })
    }))

  it.effect("detected attributes (host, container, arguments) are the lowest layer: the agent's attributes win", () =>
    Effect.gen(function*() {
      const id = "3f4e5d6c7b8a99881726354453627180a1b2c3d4e5f60718293a4b5c6d7e8f90"
      const detected = Detected.attributes(
        { name: "node-1", id: "3d1219c7c4c5404aaa1f6d2a48adfda4" },
        { containerId: id, podUid: "1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d", args: ["/srv/api", "--port", "8080"] }
      )
      const r = ProcessResources.make({ serviceName: undefined, attributes: { "host.name": "from-env" } })
      yield* r.register(5, { exe: "/srv/api", goVersion: "1.26.0", detected })
      assert.deepStrictEqual(r.attributesFor(5), {
        "host.name": "from-env",
        "host.id": "3d1219c7c4c5404aaa1f6d2a48adfda4",
        "os.type": "linux",
        "container.id": id,
        "k8s.pod.uid": "1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d",
        "process.command_args": ["/srv/api", "--port", "8080"],
        "process.pid": 5,
        "process.executable.path": "/srv/api",
        "process.executable.name": "api",
        "process.runtime.name": "go",
        "process.runtime.version": "1.26.0",
        "telemetry.distro.name": "probescope",
        "telemetry.distro.version": version,
        "service.name": "api"
      })
    }))

  it("detected: no container, pod, host id or arguments when none is known", () => {
    assert.deepStrictEqual(Detected.attributes({ name: "h" }, {}), { "host.name": "h", "os.type": "linux" })
  })

  it("parseMachineId: 32 lowercase hex digits, else none", () => {
    assert.strictEqual(Detected.parseMachineId("3d1219c7c4c5404aaa1f6d2a48adfda4\n"), "3d1219c7c4c5404aaa1f6d2a48adfda4")
    assert.strictEqual(Detected.parseMachineId("uninitialized\n"), undefined)
    assert.strictEqual(Detected.parseMachineId(""), undefined)
  })
})

describe("ProcessResources of a process that is not Go", () => {
  it("names no runtime (nothing reliable is known of a native one's)", () => {
    const attributes = ProcessResources.processAttributes(
      31,
      { exe: "/usr/bin/python3.11", goVersion: "" },
      { serviceName: undefined, attributes: {} }
    )
    assert.deepStrictEqual(attributes, {
      "process.pid": 31,
      "process.executable.path": "/usr/bin/python3.11",
      "process.executable.name": "python3.11",
      "telemetry.distro.name": "probescope",
      "telemetry.distro.version": ProcessResources.version,
      "service.name": "python3.11"
    })
  })
})
