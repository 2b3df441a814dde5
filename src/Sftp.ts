import type { FileHandle } from "node:fs/promises"
import { open as openLocal } from "node:fs/promises"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import { makeFileSystem } from "./internal/sftpFileSystem.js"
import type { Attributes } from "./protocol/sftp/attributes.js"
import { ReadPipeline, SftpClientSession, SftpSessionClosed, WritePipeline } from "./protocol/sftp/client.js"
import type { Outcome, ReadOutcome } from "./protocol/sftp/client.js"
import { Extension, extensionVersions, Status } from "./protocol/sftp/constants.js"
import type { ExtendedRequest, Limits, StatVfs } from "./protocol/sftp/extensions.js"
import { decodeLimits, decodeStatVfs, decodeUsersGroups, extendedRequest } from "./protocol/sftp/extensions.js"
import { stringToFlags } from "./protocol/sftp/openMode.js"
import type { Hello, NameEntry, RequestBody, Response } from "./protocol/sftp/packets.js"
import { encodeWriteHeader, writeHeaderLength } from "./protocol/sftp/packets.js"
import { concatBytes } from "./protocol/wire/writer.js"
import { SshClient } from "./SshClient.js"
import type { SshConnection } from "./SshClient.js"
import { SftpError } from "./SshError.js"

export type { Attributes as SftpAttributes, Limits as SftpLimits, NameEntry as SftpEntry, StatVfs }
export { fileType } from "./protocol/sftp/attributes.js"
export { flagsToString, stringToFlags } from "./protocol/sftp/openMode.js"
export { OpenFlags, Status as StatusCode } from "./protocol/sftp/constants.js"

/** What the client needs from the channel: an SshChannel fits, so does an in-memory pipe. */
export interface SftpTransport {
  readonly stdout: Stream.Stream<Uint8Array, unknown>
  readonly write: (data: Uint8Array) => Effect.Effect<void, unknown>
  readonly close: Effect.Effect<void>
}

/** An open remote file or directory. */
export interface SftpHandle {
  /** The server's opaque handle bytes. */
  readonly handle: Uint8Array
  /** The path it was opened with, for error messages. */
  readonly path: string
}

/** Open mode as fs.open spells it ("r", "w", "a+", ...) or SFTP pflags. */
export type OpenMode = string | number

export interface ReadStreamOptions {
  /** First byte to read (default 0). */
  readonly start?: number
  /** Byte after the last one to read (exclusive); default: until end of file. */
  readonly end?: number
  /** READ requests in flight (default 64). */
  readonly concurrency?: number
  /** Bytes per READ (default: see `Sftp.chunkSize`). */
  readonly chunkSize?: number
}

export interface WriteSinkOptions {
  /** Default "w" (create or truncate). */
  readonly flags?: OpenMode
  /** Permissions for a created file. */
  readonly mode?: number
  /** Offset of the first byte written (default 0). */
  readonly start?: number
  /** WRITE requests in flight (default 64). */
  readonly concurrency?: number
  readonly chunkSize?: number
}

export interface TransferOptions {
  /** Requests in flight (default 64). */
  readonly concurrency?: number
  /** Bytes per request (default 32 KiB, or more when the server's limits@openssh.com allows). */
  readonly chunkSize?: number
  /** Called as data is confirmed: bytes so far, bytes in this step, total size. */
  readonly onProgress?: (transferred: number, chunk: number, total: number) => void
  /** Permissions of the uploaded file (fastPut). */
  readonly mode?: number
}

/** A scoped SFTP session. Every operation fails with SftpError naming the operation and path. */
export interface Sftp {
  /** Extensions the server advertised, name → version. */
  readonly extensions: ReadonlyMap<string, string>
  /** Whether the server advertised `name` with a version this client implements. */
  readonly supports: (name: string) => boolean
  /** The limits in force: the server's limits@openssh.com, or conservative defaults. */
  readonly limits: Limits
  /** The default bytes per READ/WRITE for this server. */
  readonly chunkSize: number

  readonly open: (path: string, flags?: OpenMode, attrs?: Attributes) => Effect.Effect<SftpHandle, SftpError>
  readonly close: (handle: SftpHandle) => Effect.Effect<void, SftpError>
  /** Reads up to `length` bytes at `offset`; an empty array at end of file. */
  readonly read: (handle: SftpHandle, offset: number, length: number) => Effect.Effect<Uint8Array, SftpError>
  readonly write: (handle: SftpHandle, offset: number, data: Uint8Array) => Effect.Effect<void, SftpError>
  readonly fstat: (handle: SftpHandle) => Effect.Effect<Attributes, SftpError>
  readonly fsetstat: (handle: SftpHandle, attrs: Attributes) => Effect.Effect<void, SftpError>
  /** fsync@openssh.com. */
  readonly fsync: (handle: SftpHandle) => Effect.Effect<void, SftpError>
  /** fstatvfs@openssh.com. */
  readonly fstatvfs: (handle: SftpHandle) => Effect.Effect<StatVfs, SftpError>

