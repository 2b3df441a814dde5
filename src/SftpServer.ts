import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { FileSystemHandlerOptions, SftpFileSystem, SftpRequestHandler } from "./protocol/sftp/server.js"
import { fileSystemHandler, SftpServerSession } from "./protocol/sftp/server.js"
import { concatBytes } from "./protocol/wire/writer.js"
import type { SshChannel } from "./SshChannel.js"
import type { ServerProcess, ServerSession } from "./SshServer.js"

export type { Attributes as SftpAttributes } from "./protocol/sftp/attributes.js"
export type { Request as SftpRequest, ResponseBody as SftpResponse } from "./protocol/sftp/packets.js"
export type { SftpDirectory, SftpFile, SftpFileSystem, SftpRequestHandler } from "./protocol/sftp/server.js"
export { defaultServerLimits, fileSystemHandler, SftpStatusError } from "./protocol/sftp/server.js"
export { memoryFileSystem } from "./protocol/sftp/memoryFs.js"
export { nodeFileSystem } from "./node/NodeSftpFileSystem.js"

/** What serving needs from the channel: an SshChannel fits, so does an in-memory pipe. */
export type SftpServerChannel = Pick<SshChannel, "stdout" | "write" | "close">

export interface ServeOptions extends FileSystemHandlerOptions {
  /** Largest request packet accepted (default: `limits.maxPacketLength`, else 256 KiB as OpenSSH). */
  readonly maxPacketLength?: number
  /** Requests handled at once before reading from the channel pauses (default 128). */
  readonly maxBusy?: number
}

const isHandler = (backend: SftpFileSystem | SftpRequestHandler): backend is SftpRequestHandler =>
  typeof (backend as SftpRequestHandler).handle === "function"

/**
 * Serves one "sftp" subsystem channel until the client closes it (or sends a packet that cannot
 * be framed), from a filesystem (`nodeFileSystem(root)`, `memoryFileSystem()`, your own) or a
 * raw per-request handler. Never fails: problems end the session and close the channel.
 *
 * @example
 * // in the SSH server's subsystem handler
 * yield* SftpServer.handleChannel(channel, SftpServer.nodeFileSystem("/srv/files"))
 */
export const handleChannel = (
  channel: SftpServerChannel,
  backend: SftpFileSystem | SftpRequestHandler,
  options: ServeOptions = {}
): Effect.Effect<void> =>
  Effect.gen(function* () {
    const handler = isHandler(backend) ? backend : fileSystemHandler(backend, options)
    const maxPacketLength = options.maxPacketLength ?? options.limits?.maxPacketLength
    const session = new SftpServerSession(handler, maxPacketLength ? { maxPacketLength } : {})
    const maxBusy = options.maxBusy ?? 128
    // null marks the end: the writer stops after sending what came before it
    const outgoing = yield* Queue.unbounded<ReadonlyArray<Uint8Array> | null>()
    const idle = yield* Deferred.make<void>()
    session.onOutput = () => {
      const packets = session.pollTransmit()
      if (packets) Queue.unsafeOffer(outgoing, packets)
    }
    let waiting: (() => void) | undefined
    session.onIdle = () => {
      if (waiting && session.busy < maxBusy / 2) {
        const resume = waiting
        waiting = undefined
        resume()
      }
      if (session.busy === 0) Deferred.unsafeDone(idle, Effect.void)
    }

    const writer: Effect.Effect<void> = Queue.take(outgoing).pipe(
      Effect.flatMap((packets) =>
        packets === null
          ? Effect.void
          : Effect.zipRight(channel.write(packets.length === 1 ? packets[0]! : concatBytes(...packets)), Effect.suspend(() => writer))
      ),
      Effect.ignore
    )
    const writerFiber = yield* Effect.fork(writer)

    const backoff = Effect.async<void>((resume) => {
      if (session.busy < maxBusy) return resume(Effect.void)
      waiting = () => resume(Effect.void)
    })
    yield* channel.stdout.pipe(
      Stream.runForEach((chunk) =>
        Effect.suspend(() => {
          session.receive(chunk)
          if (session.ended !== undefined) return Effect.fail("ended" as const)
          return session.busy >= maxBusy ? backoff : Effect.void
        })
      ),
      Effect.ignore
    )
    // the client is done sending (or broke the framing): let running requests answer first
    if (session.busy > 0) yield* Deferred.await(idle)
    session.end("the channel closed")
    Queue.unsafeOffer(outgoing, null)
    yield* Fiber.join(writerFiber)
    yield* channel.close
  })

/**
 * A subsystem handler for `execSession`: serves each accepted "sftp" subsystem from `backend`.
 *
 * @example
 * SshServer.make({ ..., onSession: execSession({ subsystems: { sftp: SftpServer.subsystem(SftpServer.nodeFileSystem("/srv/files")) } }) })
 */
export const subsystem =
  (backend: SftpFileSystem | SftpRequestHandler, options: ServeOptions = {}) =>
  (proc: ServerProcess): Effect.Effect<void> =>
    handleChannel(proc.channel, backend, options)

/**
 * An `onSession` handler for an SFTP-only server: the "sftp" subsystem is served from
 * `backend`; exec, shell, a second subsystem and everything else are refused (a forced command
 * arrives as an exec, so a key restricted to one is refused too).
 *
 * @example
 * SshServer.make({ ..., onSession: SftpServer.sessionHandler(SftpServer.nodeFileSystem("/srv/files")) })
 */
export const sessionHandler = (backend: SftpFileSystem | SftpRequestHandler, options: ServeOptions = {}) => {
  const serve = subsystem(backend, options)
  return (session: ServerSession): Effect.Effect<void, never, Scope.Scope> =>
    Effect.suspend(() => {
      let started = false
      return session.forEachRequest((request) => {
        if (started || request._tag !== "Subsystem" || request.name !== "sftp") return request.reject
        started = true
        return request.accept.pipe(
          Effect.flatMap((proc) => Effect.forkScoped(serve(proc))),
          Effect.ignore
        )
      })
    })
}
