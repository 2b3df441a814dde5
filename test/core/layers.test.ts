/**
 * The layering of DESIGN.md, checked on the sources: the sans-IO core imports nothing from
 * above it, nor Effect, sockets or timers; the Node layer does not reach into the Effect API.
 */
import { readdirSync, readFileSync, statSync } from "node:fs"
import { join, relative } from "node:path"
import { describe, expect, it } from "vitest"

const root = join(import.meta.dirname, "../../src")

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? sources(path) : path.endsWith(".ts") ? [path] : []
  })
}

/** Every module specifier a file imports or re-exports. */
function imports(file: string): string[] {
  const text = readFileSync(file, "utf8")
  return [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^;]*?from\s+"([^"]+)"/g)].map((m) => m[1]!)
}

describe("layers", () => {
  const core = sources(join(root, "protocol"))

  it("finds the core's sources", () => {
    expect(core.length).toBeGreaterThan(30)
  })

  it("the core imports no Effect, no sockets and nothing above it", () => {
    const violations = core.flatMap((file) =>
      imports(file)
        .filter(
          (spec) =>
            spec === "effect" ||
            spec.startsWith("effect/") ||
            spec.startsWith("@effect/") ||
            spec === "node:net" ||
            spec === "node:tls" ||
            spec === "node:dgram" ||
            spec.startsWith("node:timers") ||
            (spec.startsWith(".") && !join(file, "..", spec).startsWith(join(root, "protocol")))
        )
        .map((spec) => `${relative(root, file)} imports ${spec}`)
    )
    expect(violations).toEqual([])
  })

  it("the core schedules nothing itself: time comes in as an argument", () => {
    const timers = core.filter((file) => /\b(setTimeout|setInterval|setImmediate|Date\.now)\(/.test(readFileSync(file, "utf8")))
    expect(timers.map((f) => relative(root, f))).toEqual([])
  })
})