  readonly stat: (path: string) => Effect.Effect<Attributes, SftpError>
  readonly lstat: (path: string) => Effect.Effect<Attributes, SftpError>
  readonly setstat: (path: string, attrs: Attributes) => Effect.Effect<void, SftpError>
  /** lsetstat@openssh.com: like setstat, on a symlink itself. */
  readonly lsetstat: (path: string, attrs: Attributes) => Effect.Effect<void, SftpError>
  readonly chmod: (path: string, mode: number) => Effect.Effect<void, SftpError>
  readonly chown: (path: string, uid: number, gid: number) => Effect.Effect<void, SftpError>
  /** Times as Dates or seconds since the epoch. */
  readonly utimes: (path: string, atime: Date | number, mtime: Date | number) => Effect.Effect<void, SftpError>
  /** True when the path exists (false on NO_SUCH_FILE). */
  readonly exists: (path: string) => Effect.Effect<boolean, SftpError>

  readonly opendir: (path: string) => Effect.Effect<SftpHandle, SftpError>
  /** One READDIR: the next batch of entries, or none at the end. */
  readonly readdirBatch: (handle: SftpHandle) => Effect.Effect<Option.Option<ReadonlyArray<NameEntry>>, SftpError>
  /** A directory's entries (without "." and ".."), batch by batch: fit for huge directories. */
  readonly readdir: (path: string) => Stream.Stream<NameEntry, SftpError>
  /** A directory's entries (without "." and ".."), collected. */
  readonly list: (path: string) => Effect.Effect<ReadonlyArray<NameEntry>, SftpError>

  readonly remove: (path: string) => Effect.Effect<void, SftpError>
  readonly mkdir: (path: string, attrs?: Attributes) => Effect.Effect<void, SftpError>
  readonly rmdir: (path: string) => Effect.Effect<void, SftpError>
  readonly realpath: (path: string) => Effect.Effect<string, SftpError>
  readonly readlink: (path: string) => Effect.Effect<string, SftpError>
  /** Creates `linkPath` pointing at `targetPath` (sent in OpenSSH's order). */
  readonly symlink: (targetPath: string, linkPath: string) => Effect.Effect<void, SftpError>
  /** SFTP v3 rename: fails when `newPath` exists. */
  readonly rename: (oldPath: string, newPath: string) => Effect.Effect<void, SftpError>
  /** posix-rename@openssh.com: replaces `newPath` atomically. */
  readonly posixRename: (oldPath: string, newPath: string) => Effect.Effect<void, SftpError>
  /** hardlink@openssh.com. */
  readonly hardlink: (oldPath: string, newPath: string) => Effect.Effect<void, SftpError>
  /** statvfs@openssh.com. */
  readonly statvfs: (path: string) => Effect.Effect<StatVfs, SftpError>
  /** expand-path@openssh.com ("~/x" → "/home/me/x"). */
  readonly expandPath: (path: string) => Effect.Effect<string, SftpError>
  /** home-directory; an empty or absent name means the logged-in user (asked through expand-path when offered). */
  readonly homeDirectory: (username?: string) => Effect.Effect<string, SftpError>
  /** users-groups-by-id@openssh.com: names in request order, "" where unknown. */
  readonly usersGroupsById: (
    uids: ReadonlyArray<number>,
    gids: ReadonlyArray<number>
  ) => Effect.Effect<{ readonly users: ReadonlyArray<string>; readonly groups: ReadonlyArray<string> }, SftpError>
  /** copy-data: server-side copy between two open handles (length 0 = to end of file). */
  readonly copyData: (from: SftpHandle, fromOffset: number, length: number, to: SftpHandle, toOffset: number) => Effect.Effect<void, SftpError>

  readonly readFile: (path: string) => Effect.Effect<Uint8Array, SftpError>
  readonly writeFile: (path: string, data: Uint8Array | string, options?: { readonly flags?: OpenMode; readonly mode?: number }) => Effect.Effect<void, SftpError>
  /** A file as a stream, several READs in flight, bytes in order. */
  readonly readStream: (path: string, options?: ReadStreamOptions) => Stream.Stream<Uint8Array, SftpError>
  /** A sink writing a file with several WRITEs in flight; yields the bytes written once the file is closed. */
  readonly writeSink: (path: string, options?: WriteSinkOptions) => Sink.Sink<number, Uint8Array, never, SftpError>
  /** Downloads a remote file to a local path with parallel reads; yields the bytes transferred. */
  readonly fastGet: (remotePath: string, localPath: string, options?: TransferOptions) => Effect.Effect<number, SftpError>
  /** Uploads a local file with parallel writes; yields the bytes transferred. */
  readonly fastPut: (localPath: string, remotePath: string, options?: TransferOptions) => Effect.Effect<number, SftpError>
  /** @effect/platform's FileSystem over this session. */
  readonly fileSystem: FileSystem.FileSystem
}

