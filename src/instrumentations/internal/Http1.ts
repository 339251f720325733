/**
 * HTTP/1.x message heads from bytes captured on the wire (or on either side of TLS): the request line and its
 * headers, the status line, and the URL pieces the HTTP semantic conventions name. The capture is bounded, so a head
 * may be cut anywhere: what is cut is left out, never guessed. Method normalisation and host:port splitting are
 * Http.ts's; this module only reads text.
 */
import * as Http from "./Http.ts"

// ---------------------------------------------------------------------------------------------------------------
// Heads
// ---------------------------------------------------------------------------------------------------------------

/** A protocol version from "HTTP/1.1", as semconv writes it ("1.1", "1.0", "2"). */
export type Version = string

/** A request head as far as it was captured. */
export interface RequestHead {
  readonly method: string
  /** The request target ("/path?query", "https://host/path", "host:443", "*"); undefined when the request line was cut. */
  readonly target: string | undefined
  /** From the request line; undefined when the line was cut. */
  readonly version: Version | undefined
  /** Header fields in order, names lower-cased, values trimmed; a field cut by the capture is left out. */
  readonly headers: ReadonlyArray<readonly [name: string, value: string]>
  /** The blank line ending the head was captured. */
  readonly complete: boolean
}

/** A status line. */
export interface StatusLine {
  readonly version: Version
  readonly status: number
}

/** RFC 9110 token characters (methods, header names). */
const token = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const versionText = /^HTTP\/(\d)\.(\d)$/

const versionOf = (major: string, minor: string): Version =>
  Http.protocolVersion(Number(major), Number(minor)) ?? `${major}.${minor}`

/**
 * The request head at the start of `text`: undefined unless it begins with "METHOD SP". A request line cut before its
 * end gives the method alone; header lines are read up to the blank line (later bytes — a body, a pipelined request
 * — are not looked at), and a last line without its line end is dropped as cut.
 */
export const parseRequestHead = (text: string): RequestHead | undefined => {
  const space = text.indexOf(" ")
  if (space <= 0 || !token.test(text.slice(0, space))) return undefined
  const method = text.slice(0, space)
  const end = text.indexOf("\r\n\r\n")
  const head = end >= 0 ? text.slice(0, end) : text
  const lines = head.split("\r\n")
  // Without the blank line, the last line may be cut anywhere.
  if (end < 0) lines.pop()
  const requestLine = lines.shift()
  if (requestLine === undefined) return { method, target: undefined, version: undefined, headers: [], complete: false }
  const parts = requestLine.split(" ")
  const version = parts.length === 3 ? versionText.exec(parts[2]!) : null
  if (version === null || parts[1] === "") return undefined
  const headers: Array<readonly [string, string]> = []
  for (const line of lines) {
    const colon = line.indexOf(":")
    const name = colon > 0 ? line.slice(0, colon) : ""
    // A malformed line ends what can be trusted of the head.
    if (!token.test(name)) break
    headers.push([name.toLowerCase(), line.slice(colon + 1).trim()])
  }
  return { method, target: parts[1]!, version: versionOf(version[1]!, version[2]!), headers, complete: end >= 0 }
}

/** The status line at the start of `text` ("HTTP/1.1 404 Not Found"), or undefined. */
export const parseStatusLine = (text: string): StatusLine | undefined => {
  const m = /^HTTP\/(\d)\.(\d) (\d{3})(?:[ \r]|$)/.exec(text)
  return m === null ? undefined : { version: versionOf(m[1]!, m[2]!), status: Number(m[3]) }
}

/** The first value of a header field (`name` lower-case). */
export const header = (head: RequestHead, name: string): string | undefined =>
  head.headers.find(([n]) => n === name)?.[1]

// ---------------------------------------------------------------------------------------------------------------
// URLs as the conventions want them
// ---------------------------------------------------------------------------------------------------------------

/** Query parameters whose values semconv says to replace with "REDACTED" (url.query, url.full). */
const SENSITIVE_PARAMS = new Set(["AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature"])

/** A query string with the values of the known sensitive parameters replaced by "REDACTED". */
export const redactQuery = (query: string): string =>
  query.split("&").map((pair) => {
    const eq = pair.indexOf("=")
    return eq > 0 && SENSITIVE_PARAMS.has(pair.slice(0, eq)) ? `${pair.slice(0, eq)}=REDACTED` : pair
  }).join("&")

/** An origin-form target's path and query (absent when there is no "?"). */
export const splitTarget = (target: string): { readonly path: string; readonly query?: string } => {
  const q = target.indexOf("?")
  return q < 0 ? { path: target } : { path: target.slice(0, q), query: target.slice(q + 1) }
}

/** The authority of an absolute-form target ("https://user@host:8443/p" gives "host:8443"), without credentials. */
const absolute = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/(?:[^/?#@]*@)?([^/?#]*)(.*)$/

/**
 * The URL a client asked for: `scheme://authority/path?query`, from the request target and the Host header (an
 * absolute-form target carries its own; credentials in it are dropped). Undefined without an authority.
 */
export const urlFull = (scheme: string, host: string | undefined, target: string): string | undefined => {
  const abs = absolute.exec(target)
  const authority = abs !== null ? abs[2]! : host
  if (authority === undefined || authority === "") return undefined
  const rest = abs !== null ? abs[3]! : target.startsWith("/") ? target : ""
  const { path, query } = splitTarget(rest)
  return `${abs !== null ? abs[1]!.toLowerCase() : scheme}://${authority}${path}${
    query === undefined ? "" : `?${redactQuery(query)}`
  }`
}

/** The host and port a client addressed: an absolute-form target's authority, else the Host header. */
export const authorityOf = (head: RequestHead): string | undefined => {
  const abs = head.target === undefined ? null : absolute.exec(head.target)
  return abs !== null && abs[2] !== "" ? abs[2] : header(head, "host")
}
