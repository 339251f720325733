import { assert, describe, it } from "@effect/vitest"
import * as Cgroup from "../../src/discovery/Cgroup.ts"
import { parseCmdline } from "../../src/discovery/ProcScan.ts"

const ID = "3f4e5d6c7b8a99881726354453627180a1b2c3d4e5f60718293a4b5c6d7e8f90"
const POD = "1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"
const POD_ = POD.replaceAll("-", "_")

describe("Cgroup.parse", () => {
  const cases: ReadonlyArray<readonly [string, string, Partial<Cgroup.CgroupInfo>]> = [
    ["docker, cgroupfs driver (v2)", `0::/docker/${ID}\n`, { containerId: ID }],
    ["docker, systemd driver", `0::/system.slice/docker-${ID}.scope\n`, { containerId: ID }],
    [
      "Kubernetes, containerd, systemd driver",
      `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${POD_}.slice/cri-containerd-${ID}.scope\n`,
      { containerId: ID, podUid: POD }
    ],
    [
      "Kubernetes, cgroupfs driver",
      `0::/kubepods/besteffort/pod${POD}/${ID}\n`,
      { containerId: ID, podUid: POD }
    ],
    [
      "Kubernetes, cri-o",
      `0::/kubepods.slice/kubepods-pod${POD_}.slice/crio-${ID}.scope\n`,
      { containerId: ID, podUid: POD }
    ],
    ["podman (rootful, nested container group)", `0::/machine.slice/libpod-${ID}.scope/container\n`, {
      containerId: ID
    }],
    [
      "podman (rootless)",
      `0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-${ID}.scope\n`,
      { containerId: ID }
    ],
    ["containerd without Kubernetes (nerdctl)", `0::/default/${ID}\n`, { containerId: ID }]
  ]
  for (const [name, text, expected] of cases) {
    it(name, () => {
      const info = Cgroup.parse(text)
      assert.strictEqual(info.containerId, expected.containerId)
      assert.strictEqual(info.podUid, expected.podUid)
      assert.strictEqual(info.path, text.trim().slice(3))
    })
  }

  it("a pod's own cgroup (the pause sandbox's parent) gives the pod and no container", () => {
    const info = Cgroup.parse(`0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${POD_}.slice\n`)
    assert.deepStrictEqual(info, {
      path: `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${POD_}.slice`,
      paths: [`/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${POD_}.slice`],
      podUid: POD
    })
  })

  it("cri-o's conmon scope is the monitor, not the container", () => {
    assert.strictEqual(Cgroup.parse(`0::/kubepods.slice/crio-conmon-${ID}.scope\n`).containerId, undefined)
  })

  it("host processes: systemd units and sessions name no container", () => {
    assert.deepStrictEqual(Cgroup.parse("0::/init.scope\n"), { path: "/init.scope", paths: ["/init.scope"] })
    assert.deepStrictEqual(Cgroup.parse("0::/user.slice/user-1000.slice/session-3.scope\n").containerId, undefined)
    assert.deepStrictEqual(Cgroup.parse("0::/system.slice/containerd.service\n").containerId, undefined)
  })

  it("cgroup v1 / hybrid: the id from a controller's path when the unified one is the root", () => {
    const text = [
      "12:pids:/docker/" + ID,
      "4:memory:/process_api/c0bafe258dd784e47d62c1200ff0c994",
      "1:name=systemd:/docker/" + ID,
      "0::/",
      ""
    ].join("\n")
    assert.deepStrictEqual(Cgroup.parse(text), {
      path: "/",
      paths: ["/", `/docker/${ID}`, "/process_api/c0bafe258dd784e47d62c1200ff0c994"],
      containerId: ID
    })
  })

  it("an id shorter than 64 hex digits (a 32-hex job id) is not a container's", () => {
    assert.strictEqual(Cgroup.containerIdOf("/process_api/c0bafe258dd784e47d62c1200ff0c994"), undefined)
    assert.strictEqual(Cgroup.containerIdOf(`/x/${ID}0`), undefined)
  })

  it("empty or unreadable content: the root, nothing known", () => {
    assert.deepStrictEqual(Cgroup.parse(""), { path: "/", paths: [] })
  })
})

describe("ProcScan.parseCmdline", () => {
  it("NUL-separated arguments; the trailing NUL ends the last one; an empty argument is kept", () => {
    assert.deepStrictEqual(parseCmdline("/srv/api\0--port\0\x008080\0"), ["/srv/api", "--port", "", "8080"])
    assert.deepStrictEqual(parseCmdline(""), [])
  })
})