const DEFAULT_CONCURRENCY = 64
const DEFAULT_CHUNK = 32 * 1024
/** OpenSSH's sftp uses up to this once the server's limits allow it. */
const MAX_CHUNK = 255 * 1024
/** Without limits@openssh.com, what every v3 server must accept (draft: 34000-byte packets). */
const fallbackLimits: Limits = { maxPacketLength: 34000, maxReadLength: DEFAULT_CHUNK, maxWriteLength: DEFAULT_CHUNK, maxOpenHandles: 0 }
/** Bytes gathered before one local write or read during fastGet/fastPut. */
const LOCAL_BLOCK = 1024 * 1024

/** A WRITE packet ready to go, and what it writes where. */
interface EncodedWrite {
  readonly offset: number
  readonly length: number
  readonly packet: Uint8Array
}

/** A WRITE's bytes besides the data: header, id, the longest handle (256), offset, length. */
const WRITE_OVERHEAD = 300

/**
 * Starts an SFTP session on a channel that already runs the "sftp" subsystem (or any transport),
 * bound to the scope: the channel is closed when the scope closes.
 */
export const fromTransport = (transport: SftpTransport): Effect.Effect<Sftp, SftpError, Scope.Scope> =>
  Effect.gen(function* () {
    const session = new SftpClientSession()
    const outgoing = yield* Queue.unbounded<ReadonlyArray<Uint8Array>>()
    const flush = () => {
      const packets = session.pollTransmit()
      if (packets) Queue.unsafeOffer(outgoing, packets)
    }
    const lost = (message: string) => new SftpSessionClosed("connection-lost", message)

    const writer = Queue.take(outgoing).pipe(
      Effect.flatMap((packets) => Effect.forEach(coalesce(packets), (p) => transport.write(p), { discard: true })),
      Effect.forever,
      Effect.catchAllCause((cause) => Effect.sync(() => session.close(lost(`the SFTP channel failed: ${causeMessage(cause)}`))))
    )
    const reader = transport.stdout.pipe(
      // one step per pull of the channel (all packets buffered by then), not one per packet
      Stream.runForEachChunk((chunks) =>
        Effect.suspend(() => {
          for (const chunk of chunks) session.receive(chunk)
          flush()
          return session.closed ? Effect.fail(session.closed) : Effect.void
        })
      ),
      Effect.matchCauseEffect({
        onSuccess: () => Effect.sync(() => session.close(lost("the server closed the SFTP channel"))),
        onFailure: (cause) =>
          Effect.sync(() => session.close(lost(`the SFTP channel failed: ${causeMessage(cause)}`))).pipe(Effect.zipRight(transport.close))
      })
    )
    const writerFiber = yield* Effect.forkDaemon(writer)
    const readerFiber = yield* Effect.forkDaemon(reader)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => session.close(lost("the SFTP session was closed"))).pipe(
        Effect.zipRight(Fiber.interrupt(writerFiber)),
        Effect.zipRight(transport.close),
        Effect.zipRight(Fiber.interrupt(readerFiber))
      )
    )
    flush()

    const hello = yield* Effect.async<Hello, SftpError>((resume) =>
      session.onVersion((outcome) =>
        resume(outcome instanceof SftpSessionClosed ? Effect.fail(closedError(outcome, "init")) : Effect.succeed(outcome))
      )
    )
    const extensions = new Map<string, string>()
    for (const [name, version] of hello.extensions) if (!extensions.has(name)) extensions.set(name, version)
    const supports = (name: string) => {
      const known = extensionVersions[name as keyof typeof extensionVersions]
      const advertised = extensions.get(name)
      return advertised !== undefined && (known === undefined || advertised === known)
    }

    const call = (body: RequestBody, operation: string, path?: string): Effect.Effect<Response, SftpError> =>
      Effect.async<Response, SftpError>((resume) => {
        session.request(body, (outcome: Outcome) =>
          resume(outcome instanceof SftpSessionClosed ? Effect.fail(closedError(outcome, operation, path)) : Effect.succeed(outcome))
        )
        flush()
      })

    const unexpected = (r: Response, operation: string, path?: string) =>
      r.type === "status"
        ? SftpError.fromStatus(r.code, r.message, operation, path)
        : SftpError.fromStatus(Status.BAD_MESSAGE, `unexpected ${r.type} response`, operation, path)

    const expectStatus = (body: RequestBody, operation: string, path?: string) =>
      Effect.flatMap(call(body, operation, path), (r) =>
        r.type === "status" && r.code === Status.OK ? Effect.void : Effect.fail(unexpected(r, operation, path))
      )
    const expectAttrs = (body: RequestBody, operation: string, path?: string) =>
      Effect.flatMap(call(body, operation, path), (r) => (r.type === "attrs" ? Effect.succeed(r.attrs) : Effect.fail(unexpected(r, operation, path))))
    const expectHandle = (body: RequestBody, operation: string, path: string) =>
      Effect.flatMap(call(body, operation, path), (r) =>
        r.type === "handle" ? Effect.succeed<SftpHandle>({ handle: r.handle, path }) : Effect.fail(unexpected(r, operation, path))
      )
    const expectOneName = (body: RequestBody, operation: string, path?: string) =>
      Effect.flatMap(call(body, operation, path), (r) =>
        r.type === "name" && r.entries.length >= 1 ? Effect.succeed(r.entries[0]!.filename) : Effect.fail(unexpected(r, operation, path))
      )
    const expectReply = (body: RequestBody, operation: string, path?: string) =>
      Effect.flatMap(call(body, operation, path), (r) =>
        r.type === "extended-reply" ? Effect.succeed(r.data) : Effect.fail(unexpected(r, operation, path))
      )
    const decoded = <A>(data: Uint8Array, decode: (d: Uint8Array) => A, operation: string, path?: string) =>
      Effect.try({
        try: () => decode(data),
        catch: (cause) => SftpError.fromStatus(Status.BAD_MESSAGE, `malformed reply: ${(cause as Error).message}`, operation, path, cause)
      })

    /** An extension request, refused locally with OP_UNSUPPORTED when the server did not advertise it. */
    const ext = <A>(req: ExtendedRequest, operation: string, path: string | undefined, run: (body: RequestBody) => Effect.Effect<A, SftpError>) =>
      supports(req.name)
        ? run(extendedRequest(req))
        : Effect.fail(SftpError.fromStatus(Status.OP_UNSUPPORTED, `the server does not support ${req.name}`, operation, path))

    let limits = fallbackLimits
    if (supports(Extension.LIMITS)) {
      const data = yield* expectReply(extendedRequest({ name: Extension.LIMITS }), "limits")
      const l = yield* decoded(data, decodeLimits, "limits")
      // 0 means "no specific limit": keep the conservative value for that field
      limits = {
        maxPacketLength: l.maxPacketLength || fallbackLimits.maxPacketLength,
        maxReadLength: l.maxReadLength || fallbackLimits.maxReadLength,
        maxWriteLength: l.maxWriteLength || fallbackLimits.maxWriteLength,
        maxOpenHandles: l.maxOpenHandles
      }
    }
    const maxRead = Math.max(1, Math.min(limits.maxReadLength, MAX_CHUNK * 4))
    const maxWrite = Math.max(1, Math.min(limits.maxWriteLength, limits.maxPacketLength - WRITE_OVERHEAD))
    const chunkSize = Math.min(maxRead, maxWrite, MAX_CHUNK)
    const readChunk = (n: number | undefined) => Math.max(1, Math.min(n ?? chunkSize, maxRead))
    const writeChunk = (n: number | undefined) => Math.max(1, Math.min(n ?? chunkSize, maxWrite))

    const flagsOf = (flags: OpenMode, operation: string, path: string) => {
      const n = typeof flags === "number" ? flags : stringToFlags(flags)
      return n === undefined
        ? Effect.fail(SftpError.fromStatus(Status.FAILURE, `unknown open mode "${flags}"`, operation, path))
        : Effect.succeed(n)
    }

    const open = (path: string, flags: OpenMode = "r", attrs: Attributes = {}) =>
      Effect.flatMap(flagsOf(flags, "open", path), (pflags) => expectHandle({ type: "open", path, flags: pflags, attrs }, "open", path))
    const close = (h: SftpHandle) => expectStatus({ type: "close", handle: h.handle }, "close", h.path)
    /** Opens for the scope; the close at scope end ignores errors (callers that care close explicitly first). */
    const openScoped = (path: string, flags: OpenMode, attrs: Attributes = {}) => {
      let closed = false
      return Effect.acquireRelease(open(path, flags, attrs), (h) => (closed ? Effect.void : Effect.ignore(close(h)))).pipe(
        Effect.map((h) => ({
          h,
          closeNow: Effect.suspend(() => {
            closed = true
            return close(h)
          })
        }))
      )
    }

    const read = (h: SftpHandle, offset: number, length: number) =>
      Effect.flatMap(call({ type: "read", handle: h.handle, offset, length: Math.min(length, maxRead) }, "read", h.path), (r) =>
        r.type === "data"
          ? Effect.succeed(r.data)
          : r.type === "status" && r.code === Status.EOF
            ? Effect.succeed(new Uint8Array(0))
            : Effect.fail(unexpected(r, "read", h.path))
      )
    const write = (h: SftpHandle, offset: number, data: Uint8Array): Effect.Effect<void, SftpError> =>
      data.length <= maxWrite
        ? expectStatus({ type: "write", handle: h.handle, offset, data }, "write", h.path)
        : Effect.zipRight(write(h, offset, data.subarray(0, maxWrite)), Effect.suspend(() => write(h, offset + maxWrite, data.subarray(maxWrite))))

    const stat = (path: string) => expectAttrs({ type: "stat", path }, "stat", path)
    const setstat = (path: string, attrs: Attributes) => expectStatus({ type: "setstat", path, attrs }, "setstat", path)
    const seconds = (t: Date | number) => (typeof t === "number" ? t : Math.floor(t.getTime() / 1000))

    const opendir = (path: string) => expectHandle({ type: "opendir", path }, "opendir", path)
    const readdirBatch = (h: SftpHandle) =>
      Effect.flatMap(call({ type: "readdir", handle: h.handle }, "readdir", h.path), (r) =>
        r.type === "name"
          ? Effect.succeed(Option.some(r.entries))
          : r.type === "status" && r.code === Status.EOF
            ? Effect.succeed(Option.none<ReadonlyArray<NameEntry>>())
            : Effect.fail(unexpected(r, "readdir", h.path))
      )
    const readdir = (path: string): Stream.Stream<NameEntry, SftpError> =>
      Stream.unwrapScoped(
        Effect.map(
          Effect.acquireRelease(opendir(path), (h) => Effect.ignore(close(h))),
          (h) =>
            Stream.repeatEffectOption(
              readdirBatch(h).pipe(
                Effect.mapError(Option.some),
                Effect.flatMap(Option.match({ onNone: () => Effect.fail(Option.none()), onSome: Effect.succeed }))
              )
            ).pipe(Stream.mapConcat((entries) => entries.filter((e) => e.filename !== "." && e.filename !== "..")))
        )
      )

    const readStream = (path: string, options: ReadStreamOptions = {}): Stream.Stream<Uint8Array, SftpError> =>
      Stream.unwrapScoped(
        Effect.gen(function* () {
          const { h } = yield* openScoped(path, "r")
          const pipeline = new ReadPipeline(session, h.handle, {
            start: options.start ?? 0,
            ...(options.end !== undefined ? { end: options.end } : {}),
            chunkSize: readChunk(options.chunkSize),
            concurrency: Math.max(1, options.concurrency ?? DEFAULT_CONCURRENCY)
          })
          yield* Effect.addFinalizer(() => Effect.sync(() => pipeline.abort()))
          return Stream.repeatEffectChunkOption(
            Effect.flatMap(pullPipeline(pipeline, flush), (outcome) => {
              switch (outcome._tag) {
                case "data":
                  return Effect.succeed(Chunk.unsafeFromArray(outcome.parts))
                case "end":
                  return Effect.fail(Option.none())
                case "error":
                  return Effect.fail(Option.some(failureError(outcome, "readStream", path)))
              }
            })
          )
        })
      )

    /** Issues `count` writes in order through `issue`, waiting for a free pipeline slot before each. */
    const writeInTurn = (pipeline: WritePipeline, count: number, issue: (i: number) => void, operation: string, path: string) =>
      Effect.suspend(() => {
        let i = 0
        const step: Effect.Effect<void, SftpError> = Effect.suspend(() => {
          while (i < count) {
            if (pipeline.failure) return Effect.fail(failureError(pipeline.failure, operation, path))
            if (!pipeline.ready) {
              flush()
              return Effect.zipRight(whenReady(pipeline), step)
            }
            issue(i++)
          }
          flush()
          return Effect.void
        })
        return step.pipe(Effect.ensuring(Effect.sync(flush)))
      })

    /** Writes `data` at `offset` in pieces of `size`. */
    const pipelineWrite = (pipeline: WritePipeline, offset: number, data: Uint8Array, size: number, operation: string, path: string) =>
      writeInTurn(
        pipeline,
        Math.ceil(data.length / size),
        (i) => pipeline.write(offset + i * size, data.subarray(i * size, (i + 1) * size)),
        operation,
        path
      )

    /** Sends WRITEs made by encodeWriteHeader, in order. */
    const sendEncoded = (
      pipeline: WritePipeline,
      writes: ReadonlyArray<EncodedWrite>,
      reuse: (packet: Uint8Array) => void,
      operation: string,
      path: string
    ) =>
      writeInTurn(
        pipeline,
        writes.length,
        (i) => {
          const w = writes[i]!
          pipeline.writeEncoded(w.offset, w.length, w.packet, reuse)
        },
        operation,
        path
      )

    const finishWrites = (pipeline: WritePipeline, operation: string, path: string) =>
      Effect.zipRight(
        Effect.async<void>((resume) => pipeline.whenDrained(() => resume(Effect.void))),
        Effect.suspend(() => (pipeline.failure ? Effect.fail(failureError(pipeline.failure, operation, path)) : Effect.void))
      )

    const writeSink = (path: string, options: WriteSinkOptions = {}): Sink.Sink<number, Uint8Array, never, SftpError> =>
      Sink.unwrapScoped(
        Effect.gen(function* () {
          const { h, closeNow } = yield* openScoped(path, options.flags ?? "w", options.mode !== undefined ? { mode: options.mode } : {})
          const size = writeChunk(options.chunkSize)
          const pipeline = new WritePipeline(session, h.handle, { concurrency: Math.max(1, options.concurrency ?? DEFAULT_CONCURRENCY) })
          let offset = options.start ?? 0
          let written = 0
          const consume = Sink.forEachChunk((chunk: Chunk.Chunk<Uint8Array>) =>
            Effect.forEach(
              chunk,
              (data) => {
                const at = offset
                offset += data.length
                written += data.length
                return pipelineWrite(pipeline, at, data, size, "write", path)
              },
              { discard: true }
            )
          )
          const finish = Effect.zipRight(finishWrites(pipeline, "write", path), closeNow).pipe(Effect.map(() => written))
          return Sink.zipRight(consume, Sink.fromEffect(Effect.suspend(() => finish)))
        })
      )

    const fastGet = (remotePath: string, localPath: string, options: TransferOptions = {}) =>
      Effect.scoped(
        Effect.gen(function* () {
          const { h, closeNow } = yield* openScoped(remotePath, "r")
          const total = (yield* expectAttrs({ type: "fstat", handle: h.handle }, "fastGet", remotePath)).size ?? 0
          const local = yield* localFile(localPath, "w", "fastGet")
          const pipeline = new ReadPipeline(session, h.handle, {
            start: 0,
            chunkSize: readChunk(options.chunkSize),
            concurrency: Math.max(1, options.concurrency ?? DEFAULT_CONCURRENCY)
          })
          yield* Effect.addFinalizer(() => Effect.sync(() => pipeline.abort()))
          let transferred = 0
          // the received chunks themselves go to disk, gathered into blocks for fewer writes
          let pending: Array<Uint8Array> = []
          let pendingBytes = 0
          let position = 0
          // one local write runs while the next block is gathered: disk and network overlap
          let writing: Promise<unknown> = Promise.resolve()
          const writeOut = Effect.suspend(() => {
            if (pendingBytes === 0) return Effect.void
            const buffers = pending
            const at = position
            position += pendingBytes
            pending = []
            pendingBytes = 0
            const previous = writing
            writing = previous.then(() => local.writev(buffers, at)).then(() => pipeline.recycle(buffers))
            // marked handled here: a failure surfaces through the next writeOut or the final wait, not as an unhandled rejection
            writing.catch(() => undefined)
            return localIo(() => previous, "fastGet", localPath)
          })
          const pull = pullPipeline(pipeline, flush)
          for (;;) {
            const outcome = yield* pull
            if (outcome._tag === "end") break
            if (outcome._tag === "error") return yield* Effect.fail(failureError(outcome, "fastGet", remotePath))
            for (const part of outcome.parts) pending.push(part)
            pendingBytes += outcome.length
            transferred += outcome.length
            options.onProgress?.(transferred, outcome.length, total)
            if (pendingBytes >= LOCAL_BLOCK) yield* writeOut
          }
          yield* writeOut
          yield* localIo(() => writing, "fastGet", localPath)
          yield* localIo(() => local.close(), "fastGet", localPath)
          yield* closeNow
          return transferred
        })
      )

    const fastPut = (localPath: string, remotePath: string, options: TransferOptions = {}) =>
      Effect.scoped(
        Effect.gen(function* () {
          const local = yield* localFile(localPath, "r", "fastPut")
          const total = (yield* localIo(() => local.stat(), "fastPut", localPath)).size
          const { h, closeNow } = yield* openScoped(remotePath, "w", options.mode !== undefined ? { mode: options.mode } : {})
          let transferred = 0
          const pipeline = new WritePipeline(session, h.handle, {
            concurrency: Math.max(1, options.concurrency ?? DEFAULT_CONCURRENCY),
            onAck: (n) => {
              transferred += n
              options.onProgress?.(transferred, n, total)
            }
          })
          const size = writeChunk(options.chunkSize)
          // the file is read straight into WRITE packets, whose buffers are reused once answered
          const header = writeHeaderLength(h.handle)
          const free: Array<Uint8Array> = []
          const reuse = (packet: Uint8Array) => free.push(new Uint8Array(packet.buffer, packet.byteOffset, header + size))
          const perBlock = Math.max(1, Math.floor(LOCAL_BLOCK / size))
          let position = 0
          for (;;) {
            const buffers = Array.from({ length: perBlock }, () => free.pop() ?? new Uint8Array(header + size))
            const { bytesRead } = yield* localIo(
              () => local.readv(buffers.map((b) => b.subarray(header)), position),
              "fastPut",
              localPath
            )
            if (bytesRead === 0) break
            const writes: Array<EncodedWrite> = []
            buffers.forEach((buffer, i) => {
              const length = Math.min(size, bytesRead - i * size)
              if (length <= 0) return void free.push(buffer)
              const offset = position + i * size
              writes.push({ offset, length, packet: encodeWriteHeader(buffer, h.handle, offset, length) })
            })
            yield* sendEncoded(pipeline, writes, reuse, "fastPut", remotePath)
            position += bytesRead
          }
          yield* finishWrites(pipeline, "fastPut", remotePath)
          yield* closeNow
          if (options.mode !== undefined) yield* setstat(remotePath, { mode: options.mode })
          return transferred
        })
      )

    const readFile = (path: string) =>
      Stream.runFold(readStream(path), [] as Array<Uint8Array>, (acc, c) => {
        acc.push(c)
        return acc
      }).pipe(Effect.map((parts) => concatBytes(...parts)))

    const sftp: Omit<Sftp, "fileSystem"> = {
      extensions,
      supports,
      limits,
      chunkSize,
      open,
      close,
      read,
      write,
      fstat: (h) => expectAttrs({ type: "fstat", handle: h.handle }, "fstat", h.path),
      fsetstat: (h, attrs) => expectStatus({ type: "fsetstat", handle: h.handle, attrs }, "fsetstat", h.path),
      fsync: (h) => ext({ name: Extension.FSYNC, handle: h.handle }, "fsync", h.path, (b) => expectStatus(b, "fsync", h.path)),
      fstatvfs: (h) =>
        ext({ name: Extension.FSTATVFS, handle: h.handle }, "fstatvfs", h.path, (b) =>
          Effect.flatMap(expectReply(b, "fstatvfs", h.path), (d) => decoded(d, decodeStatVfs, "fstatvfs", h.path))
        ),
      stat,
      lstat: (path) => expectAttrs({ type: "lstat", path }, "lstat", path),
      setstat,
      lsetstat: (path, attrs) => ext({ name: Extension.LSETSTAT, path, attrs }, "lsetstat", path, (b) => expectStatus(b, "lsetstat", path)),
      chmod: (path, mode) => setstat(path, { mode }),
      chown: (path, uid, gid) => setstat(path, { uid, gid }),
      utimes: (path, atime, mtime) => setstat(path, { atime: seconds(atime), mtime: seconds(mtime) }),
      exists: (path) =>
        stat(path).pipe(
          Effect.as(true),
          Effect.catchIf(
            (e) => e.reason === "no-such-file",
            () => Effect.succeed(false)
          )
        ),
      opendir,
      readdirBatch,
      readdir,
      list: (path) => Stream.runCollect(readdir(path)).pipe(Effect.map(Chunk.toReadonlyArray)),
      remove: (path) => expectStatus({ type: "remove", path }, "remove", path),
      mkdir: (path, attrs = {}) => expectStatus({ type: "mkdir", path, attrs }, "mkdir", path),
      rmdir: (path) => expectStatus({ type: "rmdir", path }, "rmdir", path),
      realpath: (path) => expectOneName({ type: "realpath", path }, "realpath", path),
      readlink: (path) => expectOneName({ type: "readlink", path }, "readlink", path),
      symlink: (targetPath, linkPath) => expectStatus({ type: "symlink", targetPath, linkPath }, "symlink", linkPath),
      rename: (oldPath, newPath) => expectStatus({ type: "rename", oldPath, newPath }, "rename", oldPath),
      posixRename: (oldPath, newPath) =>
        ext({ name: Extension.POSIX_RENAME, oldPath, newPath }, "posixRename", oldPath, (b) => expectStatus(b, "posixRename", oldPath)),
      hardlink: (oldPath, newPath) =>
        ext({ name: Extension.HARDLINK, oldPath, newPath }, "hardlink", newPath, (b) => expectStatus(b, "hardlink", newPath)),
      statvfs: (path) =>
        ext({ name: Extension.STATVFS, path }, "statvfs", path, (b) =>
          Effect.flatMap(expectReply(b, "statvfs", path), (d) => decoded(d, decodeStatVfs, "statvfs", path))
        ),
      expandPath: (path) => ext({ name: Extension.EXPAND_PATH, path }, "expandPath", path, (b) => expectOneName(b, "expandPath", path)),
      homeDirectory: (username = "") =>
        // OpenSSH's sftp-server (9.2) looks the name up as given and fails on "": ask expand-path for "~" instead
        username === "" && supports(Extension.EXPAND_PATH)
          ? ext({ name: Extension.EXPAND_PATH, path: "~" }, "homeDirectory", undefined, (b) => expectOneName(b, "homeDirectory"))
          : ext({ name: Extension.HOME_DIRECTORY, username }, "homeDirectory", undefined, (b) => expectOneName(b, "homeDirectory")),
      usersGroupsById: (uids, gids) =>
        ext({ name: Extension.USERS_GROUPS_BY_ID, uids, gids }, "usersGroupsById", undefined, (b) =>
          Effect.flatMap(expectReply(b, "usersGroupsById"), (d) => decoded(d, decodeUsersGroups, "usersGroupsById"))
        ),
      copyData: (from, fromOffset, length, to, toOffset) =>
        ext(
          { name: Extension.COPY_DATA, readHandle: from.handle, readOffset: fromOffset, length, writeHandle: to.handle, writeOffset: toOffset },
          "copyData",
          from.path,
          (b) => expectStatus(b, "copyData", from.path)
        ),
      readFile,
      writeFile: (path, data, options = {}) =>
        Stream.run(
          Stream.make(typeof data === "string" ? new TextEncoder().encode(data) : data),
          writeSink(path, { flags: options.flags ?? "w", ...(options.mode !== undefined ? { mode: options.mode } : {}) })
        ).pipe(Effect.asVoid),
      readStream,
      writeSink,
      fastGet,
      fastPut
    }
    return { ...sftp, fileSystem: makeFileSystem(sftp) }
  })

