import { randomBytes } from "node:crypto"
import * as PlatformError from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import type { Attributes } from "../protocol/sftp/attributes.js"
import { fileType } from "../protocol/sftp/attributes.js"
import { Extension, Status } from "../protocol/sftp/constants.js"
import type { Sftp, SftpHandle } from "../Sftp.js"
import { SftpError } from "../SshError.js"

const platformReasons: Partial<Record<SftpError["reason"], PlatformError.SystemErrorReason>> = {
  "no-such-file": "NotFound",
  "permission-denied": "PermissionDenied",
  eof: "UnexpectedEof",
  "connection-lost": "BadResource",
  "no-connection": "BadResource",
  "bad-message": "InvalidData"
}

const toPlatform = (method: string, path?: string) => (e: SftpError) =>
  new PlatformError.SystemError({
    reason: platformReasons[e.reason] ?? "Unknown",
    module: "FileSystem",
    method,
    description: e.message,
    ...(path !== undefined ? { pathOrDescriptor: path } : {}),
    cause: e
  })

const unsupported = (method: string, what: string) =>
  new PlatformError.BadArgument({ module: "FileSystem", method, description: `${what} is not supported over SFTP` })

const fileTypes: Record<ReturnType<typeof fileType>, FileSystem.File.Type> = {
  file: "File",
  directory: "Directory",
  symlink: "SymbolicLink",
  block: "BlockDevice",
  character: "CharacterDevice",
  fifo: "FIFO",
  socket: "Socket",
  unknown: "Unknown"
}

const date = (seconds: number | undefined) => (seconds === undefined ? Option.none() : Option.some(new Date(seconds * 1000)))

function info(a: Attributes): FileSystem.File.Info {
  return {
    type: fileTypes[fileType(a.mode)],
    mtime: date(a.mtime),
    atime: date(a.atime),
    birthtime: Option.none(),
    dev: 0,
    ino: Option.none(),
    mode: a.mode ?? 0,
    nlink: Option.none(),
    uid: Option.fromNullable(a.uid),
    gid: Option.fromNullable(a.gid),
    rdev: Option.none(),
    size: FileSystem.Size(a.size ?? 0),
    blksize: Option.none(),
    blocks: Option.none()
  }
}

const join = (dir: string, name: string) => (dir.endsWith("/") ? `${dir}${name}` : `${dir}/${name}`)
const parentOf = (path: string) => {
  const i = path.replace(/\/+$/, "").lastIndexOf("/")
  return i <= 0 ? (path.startsWith("/") ? "/" : ".") : path.slice(0, i)
}

/**
 * @effect/platform's FileSystem over an SFTP session, so code written for local files runs on
 * remote ones. Streams and sinks use the pipelined transfers; rename uses posix-rename and
 * copyFile uses copy-data when the server offers them. `watch` is not available over SFTP.
 */
