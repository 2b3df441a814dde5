import { serve } from "../../src/cli/serve.js"

/** An `effect-ssh serve` running in this process, with what it printed. */
export interface Serving {
  readonly lines: ReadonlyArray<string>
  readonly errors: ReadonlyArray<string>
  readonly port: number
  /** Stops the server; resolves to its exit status. */
  readonly stop: () => Promise<number>
}

/**
 * Runs `effect-ssh serve ARGV` in-process (a process start per test costs seconds here) and
 * resolves once it prints `listening on HOST:PORT`; rejects when it exits first.
 */
export async function startServe(argv: ReadonlyArray<string>): Promise<Serving> {
  const lines: string[] = []
  const errors: string[] = []
  let stop!: () => void
  const until = new Promise<void>((resolve) => (stop = resolve))
  let listening!: (port: number) => void
  const ready = new Promise<number>((resolve) => (listening = resolve))
  const status = serve(argv, {
    out: (line) => {
      lines.push(line)
      const m = /^listening on .*:(\d+)$/.exec(line)
      if (m) listening(Number(m[1]))
    },
    err: (line) => errors.push(line),
    until
  })
  const port = await Promise.race([ready, status.then((code) => Promise.reject(new Error(`serve exited ${code}: ${errors.join("\n")}`)))])
  return {
    lines,
    errors,
    port,
    stop: () => {
      stop()
      return status
    }
  }
}

/** Runs `effect-ssh serve ARGV` expecting it to refuse to start: its exit status and errors. */
export async function serveRefusal(argv: ReadonlyArray<string>): Promise<{ readonly code: number; readonly errors: string }> {
  const errors: string[] = []
  const code = await serve(argv, { out: () => {}, err: (line) => errors.push(line), until: Promise.resolve() })
  return { code, errors: errors.join("\n") }
}
