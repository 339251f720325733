import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
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
})
