/**
 * What an OTLP server says back, read without a protobuf library: the partial-success part of an export response
 * (`Export{Trace,Metrics,Logs}ServiceResponse.partial_success`, field 1, whose rejected count is field 1 and
 * error_message field 2 for every signal) and the message of an error response (`google.rpc.Status`: code = 1,
 * message = 2), in protobuf or JSON.
 */

/** The OTLP signal a request carries. */
export type Signal = "traces" | "metrics" | "logs"

/** The OTLP/JSON name of the rejected count in each signal's partial success. */
const REJECTED_JSON: Readonly<Record<Signal, string>> = {
  traces: "rejectedSpans",
  metrics: "rejectedDataPoints",
  logs: "rejectedLogRecords"
}

/** Items (spans, data points, log records) the server accepted the request but dropped, and why. */
export interface PartialSuccess {
  readonly rejected: number
  readonly message: string
}

/** Reads one varint at `at`; returns [value, next offset] or undefined past the end. */
const varint = (b: Uint8Array, at: number): readonly [number, number] | undefined => {
  let value = 0
  let scale = 1
  for (let i = at; i < b.length && i < at + 10; i++) {
    value += (b[i]! & 0x7f) * scale
    scale *= 128
    if (b[i]! < 0x80) return [value, i + 1]
  }
  return undefined
}

/** The top-level fields of a protobuf message: varints as numbers, length-delimited as byte ranges. */
const fields = (b: Uint8Array): Map<number, number | Uint8Array> => {
  const out = new Map<number, number | Uint8Array>()
  let at = 0
  while (at < b.length) {
    const key = varint(b, at)
    if (key === undefined) return out
    const [tagValue, afterKey] = key
    const field = Math.floor(tagValue / 8)
    switch (tagValue & 7) {
      case 0: {
        const v = varint(b, afterKey)
        if (v === undefined) return out
        out.set(field, v[0])
        at = v[1]
        break
      }
      case 1:
        at = afterKey + 8
        break
      case 2: {
        const len = varint(b, afterKey)
        if (len === undefined || len[1] + len[0] > b.length) return out
        out.set(field, b.subarray(len[1], len[1] + len[0]))
        at = len[1] + len[0]
        break
      }
      case 5:
        at = afterKey + 4
        break
      default:
        return out
    }
  }
  return out
}

const utf8 = new TextDecoder()

const parseJson = (body: Uint8Array): unknown => {
  try {
    return JSON.parse(utf8.decode(body))
  } catch {
    return undefined
  }
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

/** The partial success of a 2xx export response, when the server rejected some items. */
export const partialSuccess = (body: Uint8Array, json: boolean, signal: Signal): PartialSuccess | undefined => {
  if (body.length === 0) return undefined
  if (json) {
    const parsed = parseJson(body)
    const partial = isRecord(parsed) ? parsed["partialSuccess"] : undefined
    if (!isRecord(partial)) return undefined
    const rejected = Number(partial[REJECTED_JSON[signal]] ?? 0)
    const message = typeof partial["errorMessage"] === "string" ? partial["errorMessage"] : ""
    return rejected > 0 || message !== "" ? { rejected, message } : undefined
  }
  const partial = fields(body).get(1)
  if (!(partial instanceof Uint8Array)) return undefined
  const inner = fields(partial)
  const rejected = inner.get(1)
  const message = inner.get(2)
  const result = {
    rejected: typeof rejected === "number" ? rejected : 0,
    message: message instanceof Uint8Array ? utf8.decode(message) : ""
  }
  return result.rejected > 0 || result.message !== "" ? result : undefined
}

/** The human-readable part of an error response: Status.message, a JSON `message`, or the text itself. */
export const errorDetail = (body: Uint8Array, contentType: string | undefined): string => {
  if (body.length === 0) return ""
  const type = contentType ?? ""
  if (type.includes("protobuf")) {
    const message = fields(body).get(2)
    return message instanceof Uint8Array ? utf8.decode(message) : ""
  }
  if (type.includes("json")) {
    const parsed = parseJson(body)
    if (isRecord(parsed) && typeof parsed["message"] === "string") return parsed["message"]
  }
  const text = utf8.decode(body.subarray(0, 300)).replace(/\s+/g, " ").trim()
  return text
}