/** Opens the "sftp" subsystem on a connection and starts a session on it, bound to the scope. */
export const make = (connection: SshConnection): Effect.Effect<Sftp, SftpError, Scope.Scope> =>
  Effect.flatMap(
    Effect.mapError(connection.subsystem("sftp"), (e) =>
      new SftpError({ reason: "no-connection", status: Status.NO_CONNECTION, message: `cannot start the sftp subsystem: ${e.message}`, operation: "init", cause: e })
    ),
    fromTransport
  )

/** The Sftp service, for programs that take it from the context. */
export class SftpClient extends Context.Tag("effect-ssh/Sftp")<SftpClient, Sftp>() {}

/** A layer opening SFTP on the SshClient in context. */
export const layer: Layer.Layer<SftpClient, SftpError, SshClient> = Layer.scoped(SftpClient, Effect.flatMap(SshClient, make))

/** Coalesces small packets (READ requests, stats) into one channel write; big ones go as they are. */
function coalesce(packets: ReadonlyArray<Uint8Array>): ReadonlyArray<Uint8Array> {
  if (packets.length === 1) return packets
  const out: Array<Uint8Array> = []
  let small: Array<Uint8Array> = []
  let smallBytes = 0
  const cut = () => {
    if (small.length > 0) out.push(small.length === 1 ? small[0]! : concatBytes(...small))
    small = []
    smallBytes = 0
  }
  for (const p of packets) {
    if (p.length >= 4096) {
      cut()
      out.push(p)
    } else {
      small.push(p)
      smallBytes += p.length
      if (smallBytes >= 32 * 1024) cut()
    }
  }
  cut()
  return out
}

