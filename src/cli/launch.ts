/**
 * The bundled CLI's entry: scripts/build-dist.mjs bundles it (with everything it imports) into dist/cli/probescope.mjs,
 * which bin/probescope runs when it exists.
 *
 * First the Node version, here rather than in bin/probescope (where it cost a second Node start on every launch):
 * this module imports nothing and uses syntax any Node since 14 parses, so on an older Node it is the one line below,
 * not an error from Effect's modules that names neither Node nor its version. Then the CLI: bundled, or the unbundled
 * dist/cli/main.js when the command line loads a user's probe module (Route.ts says why) or PROBESCOPE_BUNDLE=0.
 */
const [major = 0, minor = 0] = process.versions.node.split(".").map(Number)
if (major < 22 || (major === 22 && minor < 19)) {
  process.stderr.write(
    `probescope: Node >= 22.19 is needed (${process.version} found at ${process.execPath}): npm install --save-dev ` +
      "node@24 in your project (then npx probescope uses it), or put a newer node first on PATH\n"
  )
  process.exit(1)
}

const unbundled = process.env["PROBESCOPE_BUNDLE"] === "0" ||
  await import("./Route.ts").then((route) => route.loadsUserModules(process.argv.slice(2)))
if (unbundled) {
  // A computed specifier, which the bundler leaves to Node: the compiled module beside this one's compiled form.
  const main = new URL("main.js", import.meta.url).href
  await import(main)
} else {
  await import("./main.ts")
}

export {}
