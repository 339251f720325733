/**
 * Which libraries a process's loader will map, without the loader (src/target/internal/Loader.ts, Needed.ts): an
 * ELF's needs read from its dynamic segment alone, and the DT_NEEDED closure followed as the loader follows it. A
 * program built here needs a library of its own found through its RUNPATH ($ORIGIN/lib), which needs libssl: the
 * closure goes through it. Nothing needed is read from a file that is not ELF.
 */
import { assert, describe, it } from "@effect/vitest"
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterAll, beforeAll } from "vitest"
import * as Loader from "../../src/target/internal/Loader.ts"
import { readNeeds } from "../../src/target/internal/Needed.ts"

let dir = ""
let app = ""
const children: Array<ChildProcess> = []

beforeAll(() => {
  dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "probescope-loader-"))
  Fs.mkdirSync(Path.join(dir, "lib"))
  // libssl's initialiser, declared here: no OpenSSL headers needed, only the library.
  Fs.writeFileSync(Path.join(dir, "fake.c"), "int OPENSSL_init_ssl(unsigned long long, const void *);\n" +
    "int fake(void) { return OPENSSL_init_ssl(0, 0); }\n")
  Fs.writeFileSync(Path.join(dir, "app.c"), "#include <stdio.h>\n#include <unistd.h>\nint fake(void);\n" +
    "int main(int argc, char **argv) { puts(\"ready\"); fflush(stdout); if (argc > 5) fake(); for (;;) pause(); }\n")
  execFileSync("gcc", ["-shared", "-fPIC", "-Wl,-soname,libfake.so.1", "-o", "lib/libfake.so.1", "fake.c",
    "-l:libssl.so.3"], { cwd: dir })
  app = Path.join(dir, "app")
  execFileSync("gcc", ["-o", "app", "app.c", "-Wl,--no-as-needed", "-Llib", "-l:libfake.so.1",
    "-Wl,-rpath,$ORIGIN/lib"], { cwd: dir })
}, 60_000)

afterAll(() => {
  for (const c of children) c.kill("SIGKILL")
  if (dir !== "") Fs.rmSync(dir, { recursive: true, force: true })
})

const start = (file: string): Promise<number> =>
  new Promise((resolve, reject) => {
    const child = spawn(file, [], { stdio: ["ignore", "pipe", "ignore"] })
    children.push(child)
    child.on("error", reject)
    child.stdout!.once("data", () => resolve(child.pid!))
  })

describe("readNeeds", () => {
  it("DT_NEEDED in order and the RUNPATH as written; nothing from a file that is not ELF", () => {
    assert.deepStrictEqual(readNeeds(app), { needed: ["libfake.so.1", "libc.so.6"], runpath: "$ORIGIN/lib" })
    assert.deepStrictEqual(readNeeds(Path.join(dir, "lib", "libfake.so.1")).needed, ["libssl.so.3"])
    assert.deepStrictEqual(readNeeds(Path.join(dir, "app.c")), { needed: [], runpath: "" })
    assert.deepStrictEqual(readNeeds(Path.join(dir, "missing")), { needed: [], runpath: "" })
    // An ELF64 header claiming 65 535 program headers in a 64-byte file: nothing needed, no error.
    const corrupt = Buffer.alloc(64)
    corrupt.writeUInt32BE(0x7f454c46, 0)
    corrupt[4] = 2
    corrupt[5] = 1
    corrupt.writeBigUInt64LE(64n, 32)
    corrupt.writeUInt16LE(56, 54)
    corrupt.writeUInt16LE(65535, 56)
    Fs.writeFileSync(Path.join(dir, "corrupt"), corrupt)
    assert.deepStrictEqual(readNeeds(Path.join(dir, "corrupt")), { needed: [], runpath: "" })
  })
})

describe("Loader.willMap", () => {
  it("follows the closure through a library found by $ORIGIN in the RUNPATH", async () => {
    const pid = await start(app)
    assert.deepStrictEqual(Loader.willMap(pid, ["libssl.so.3", "libcrypto.so.3", "libz.so.1"]), [
      "libssl.so.3",
      "libcrypto.so.3"
    ])
    // Its libraries are mapped as the closure said.
    const maps = Fs.readFileSync(`/proc/${pid}/maps`, "utf8")
    for (const name of ["libfake.so.1", "libssl.so.3", "libcrypto.so.3"]) assert.include(maps, `/${name}`)
  })

  it("a process that has gone: nothing", () => {
    assert.deepStrictEqual(Loader.willMap(0x7ffffff0, ["libssl.so.3"]), [])
  })
})
