#!/usr/bin/env node
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { cert, certUsage } from "./cert.js"
import { exec, execUsage } from "./exec.js"
import { fingerprint, fingerprintUsage } from "./fingerprint.js"
import { keygen, keygenUsage } from "./keygen.js"
import { UsageError } from "./options.js"
import { probe, probeUsage } from "./probe.js"
import { sftp, sftpUsage } from "./sftp.js"
import { serve, serveUsage } from "./serve.js"

const usage = ["usage:", `  ${execUsage}`, `  ${probeUsage}`, `  ${serveUsage}`, `  ${keygenUsage}`, `  ${fingerprintUsage}`, `  ${certUsage}`, `  ${sftpUsage}`].join("\n")

const commands: Record<string, (argv: ReadonlyArray<string>) => Effect.Effect<number, unknown>> = {
  exec,
  probe,
  serve: (argv) => Effect.promise(() => serve(argv)),
  keygen,
  fingerprint,
  cert,
  sftp
}

async function main(argv: ReadonlyArray<string>): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === "-h" || name === "--help") {
    process.stdout.write(`${usage}\n`)
    return name === undefined ? 2 : 0
  }
  const command = commands[name]
  if (!command) {
    process.stderr.write(`effect-ssh: unknown command ${name}\n${usage}\n`)
    return 2
  }
  const exit = await Effect.runPromiseExit(Effect.suspend(() => command(rest)))
  if (Exit.isSuccess(exit)) return exit.value
  const failure = Cause.squash(exit.cause)
  if (failure instanceof UsageError) {
    process.stderr.write(`effect-ssh: ${failure.message}\n${usage}\n`)
    return 2
  }
  process.stderr.write(`effect-ssh: ${failure instanceof Error ? failure.message : String(failure)}\n`)
  return 255
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (e: unknown) => {
    process.stderr.write(`effect-ssh: ${e instanceof Error ? e.message : String(e)}\n`)
    process.exitCode = 255
  }
)
