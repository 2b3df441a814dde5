import { basename } from "node:path"
import * as Effect from "effect/Effect"
import * as Sftp from "../Sftp.js"
import * as SshClient from "../SshClient.js"
import type { SftpError } from "../SshError.js"
import { connectOptions, parseConnectionArgs, UsageError } from "./options.js"

export const sftpUsage =
  "effect-ssh sftp [-p PORT] [-l USER] [-i KEYFILE] [-o Name=Value ...] [-v] [user@]host get REMOTE LOCAL | put LOCAL REMOTE | ls PATH"

/**
 * `effect-ssh sftp`: one transfer or listing over SFTP. Transfers use parallel requests and
 * draw a progress bar on stderr when it is a terminal. Exit status 0, or 1 when the SFTP
 * operation failed (as `sftp -b` does), 255 for connection errors.
 */
export function sftp(argv: ReadonlyArray<string>): Effect.Effect<number, unknown> {
  return Effect.gen(function* () {
    const args = parseConnectionArgs(argv)
    const [command, ...operands] = args.rest
    const need = (n: number, what: string) => {
      if (operands.length !== n) throw new UsageError(`sftp ${command} needs ${what}`)
    }
    switch (command) {
      case "get":
        need(2, "REMOTE LOCAL")
        break
      case "put":
        need(2, "LOCAL REMOTE")
        break
      case "ls":
        if (operands.length > 1) throw new UsageError("sftp ls takes one PATH")
        break
      default:
        throw new UsageError(command === undefined ? "no sftp command given (get, put or ls)" : `unknown sftp command ${command}`)
    }
    const ssh = yield* SshClient.connect(connectOptions(args))
    const session = yield* Sftp.make(ssh)
    const run: Effect.Effect<void, SftpError> =
      command === "ls"
        ? Effect.flatMap(session.list(operands[0] ?? "."), (entries) =>
            Effect.sync(() => {
              const lines = [...entries].sort((a, b) => a.filename.localeCompare(b.filename)).map((e) => e.longname || e.filename)
              if (lines.length > 0) process.stdout.write(`${lines.join("\n")}\n`)
            })
          )
        : Effect.suspend(() => {
            const [from, to] = operands as [string, string]
            const bar = progressBar(basename(from))
            const options = bar ? { onProgress: bar.update } : {}
            const transfer = command === "get" ? session.fastGet(from, to, options) : session.fastPut(from, to, options)
            return transfer.pipe(
              Effect.tap((n) => Effect.sync(() => bar?.done(n))),
              Effect.tapError(() => Effect.sync(() => bar?.abort())),
              Effect.asVoid
            )
          })
    return yield* run.pipe(
      Effect.as(0),
      Effect.catchTag("SftpError", (e) =>
        Effect.sync(() => {
          process.stderr.write(`effect-ssh: ${e.message}\n`)
          return 1
        })
      )
    )
  }).pipe(Effect.scoped)
}

const MiB = 1024 * 1024

/** A one-line progress bar on stderr, redrawn at most 10 times a second; undefined when stderr is not a terminal. */
function progressBar(name: string) {
  const out = process.stderr
  if (!out.isTTY) return undefined
  const started = performance.now()
  let last = 0
  const draw = (transferred: number, total: number, final: boolean) => {
    const now = performance.now()
    if (!final && now - last < 100) return
    last = now
    const seconds = Math.max((now - started) / 1000, 0.001)
    const fraction = total > 0 ? Math.min(1, transferred / total) : 1
    const width = Math.max(10, Math.min(40, (out.columns ?? 80) - 50))
    const filled = Math.round(fraction * width)
    const bar = `${"=".repeat(filled)}${filled < width ? ">" : ""}${" ".repeat(Math.max(0, width - filled - 1))}`
    const label = name.length > 20 ? `${name.slice(0, 19)}…` : name.padEnd(20)
    out.write(
      `\r${label} ${String(Math.floor(fraction * 100)).padStart(3)}% [${bar}] ${(transferred / MiB).toFixed(1)} MiB ${(transferred / 1e6 / seconds).toFixed(1)} MB/s`
    )
  }
  return {
    update: (transferred: number, _chunk: number, total: number) => draw(transferred, total, false),
    done: (total: number) => {
      draw(total, total, true)
      out.write("\n")
    },
    abort: () => out.write("\n")
  }
}
