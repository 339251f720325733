/**
 * Builds the native fixtures (C, C++, a shared library, Rust) under test/.cache/native (git-ignored) and reads the
 * kernel-facing truth about them with binutils: `readelf -s --wide` symbols and `readelf -lW` segments.
 */
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"

const root = Path.resolve(import.meta.dirname, "../..")
export const nativeDir = Path.join(root, "test/.cache/native")

const lib = "int lib_add(int a, int b) { return a + b; }\nint lib_internal(int a) { return a * 3; }\n"
const main = `#include <stdio.h>
#include <unistd.h>
int lib_add(int, int);
int helper(int x) { return x * 2; }
int main(int argc, char **argv) {
  printf("%d\\n", lib_add(argc, helper(argc)));
  if (argc > 1) sleep(30);
  return 0;
}
`
const plain = "#include <stdio.h>\nint helper(int x) { return x * 2; }\nint main(void) { printf(\"%d\\n\", helper(2)); }\n"
const cxx = `#include <iostream>
#include <string>
namespace demo { std::string greet(const std::string& who) { return "hello " + who; } }
int main() { std::cout << demo::greet("world") << std::endl; }
`
const rust = "fn add(a: i32, b: i32) -> i32 { a + b }\nfn main() { println!(\"{}\", add(1, 2)); }\n"

/** Builds every fixture once (parallel test files: build in a private directory, then rename it into place). */
export const buildNative = (): string => {
  if (Fs.existsSync(Path.join(nativeDir, "done"))) return nativeDir
  const tmp = `${nativeDir}.${process.pid}.tmp`
  Fs.mkdirSync(tmp, { recursive: true })
  const run = (cmd: string, args: Array<string>) => execFileSync(cmd, args, { cwd: tmp, stdio: ["ignore", "ignore", "inherit"] })
  Fs.writeFileSync(Path.join(tmp, "lib.c"), lib)
  Fs.writeFileSync(Path.join(tmp, "main.c"), main)
  Fs.writeFileSync(Path.join(tmp, "plain.c"), plain)
  Fs.writeFileSync(Path.join(tmp, "greet.cc"), cxx)
  Fs.writeFileSync(Path.join(tmp, "hello.rs"), rust)
  Fs.writeFileSync(Path.join(tmp, "demo.map"), "DEMO_1.0 { global: lib_add; local: *; };\n")
  run("gcc", ["-shared", "-fPIC", "-O1", "-Wl,-soname,libdemo.so.1", "-Wl,--version-script=demo.map", "-o",
    "libdemo.so.1", "lib.c"])
  Fs.symlinkSync("libdemo.so.1", Path.join(tmp, "libdemo.so"))
  // The rpath names the final directory: the program runs from there after the rename.
  run("gcc", ["-O1", "-no-pie", "-o", "main", "main.c", "-L.", "-ldemo", `-Wl,-rpath,${nativeDir}`])
  run("gcc", ["-O1", "-pie", "-fPIE", "-o", "main-pie", "main.c", "-L.", "-ldemo", `-Wl,-rpath,${nativeDir}`])
  run("gcc", ["-O1", "-static", "-o", "plain-static", "plain.c"])
  run("strip", ["-o", "main-stripped", "main"])
  run("strip", ["-o", "plain-static-stripped", "plain-static"])
  run("g++", ["-O1", "-o", "greet", "greet.cc"])
  run("rustc", ["-O", "-o", "hello", "hello.rs"])
  Fs.writeFileSync(Path.join(tmp, "done"), "")
  try {
    Fs.renameSync(tmp, nativeDir)
  } catch {
    // Another worker won the race: its build is as good as this one.
    Fs.rmSync(tmp, { recursive: true, force: true })
  }
  return nativeDir
}

export interface ReadelfSymbol {
  readonly table: string
  readonly name: string
  readonly value: bigint
  readonly size: number
  readonly bind: string
}

/** Defined FUNC/IFUNC symbols as `readelf -s --wide` prints them (versioned names as it prints them too). */
export const readelfFunctions = (file: string): Array<ReadelfSymbol> => {
  const out = execFileSync("readelf", ["-s", "--wide", file], { maxBuffer: 256 << 20 }).toString()
  const symbols: Array<ReadelfSymbol> = []
  let table = ""
  for (const line of out.split("\n")) {
    const t = /^Symbol table '([^']+)'/.exec(line)
    if (t !== null) table = t[1]!.slice(1)
    const m = /^\s*\d+: ([0-9a-f]+)\s+(\d+|0x[0-9a-f]+)\s+(FUNC|IFUNC)\s+(\w+)\s+\w+\s+(\w+)\s+(\S+)/.exec(line)
    if (m === null || m[5] === "UND") continue
    // readelf appends " (N)" for a version it cannot name; a name never contains a space.
    symbols.push({ table, name: m[6]!, value: BigInt(`0x${m[1]}`), size: Number(m[2]), bind: m[4]! })
  }
  return symbols
}

/** File offset of a virtual address, through the LOAD segments as `readelf -lW` prints them. */
export const readelfOffsetOf = (file: string): (vaddr: bigint) => number | undefined => {
  const out = execFileSync("readelf", ["-lW", file]).toString()
  const loads = [...out.matchAll(/^\s*LOAD\s+0x([0-9a-f]+) 0x([0-9a-f]+) 0x[0-9a-f]+ 0x([0-9a-f]+)/gm)]
    .map((m) => ({ offset: BigInt(`0x${m[1]}`), vaddr: BigInt(`0x${m[2]}`), filesz: BigInt(`0x${m[3]}`) }))
  return (v) => {
    const l = loads.find((l) => v >= l.vaddr && v < l.vaddr + l.filesz)
    return l === undefined ? undefined : Number(l.offset + (v - l.vaddr))
  }
}
