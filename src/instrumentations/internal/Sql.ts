/**
 * A bounded SQL statement summariser for database spans: the operation (the statement's first keyword) and the
 * collection (the table it names) of the statements most programs run, read from the text without ever returning a
 * literal. Anything it does not recognise gives no collection (and no operation when the first word is not a known
 * keyword), never a guess.
 *
 * Recognised: SELECT ... FROM t, INSERT [OR ...] INTO t, UPDATE t, DELETE FROM t, REPLACE INTO t,
 * CREATE/DROP/ALTER/TRUNCATE [TABLE|INDEX|VIEW ...] t, and keyword-only statements (BEGIN, COMMIT, ...).
 * A statement starting with WITH (a CTE) gives the operation of its main statement when it finds one.
 */

/** How much of a statement is looked at: enough for the head of any practical statement, and bounded. */
export const SCAN_LIMIT = 1024

/** Operations reported as `db.operation.name` (upper case, as the semantic conventions' examples write them). */
const OPERATIONS = new Set([
  "SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "MERGE", "UPSERT",
  "CREATE", "DROP", "ALTER", "TRUNCATE",
  "BEGIN", "START", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE",
  "SET", "SHOW", "EXPLAIN", "ANALYZE", "VACUUM", "PRAGMA", "CALL", "EXEC", "EXECUTE", "GRANT", "REVOKE",
  "LOCK", "COPY", "WITH"
])

/** Words that may sit between CREATE/DROP and the object kind. */
const DDL_MODIFIERS = new Set(["OR", "REPLACE", "TEMP", "TEMPORARY", "UNIQUE", "IF", "NOT", "EXISTS", "UNLOGGED"])

/** Object kinds after CREATE/DROP/ALTER whose next name is the collection. */
const DDL_OBJECTS = new Set(["TABLE", "INDEX", "VIEW"])

/** One token: a word, a quoted identifier, a string literal (kept only as a marker), or a punctuation character. */
type Token =
  | { readonly kind: "word"; readonly text: string }
  | { readonly kind: "ident"; readonly text: string }
  | { readonly kind: "literal" }
  | { readonly kind: "punct"; readonly text: string }

const isWordStart = (c: string) => /[A-Za-z_]/.test(c)
const isWordChar = (c: string) => /[A-Za-z0-9_$]/.test(c)

/** Tokens of the statement's first SCAN_LIMIT characters; comments are skipped, literals never kept. */
const tokenize = (sql: string): ReadonlyArray<Token> => {
  const s = sql.length > SCAN_LIMIT ? sql.slice(0, SCAN_LIMIT) : sql
  const out: Array<Token> = []
  let i = 0
  while (i < s.length) {
    const c = s[i]!
    if (/\s/.test(c)) {
      i++
    } else if (c === "-" && s[i + 1] === "-") {
      while (i < s.length && s[i] !== "\n") i++
    } else if (c === "/" && s[i + 1] === "*") {
      const end = s.indexOf("*/", i + 2)
      i = end < 0 ? s.length : end + 2
    } else if (c === "'") {
      // A string literal ('' escapes a quote): skipped whole, only its place is kept.
      i++
      while (i < s.length) {
        if (s[i] === "'" && s[i + 1] === "'") i += 2
        else if (s[i] === "'") break
        else i++
      }
      i++
      out.push({ kind: "literal" })
    } else if (c === "\"" || c === "`" || c === "[") {
      const close = c === "[" ? "]" : c
      const end = s.indexOf(close, i + 1)
      if (end < 0) break
      out.push({ kind: "ident", text: s.slice(i + 1, end) })
      i = end + 1
    } else if (isWordStart(c)) {
      let j = i + 1
      while (j < s.length && isWordChar(s[j]!)) j++
      out.push({ kind: "word", text: s.slice(i, j) })
      i = j
    } else if (/[0-9]/.test(c)) {
      // A number is a literal too.
      while (i < s.length && /[0-9.eE]/.test(s[i]!)) i++
      out.push({ kind: "literal" })
    } else {
      out.push({ kind: "punct", text: c })
      i++
    }
  }
  return out
}

const upper = (t: Token | undefined): string | undefined => t?.kind === "word" ? t.text.toUpperCase() : undefined

