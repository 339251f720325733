/**
 * Path globs for `--exe` and `--cgroup`: `*` matches within one path component (no `/`), `**` any number of whole
 * components (`/srv/**\/api` matches `/srv/api` and `/srv/a/b/api`), `?` one character other than `/`, `[abc]` /
 * `[a-z]` / `[!a-z]` one character of a class. Everything else is literal. A pattern is matched against the whole
 * path.
 */

/** Whether a string has glob syntax (otherwise it is a plain path, compared after resolving symlinks). */
export const isGlob = (pattern: string): boolean => /[*?[]/.test(pattern)

const escape = (c: string) => c.replace(/[.+^${}()|\\/\]]/g, "\\$&")

/** The regular expression a glob stands for (anchored at both ends). */
export const toRegExp = (pattern: string): RegExp => {
  let out = ""
  let i = 0
  while (i < pattern.length) {
    const c = pattern[i]!
    if (c === "*") {
      if (pattern[i + 1] === "*") {
        // `/**/` is zero or more whole components; a trailing `/**` everything below
        const slashAfter = pattern[i + 2] === "/"
        out += slashAfter ? "(?:[^/]*/)*" : ".*"
        i += slashAfter ? 3 : 2
        continue
      }
      out += "[^/]*"
    } else if (c === "?") {
      out += "[^/]"
    } else if (c === "[") {
      const end = pattern.indexOf("]", i + 2)
      if (end === -1) {
        out += "\\["
      } else {
        const body = pattern.slice(i + 1, end)
        const negated = body.startsWith("!") || body.startsWith("^")
        const chars = (negated ? body.slice(1) : body).replace(/[\\\]^]/g, "\\$&")
        out += negated ? `[^/${chars}]` : `[${chars}]`
        i = end
      }
    } else {
      out += escape(c)
    }
    i++
  }
  return new RegExp(`^${out}$`)
}

/** A matcher for one glob. */
export const matcher = (pattern: string): ((path: string) => boolean) => {
  const re = toRegExp(pattern)
  return (path) => re.test(path)
}
