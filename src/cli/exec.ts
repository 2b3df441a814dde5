import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as SshClient from "../SshClient.js"
import { connectOptions, parseConnectionArgs, UsageError } from "./options.js"

export const execUsage =
  "effect-ssh exec [-p PORT] [-l USER] [-i KEYFILE] [-o Name=Value ...] [-v] [-n] [user@]host COMMAND..."

/**
 * `effect-ssh exec`: runs COMMAND remotely, streams its stdout and stderr, forwards our
 * stdin (unless -n), and exits with the remote exit status (255 on a signal or an error,
 * as ssh does).
 */
export function exec(argv: ReadonlyArray<string>): Effect.Effect<number, unknown> {
  return Effect.gen(function* () {
    const args = parseConnectionArgs(argv, ["-n"])
    if (args.rest.length === 0) throw new UsageError("no command given")
    const command = args.rest.join(" ")
    const started = performance.now()
    const ssh = yield* SshClient.connect(connectOptions(args))
    if (args.verbose) {
      const a = ssh.algorithms
      process.stderr.write(
        `effect-ssh: connected to ${args.host}:${args.port} (${ssh.serverIdentification}) in ${(performance.now() - started).toFixed(0)} ms\n` +
          `effect-ssh: kex ${a.kex}, host key ${a.hostKey} ${ssh.hostKey.fingerprint}\n` +
          `effect-ssh: cipher ${a.cipherC2S} / ${a.cipherS2C}, MAC ${a.macC2S || "(AEAD)"} / ${a.macS2C || "(AEAD)"}, compression ${a.compressionC2S}\n` +
          `effect-ssh: strict kex ${a.strict ? "on" : "off"}\n`
      )
    }
    const proc = yield* ssh.spawn(command)
    const pipeOut = (stream: Stream.Stream<Uint8Array, unknown>, out: NodeJS.WriteStream) =>
      Stream.runForEach(stream, (chunk) =>
        Effect.async<void>((resume) => {
          if (out.write(chunk)) resume(Effect.void)
          else out.once("drain", () => resume(Effect.void))
        })
      )
    const input = args.flags.has("-n")
      ? proc.end
      : Stream.fromAsyncIterable(process.stdin as AsyncIterable<Uint8Array>, (e) => e).pipe(
          Stream.run(proc.stdin),
          Effect.catchAll(() => proc.end)
        )
    yield* Effect.fork(input)
    yield* Effect.all([pipeOut(proc.stdout, process.stdout), pipeOut(proc.stderr, process.stderr)], { concurrency: 2 })
    const exit = yield* proc.exit
    if (exit.signal !== null) process.stderr.write(`effect-ssh: remote command killed by signal ${exit.signal}\n`)
    return exit.code ?? 255
  }).pipe(Effect.scoped)
}