export function makeFileSystem(sftp: Omit<Sftp, "fileSystem">): FileSystem.FileSystem {
  let nextFd = 1

  const remove = (path: string, recursive: boolean): Effect.Effect<void, SftpError> =>
    Effect.flatMap(sftp.lstat(path), (a) => {
      if (fileType(a.mode) !== "directory") return sftp.remove(path)
      if (!recursive) return sftp.rmdir(path)
      return sftp.readdir(path).pipe(
        Stream.runForEach((e) => remove(join(path, e.filename), true)),
        Effect.zipRight(sftp.rmdir(path))
      )
    })

  const makeDirectory = (path: string, recursive: boolean, mode: number | undefined): Effect.Effect<void, SftpError> => {
    const attrs = mode !== undefined ? { mode } : {}
    if (!recursive) return sftp.mkdir(path, attrs)
    return Effect.flatMap(sftp.exists(path), (exists) =>
      exists
        ? Effect.void
        : Effect.zipRight(
            parentOf(path) === path ? Effect.void : makeDirectory(parentOf(path), true, mode),
            sftp.mkdir(path, attrs)
          )
    )
  }

  const copyFile = (from: string, to: string): Effect.Effect<void, SftpError> =>
    sftp.supports(Extension.COPY_DATA)
      ? Effect.scoped(
          Effect.gen(function* () {
            const src = yield* Effect.acquireRelease(sftp.open(from, "r"), (h) => Effect.ignore(sftp.close(h)))
            const mode = (yield* sftp.fstat(src)).mode
            const dst = yield* sftp.open(to, "w", mode !== undefined ? { mode: mode & 0o7777 } : {})
            yield* sftp.copyData(src, 0, 0, dst, 0).pipe(Effect.ensuring(Effect.ignore(sftp.close(dst))))
          })
        )
      : Effect.asVoid(Stream.run(sftp.readStream(from), sftp.writeSink(to)))

  const copy = (from: string, to: string, overwrite: boolean): Effect.Effect<void, SftpError> =>
    Effect.flatMap(sftp.stat(from), (a) => {
      if (fileType(a.mode) !== "directory") {
        return overwrite
          ? copyFile(from, to)
          : Effect.flatMap(sftp.exists(to), (exists) =>
              exists ? Effect.fail(sftpExists(to)) : copyFile(from, to)
            )
      }
      return Effect.zipRight(
        Effect.catchAll(sftp.mkdir(to, a.mode !== undefined ? { mode: a.mode & 0o7777 } : {}), (e) =>
          overwrite ? Effect.void : Effect.fail(e)
        ),
        Stream.runForEach(sftp.readdir(from), (e) => copy(join(from, e.filename), join(to, e.filename), overwrite))
      )
    })

  const sftpExists = (path: string) => SftpError.fromStatus(Status.FAILURE, "already exists", "copy", path)

  const readDirectory = (path: string, recursive: boolean, prefix = ""): Effect.Effect<Array<string>, SftpError> =>
    Stream.runFoldEffect(sftp.readdir(path), [] as Array<string>, (names, e) => {
      const name = prefix + e.filename
      names.push(name)
      return recursive && fileType(e.attrs.mode) === "directory"
        ? Effect.map(readDirectory(join(path, e.filename), true, `${name}/`), (sub) => [...names, ...sub])
        : Effect.succeed(names)
    })

  const tempName = (prefix = "") => `${prefix}${randomBytes(6).toString("hex")}`
  const makeTempDirectory = (options: FileSystem.MakeTempDirectoryOptions = {}) =>
    Effect.suspend(() => {
      const path = join(options.directory ?? "/tmp", tempName(options.prefix))
      return Effect.as(Effect.mapError(sftp.mkdir(path, { mode: 0o700 }), toPlatform("makeTempDirectory", path)), path)
    })
  const makeTempFile = (options: FileSystem.MakeTempFileOptions = {}) =>
    Effect.flatMap(makeTempDirectory(options.directory !== undefined ? { directory: options.directory } : {}), (dir) => {
      const path = join(dir, tempName(options.prefix) + (options.suffix ?? ""))
      return Effect.as(Effect.mapError(sftp.writeFile(path, new Uint8Array(0), { flags: "wx", mode: 0o600 }), toPlatform("makeTempFile", path)), path)
    })

  const openFile = (path: string, options: FileSystem.OpenFileOptions = {}) =>
    Effect.map(
      Effect.acquireRelease(sftp.open(path, options.flag ?? "r", options.mode !== undefined ? { mode: options.mode } : {}), (h) =>
        Effect.ignore(sftp.close(h))
      ).pipe(Effect.mapError(toPlatform("open", path))),
      (h) => fileOf(h, path, (options.flag ?? "r").startsWith("a"))
    )

  const fileOf = (h: SftpHandle, path: string, append: boolean): FileSystem.File => {
    let position = 0
    const fail = (method: string) => toPlatform(method, path)
    const advanceToEnd = append
      ? Effect.map(sftp.fstat(h), (a) => {
          position = a.size ?? position
        })
      : Effect.void
    const write = (buffer: Uint8Array) =>
      Effect.zipRight(advanceToEnd, Effect.suspend(() => sftp.write(h, position, buffer))).pipe(
        Effect.map(() => {
          position += buffer.length
          return FileSystem.Size(buffer.length)
        }),
        Effect.mapError(fail("write"))
      )
    return {
      [FileSystem.FileTypeId]: FileSystem.FileTypeId,
      fd: FileSystem.FileDescriptor(nextFd++),
      stat: Effect.map(Effect.mapError(sftp.fstat(h), fail("stat")), info),
      seek: (offset, from) =>
        Effect.sync(() => {
          position = (from === "start" ? 0 : position) + Number(offset)
        }),
      sync: sftp.supports(Extension.FSYNC) ? Effect.mapError(sftp.fsync(h), fail("sync")) : Effect.void,
      read: (buffer) =>
        Effect.suspend(() => sftp.read(h, position, buffer.length)).pipe(
          Effect.map((data) => {
            buffer.set(data)
            position += data.length
            return FileSystem.Size(data.length)
          }),
          Effect.mapError(fail("read"))
        ),
      readAlloc: (size) =>
        Effect.suspend(() => sftp.read(h, position, Number(size))).pipe(
          Effect.map((data) => {
            position += data.length
            return data.length === 0 ? Option.none() : Option.some(data)
          }),
          Effect.mapError(fail("readAlloc"))
        ),
      truncate: (length) => Effect.mapError(sftp.fsetstat(h, { size: Number(length ?? 0) }), fail("truncate")),
      write,
      writeAll: (buffer) => Effect.asVoid(write(buffer))
    }
  }

  const fs = FileSystem.make({
    access: (path) => Effect.mapError(Effect.asVoid(sftp.stat(path)), toPlatform("access", path)),
    copy: (from, to, options) => Effect.mapError(copy(from, to, options?.overwrite ?? false), toPlatform("copy", from)),
    copyFile: (from, to) => Effect.mapError(copyFile(from, to), toPlatform("copyFile", from)),
    chmod: (path, mode) => Effect.mapError(sftp.chmod(path, mode), toPlatform("chmod", path)),
    chown: (path, uid, gid) => Effect.mapError(sftp.chown(path, uid, gid), toPlatform("chown", path)),
    link: (from, to) => Effect.mapError(sftp.hardlink(from, to), toPlatform("link", to)),
    makeDirectory: (path, options) =>
      Effect.mapError(makeDirectory(path, options?.recursive ?? false, options?.mode), toPlatform("makeDirectory", path)),
    makeTempDirectory,
    makeTempDirectoryScoped: (options) =>
      Effect.acquireRelease(makeTempDirectory(options), (dir) => Effect.ignore(remove(dir, true))),
    makeTempFile,
    makeTempFileScoped: (options) =>
      Effect.acquireRelease(makeTempFile(options), (file) => Effect.ignore(remove(parentOf(file), true))),
    open: openFile,
    readDirectory: (path, options) => Effect.mapError(readDirectory(path, options?.recursive ?? false), toPlatform("readDirectory", path)),
    readFile: (path) => Effect.mapError(sftp.readFile(path), toPlatform("readFile", path)),
    readLink: (path) => Effect.mapError(sftp.readlink(path), toPlatform("readLink", path)),
    realPath: (path) => Effect.mapError(sftp.realpath(path), toPlatform("realPath", path)),
    remove: (path, options) =>
      remove(path, options?.recursive ?? false).pipe(
        Effect.catchIf(
          (e) => options?.force === true && e.reason === "no-such-file",
          () => Effect.void
        ),
        Effect.mapError(toPlatform("remove", path))
      ),
    rename: (from, to) =>
      Effect.mapError(sftp.supports(Extension.POSIX_RENAME) ? sftp.posixRename(from, to) : sftp.rename(from, to), toPlatform("rename", from)),
    stat: (path) => Effect.map(Effect.mapError(sftp.stat(path), toPlatform("stat", path)), info),
    symlink: (target, path) => Effect.mapError(sftp.symlink(target, path), toPlatform("symlink", path)),
    truncate: (path, length) => Effect.mapError(sftp.setstat(path, { size: Number(length ?? 0) }), toPlatform("truncate", path)),
    utimes: (path, atime, mtime) => Effect.mapError(sftp.utimes(path, atime, mtime), toPlatform("utimes", path)),
    watch: () => Stream.fail(unsupported("watch", "watching files")),
    writeFile: (path, data, options) =>
      Effect.mapError(
        sftp.writeFile(path, data, { flags: options?.flag ?? "w", ...(options?.mode !== undefined ? { mode: options.mode } : {}) }),
        toPlatform("writeFile", path)
      )
  })

  return {
    ...fs,
    stream: (path, options = {}) => {
      const start = Number(options.offset ?? 0)
      return Stream.mapError(
        sftp.readStream(path, {
          start,
          ...(options.bytesToRead !== undefined ? { end: start + Number(options.bytesToRead) } : {}),
          ...(options.chunkSize !== undefined ? { chunkSize: Number(options.chunkSize) } : {})
        }),
        toPlatform("stream", path)
      )
    },
    sink: (path, options = {}) =>
      Sink.mapError(
        Sink.map(sftp.writeSink(path, { flags: options.flag ?? "w", ...(options.mode !== undefined ? { mode: options.mode } : {}) }), () => undefined),
        toPlatform("sink", path)
      )
  }
}
