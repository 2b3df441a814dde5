import { UsageError } from "./options.js"

/**
 * ssh-keygen style flags: single letters, some taking a value (`-f FILE` or `-fFILE`), then
 * positional arguments.
 */
export function parseFlags(
  argv: ReadonlyArray<string>,
  withValue: string,
  boolean: string
): { readonly values: ReadonlyMap<string, string>; readonly flags: ReadonlySet<string>; readonly rest: ReadonlyArray<string> } {
  const values = new Map<string, string>()
  const flags = new Set<string>()
  let i = 0
  for (; i < argv.length; i++) {
    const a = argv[i]!
    if (a === "--") {
      i++
      break
    }
    if (!a.startsWith("-") || a.length < 2) break
    const letter = a[1]!
    if (withValue.includes(letter)) {
      const v = a.length > 2 ? a.slice(2) : argv[++i]
      if (v === undefined) throw new UsageError(`-${letter} needs a value`)
      values.set(letter, v)
    } else if (boolean.includes(letter) && a.length === 2) flags.add(letter)
    else throw new UsageError(`unknown option ${a}`)
  }
  return { values, flags, rest: argv.slice(i) }
}
