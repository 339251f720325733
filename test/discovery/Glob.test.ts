import { assert, describe, it } from "@effect/vitest"
import * as Glob from "../../src/discovery/Glob.ts"

describe("Glob", () => {
  it("isGlob: *, ? and [ make a glob; anything else is a path", () => {
    assert.isTrue(Glob.isGlob("/srv/*/bin/api"))
    assert.isTrue(Glob.isGlob("/srv/api?"))
    assert.isTrue(Glob.isGlob("/srv/api[12]"))
    assert.isFalse(Glob.isGlob("/srv/app.v2/bin/api+1"))
  })

  it("* stays within one component", () => {
    const m = Glob.matcher("/srv/*/bin/api")
    assert.isTrue(m("/srv/users/bin/api"))
    assert.isTrue(m("/srv/.hidden/bin/api"))
    assert.isFalse(m("/srv/a/b/bin/api"))
    assert.isFalse(m("/srv/users/bin/api2"))
    assert.isFalse(m("/opt/srv/users/bin/api"))
  })

  it("** spans zero or more components", () => {
    const m = Glob.matcher("/srv/**/api")
    assert.isTrue(m("/srv/api"))
    assert.isTrue(m("/srv/a/api"))
    assert.isTrue(m("/srv/a/b/c/api"))
    assert.isFalse(m("/srv/a/b/c/api/x"))
    const below = Glob.matcher("/kubepods.slice/**")
    assert.isTrue(below("/kubepods.slice/kubepods-pod1.slice/cri-containerd-1.scope"))
    assert.isFalse(below("/system.slice/docker.service"))
  })

  it("? is one character, classes and negated classes; regex characters are literal", () => {
    assert.isTrue(Glob.matcher("/bin/api?")("/bin/api2"))
    assert.isFalse(Glob.matcher("/bin/api?")("/bin/api"))
    assert.isTrue(Glob.matcher("/bin/api[0-9]")("/bin/api7"))
    assert.isFalse(Glob.matcher("/bin/api[!0-9]")("/bin/api7"))
    assert.isTrue(Glob.matcher("/bin/api[!0-9]")("/bin/apix"))
    assert.isTrue(Glob.matcher("/opt/app.v2+(x)/*")("/opt/app.v2+(x)/run"))
    assert.isFalse(Glob.matcher("/opt/app.v2/*")("/opt/appXv2/run"))
    assert.isTrue(Glob.matcher("/opt/[app")("/opt/[app"))
  })
})
