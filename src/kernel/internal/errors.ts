/** Native addon errors to the Bpf service's typed errors. */
import { existsSync } from "node:fs"
import {
  BpfAttachError,
  BpfLoadError,
  BpfMapError,
  BpfOpenError,
  BpfPermissionError
} from "../Bpf.ts"
import { isNativeError } from "./addon.ts"

interface Fields {
  readonly op: string
  readonly errno: number
  readonly code: string
  readonly message: string
  readonly log: string
}

const fields = (op: string, cause: unknown): Fields =>
  isNativeError(cause)
    ? { op: cause.op, errno: cause.errno, code: cause.code, message: cause.message, log: cause.log }
    : { op, errno: 0, code: "UNKNOWN", message: cause instanceof Error ? cause.message : String(cause), log: "" }

const base = (f: Fields) => ({ op: f.op, errno: f.errno, code: f.code, message: f.message })

const isPermission = (f: Fields) => f.code === "EPERM" || f.code === "EACCES"

/** Lines of libbpf's log worth quoting in a message (its own "libbpf:" lines, not the verifier dump). */
const libbpfLines = (log: string): string =>
  log.split("\n").filter((l) => l.startsWith("libbpf:")).slice(-3).join(" | ")

const verifierTail = (log: string, max = 4096): string => {
  const start = log.lastIndexOf("-- BEGIN PROG LOAD LOG --")
  const end = log.lastIndexOf("-- END PROG LOAD LOG --")
  const body = start >= 0 ? log.slice(start + 26, end > start ? end : undefined) : log
  return body.length > max ? body.slice(body.length - max) : body.trimEnd()
}

/** Failure to open an object (file missing, not an ELF, bad BTF). */
export const openError = (source: string, cause: unknown) => {
  const f = fields("open", cause)
  return isPermission(f) ? new BpfPermissionError(base(f)) : new BpfOpenError({ ...base(f), source })
}

/** Failure of bpf_object__load: a verifier rejection carries the log's tail even though its errno is EACCES. */
export const loadError = (object: string, cause: unknown) => {
  const f = fields("load", cause)
  const verifierLog = verifierTail(f.log)
  const rejected = f.log.includes("BEGIN PROG LOAD LOG") || /processed \d+ insns/.test(f.log)
  if (!rejected && isPermission(f)) return new BpfPermissionError(base(f))
  const detail = rejected ? `verifier rejected the program: ${lastLine(verifierLog)}` : libbpfLines(f.log)
  return new BpfLoadError({ ...base(f), message: detail ? `${f.message}: ${detail}` : f.message, object, verifierLog })
}

const lastLine = (text: string): string => {
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l.length > 0 && !l.startsWith("processed "))
  return lines.at(-1) ?? ""
}

/** Failure of a map operation or of a constant/map-reuse step before load. */
export const mapError = (map: string, cause: unknown) => {
  const f = fields("map", cause)
  return isPermission(f) ? new BpfPermissionError(base(f)) : new BpfMapError({ ...base(f), map })
}

/** A map error raised on the JS side (bad argument), with no errno. */
export const mapUsageError = (op: string, map: string, message: string) =>
  new BpfMapError({ op, errno: 22, code: "EINVAL", message: `${op}: ${message}`, map })

/** Failure to attach: names the program and target, and says which of symbol, binary or PID was the problem. */
export const attachError = (
  program: string,
  target: string,
  cause: unknown,
  context: { readonly binary?: string; readonly symbol?: string; readonly pid?: number } = {}
) => {
  const f = fields("attach", cause)
  if (isPermission(f)) return new BpfPermissionError(base(f))
  let reason = libbpfLines(f.log)
  if (context.binary !== undefined && !existsSync(context.binary)) {
    reason = `binary ${context.binary} does not exist`
  } else if (f.code === "ESRCH" && context.pid !== undefined) {
    reason = `process ${context.pid} does not exist`
  } else if (f.code === "ENOENT" && context.symbol !== undefined) {
    reason = `symbol ${context.symbol} not found in ${context.binary}`
  }
  return new BpfAttachError({
    ...base(f),
    message: reason ? `${f.message}: ${reason}` : f.message,
    program,
    target
  })
}