/** A (possibly schema-qualified) name starting at tokens[i], as written; undefined when there is none. */
const nameAt = (tokens: ReadonlyArray<Token>, i: number): string | undefined => {
  const parts: Array<string> = []
  let k = i
  for (;;) {
    const t = tokens[k]
    if (t === undefined || (t.kind !== "word" && t.kind !== "ident")) break
    parts.push(t.text)
    const dot = tokens[k + 1]
    if (dot?.kind !== "punct" || dot.text !== ".") break
    k += 2
  }
  return parts.length === 0 ? undefined : parts.join(".")
}

/** Index of the first top-level (outside parentheses) word `word` at or after `from`. */
const findTopLevel = (tokens: ReadonlyArray<Token>, word: string, from: number): number => {
  let depth = 0
  for (let i = from; i < tokens.length; i++) {
    const t = tokens[i]!
    if (t.kind === "punct" && t.text === "(") depth++
    else if (t.kind === "punct" && t.text === ")") depth--
    else if (depth === 0 && upper(t) === word) return i
  }
  return -1
}

/** What a statement is about. */
export interface Summary {
  readonly operation?: string
  readonly collection?: string
}

/** The collection a statement whose operation is `op` (at tokens[at]) names, when its shape is one we know. */
const collectionOf = (tokens: ReadonlyArray<Token>, op: string, at: number): string | undefined => {
  switch (op) {
    case "SELECT": {
      const from = findTopLevel(tokens, "FROM", at + 1)
      // A subquery in FROM has no single table name.
      return from < 0 ? undefined : nameAt(tokens, from + 1)
    }
    case "DELETE": {
      const from = findTopLevel(tokens, "FROM", at + 1)
      return from < 0 ? undefined : nameAt(tokens, from + 1)
    }
    case "INSERT":
    case "REPLACE": {
      const into = findTopLevel(tokens, "INTO", at + 1)
      return into < 0 ? undefined : nameAt(tokens, into + 1)
    }
    case "UPDATE": {
      let i = at + 1
      if (upper(tokens[i]) === "OR") i += 2 // UPDATE OR REPLACE t (SQLite)
      if (upper(tokens[i]) === "ONLY") i++
      return nameAt(tokens, i)
    }
    case "TRUNCATE": {
      let i = at + 1
      if (upper(tokens[i]) === "TABLE") i++
      return nameAt(tokens, i)
    }
    case "CREATE":
    case "DROP":
    case "ALTER": {
      let i = at + 1
      while (DDL_MODIFIERS.has(upper(tokens[i]) ?? "")) i++
      if (!DDL_OBJECTS.has(upper(tokens[i]) ?? "")) return undefined
      i++
      while (DDL_MODIFIERS.has(upper(tokens[i]) ?? "")) i++
      return nameAt(tokens, i)
    }
    default:
      return undefined
  }
}

/** Summarise a statement: its operation and collection, when it has a shape this module knows. */
export const summarize = (sql: string): Summary => {
  const tokens = tokenize(sql)
  const first = upper(tokens[0])
  if (first === undefined || !OPERATIONS.has(first)) return {}
  if (first === "WITH") {
    // The main statement follows the CTE list: the first top-level data operation.
    const found = ["SELECT", "INSERT", "UPDATE", "DELETE"]
      .map((op) => ({ op, at: findTopLevel(tokens, op, 1) }))
      .filter((f) => f.at >= 0)
      .sort((a, b) => a.at - b.at)[0]
    if (found === undefined) return {}
    const collection = collectionOf(tokens, found.op, found.at)
    return collection === undefined ? { operation: found.op } : { operation: found.op, collection }
  }
  const collection = collectionOf(tokens, first, 0)
  return collection === undefined ? { operation: first } : { operation: first, collection }
}

/** A statement cut to at most `max` characters, on a character boundary (what `db.query.text` carries). */
export const truncate = (sql: string, max: number): string => {
  if (sql.length <= max) return sql
  const cut = sql.slice(0, max)
  // Do not end on half of a surrogate pair.
  const last = cut.charCodeAt(cut.length - 1)
  return last >= 0xd800 && last <= 0xdbff ? cut.slice(0, -1) : cut
}
