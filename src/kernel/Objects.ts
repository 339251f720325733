/** Where the compiled BPF objects live (`npm run build:bpf` writes them to bpf/out/). */
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")

/** Path of `bpf/out/<name>.bpf.o`; `PROBESCOPE_BPF_DIR` overrides the directory. */
export const bpfObjectPath = (name: string): string =>
  path.join(process.env["PROBESCOPE_BPF_DIR"] ?? path.join(root, "bpf", "out"), `${name}.bpf.o`)