/** The pipeline's next outcome, with the READs it issued on their way. */
function pullPipeline(pipeline: ReadPipeline, flush: () => void): Effect.Effect<ReadOutcome> {
  return Effect.async((resume) => {
    pipeline.pull((outcome) => resume(Effect.succeed(outcome)))
    flush()
  })
}

function whenReady(pipeline: WritePipeline): Effect.Effect<void> {
  return Effect.async<void>((resume) => pipeline.whenReady(() => resume(Effect.void)))
}

function failureError(failure: { readonly error: Response | SftpSessionClosed; readonly offset: number }, operation: string, path: string): SftpError {
  const e = failure.error
  if (e instanceof SftpSessionClosed) return closedError(e, operation, path)
  return e.type === "status"
    ? SftpError.fromStatus(e.code, `${e.message || "failed"} (at offset ${failure.offset})`, operation, path)
    : SftpError.fromStatus(Status.BAD_MESSAGE, `unexpected ${e.type} response`, operation, path)
}

function closedError(e: SftpSessionClosed, operation: string, path?: string): SftpError {
  return SftpError.fromStatus(e.reason === "protocol" ? Status.BAD_MESSAGE : Status.CONNECTION_LOST, e.message, operation, path, e)
}

function causeMessage(cause: Cause.Cause<unknown>): string {
  const e = Cause.squash(cause)
  return e instanceof Error ? e.message : String(e)
}

function localIo<A>(run: () => Promise<A>, operation: string, path: string): Effect.Effect<A, SftpError> {
  return Effect.tryPromise({
    try: run,
    catch: (cause) =>
      new SftpError({
        reason: "local-io",
        status: Status.FAILURE,
        message: `sftp ${operation}: local file ${path}: ${(cause as Error).message}`,
        operation,
        path,
        cause
      })
  })
}

function localFile(path: string, flags: "r" | "w", operation: string): Effect.Effect<FileHandle, SftpError, Scope.Scope> {
  return Effect.acquireRelease(localIo(() => openLocal(path, flags), operation, path), (f) => Effect.promise(() => f.close().catch(() => undefined)))
}
